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

from types import TracebackType
from typing import Protocol

from modelport.core.dispatch import ComputeEstimate, Dispatcher
from modelport.core.validation import check_inputs, resolve_outputs
from modelport.model_config import ModelConfig
from modelport.runtimes.base import Runtime
from modelport.types import InferRequest, InferResponse, Signature, VersionStatus

__all__ = ["DataPlane", "Lease", "ModelStore", "ServedVersion"]


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


class Lease:
    """Holds an AVAILABLE version for the duration of a ``with`` block."""

    __slots__ = ("_store", "_target")

    def __init__(self, store: ModelStore, target: ServedVersion) -> None:
        self._store = store
        self._target = target

    def __enter__(self) -> ServedVersion:
        return self._target

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._store.release(self._target)


class DataPlane:
    """Inference and model views shared by every protocol."""

    def __init__(self, store: ModelStore, dispatcher: Dispatcher) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self.draining = False

    def lease(self, name: str, version: int | None = None, label: str | None = None) -> Lease:
        """Resolve the version a request names and hold it until the ``with`` block ends."""
        return Lease(self._store, self._store.acquire(name, version, label))

    async def infer(self, target: ServedVersion, request: InferRequest) -> InferResponse:
        """Check the request against the signature, run the engine off-loop, return outputs."""
        model, version, signature = target.model, target.version, target.signature
        check_inputs(signature, request.inputs, target.config.max_batch_size, model, version)
        outputs = resolve_outputs(signature, request.outputs, model, version)
        result = await self._dispatcher.run(target.runtime, target.compute, request.inputs, outputs)
        return InferResponse(model, version, result, request.id)

    def status(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> list[VersionStatus]:
        """Version states for the status APIs."""
        return self._store.status(name, version, label)

    def available_versions(self, name: str) -> list[int]:
        """AVAILABLE versions of a model, newest first."""
        return self._store.available_versions(name)

    def model_ready(self, name: str, version: int | None = None) -> bool:
        """Whether the model (or that version of it) can take requests now."""
        if self.draining:
            return False
        statuses = self._store.status(name, version, None)
        return any(s.state == "AVAILABLE" for s in statuses)

    def server_ready(self) -> bool:
        """Ready for traffic: not draining, and the models are ready (see ``ModelStore.ready``)."""
        return not self.draining and self._store.ready()
