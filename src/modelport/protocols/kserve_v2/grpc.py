"""KServe V2 / Open Inference Protocol over gRPC: ``inference.GRPCInferenceService``.

=====================  ====================================================================
ServerLive/Ready       live; ready when not draining and the models are (health methods)
ServerMetadata         name, version and the extensions implemented
ModelReady             whether that model (version) can take requests; unknown ones are not
ModelMetadata          versions, platform, inputs and outputs (shapes with the batch -1)
ModelInfer             inference: raw or typed contents in, ``raw_output_contents`` out
ModelStreamInfer       a stream of inferences, run concurrently, each answered when ready
ModelConfig            Triton's model configuration
ModelStatistics        Triton's inference statistics (empty name: every model)
RepositoryIndex        models in the repository and their state
RepositoryModelLoad    load or unload a model on request (needs ``--model-control``)
  / Unload
=====================  ====================================================================

The answers are those of the REST surface (``rest.py``): the Triton documents come from
``triton.py`` and become messages through ``json_format``. ``ModelReady`` answers false for a
model or version the server does not know, as Triton does, so ``is_model_ready`` never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

from google.protobuf import json_format

from modelport import __version__
from modelport._pb.kserve import grpc_service_pb2 as pb
from modelport.core.dataplane import DataPlane
from modelport.errors import InvalidInput, ModelportError, NotFound, ShuttingDown, Unimplemented
from modelport.protocols.grpc import CallContext, Method, Service
from modelport.protocols.kserve_v2 import triton
from modelport.protocols.kserve_v2.grpc_codec import (
    decode_infer_request,
    encode_infer_response,
    tensor_metadata,
)

__all__ = ["PROTOCOL", "SERVICE", "STREAM_CONCURRENCY", "KServeV2Grpc"]

log = logging.getLogger(__name__)

#: The full name of the service.
SERVICE = "inference.GRPCInferenceService"
#: How the metrics name this surface.
PROTOCOL = "kserve_v2_grpc"
#: Requests of one stream in flight at once (or answered and waiting to be sent).
STREAM_CONCURRENCY = 64

_VERSION = re.compile(r"[0-9]{1,18}")
_INTERNAL_MESSAGE = "internal server error; the server log has the details"
_FINAL = "triton_final_response"
_EMPTY_FINAL = "triton_enable_empty_final_response"


class KServeV2Grpc:
    """The V2 gRPC surface over one dataplane."""

    def __init__(self, dataplane: DataPlane) -> None:
        self._dataplane = dataplane
        self._server_metadata = pb.ServerMetadataResponse(
            name="modelport", version=__version__, extensions=triton.EXTENSIONS
        )

    def service(self) -> Service:
        """``inference.GRPCInferenceService`` with every method modelport implements."""
        return Service(
            SERVICE,
            [
                Method("ServerLive", pb.ServerLiveRequest, self.server_live, during_drain=True),
                Method("ServerReady", pb.ServerReadyRequest, self.server_ready, during_drain=True),
                Method("ModelReady", pb.ModelReadyRequest, self.model_ready, during_drain=True),
                Method("ServerMetadata", pb.ServerMetadataRequest, self.server_metadata),
                Method("ModelMetadata", pb.ModelMetadataRequest, self.model_metadata),
                Method("ModelInfer", pb.ModelInferRequest, self.model_infer),
                Method("ModelStreamInfer", pb.ModelInferRequest, stream=self.model_stream_infer),
                Method("ModelConfig", pb.ModelConfigRequest, self.model_config),
                Method("ModelStatistics", pb.ModelStatisticsRequest, self.model_statistics),
                Method("RepositoryIndex", pb.RepositoryIndexRequest, self.repository_index),
                Method("RepositoryModelLoad", pb.RepositoryModelLoadRequest, self.load),
                Method("RepositoryModelUnload", pb.RepositoryModelUnloadRequest, self.unload),
            ],
        )

    # ---- health and metadata --------------------------------------------------------------

    async def server_live(
        self, request: pb.ServerLiveRequest, context: CallContext
    ) -> pb.ServerLiveResponse:
        """Live whenever the process answers."""
        return pb.ServerLiveResponse(live=True)

    async def server_ready(
        self, request: pb.ServerReadyRequest, context: CallContext
    ) -> pb.ServerReadyResponse:
        """Ready when not draining and the models are ready."""
        return pb.ServerReadyResponse(ready=self._dataplane.server_ready())

    async def model_ready(
        self, request: pb.ModelReadyRequest, context: CallContext
    ) -> pb.ModelReadyResponse:
        """Whether the model (version) can take requests; false for unknown ones."""
        name, version = _model(request.name), _version(request.version)
        try:
            ready = self._dataplane.model_ready(name, version)
        except NotFound:
            ready = False
        return pb.ModelReadyResponse(ready=ready)

    async def server_metadata(
        self, request: pb.ServerMetadataRequest, context: CallContext
    ) -> pb.ServerMetadataResponse:
        """Name, version and the extensions modelport implements."""
        return self._server_metadata

    async def model_metadata(
        self, request: pb.ModelMetadataRequest, context: CallContext
    ) -> pb.ModelMetadataResponse:
        """The model's versions, platform, inputs and outputs."""
        name, version = _model(request.name), _version(request.version)
        with self._dataplane.lease(name, version) as target:
            signature, platform, served = target.signature, target.platform, target.version
        versions = [served] if version is not None else self._dataplane.available_versions(name)
        return pb.ModelMetadataResponse(
            name=name,
            versions=[str(v) for v in versions],
            platform=platform,
            inputs=tensor_metadata(signature.inputs),
            outputs=tensor_metadata(signature.outputs),
        )

    # ---- inference ------------------------------------------------------------------------

    async def model_infer(
        self, request: pb.ModelInferRequest, context: CallContext
    ) -> pb.ModelInferResponse:
        """One inference."""
        return await self._infer(request)

    async def _infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        dataplane = self._dataplane
        name, version = _model(request.model_name), _version(request.model_version)
        with dataplane.lease(name, version, protocol=PROTOCOL) as target:
            response = await dataplane.infer(target, decode_infer_request(request))
            return encode_infer_response(response)

    async def model_stream_infer(
        self, requests: AsyncIterator[pb.ModelInferRequest], context: CallContext
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Answer each request of the stream as soon as it is done, errors included.

        Up to ``STREAM_CONCURRENCY`` requests run at once (so dynamic batching can group them);
        a request's failure is its answer's ``error_message`` and the stream goes on. When the
        client stops sending, the stream ends once every request is answered.
        """
        stream = _Stream(self._stream_answer, lambda: self._dataplane.draining)
        async with contextlib.aclosing(stream.run(requests)) as answers:
            async for answer in answers:
                yield answer

    async def _stream_answer(self, request: pb.ModelInferRequest) -> pb.ModelStreamInferResponse:
        try:
            response = await self._infer(request)
        except ModelportError as exc:
            return _stream_error(request, exc.message)
        except Exception:
            log.exception("unexpected error answering a ModelStreamInfer request")
            return _stream_error(request, _INTERNAL_MESSAGE)
        final = request.parameters.get(_EMPTY_FINAL)
        if final is not None and final.bool_param:
            # Every answer is complete: mark it final for clients that wait for the flag.
            response.parameters[_FINAL].bool_param = True
        return pb.ModelStreamInferResponse(infer_response=response)

    # ---- Triton's extensions --------------------------------------------------------------

    async def model_config(
        self, request: pb.ModelConfigRequest, context: CallContext
    ) -> pb.ModelConfigResponse:
        """The model's configuration in Triton's shape."""
        name, version = _model(request.name), _version(request.version)
        with self._dataplane.lease(name, version) as target:
            document = triton.model_config(target)
        return json_format.ParseDict({"config": document}, pb.ModelConfigResponse())

    async def model_statistics(
        self, request: pb.ModelStatisticsRequest, context: CallContext
    ) -> pb.ModelStatisticsResponse:
        """Inference statistics of one model (version), or of every model."""
        if request.name:
            served = self._dataplane.served(request.name, _version(request.version))
        else:
            served = self._dataplane.served()
        document = triton.model_statistics(list(served))
        return json_format.ParseDict(document, pb.ModelStatisticsResponse())

    async def repository_index(
        self, request: pb.RepositoryIndexRequest, context: CallContext
    ) -> pb.RepositoryIndexResponse:
        """Every model of the repository and its state."""
        rows = triton.index_entries(self._dataplane.index(), request.ready)
        return json_format.ParseDict({"models": rows}, pb.RepositoryIndexResponse())

    async def load(
        self, request: pb.RepositoryModelLoadRequest, context: CallContext
    ) -> pb.RepositoryModelLoadResponse:
        """Load or reload a model from the repository."""
        if request.parameters:
            raise Unimplemented(
                "loading with a configuration or files in the request is not supported; change "
                "the model's folder in the repository and load it again"
            )
        await self._dataplane.load(_model(request.model_name))
        return pb.RepositoryModelLoadResponse()

    async def unload(
        self, request: pb.RepositoryModelUnloadRequest, context: CallContext
    ) -> pb.RepositoryModelUnloadResponse:
        """Unload a model until it is loaded again."""
        await self._dataplane.unload(_model(request.model_name))
        return pb.RepositoryModelUnloadResponse()


class _Stream:
    """Runs the requests of one stream concurrently and yields their answers as they finish.

    A reader task takes requests while fewer than ``STREAM_CONCURRENCY`` are unanswered or
    unsent, and starts a task for each; finished answers wait in a queue for the generator.
    The reader stops at the end of the client's messages, on a message that does not parse,
    or when the server starts draining; the requests already taken are still answered, then
    the stream ends (with the error, if there was one).
    """

    def __init__(
        self,
        answer: Callable[[pb.ModelInferRequest], Awaitable[pb.ModelStreamInferResponse]],
        draining: Callable[[], bool],
    ) -> None:
        self._answer = answer
        self._draining = draining
        self._slots = asyncio.Semaphore(STREAM_CONCURRENCY)
        self._done: asyncio.Queue[pb.ModelStreamInferResponse | _End] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(
        self, requests: AsyncIterator[pb.ModelInferRequest]
    ) -> AsyncGenerator[pb.ModelStreamInferResponse, None]:
        reader = asyncio.create_task(self._read(requests))
        try:
            while True:
                item = await self._done.get()
                if isinstance(item, _End):
                    if item.error is not None:
                        raise item.error
                    return
                self._slots.release()
                yield item
        finally:
            reader.cancel()
            for task in list(self._tasks):
                task.cancel()

    async def _read(self, requests: AsyncIterator[pb.ModelInferRequest]) -> None:
        error: Exception | None = None
        try:
            async for request in requests:
                if self._draining():
                    raise ShuttingDown(
                        "the server is shutting down; send the request to another replica"
                    )
                await self._slots.acquire()
                task = asyncio.create_task(self._run_one(request))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except Exception as exc:  # ends the stream once the requests taken are answered
            error = exc
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        self._done.put_nowait(_End(error))

    async def _run_one(self, request: pb.ModelInferRequest) -> None:
        self._done.put_nowait(await self._answer(request))


class _End:
    """The end of a stream's answers, and the error that ended it, if any."""

    __slots__ = ("error",)

    def __init__(self, error: Exception | None) -> None:
        self.error = error


def _stream_error(request: pb.ModelInferRequest, message: str) -> pb.ModelStreamInferResponse:
    """A failed request's answer: the error, and the request's id so the client can match it."""
    return pb.ModelStreamInferResponse(
        error_message=message,
        infer_response=pb.ModelInferResponse(
            model_name=request.model_name, model_version=request.model_version, id=request.id
        ),
    )


def _model(name: str) -> str:
    if not name:
        raise InvalidInput("the request names no model; set its model name")
    return name


def _version(raw: str) -> int | None:
    """The version a request names: empty is the server's choice."""
    if not raw:
        return None
    if not _VERSION.fullmatch(raw) or int(raw) < 1:
        raise InvalidInput(
            f"version {raw!r} is not a version number (a positive integer); leave it empty for "
            "the newest"
        )
    return int(raw)
