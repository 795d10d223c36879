"""The batcher's invariants, with a fake engine that records every batch it is given."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from modelport.core.batcher import Batcher, batching_problem
from modelport.core.dispatch import ComputeEstimate, Dispatcher
from modelport.core.scheduling import Limited, make_scheduler
from modelport.errors import DeadlineExceeded, InvalidInput, Overloaded, RuntimeFailure
from modelport.model_config import DynamicBatchingConfig, ModelConfig
from modelport.runtimes.mock import MockRuntime
from modelport.types import Datatype, Signature, TensorSpec

Arrays = dict[str, np.ndarray[Any, Any]]

SIG = Signature(
    (TensorSpec("x", Datatype.FP32, (-1, 2)),),
    (TensorSpec("y", Datatype.FP32, (-1, 2)), TensorSpec("n", Datatype.INT64, (-1,))),
)
SEQ = Signature(
    (TensorSpec("ids", Datatype.INT64, (-1, -1)),),
    (
        TensorSpec("hidden", Datatype.INT64, (-1, -1, 2)),
        TensorSpec("pooled", Datatype.INT64, (-1,)),
    ),
)


class Engine:
    """Doubles ``x``; records the rows of every call; can hold calls at a gate."""

    def __init__(self, signature: Signature = SIG) -> None:
        self.batches: list[int] = []
        self.shapes: list[tuple[int, ...]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail: Exception | None = None
        self.rows_out: int | None = None
        self.runtime = MockRuntime(signature, self._infer)

    def _infer(self, inputs: Mapping[str, np.ndarray[Any, Any]]) -> Arrays:
        name = next(iter(inputs))
        arr = inputs[name]
        self.batches.append(arr.shape[0])
        self.shapes.append(arr.shape)
        self.gate.wait(30)
        if self.fail is not None:
            raise self.fail
        rows = arr.shape[0] if self.rows_out is None else self.rows_out
        if name == "ids":
            hidden = np.stack([arr, arr], axis=-1)
            return {"hidden": hidden, "pooled": arr.sum(axis=1)}
        return {"y": arr[:rows] * 2, "n": np.arange(rows, dtype=np.int64)}


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=4)
    yield executor
    executor.shutdown(wait=True)


def make(
    engine: Engine,
    pool: ThreadPoolExecutor,
    instances: int = 1,
    signature: Signature = SIG,
    **config: Any,
) -> Batcher:
    # A budget of 0 runs every batch in a worker thread, so a gate can hold it while the event
    # loop goes on queueing requests.
    return Batcher(
        engine.runtime,
        signature,
        estimate=ComputeEstimate(),
        dispatcher=Dispatcher(pool, 0.0),
        config=DynamicBatchingConfig(**config),
        instances=instances,
    )


def rows(value: float, count: int = 1) -> dict[str, np.ndarray[Any, Any]]:
    return {"x": np.full((count, 2), value, np.float32)}


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 30))


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.005)


def hold(engine: Engine) -> None:
    """Close the gate: the next calls stay inside the engine until it opens."""
    engine.gate.clear()


# ---- batching ----------------------------------------------------------------------------------


def test_requests_of_one_turn_share_a_batch_and_each_gets_its_own_rows(
    pool: ThreadPoolExecutor,
) -> None:
    engine = Engine()
    batcher = make(engine, pool, max_batch_size=64)

    async def scenario() -> None:
        sizes = [1, 3, 2, 1, 4]
        results = await asyncio.gather(
            *(batcher.submit(rows(i + 1, n), ["y"], {}) for i, n in enumerate(sizes))
        )
        assert engine.batches == [sum(sizes)]
        for i, (result, n) in enumerate(zip(results, sizes, strict=True)):
            np.testing.assert_array_equal(result["y"], np.full((n, 2), 2 * (i + 1)))
            assert list(result) == ["y"]

    run(scenario)


def test_batches_never_exceed_max_batch_size(pool: ThreadPoolExecutor) -> None:
    engine = Engine()
    batcher = make(engine, pool, max_batch_size=4)

    async def scenario() -> None:
        results = await asyncio.gather(*(batcher.submit(rows(i, 3), ["y"], {}) for i in range(5)))
        assert all(size <= 4 for size in engine.batches)
        assert sum(engine.batches) == 15
        for i, result in enumerate(results):
            np.testing.assert_array_equal(result["y"], np.full((3, 2), 2 * i))

    run(scenario)


def test_preferred_sizes_cut_the_batch(pool: ThreadPoolExecutor) -> None:
    engine = Engine()
    batcher = make(engine, pool, max_batch_size=8, preferred_batch_sizes=[2, 4])

    async def scenario() -> None:
        await asyncio.gather(*(batcher.submit(rows(i), ["y"], {}) for i in range(7)))
        assert engine.batches[0] == 4
        assert sum(engine.batches) == 7

    run(scenario)


def test_a_lone_request_does_not_wait_out_the_window(pool: ThreadPoolExecutor) -> None:
    engine = Engine()
    # An hour-long window: if a lone request waited for company, the test would time out.
    batcher = make(engine, pool, max_queue_delay_us=3_600_000_000, preferred_batch_sizes=[8])

    async def scenario() -> None:
        for value in range(3):
            result = await batcher.submit(rows(value), ["y"], {})
            np.testing.assert_array_equal(result["y"], np.full((1, 2), 2 * value))
        assert engine.batches == [1, 1, 1]

    run(scenario)


def test_while_a_batch_runs_the_next_waits_for_company(pool: ThreadPoolExecutor) -> None:
    engine = Engine()
    batcher = make(engine, pool, instances=2, max_queue_delay_us=50_000, max_batch_size=8)

    async def scenario() -> None:
        hold(engine)
        first = asyncio.ensure_future(batcher.submit(rows(0), ["y"], {}))
        await until(lambda: engine.batches == [1])
        # One instance is busy: these two arrive in different turns but wait for each other.
        second = asyncio.ensure_future(batcher.submit(rows(1), ["y"], {}))
        await asyncio.sleep(0.01)
        third = asyncio.ensure_future(batcher.submit(rows(2), ["y"], {}))
        engine.gate.set()
        await asyncio.gather(first, second, third)
        assert engine.batches == [1, 2]

    run(scenario)


def test_requests_that_cannot_be_stacked_run_in_separate_batches(
    pool: ThreadPoolExecutor,
) -> None:
    engine = Engine(SEQ)
    batcher = make(engine, pool, signature=SEQ, max_batch_size=8)

    async def scenario() -> None:
        short = {"ids": np.ones((1, 3), np.int64)}
        long = {"ids": np.ones((1, 5), np.int64)}
        await asyncio.gather(
            batcher.submit(short, ["pooled"], {}),
            batcher.submit(long, ["pooled"], {}),
            batcher.submit(short, ["pooled"], {}),
        )
        assert sorted(engine.shapes) == [(1, 5), (2, 3)]

    run(scenario)


def test_variable_lengths_are_padded_and_outputs_cut_back(pool: ThreadPoolExecutor) -> None:
    engine = Engine(SEQ)
    batcher = make(
        engine, pool, signature=SEQ, max_batch_size=8, pad_variable_length_inputs=True, pad_value=0
    )

    async def scenario() -> None:
        inputs = [np.arange(1, n + 1, dtype=np.int64)[None, :] for n in (2, 5, 3)]
        results = await asyncio.gather(
            *(batcher.submit({"ids": ids}, ["hidden", "pooled"], {}) for ids in inputs)
        )
        assert engine.shapes == [(3, 5)]
        for ids, result in zip(inputs, results, strict=True):
            alone = np.stack([ids, ids], axis=-1)
            np.testing.assert_array_equal(result["hidden"], alone)
            assert result["pooled"][0] == ids.sum()  # padding with 0 does not change the sum

    run(scenario)


# ---- limits ------------------------------------------------------------------------------------


def test_a_request_over_the_batch_limit_is_refused(pool: ThreadPoolExecutor) -> None:
    batcher = make(Engine(), pool, max_batch_size=4)
    with pytest.raises(InvalidInput, match=r"5 rows, more than .* max_batch_size of 4"):
        asyncio.run(batcher.submit(rows(1, 5), ["y"], {}))


def test_a_large_request_is_split_when_configured(pool: ThreadPoolExecutor) -> None:
    engine = Engine()
    batcher = make(engine, pool, max_batch_size=4, split_large_requests=True)

    async def scenario() -> None:
        data = {"x": np.arange(20, dtype=np.float32).reshape(10, 2)}
        result = await batcher.submit(data, ["y", "n"], {})
        np.testing.assert_array_equal(result["y"], data["x"] * 2)
        assert max(engine.batches) <= 4
        assert sum(engine.batches) == 10

    run(scenario)


def test_the_queue_never_grows_past_its_bound(pool: ThreadPoolExecutor) -> None:
    engine = Engine()
    batcher = make(engine, pool, max_queue_size=3, max_batch_size=1)

    async def scenario() -> None:
        hold(engine)
        running = asyncio.ensure_future(batcher.submit(rows(0), ["y"], {}))
        await until(lambda: engine.batches == [1])
        waiting = [asyncio.ensure_future(batcher.submit(rows(i), ["y"], {})) for i in (1, 2, 3)]
        await until(lambda: batcher.queued == 3)
        with pytest.raises(Overloaded, match="limit") as refused:
            await batcher.submit(rows(9), ["y"], {})
        assert refused.value.retry_after_s >= 1
        assert batcher.queued == 3
        engine.gate.set()
        await asyncio.gather(running, *waiting)
        assert batcher.queued == 0

    run(scenario)


def test_inputs_with_different_batch_sizes_are_refused(pool: ThreadPoolExecutor) -> None:
    two = Signature(
        (TensorSpec("a", Datatype.FP32, (-1,)), TensorSpec("b", Datatype.FP32, (-1,))),
        (TensorSpec("y", Datatype.FP32, (-1,)),),
    )
    batcher = make(Engine(), pool, signature=two)
    inputs = {"a": np.zeros(2, np.float32), "b": np.zeros(3, np.float32)}
    with pytest.raises(InvalidInput, match="different batch sizes"):
        asyncio.run(batcher.submit(inputs, ["y"], {}))


# ---- failures, cancellation, deadlines ---------------------------------------------------------


def test_a_failed_batch_fails_each_of_its_requests(pool: ThreadPoolExecutor) -> None:
    engine = Engine()
    engine.fail = RuntimeFailure("engine exploded")
    batcher = make(engine, pool)

    async def scenario() -> None:
        results = await asyncio.gather(
            *(batcher.submit(rows(i), ["y"], {}) for i in range(3)), return_exceptions=True
        )
        assert engine.batches == [3]
        assert all(isinstance(r, RuntimeFailure) for r in results)
        assert {str(r) for r in results} == {"engine exploded"}

    run(scenario)


def test_an_unexpected_engine_error_becomes_a_runtime_failure(pool: ThreadPoolExecutor) -> None:
    engine = Engine()
    engine.fail = ValueError("bad kernel")
    batcher = make(engine, pool)
    with pytest.raises(RuntimeFailure, match="bad kernel"):
        asyncio.run(batcher.submit(rows(1), ["y"], {}))


def test_wrong_output_row_count_fails_every_caller(pool: ThreadPoolExecutor) -> None:
    engine = Engine()
    engine.rows_out = 1
    batcher = make(engine, pool)

    async def scenario() -> None:
        results = await asyncio.gather(
            *(batcher.submit(rows(i), ["y"], {}) for i in range(3)), return_exceptions=True
        )
        for result in results:
            assert isinstance(result, RuntimeFailure)
            assert "returned 1 rows of output 'y' for a batch of 3 rows" in str(result)

    run(scenario)


def test_a_cancelled_request_is_dropped_before_it_runs(pool: ThreadPoolExecutor) -> None:
    engine = Engine()
    batcher = make(engine, pool, max_batch_size=8)

    async def scenario() -> None:
        hold(engine)
        running = asyncio.ensure_future(batcher.submit(rows(0), ["y"], {}))
        await until(lambda: engine.batches == [1])
        keep = asyncio.ensure_future(batcher.submit(rows(1), ["y"], {}))
        drop = asyncio.ensure_future(batcher.submit(rows(7, 3), ["y"], {}))
        await until(lambda: batcher.queued == 2)
        drop.cancel()
        await asyncio.sleep(0)
        assert batcher.queued == 1
        engine.gate.set()
        await asyncio.gather(running, keep)
        assert engine.batches == [1, 1], "the cancelled request's three rows never ran"

    run(scenario)


def test_a_request_past_its_timeout_is_dropped_before_it_runs(pool: ThreadPoolExecutor) -> None:
    engine = Engine()
    batcher = make(engine, pool, max_batch_size=8)

    async def scenario() -> None:
        hold(engine)
        running = asyncio.ensure_future(batcher.submit(rows(0), ["y"], {}))
        await until(lambda: engine.batches == [1])
        with pytest.raises(DeadlineExceeded, match="timeout of 1000 µs"):
            await batcher.submit(rows(5, 2), ["y"], {"timeout": 1000})
        assert batcher.queued == 0
        engine.gate.set()
        await running
        assert engine.batches == [1]

    run(scenario)


def test_default_timeout_from_the_config(pool: ThreadPoolExecutor) -> None:
    engine = Engine()
    batcher = make(engine, pool, default_timeout_us=1000)

    async def scenario() -> None:
        hold(engine)
        running = asyncio.ensure_future(batcher.submit(rows(0), ["y"], {"timeout": 0}))
        await until(lambda: engine.batches == [1])
        with pytest.raises(DeadlineExceeded):
            await batcher.submit(rows(5), ["y"], {})
        engine.gate.set()
        await running

    run(scenario)


@pytest.mark.parametrize("parameters", [{"timeout": -1}, {"timeout": "5"}, {"priority": 3}])
def test_invalid_timeout_and_priority_parameters(
    pool: ThreadPoolExecutor, parameters: dict[str, Any]
) -> None:
    batcher = make(Engine(), pool, priority_levels=2)
    with pytest.raises(InvalidInput, match=r"priority|timeout"):
        asyncio.run(batcher.submit(rows(1), ["y"], parameters))


# ---- priorities and instances ------------------------------------------------------------------


def test_priorities_order_the_queue(pool: ThreadPoolExecutor) -> None:
    engine = Engine()
    batcher = make(engine, pool, max_batch_size=1, priority_levels=3)
    order: list[float] = []

    async def tracked(value: float, priority: int) -> None:
        result = await batcher.submit(rows(value), ["y"], {"priority": priority})
        order.append(float(result["y"][0, 0]) / 2)

    async def scenario() -> None:
        hold(engine)
        running = asyncio.ensure_future(tracked(0, 1))
        await until(lambda: engine.batches == [1])
        waiting = [
            asyncio.ensure_future(tracked(value, priority))
            for value, priority in ((1, 3), (2, 0), (3, 1), (4, 2))
        ]
        await until(lambda: batcher.queued == 4)
        engine.gate.set()
        await asyncio.gather(running, *waiting)
        # 0 (running) first, then level 1, level 2, and the lowest (3, also the default).
        assert order == [0, 3, 4, 1, 2]

    run(scenario)


def test_instances_run_batches_at_the_same_time(pool: ThreadPoolExecutor) -> None:
    engine = Engine()
    batcher = make(engine, pool, instances=2, max_batch_size=1, max_queue_delay_us=0)

    async def scenario() -> None:
        hold(engine)
        first = asyncio.ensure_future(batcher.submit(rows(0), ["y"], {}))
        await until(lambda: len(engine.batches) == 1)
        second = asyncio.ensure_future(batcher.submit(rows(1), ["y"], {}))
        await until(lambda: len(engine.batches) == 2)  # while the first is still held
        third = asyncio.ensure_future(batcher.submit(rows(2), ["y"], {}))
        await asyncio.sleep(0.05)
        assert len(engine.batches) == 2, "both instances are busy: the third waits"
        engine.gate.set()
        await asyncio.gather(first, second, third)
        assert len(engine.batches) == 3

    run(scenario)


def test_limited_scheduler_caps_concurrent_calls(pool: ThreadPoolExecutor) -> None:
    engine = Engine()
    limited = Limited(engine.runtime, ComputeEstimate(), Dispatcher(pool, 0.0), instances=1)

    async def scenario() -> None:
        hold(engine)
        first = asyncio.ensure_future(limited.submit(rows(0), ["y"], {}))
        second = asyncio.ensure_future(limited.submit(rows(1), ["y"], {}))
        await asyncio.sleep(0.05)
        assert engine.batches == [1]
        engine.gate.set()
        results = await asyncio.gather(first, second)
        assert engine.batches == [1, 1]
        np.testing.assert_array_equal(results[1]["y"], np.full((1, 2), 2.0))

    run(scenario)


class Recorder:
    def __init__(self) -> None:
        self.batches: list[tuple[int, int]] = []

    def on_batch(self, rows: int, queue_seconds: list[float], compute_seconds: float) -> None:
        assert compute_seconds >= 0
        assert all(wait >= 0 for wait in queue_seconds)
        self.batches.append((rows, len(queue_seconds)))


def test_the_observer_hears_of_every_batch(pool: ThreadPoolExecutor) -> None:
    engine = Engine()
    recorder = Recorder()
    batcher = Batcher(
        engine.runtime,
        SIG,
        estimate=ComputeEstimate(),
        dispatcher=Dispatcher(pool, 0.0),
        config=DynamicBatchingConfig(),
        observer=recorder,
    )

    async def scenario() -> None:
        await asyncio.gather(*(batcher.submit(rows(i, 2), ["y"], {}) for i in range(3)))

    run(scenario)
    assert recorder.batches == [(6, 3)]


# ---- configuration -----------------------------------------------------------------------------


def test_make_scheduler_follows_the_config(pool: ThreadPoolExecutor) -> None:
    engine = Engine()
    dispatcher = Dispatcher(pool, 0.0)

    def build(**config: Any) -> object:
        return make_scheduler(
            engine.runtime,
            SIG,
            estimate=ComputeEstimate(),
            config=ModelConfig.model_validate(config),
            dispatcher=dispatcher,
        )

    assert build() is None
    assert isinstance(build(instances=2), Limited)
    assert isinstance(build(dynamic_batching={"max_batch_size": 4}), Batcher)


def test_models_without_a_batch_dimension_cannot_be_batched() -> None:
    fixed = Signature((TensorSpec("x", Datatype.FP32, (1, 2)),), SIG.outputs)
    assert batching_problem(SIG) is None
    problem = batching_problem(fixed)
    assert problem is not None
    assert "x FP32 [1, 2]" in problem


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="preferred_batch_sizes"):
        DynamicBatchingConfig(max_batch_size=4, preferred_batch_sizes=[8])
    with pytest.raises(ValueError, match="default_priority_level"):
        DynamicBatchingConfig(priority_levels=2, default_priority_level=3)
