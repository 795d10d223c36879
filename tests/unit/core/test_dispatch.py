"""Where engine calls run: in the worker pool first, inline once measured quick.

Durations come from fake wall and CPU clocks that the engine call itself advances, so no test
depends on real timings; which thread ran a call is read with ``threading.get_ident``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from modelport.core import dispatch
from modelport.core.dispatch import ComputeEstimate, Dispatcher
from modelport.runtimes.mock import MockRuntime
from modelport.types import Datatype, Signature, TensorSpec

SIG = Signature(
    (TensorSpec("x", Datatype.FP32, (-1,)),),
    (TensorSpec("y", Datatype.FP32, (-1,)), TensorSpec("n", Datatype.INT64, ())),
)
SMALL = {"x": np.ones(100, np.float32)}  # 400 bytes
BUDGET = 1e-3


class Engine:
    """A MockRuntime whose calls take ``duration`` seconds of fake time and record their thread."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.cpu = 10.0
        self.duration = 1e-6
        #: Seconds of each call spent preempted: on the wall clock but not the CPU clock.
        self.stall = 0.0
        self.threads: list[int] = []
        self.runtime = MockRuntime(SIG, self._infer)

    def clock(self) -> float:
        return self.now

    def cpu_clock(self) -> float:
        return self.cpu

    def _infer(self, inputs: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        self.threads.append(threading.get_ident())
        self.now += self.duration + self.stall
        self.cpu += self.duration
        x = inputs["x"]
        return {"y": x * 2, "n": np.array(x.size)}


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Engine:
    engine = Engine()
    monkeypatch.setattr(
        dispatch, "time", SimpleNamespace(perf_counter=engine.clock, thread_time=engine.cpu_clock)
    )
    return engine


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="test-infer")
    yield executor
    executor.shutdown(wait=True)


def _run_calls(
    dispatcher: Dispatcher,
    engine: Engine,
    estimate: ComputeEstimate,
    calls: list[tuple[float, dict[str, np.ndarray[Any, Any]]]],
) -> list[bool]:
    """Run each (duration, inputs) call in turn; True for each that ran on the loop's thread."""

    async def scenario() -> list[bool]:
        loop_thread = threading.get_ident()
        inline = []
        for duration, inputs in calls:
            engine.duration = duration
            result = await dispatcher.run(engine.runtime, estimate, inputs, ["y"])
            assert list(result) == ["y"]
            np.testing.assert_array_equal(result["y"], inputs["x"] * 2)
            inline.append(engine.threads[-1] == loop_thread)
        return inline

    return asyncio.run(scenario())


def test_first_call_runs_in_the_executor_and_is_measured(
    engine: Engine, pool: ThreadPoolExecutor
) -> None:
    estimate = ComputeEstimate()
    assert _run_calls(Dispatcher(pool, BUDGET), engine, estimate, [(4e-6, SMALL)]) == [False]
    assert estimate.seconds_per_byte == pytest.approx(4e-6 / 400)
    assert not estimate.penalised
    assert engine.runtime.calls == 1


def test_calls_run_inline_once_the_estimate_is_under_budget(
    engine: Engine, pool: ThreadPoolExecutor
) -> None:
    inline = _run_calls(Dispatcher(pool, BUDGET), engine, ComputeEstimate(), [(1e-6, SMALL)] * 4)
    assert inline == [False, True, True, True]


def test_a_call_predicted_over_budget_goes_to_the_executor(
    engine: Engine, pool: ThreadPoolExecutor
) -> None:
    big = {"x": np.ones(1_000_000, np.float32)}  # predicted 1e-6 / 400 B * 4 MB = 10 ms
    calls = [(1e-6, SMALL), (1e-6, SMALL), (1e-6, big)]
    assert _run_calls(Dispatcher(pool, BUDGET), engine, ComputeEstimate(), calls) == [
        False,
        True,
        False,
    ]


