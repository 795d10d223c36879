"""Where an engine call runs: inline on the event loop when it is known to be quick, else in a
worker thread.

Handing a call to a thread and back costs tens of microseconds, several times what a small model
takes to run. So each model version keeps a running estimate of its engine time per input byte;
a call whose predicted time is within ``inline_budget_s`` runs inline, every other call (and
every call before the first measurement) runs in the worker pool. The budget bounds how long an
inline call can hold the event loop; 0 sends every call to the pool. A runtime whose
``may_run_inline`` is False (Python handlers, which may hold the GIL for long) always runs in the
pool.

Some models take time that input size does not predict (a loop whose trip count is an input,
for example). An inline call that takes more than ten times its prediction and more than ten
budgets is a *surprise*. One surprise proves little (a garbage collection or the operating
system can stall any call), but the third one within a stretch of calls sends the version to the
worker pool for a penalty of 1,000 calls, doubled at each repeat: a model whose cost the input
size does not predict soon runs almost only in the pool, while a small model that merely met a
few stalls returns inline quickly. A long calm stretch halves the penalty again.

A busy machine also preempts threads in the middle of quick calls. So the first surprise of a
calm stretch is not counted: it turns on timing by the thread's CPU clock for the next calm
stretch's worth of inline calls (reading that clock is a system call, too dear for every call).
While it is on, a call slow on the wall clock but not on the CPU clock is a *stall*: the thread
was preempted, and the call is neither a surprise nor a measurement. Only the first hundred
stalls of a stretch are excused this way, so an engine that waits off the CPU still ends up in
the pool.

A call timed in a worker thread includes the time the thread waited for the GIL, which grows with
the load on the event loop; such a measurement may only lower the estimate. Otherwise a busy
server would measure its small models as slow, keep them in the pool, and stay busy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from functools import partial
from typing import Any, TypeVar

import numpy as np

from modelport.runtimes.base import Runtime

T = TypeVar("T")

__all__ = ["ComputeEstimate", "Dispatcher"]

_SMOOTHING = 0.2
#: A call this many times slower than predicted (and than the budget) is a surprise.
_SURPRISE = 10.0
#: Surprises tolerated within a calm stretch; one more starts a penalty.
_SURPRISES_TOLERATED = 2
#: Inline calls without a surprise that forgive past surprises and halve the penalty.
_CALM_CALLS = 10_000
_FIRST_PENALTY = 1_000
#: Stalls (wall-clock surprises that used little CPU) excused within a calm stretch.
_STALLS_EXCUSED = 100
_MAX_PENALTY = 1_000_000


class ComputeEstimate:
    """A running (exponentially weighted) estimate of engine seconds per input byte, and the
    record of calls that took far longer than it predicted."""

    __slots__ = (
        "calm",
        "penalty",
        "penalty_left",
        "seconds_per_byte",
        "stalls",
        "surprises",
        "verify_left",
    )

    def __init__(self) -> None:
        self.seconds_per_byte: float | None = None
        self.surprises = 0
        self.stalls = 0
        self.calm = 0
        self.penalty = 0
        self.penalty_left = 0
        #: Inline calls still to be timed on the CPU clock too, after a surprise.
        self.verify_left = 0

    def predict(self, nbytes: int) -> float | None:
        """Predicted engine seconds for ``nbytes`` of input; None before any measurement."""
        rate = self.seconds_per_byte
        return None if rate is None else rate * max(nbytes, 1)

    @property
    def penalised(self) -> bool:
        """Whether calls must run in the worker pool for now, after repeated surprises."""
        return self.penalty_left > 0

    def observe(
        self,
        seconds: float,
        nbytes: int,
        budget: float = 0.0,
        inline: bool = True,
        cpu_seconds: float | None = None,
    ) -> None:
        """Record one call; a call timed in a worker thread may only lower the estimate.

        ``cpu_seconds``, the calling thread's CPU time for an inline call (given while
        ``verify_left`` is set), tells a stall (the thread was preempted) from a slow call.
        """
        current = self.seconds_per_byte
        rate = seconds / max(nbytes, 1)
        if current is None:
            self.seconds_per_byte = rate
            return
        if inline:
            if not self._judge(seconds, current * max(nbytes, 1), budget, cpu_seconds):
                return
        elif rate >= current:
            return
        self.seconds_per_byte = current + _SMOOTHING * (rate - current)

    def _judge(
        self, seconds: float, predicted: float, budget: float, cpu_seconds: float | None
    ) -> bool:
        """Count one inline call; False for an excused stall, which must not be measured."""
        limit = _SURPRISE * max(budget, predicted)
        if seconds <= limit:
            self.calm += 1
            if self.calm >= _CALM_CALLS:
                self.calm = 0
                self.surprises = 0
                self.stalls = 0
                self.penalty //= 2
            return True
        if cpu_seconds is None and not self.verify_left:
            # The first surprise: time the next calls on the CPU clock too, to tell stalls.
            self.verify_left = _CALM_CALLS
            return False
        if cpu_seconds is not None and cpu_seconds <= limit and self.stalls < _STALLS_EXCUSED:
            self.stalls += 1
            return False
        self.calm = 0
        self.surprises += 1
        if self.surprises > _SURPRISES_TOLERATED:
            self.surprises = 0
            self.penalty = min(_MAX_PENALTY, max(_FIRST_PENALTY, 2 * self.penalty))
            self.penalty_left = self.penalty
        return True


class Dispatcher:
    """Runs engine calls inline or in ``executor``, by their predicted duration."""

    def __init__(self, executor: Executor, inline_budget_s: float) -> None:
        self._executor = executor
        self._budget = inline_budget_s

    async def run(
        self,
        runtime: Runtime,
        estimate: ComputeEstimate,
        inputs: Mapping[str, np.ndarray[Any, Any]],
        outputs: Sequence[str],
    ) -> dict[str, np.ndarray[Any, Any]]:
        nbytes = 0
        for arr in inputs.values():
            nbytes += arr.nbytes
        budget = self._budget
        rate = estimate.seconds_per_byte
        if estimate.penalty_left:
            estimate.penalty_left -= 1
        elif (
            budget > 0
            and rate is not None
            and rate * max(nbytes, 1) <= budget
            and runtime.may_run_inline
        ):
            return self._timed(runtime, estimate, nbytes, inputs, outputs, inline=True)
        call = partial(self._timed, runtime, estimate, nbytes, inputs, outputs, inline=False)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def offload(self, call: Callable[[], T]) -> T:
        """Run ``call`` in the worker pool (calls that are not timed for inline running)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _timed(
        self,
        runtime: Runtime,
        estimate: ComputeEstimate,
        nbytes: int,
        inputs: Mapping[str, np.ndarray[Any, Any]],
        outputs: Sequence[str],
        *,
        inline: bool,
    ) -> dict[str, np.ndarray[Any, Any]]:
        if not inline or not estimate.verify_left:
            started = time.perf_counter()
            result = runtime.infer(inputs, outputs)
            estimate.observe(time.perf_counter() - started, nbytes, self._budget, inline)
            return result
        estimate.verify_left -= 1
        cpu_started = time.thread_time()
        started = time.perf_counter()
        result = runtime.infer(inputs, outputs)
        seconds = time.perf_counter() - started
        cpu_seconds = time.thread_time() - cpu_started
        estimate.observe(seconds, nbytes, self._budget, inline=True, cpu_seconds=cpu_seconds)
        return result
