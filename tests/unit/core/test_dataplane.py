"""The dataplane over a fake model store: leases, inference checks, readiness."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from modelport.core.batcher import BatchObserver
from modelport.core.dataplane import DataPlane
from modelport.core.dispatch import ComputeEstimate, Dispatcher
from modelport.core.scheduling import Scheduler
from modelport.core.stats import VersionStats
from modelport.errors import InvalidInput, ModelNotFound, ModelNotReady
from modelport.model_config import ModelConfig
from modelport.runtimes.base import Runtime
from modelport.runtimes.mock import MockRuntime
from modelport.types import (
    Datatype,
    InferRequest,
    InferResponse,
    ModelState,
    Signature,
    TensorSpec,
    VersionStatus,
)

SIG = Signature(
    (TensorSpec("x", Datatype.FP32, (-1, 2)),),
    (TensorSpec("y", Datatype.FP32, (-1, 2)), TensorSpec("total", Datatype.FP32, ())),
)


def _double(inputs: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
    x = inputs["x"]
    return {"y": x * 2, "total": np.array(x.sum(), np.float32)}


@dataclass
class Version:
    model: str
    version: int
    signature: Signature
    runtime: Runtime
    config: ModelConfig = field(default_factory=ModelConfig)
    platform: str = "mock"
    compute: ComputeEstimate = field(default_factory=ComputeEstimate)
    scheduler: Scheduler | None = None
    executions: BatchObserver | None = None
    stats: VersionStats = field(default_factory=VersionStats)


@dataclass
class FakeStore:
    """A ModelStore that serves one version and records every lease."""

    target: Version
    acquired: list[tuple[str, int | None, str | None]] = field(default_factory=list)
    released: list[Version] = field(default_factory=list)
    statuses: list[VersionStatus] = field(default_factory=list)
    is_ready: bool = True
    missing: bool = False

    def acquire(self, name: str, version: int | None, label: str | None) -> Version:
        if self.missing:
            raise ModelNotFound(f"no model {name!r}")
        self.acquired.append((name, version, label))
        return self.target

    def release(self, target: Any) -> None:
        self.released.append(target)

    def status(self, name: str, version: int | None, label: str | None) -> list[VersionStatus]:
        return self.statuses

    def available_versions(self, name: str) -> list[int]:
        return [s.version for s in self.statuses if s.state is ModelState.AVAILABLE]

    def ready(self) -> bool:
        return self.is_ready


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=1)
    yield executor
    executor.shutdown(wait=True)


@pytest.fixture
def store() -> FakeStore:
    return FakeStore(Version("m", 3, SIG, MockRuntime(SIG, _double)))


@pytest.fixture
def dataplane(store: FakeStore, pool: ThreadPoolExecutor) -> DataPlane:
    return DataPlane(store, Dispatcher(pool, 0.0))


# ---- leases ------------------------------------------------------------------------------------


def test_lease_acquires_what_the_request_names_and_releases_after_the_block(
    dataplane: DataPlane, store: FakeStore
) -> None:
    with dataplane.lease("m", 3, None) as target:
        assert target is store.target
        assert store.acquired == [("m", 3, None)]
        assert store.released == []
    assert store.released == [store.target]
    with dataplane.lease("m", label="stable"):
        pass
    assert store.acquired[-1] == ("m", None, "stable")
    assert len(store.released) == 2


@pytest.mark.parametrize("error", [InvalidInput("bad"), RuntimeError("boom"), KeyboardInterrupt()])
def test_lease_releases_when_the_block_raises(
    dataplane: DataPlane, store: FakeStore, error: BaseException
) -> None:
    with pytest.raises(type(error)), dataplane.lease("m"):
        raise error
    assert store.released == [store.target]


def test_lease_releases_when_inference_fails(dataplane: DataPlane, store: FakeStore) -> None:
    async def scenario() -> None:
        with dataplane.lease("m") as target:
            await dataplane.infer(target, InferRequest({"x": np.zeros(3, np.float32)}))

    with pytest.raises(InvalidInput):
        asyncio.run(scenario())
    assert store.released == [store.target]


def test_failed_acquire_releases_nothing(dataplane: DataPlane, store: FakeStore) -> None:
    store.missing = True
    with pytest.raises(ModelNotFound), dataplane.lease("nope"):
        pytest.fail("the block must not run")  # pragma: no cover
    assert store.released == []


# ---- inference ---------------------------------------------------------------------------------


def _infer(dataplane: DataPlane, store: FakeStore, request: InferRequest) -> InferResponse:
    async def scenario() -> InferResponse:
        with dataplane.lease("m") as target:
            return await dataplane.infer(target, request)

    return asyncio.run(scenario())


def test_infer_returns_every_output_with_model_version_and_id(
    dataplane: DataPlane, store: FakeStore
) -> None:
    x = np.array([[1, 2], [3, 4]], np.float32)
    response = _infer(dataplane, store, InferRequest({"x": x}, id="req-1"))
    assert (response.model, response.version, response.id) == ("m", 3, "req-1")
    assert list(response.outputs) == ["y", "total"]
    np.testing.assert_array_equal(response.outputs["y"], x * 2)
    assert response.outputs["total"] == 10


def test_infer_computes_only_the_requested_outputs(dataplane: DataPlane, store: FakeStore) -> None:
    request = InferRequest({"x": np.ones((1, 2), np.float32)}, outputs=["total", "total"])
    assert list(_infer(dataplane, store, request).outputs) == ["total"]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (InferRequest({"x": np.ones((1, 3), np.float32)}), "input 'x' of model 'm' version 3"),
        (InferRequest({"x": np.ones((1, 2), np.float64)}), "has datatype FP64"),
        (InferRequest({}), "missing input 'x'"),
        (
            InferRequest({"x": np.ones((1, 2), np.float32)}, outputs=["logits"]),
            "unknown output 'logits'",
        ),
    ],
)
def test_invalid_requests_never_reach_the_engine(
    dataplane: DataPlane, store: FakeStore, request_: InferRequest, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        _infer(dataplane, store, request_)
    assert isinstance(store.target.runtime, MockRuntime)
    assert store.target.runtime.calls == 0


def test_infer_applies_the_configured_max_batch_size(
    dataplane: DataPlane, store: FakeStore
) -> None:
    store.target.config = ModelConfig(max_batch_size=2)
    _infer(dataplane, store, InferRequest({"x": np.ones((2, 2), np.float32)}))
    with pytest.raises(InvalidInput, match="max_batch_size of 2"):
        _infer(dataplane, store, InferRequest({"x": np.ones((3, 2), np.float32)}))


def test_infer_updates_the_versions_compute_estimate(
    dataplane: DataPlane, store: FakeStore
) -> None:
    assert store.target.compute.seconds_per_byte is None
    _infer(dataplane, store, InferRequest({"x": np.ones((1, 2), np.float32)}))
    assert store.target.compute.seconds_per_byte is not None


# ---- status and readiness ----------------------------------------------------------------------


def _status(version: int, state: ModelState) -> VersionStatus:
    return VersionStatus(version, state)


def test_status_and_available_versions_come_from_the_store(
    dataplane: DataPlane, store: FakeStore
) -> None:
    store.statuses = [_status(2, ModelState.AVAILABLE), _status(1, ModelState.UNLOADING)]
    assert dataplane.status("m") == store.statuses
    assert dataplane.available_versions("m") == [2]


@pytest.mark.parametrize(
    ("states", "ready"),
    [
        ([ModelState.AVAILABLE], True),
        ([ModelState.LOADING, ModelState.AVAILABLE], True),
        ([ModelState.LOADING], False),
        ([ModelState.FAILED, ModelState.END], False),
        ([], False),
    ],
)
def test_model_ready_needs_an_available_version(
    dataplane: DataPlane, store: FakeStore, states: list[ModelState], ready: bool
) -> None:
    store.statuses = [_status(i + 1, state) for i, state in enumerate(states)]
    assert dataplane.model_ready("m") is ready
    assert dataplane.model_ready("m", 1) is ready


def test_nothing_is_ready_while_draining(dataplane: DataPlane, store: FakeStore) -> None:
    store.statuses = [_status(1, ModelState.AVAILABLE)]
    assert dataplane.server_ready() is True
    dataplane.draining = True
    assert dataplane.model_ready("m") is False
    assert dataplane.server_ready() is False


def test_server_ready_follows_the_store(dataplane: DataPlane, store: FakeStore) -> None:
    store.is_ready = False
    assert dataplane.server_ready() is False


def test_model_not_ready_from_the_store_propagates(dataplane: DataPlane, store: FakeStore) -> None:
    def not_ready(name: str, version: int | None, label: str | None) -> Version:
        raise ModelNotReady("loading")

    store.acquire = not_ready  # type: ignore[method-assign]
    with pytest.raises(ModelNotReady), dataplane.lease("m"):
        pass  # pragma: no cover
    assert store.released == []