def test_three_surprises_send_the_version_to_the_pool_for_a_penalty(
    engine: Engine, pool: ThreadPoolExecutor
) -> None:
    estimate = ComputeEstimate()
    dispatcher = Dispatcher(pool, BUDGET)
    quick = [(1e-6, SMALL)] * 30
    surprise = [(11 * BUDGET, SMALL)]  # inline, far over its prediction and ten budgets
    _run_calls(dispatcher, engine, estimate, quick + surprise)
    assert estimate.surprises == 0, "the first surprise is not counted"
    assert estimate.verify_left == 10_000, "it turns on timing by the CPU clock"
    inline = _run_calls(dispatcher, engine, estimate, quick + surprise + quick + surprise)
    assert inline[-1], "each surprise so far ran inline after quick calls"
    assert estimate.surprises == 2, "the CPU clock confirmed both"
    assert not estimate.penalised, "two surprises are tolerated (a stall can happen)"
    inline = _run_calls(dispatcher, engine, estimate, quick + surprise + quick)
    assert inline[30], "the third surprise ran inline too"
    assert estimate.penalised
    assert inline[31:] == [False] * 30
    assert estimate.penalty == 1000
    assert estimate.penalty_left == 1000 - 30
    # The per-byte estimate has come back under budget; only the penalty keeps it off-loop.
    assert (estimate.predict(400) or 0.0) <= BUDGET


def test_stalls_that_used_no_cpu_are_neither_surprises_nor_measurements(
    engine: Engine, pool: ThreadPoolExecutor
) -> None:
    estimate = ComputeEstimate()
    dispatcher = Dispatcher(pool, BUDGET)
    _run_calls(dispatcher, engine, estimate, [(1e-6, SMALL)] * 10)
    rate = estimate.seconds_per_byte
    assert estimate.verify_left == 0, "quick calls read only the wall clock"
    engine.stall = 50 * BUDGET  # preempted: 50 ms on the wall clock, 1 µs on the CPU
    inline = _run_calls(dispatcher, engine, estimate, [(1e-6, SMALL)] * 21)
    assert all(inline), "a preempted thread says nothing about the model"
    assert not estimate.penalised
    assert estimate.surprises == 0
    assert estimate.stalls == 20, "the first was not CPU-timed; it turned CPU timing on"
    assert estimate.verify_left == 10_000 - 20
    assert estimate.seconds_per_byte == rate


def test_too_many_stalls_count_as_surprises(engine: Engine, pool: ThreadPoolExecutor) -> None:
    # An engine that waits off the CPU (a blocked thread pool, say) looks like a run of stalls.
    estimate = ComputeEstimate()
    dispatcher = Dispatcher(pool, BUDGET)
    _run_calls(dispatcher, engine, estimate, [(1e-6, SMALL)] * 2)
    estimate.seconds_per_byte = 1e-6 / 400
    engine.stall = 50 * BUDGET
    inline = _run_calls(dispatcher, engine, estimate, [(1e-6, SMALL)] * 103)
    assert estimate.stalls == 100
    assert estimate.surprises == 1, "the 101st excused stall was a surprise, and was measured"
    assert inline == [True] * 102 + [False], "its measurement moved the next call to the pool"


def test_the_version_returns_inline_after_its_penalty(
    engine: Engine, pool: ThreadPoolExecutor
) -> None:
    estimate = ComputeEstimate()
    estimate.observe(1e-6, 400, BUDGET)
    estimate.penalty = estimate.penalty_left = 3
    inline = _run_calls(Dispatcher(pool, BUDGET), engine, estimate, [(1e-6, SMALL)] * 5)
    assert inline == [False, False, False, True, True]


def test_repeated_penalties_double_and_calm_halves_them() -> None:
    estimate = ComputeEstimate()
    estimate.observe(1e-6, 400, BUDGET)
    estimate.observe(20 * BUDGET, 400, BUDGET)  # the first surprise only turns on CPU timing
    assert estimate.surprises == 0
    for expected in (1000, 2000, 4000):
        for _ in range(3):
            estimate.observe(20 * BUDGET, 400, BUDGET)  # a surprise
            estimate.seconds_per_byte = 1e-6 / 400  # keep the prediction small for the test
        assert estimate.penalty == expected
    for _ in range(10_000):
        estimate.observe(1e-6, 400, BUDGET)
    assert estimate.penalty == 2000
    assert estimate.surprises == 0


def test_a_long_call_that_was_predicted_does_not_mark_the_version(
    engine: Engine, pool: ThreadPoolExecutor
) -> None:
    estimate = ComputeEstimate()
    big = {"x": np.ones(1_000_000, np.float32)}  # predicted 1e-6 / 400 B * 4 MB = 10 ms
    calls = [(1e-6, SMALL), (1e-6, SMALL), (12 * BUDGET, big), (1e-6, SMALL)]
    assert _run_calls(Dispatcher(pool, BUDGET), engine, estimate, calls) == [
        False,
        True,
        False,
        True,
    ]
    assert not estimate.penalised


