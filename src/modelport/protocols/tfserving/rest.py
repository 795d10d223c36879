"""TF Serving's REST API, with its URL grammar, bodies and status codes.

======  ======================================================================  ================
GET     ``/v1/models/{m}[/versions/{v}|/labels/{l}]``                           version status
GET     ``/v1/models/{m}[/versions/{v}|/labels/{l}]/metadata``                  signature
POST    ``/v1/models/{m}[/versions/{v}|/labels/{l}]:predict|:classify|:regress``
======  ======================================================================  ================

As in TF Serving, the literal parts match case-insensitively, names are URL-decoded, and any other
``/v1/`` request is answered 400 ``Malformed request``.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from modelport.core.dataplane import DataPlane, served_signatures
from modelport.errors import InvalidInput, ModelportError, NotFound
from modelport.protocols.http import HttpRequest, Mount, Route
from modelport.protocols.tfserving import codec
from modelport.protocols.wire import HttpResponse, json_response, parse_json_object
from modelport.types import InferRequest, VersionStatus

__all__ = ["TFServingRest"]

_TARGET = (
    r"/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
)
_INT64_MAX = 2**63 - 1
#: How the metrics name this surface.
PROTOCOL = "tfserving_rest"


class TFServingRest:
    """The TF Serving REST surface over one dataplane."""

    def __init__(self, dataplane: DataPlane) -> None:
        self._dataplane = dataplane

    def mount(self) -> Mount:
        routes = [
            Route(re.compile(_TARGET + ":predict", re.IGNORECASE), {"POST": self.predict}),
            Route(re.compile(_TARGET + ":classify", re.IGNORECASE), {"POST": self.classify}),
            Route(re.compile(_TARGET + ":regress", re.IGNORECASE), {"POST": self.regress}),
            Route(re.compile(_TARGET + "/metadata", re.IGNORECASE), {"GET": self.metadata}),
            Route(re.compile(_TARGET, re.IGNORECASE), {"GET": self.status}),
            Route(re.compile("/v1/models/?", re.IGNORECASE), {"GET": _missing_name}),
        ]
        return Mount(
            owns=lambda path: path[:4].lower() == "/v1/",
            routes=routes,
            unmatched=_malformed,
        )

    async def predict(self, request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        name, version, label = _target(match)
        doc = parse_json_object(request.body)
        dataplane = self._dataplane
        with dataplane.lease(name, version, label, PROTOCOL) as target:
            signatures = served_signatures(target)
            chosen = codec.select_signature(doc, signatures)
            inputs, row_format = codec.decode_predict(doc, signatures[chosen])
            response = await dataplane.infer(target, InferRequest(inputs, signature=chosen))
            return HttpResponse(200, codec.encode_predict(response.outputs, row_format))

    async def classify(self, request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        name, version, label = _target(match)
        doc = parse_json_object(request.body)
        dataplane = self._dataplane
        with dataplane.lease(name, version, label, PROTOCOL) as target:
            signatures = served_signatures(target)
            chosen = codec.select_signature(doc, signatures)
            outputs = codec.classify_outputs(signatures[chosen], target.config)
            inputs = codec.decode_examples(doc, signatures[chosen])
            infer_request = InferRequest(inputs, outputs, signature=chosen)
            response = await dataplane.infer(target, infer_request)
            body = codec.encode_classify(response.outputs, outputs, target.config)
            return HttpResponse(200, body)

    async def regress(self, request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        name, version, label = _target(match)
        doc = parse_json_object(request.body)
        dataplane = self._dataplane
        with dataplane.lease(name, version, label, PROTOCOL) as target:
            signatures = served_signatures(target)
            chosen = codec.select_signature(doc, signatures)
            output = codec.regress_output(signatures[chosen], target.config)
            inputs = codec.decode_examples(doc, signatures[chosen])
            infer_request = InferRequest(inputs, [output], signature=chosen)
            response = await dataplane.infer(target, infer_request)
            return HttpResponse(200, codec.encode_regress(response.outputs, output))

    async def metadata(self, request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        name, version, label = _target(match)
        with self._dataplane.lease(name, version, label) as target:
            signatures, served = served_signatures(target), target.version
        return json_response(
            {
                "model_spec": {"name": name, "signature_name": "", "version": str(served)},
                "metadata": {"signature_def": {"signature_def": codec.signature_def(signatures)}},
            }
        )

    async def status(self, request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        name, version, label = _target(match)
        statuses = self._dataplane.status(name, version, label)
        if not statuses:
            raise NotFound(f"Could not find any versions of model {name}")
        return json_response({"model_version_status": [_version_status(s) for s in statuses]})


def _version_status(status: VersionStatus) -> dict[str, object]:
    tf = codec.version_status(status)
    return {
        "version": str(tf.version),
        "state": tf.state,
        "status": {"error_code": tf.error_code, "error_message": tf.error_message},
    }


def _target(match: re.Match[str]) -> tuple[str, int | None, str | None]:
    version = match["version"]
    if version is not None and (len(version) > 19 or int(version) > _INT64_MAX):
        raise InvalidInput(f"Failed to convert version: {version}")
    label = match["label"]
    return (
        unquote(match["model"]),
        int(version) if version is not None else None,
        unquote(label) if label is not None else None,
    )


async def _missing_name(request: HttpRequest, match: re.Match[str]) -> HttpResponse:
    raise InvalidInput("Missing model name in request.")


def _malformed(method: str, path: str, allowed: tuple[str, ...]) -> ModelportError:

    return InvalidInput(f"Malformed request: {method} {path}")
