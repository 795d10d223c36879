"""The dataplane: the one object every protocol adapter calls.

An adapter leases the version a request names (which keeps that version from unloading while the
request runs), decodes the body against its signature, calls ``infer`` and encodes the answer::

    with dataplane.lease("mnist", version=None, label=None) as target:
        inputs = decode(body, target.signature)
        response = await dataplane.infer(target, InferRequest(inputs))

The engine runs in a worker thread, so the event loop never blocks on inference, except for
calls measured to be shorter than the inline budget (see ``core.dispatch``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import Any, Protocol

import numpy as np

from modelport.core.batcher import BatchObserver
from modelport.core.dispatch import ComputeEstimate, Dispatcher
from modelport.core.scheduling import Scheduler
from modelport.core.stats import VersionStats
from modelport.core.validation import check_inputs, resolve_outputs
from modelport.errors import ModelportError, NotFound, PermissionDenied
from modelport.model_config import ModelConfig
from modelport.runtimes.base import DEFAULT_SIGNATURE_NAME, Runtime
from modelport.types import IndexEntry, InferRequest, InferResponse, Signature, VersionStatus

__all__ = [
    "DataPlane",
    "Lease",
    "ModelStore",
    "RepositoryControl",
    "RequestObserver",
    "ServedVersion",
    "served_signatures",
]


class ServedVersion(Protocol):
    """A leased, AVAILABLE model version."""

    @property
    def model(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def signature(self) -> Signature: ...
    @property
    def runtime(self) -> Runtime: ...
    @property
    def config(self) -> ModelConfig: ...
    @property
    def platform(self) -> str: ...
    @property
    def compute(self) -> ComputeEstimate: ...
    @property
    def scheduler(self) -> Scheduler | None: ...
    @property
    def executions(self) -> BatchObserver | None: ...
    @property
    def stats(self) -> VersionStats: ...


class ModelStore(Protocol):
    """What the dataplane needs of the lifecycle manager."""

    def acquire(self, name: str, version: int | None, label: str | None) -> ServedVersion:
        """Resolve and lease an AVAILABLE version; raise NotFound or ModelNotReady otherwise."""
        ...

    def release(self, target: ServedVersion) -> None:
        """End a lease taken by ``acquire``."""
        ...

    def status(self, name: str, version: int | None, label: str | None) -> list[VersionStatus]:
        """The state of the named versions (all of the model's when neither is given)."""
        ...

    def available_versions(self, name: str) -> list[int]:
        """The model's AVAILABLE versions, newest first (raises ModelNotFound)."""
        ...

    def ready(self) -> bool:
        """Whether the store's models are ready for traffic (see the readiness rules)."""
        ...

    def served(self, name: str | None, version: int | None) -> Sequence[ServedVersion]:
        """AVAILABLE versions of every model, of one, or one version (raises if unknown)."""
        ...

    def index(self) -> list[IndexEntry]:
        """Every model of the repository, with each version's state."""
        ...


class RepositoryControl(Protocol):
    """Loading and unloading models on request."""

    async def load(self, name: str) -> None:
        """Load or reload a model from the repository."""
        ...

    async def unload(self, name: str) -> None:
        """Unload a model and keep it unloaded until loaded again."""
        ...

    async def reload_config(self, config_text: str) -> None:
        """Serve exactly the models of a TF Serving ``model_config_list`` (text format), once
        their loads settle; raise if the server was not started from a model config file."""
        ...


class RequestObserver(Protocol):
    """Hears of every inference request answered, for metrics."""

    def on_request(
        self, model: str, version: int, protocol: str, outcome: str, seconds: float
    ) -> None:
        """``outcome`` is ``success``, or the error's code in lower case (``invalid_argument``)."""
        ...


class Lease:
    """Holds an AVAILABLE version for the duration of a ``with`` block; with a ``protocol``,
    the block is one inference request, and its outcome and duration are recorded."""

    __slots__ = ("_observer", "_protocol", "_started", "_store", "_target")

    def __init__(
        self,
        store: ModelStore,
        target: ServedVersion,
        protocol: str | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        self._store = store
        self._target = target
        self._protocol = protocol
        self._observer = observer
        self._started = time.perf_counter() if protocol is not None else 0.0

    def __enter__(self) -> ServedVersion:
        return self._target

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        target = self._target
        self._store.release(target)
        protocol = self._protocol
        if protocol is None:
            return
        seconds = time.perf_counter() - self._started
        target.stats.on_request(error is None, seconds)
        if self._observer is not None:
            self._observer.on_request(
                target.model, target.version, protocol, _outcome(error), seconds
            )


def _outcome(error: BaseException | None) -> str:
    if error is None:
        return "success"
    if isinstance(error, ModelportError):
        return error.grpc_code.lower()
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    return "internal"


class DataPlane:
    """Inference and model views shared by every protocol."""

    def __init__(
        self,
        store: ModelStore,
        dispatcher: Dispatcher,
        observer: RequestObserver | None = None,
        control: RepositoryControl | None = None,
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._observer = observer
        self._control = control
        self.draining = False

    def lease(
        self,
        name: str,
        version: int | None = None,
        label: str | None = None,
        protocol: str | None = None,
    ) -> Lease:
        """Resolve the version a request names and hold it until the ``with`` block ends.

        Adapters name the ``protocol`` when the block answers an inference request, so that
        request is counted in the metrics.
        """
        target = self._store.acquire(name, version, label)
        return Lease(self._store, target, protocol, self._observer)

    async def infer(self, target: ServedVersion, request: InferRequest) -> InferResponse:
        """Check the request against the signature, run the engine off-loop, return outputs."""
        if request.signature not in (None, DEFAULT_SIGNATURE_NAME):
            return await self._infer_signature(target, request.signature, request)
        model, version, signature = target.model, target.version, target.signature
        check_inputs(signature, request.inputs, target.config.max_batch_size, model, version)
        outputs = resolve_outputs(signature, request.outputs, model, version)
        scheduler = target.scheduler
        if scheduler is None:
            started = time.perf_counter()
            result = await self._dispatcher.run(
                target.runtime, target.compute, request.inputs, outputs
            )
            executions = target.executions
            if executions is not None:
                executions.on_batch(_rows(request.inputs), (0.0,), time.perf_counter() - started)
        else:
            result = await scheduler.submit(request.inputs, outputs, request.parameters)
        return InferResponse(model, version, result, request.id)

    async def _infer_signature(
        self, target: ServedVersion, name: str, request: InferRequest
    ) -> InferResponse:
        """Run another signature than the default: checked the same way, never batched."""
        model, version, runtime = target.model, target.version, target.runtime
        signature = runtime.signatures.get(name)
        if signature is None:
            raise NotFound(
                f"model {model} version {version} has no signature {name!r}; its signatures: "
                f"{', '.join(sorted(runtime.signatures))}"
            )
        check_inputs(signature, request.inputs, target.config.max_batch_size, model, version)
        outputs = resolve_outputs(signature, request.outputs, model, version)
        call = partial(runtime.infer_signature, name, request.inputs, outputs)
        result = await self._dispatcher.offload(call)
        return InferResponse(model, version, result, request.id)

    def status(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> list[VersionStatus]:
        """Version states for the status APIs."""
        return self._store.status(name, version, label)

    def available_versions(self, name: str) -> list[int]:
        """AVAILABLE versions of a model, newest first."""
        return self._store.available_versions(name)

    def served(
        self, name: str | None = None, version: int | None = None
    ) -> Sequence[ServedVersion]:
        """AVAILABLE versions (for statistics and configuration views)."""
        return self._store.served(name, version)

    def index(self) -> list[IndexEntry]:
        """The repository index."""
        return self._store.index()

    async def load(self, name: str) -> None:
        """Load or reload a model; raises PermissionDenied where model control is off."""
        await self._require_control().load(name)

    async def unload(self, name: str) -> None:
        """Unload a model until it is loaded again."""
        await self._require_control().unload(name)

    async def reload_config(self, config_text: str) -> None:
        """Replace the served models with those of a TF Serving model config (text format)."""
        await self._require_control().reload_config(config_text)

    @property
    def model_control(self) -> bool:
        """Whether clients may load and unload models."""
        return self._control is not None

    def _require_control(self) -> RepositoryControl:
        if self._control is None:
            raise PermissionDenied(
                "loading and unloading models is off on this server; start it with "
                "--model-control to allow it (any client that reaches the port can then change "
                "what is served)"
            )
        return self._control

    def model_ready(self, name: str, version: int | None = None) -> bool:
        """Whether the model (or that version of it) can take requests now."""
        if self.draining:
            return False
        statuses = self._store.status(name, version, None)
        return any(s.state == "AVAILABLE" for s in statuses)

    def server_ready(self) -> bool:
        """Ready for traffic: not draining, and the models are ready (see ``ModelStore.ready``)."""
        return not self.draining and self._store.ready()


def served_signatures(target: ServedVersion) -> dict[str, Signature]:
    """Every signature of a served version, ``serving_default`` first, as served (after the
    model configuration's overrides)."""
    signatures = {DEFAULT_SIGNATURE_NAME: target.signature}
    for name, signature in target.runtime.signatures.items():
        signatures.setdefault(name, signature)
    return signatures


def _rows(inputs: Mapping[str, np.ndarray[Any, Any]]) -> int:
    for arr in inputs.values():
        return int(arr.shape[0]) if arr.ndim else 1
    return 0
