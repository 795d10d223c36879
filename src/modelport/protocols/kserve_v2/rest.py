"""KServe V2 / Open Inference Protocol REST endpoints.

======  =============================================  =====================================
GET     ``/v2``                                        server metadata and extensions
GET     ``/v2/health/live``, ``/v2/health/ready``      200 when live / ready, else 503
GET     ``/v2/models/{m}[/versions/{v}]``              model metadata
GET     ``/v2/models/{m}[/versions/{v}]/ready``        200 when that model can take requests
POST    ``/v2/models/{m}[/versions/{v}]/infer``        inference (JSON or binary extension)
GET     ``/v2/models/{m}[/versions/{v}]/config``       Triton's model configuration
GET     ``/v2/models[/{m}[/versions/{v}]]/stats``      Triton's inference statistics
POST    ``/v2/repository[/{repo}]/index``              models in the repository and their state
POST    ``/v2/repository/models/{m}/load|unload``      load or unload a model on request
======  =============================================  =====================================
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from modelport import __version__
from modelport.core.dataplane import DataPlane
from modelport.errors import (
    InvalidInput,
    MethodNotAllowed,
    ModelportError,
    NotFound,
    Unimplemented,
)
from modelport.protocols.http import HttpRequest, Mount, Route
from modelport.protocols.kserve_v2 import triton
from modelport.protocols.kserve_v2.codec import (
    HEADER_LENGTH,
    decode_infer_request,
    encode_infer_response,
    tensor_metadata,
)
from modelport.protocols.wire import HttpResponse, json_response, parse_json_object

__all__ = ["KServeV2Rest"]

_MODEL = r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?"
_VERSION = re.compile(r"[0-9]{1,18}")
_REPOSITORY_MODEL = r"/v2/repository/models/(?P<model>[^/]+)"
#: How the metrics name this surface.
PROTOCOL = "kserve_v2_rest"


class KServeV2Rest:
    """The V2 REST surface over one dataplane."""

    def __init__(self, dataplane: DataPlane) -> None:
        self._dataplane = dataplane
        self._server_metadata = json_response(
            {"name": "modelport", "version": __version__, "extensions": list(triton.EXTENSIONS)}
        )

    def mount(self) -> Mount:
        routes = [
            Route(re.compile(_MODEL + "/infer"), {"POST": self.infer}),
            Route(re.compile("/v2/models/stats"), {"GET": self.statistics}),
            Route(re.compile(_MODEL + "/stats"), {"GET": self.statistics}),
            Route(re.compile(_MODEL + "/config"), {"GET": self.config}),
            Route(re.compile(r"/v2/repository(?:/[^/]+)?/index"), {"POST": self.index}),
            Route(re.compile(_REPOSITORY_MODEL + "/load"), {"POST": self.load}),
            Route(re.compile(_REPOSITORY_MODEL + "/unload"), {"POST": self.unload}),
            Route(re.compile(_MODEL + "/ready"), {"GET": self.model_ready}),
            Route(re.compile(_MODEL), {"GET": self.model_metadata}),
            Route(re.compile("/v2/health/live"), {"GET": self.live}, during_drain=True),
            Route(re.compile("/v2/health/ready"), {"GET": self.ready}, during_drain=True),
            Route(re.compile("/v2/?"), {"GET": self.server_metadata}),
        ]
        return Mount(
            owns=lambda path: path == "/v2" or path.startswith("/v2/"),
            routes=routes,
            unmatched=_unmatched,
        )

    async def infer(self, request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        name, version = _model_version(match)
        dataplane = self._dataplane
        with dataplane.lease(name, version, protocol=PROTOCOL) as target:
            decoded = decode_infer_request(
                request.body, request.header(HEADER_LENGTH), target.signature
            )
            response = await dataplane.infer(target, decoded.request)
            return encode_infer_response(response, decoded)

    async def model_metadata(self, request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        name, version = _model_version(match)
        with self._dataplane.lease(name, version) as target:
            signature, platform = target.signature, target.platform
            served = target.version
        versions = [str(v) for v in self._dataplane.available_versions(name)]
        return json_response(
            {
                "name": name,
                "versions": versions if version is None else [str(served)],
                "platform": platform,
                "inputs": tensor_metadata(signature.inputs),
                "outputs": tensor_metadata(signature.outputs),
            }
        )

    async def config(self, request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        name, version = _model_version(match)
        with self._dataplane.lease(name, version) as target:
            return json_response(triton.model_config(target))

    async def statistics(self, request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        groups = match.groupdict()
        name = unquote(groups["model"]) if groups.get("model") else None
        version = _model_version(match)[1] if name is not None else None
        served = list(self._dataplane.served(name, version))
        return json_response(triton.model_statistics(served))

    async def index(self, request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        doc = parse_json_object(request.body, "index request") if request.body.strip() else {}
        ready = doc.get("ready", False)
        if not isinstance(ready, bool):
            raise InvalidInput("'ready' must be true or false")
        return json_response(triton.index_entries(self._dataplane.index(), ready))

    async def load(self, request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        _refuse_load_parameters(request.body)
        await self._dataplane.load(unquote(match["model"]))
        return HttpResponse(200, b"")

    async def unload(self, request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        await self._dataplane.unload(unquote(match["model"]))
        return HttpResponse(200, b"")

    async def model_ready(self, request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        name, version = _model_version(match)
        ready = self._dataplane.model_ready(name, version)
        return json_response({"name": name, "ready": ready}, 200 if ready else 503)

    async def live(self, request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        return json_response({"live": True})

    async def ready(self, request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        ready = self._dataplane.server_ready()
        return json_response({"ready": ready}, 200 if ready else 503)

    async def server_metadata(self, request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        return self._server_metadata


def _model_version(match: re.Match[str]) -> tuple[str, int | None]:
    name = unquote(match["model"])
    raw = match["version"]
    if raw is None:
        return name, None
    if not _VERSION.fullmatch(raw) or int(raw) < 1:
        raise InvalidInput(f"version {unquote(raw)!r} is not a version number (a positive integer)")
    return name, int(raw)


def _refuse_load_parameters(body: bytes) -> None:
    """Loading with a configuration or files sent in the request is not supported."""
    if not body.strip():
        return
    parameters = parse_json_object(body, "load request").get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput("'parameters' of the load request must be an object")
    if parameters:
        raise Unimplemented(
            "loading with a configuration or files in the request is not supported; change the "
            "model's folder in the repository and load it again"
        )


def _unmatched(method: str, path: str, allowed: tuple[str, ...]) -> ModelportError:
    if allowed:
        return MethodNotAllowed(f"{method} is not allowed on {path}", allowed)
    return NotFound("Not Found")