def test_a_quick_surprise_under_the_budget_does_not_mark_the_version() -> None:
    estimate = ComputeEstimate()
    estimate.observe(1e-7, 400, BUDGET)
    estimate.observe(50e-7, 400, BUDGET)  # 50 times its prediction, but far under the budget
    assert not estimate.penalised


def test_a_call_of_exactly_ten_budgets_does_not_mark_the_version(
    engine: Engine, pool: ThreadPoolExecutor
) -> None:
    estimate = ComputeEstimate()
    estimate.observe(10 * BUDGET, 10**9)  # long, but at a tiny rate per byte
    inline = _run_calls(Dispatcher(pool, BUDGET), engine, estimate, [(1e-7, SMALL)])
    assert inline == [True]


@pytest.mark.parametrize("duration", [1e-9, 1e-6, 1.0])
def test_budget_zero_sends_every_call_to_the_executor(
    engine: Engine, pool: ThreadPoolExecutor, duration: float
) -> None:
    calls = [(duration, SMALL)] * 5 + [(duration, {"x": np.ones(0, np.float32)})] * 2
    assert _run_calls(Dispatcher(pool, 0.0), engine, ComputeEstimate(), calls) == [False] * 7


def test_budget_zero_sends_calls_to_the_executor_even_after_a_zero_measurement(
    engine: Engine, pool: ThreadPoolExecutor
) -> None:
    calls = [(0.0, SMALL)] * 3
    assert _run_calls(Dispatcher(pool, 0.0), engine, ComputeEstimate(), calls) == [False] * 3


def test_engine_errors_propagate_and_are_not_measured(pool: ThreadPoolExecutor) -> None:
    def fail(inputs: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        raise RuntimeError("engine exploded")

    estimate = ComputeEstimate()
    runtime = MockRuntime(SIG, fail)
    with pytest.raises(RuntimeError, match="engine exploded"):
        asyncio.run(Dispatcher(pool, BUDGET).run(runtime, estimate, SMALL, ["y"]))
    assert estimate.seconds_per_byte is None
    estimate.observe(1e-9, 400)
    with pytest.raises(RuntimeError, match="engine exploded"):  # inline this time
        asyncio.run(Dispatcher(pool, BUDGET).run(runtime, estimate, SMALL, ["y"]))
    assert runtime.calls == 2


# ---- the estimate ------------------------------------------------------------------------------


def test_estimate_is_an_exponentially_weighted_rate_per_byte() -> None:
    estimate = ComputeEstimate()
    assert estimate.predict(100) is None
    estimate.observe(1.0, 100)
    assert estimate.seconds_per_byte == pytest.approx(0.01)
    assert estimate.predict(50) == pytest.approx(0.5)
    estimate.observe(3.0, 100)
    assert estimate.seconds_per_byte == pytest.approx(0.01 + 0.2 * (0.03 - 0.01))


def test_estimate_counts_empty_inputs_as_one_byte() -> None:
    estimate = ComputeEstimate()
    estimate.observe(2.0, 0)
    assert estimate.seconds_per_byte == 2.0
    assert estimate.predict(0) == 2.0


def test_a_call_timed_in_a_worker_thread_only_lowers_the_estimate() -> None:
    # Worker threads wait for the GIL under load: their timings may be inflated.
    estimate = ComputeEstimate()
    estimate.observe(1e-6, 400, BUDGET, inline=True)
    estimate.observe(1.0, 400, BUDGET, inline=False)  # a GIL-starved measurement
    assert estimate.seconds_per_byte == pytest.approx(1e-6 / 400)
    assert not estimate.penalised
    estimate.observe(0.5e-6, 400, BUDGET, inline=False)
    assert (estimate.seconds_per_byte or 0) < 1e-6 / 400


def test_a_busy_pool_does_not_keep_a_quick_model_out_of_the_loop(
    engine: Engine, pool: ThreadPoolExecutor
) -> None:
    estimate = ComputeEstimate()
    estimate.observe(5 * BUDGET, 400, BUDGET, inline=False)  # a cold first call, in the pool
    # Later pool calls are quick: the estimate falls under the budget and calls come inline.
    inline = _run_calls(Dispatcher(pool, BUDGET), engine, estimate, [(1e-6, SMALL)] * 40)
    assert not inline[0]
    assert inline[-1]
