"""TorchServe's inference API (the one on TorchServe's port 8080).

==========  ======================================  =====================================
GET         ``/ping``                               200 ``{"status": "Healthy"}`` when ready,
                                                    else 500 ``{"status": "Unhealthy"}``
POST, PUT   ``/predictions/{model}[/{version}]``    the model's predictions
==========  ======================================  =====================================

TorchServe versions are strings such as ``"1.0"``; modelport's are positive integers, so
``2`` and ``2.0`` name version 2 and any other version is not found. Bodies of any
Content-Type are taken, multipart forms included (see ``codec``); a model served by a Python
handler gets the payload itself, as TorchServe passes it. Errors, including those the
HTTP layer raises on these paths (draining, size, unknown paths), take TorchServe's
``{"code", "type", "message"}`` shape.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from modelport.core.dataplane import DataPlane
from modelport.errors import MethodNotAllowed, ModelportError, NotFound, VersionNotFound
from modelport.protocols.http import HttpRequest, Mount, Route
from modelport.protocols.torchserve import codec
from modelport.protocols.wire import HttpResponse, json_response
from modelport.types import InferRequest

__all__ = ["PROTOCOL", "TorchServeRest"]

#: How the metrics name this surface.
PROTOCOL = "torchserve_rest"

_PREDICTIONS = re.compile(r"/predictions/(?P<model>[^/]+)(?:/(?P<version>[^/]+))?")
_VERSION = re.compile(r"0*(?P<number>[0-9]{1,18})(?:\.0*)?")
_HEALTHY = json_response({"status": "Healthy"})
_UNHEALTHY = json_response({"status": "Unhealthy"}, 500)


class TorchServeRest:
    """The TorchServe inference surface over one dataplane."""

    def __init__(self, dataplane: DataPlane) -> None:
        self._dataplane = dataplane

    def mount(self, *, catch_all: bool = False) -> Mount:
        """The surface's routes. With ``catch_all`` (a port serving nothing else), it also
        answers every other path, with TorchServe's 404."""
        routes = [
            Route(re.compile("/ping"), {"GET": self.ping}, during_drain=True),
            Route(_PREDICTIONS, {"POST": self.predict, "PUT": self.predict}, content_types=None),
        ]
        return Mount(
            owns=_everything if catch_all else _owns,
            routes=routes,
            unmatched=_unmatched,
            render_error=codec.error_response,
        )

    async def ping(self, request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        return _HEALTHY if self._dataplane.server_ready() else _UNHEALTHY

    async def predict(self, request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        name = unquote(match["model"])
        version = self._version(name, match["version"])
        payload = codec.read_payload(request.body, request.header(b"content-type"))
        dataplane = self._dataplane
        with dataplane.lease(name, version, protocol=PROTOCOL) as target:
            if codec.takes_payload(target.platform, target.signature):
                inputs, batch = codec.handler_inputs(
                    payload, target.signature, target.config.torchserve_list_batch
                )
                response = await dataplane.infer(target, InferRequest(inputs))
                return codec.handler_answer(response.outputs, batch)
            inputs, row_format = codec.decode_instances(payload, target.signature, name)
            response = await dataplane.infer(target, InferRequest(inputs))
            return HttpResponse(200, codec.encode_predictions(response.outputs, row_format))

    def _version(self, name: str, raw: str | None) -> int | None:
        """A TorchServe version string as a modelport version: ``2`` and ``2.0`` are 2."""
        if raw is None:
            return None
        raw = unquote(raw)
        match = _VERSION.fullmatch(raw)
        if match is not None and int(match["number"]) > 0:
            return int(match["number"])
        versions = self._dataplane.available_versions(name)  # raises ModelNotFound
        listed = ", ".join(str(v) for v in sorted(versions)) or "none"
        raise VersionNotFound(
            f"model {name!r} has no version {raw!r}: modelport versions are whole numbers "
            f"(2, or 2.0 as TorchServe writes it); versions: {listed}"
        )


def _owns(path: str) -> bool:
    return path == "/ping" or path.startswith("/predictions/") or path == "/predictions"


def _everything(path: str) -> bool:
    return True


def _unmatched(method: str, path: str, allowed: tuple[str, ...]) -> ModelportError:
    if allowed:
        return MethodNotAllowed(
            "Requested method is not allowed, please refer to API document.", allowed
        )
    return NotFound("Requested resource is not found, please refer to API document.")
