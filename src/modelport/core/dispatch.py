"""Where an engine call runs: inline on the event loop when it is known to be quick, else in a
worker thread.

Handing a call to a thread and back costs tens of microseconds, several times what a small model
takes to run. So each model version keeps a running estimate of its engine time per input byte;
a call whose predicted time is within ``inline_budget_s`` runs inline, every other call (and
every call before the first measurement) runs in the worker pool. The budget bounds how long an
inline call can hold the event loop; 0 sends every call to the pool.

Some models take time that input size does not predict (a loop whose trip count is an input,
for example). The first call that takes more than ten times its prediction, and more than the
budget, marks the version as unpredictable, and it never runs inline again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np

from modelport.runtimes.base import Runtime

__all__ = ["ComputeEstimate", "Dispatcher"]

_SMOOTHING = 0.2
#: A call this many times slower than predicted shows the input size does not predict the time.
_SURPRISE = 10.0


class ComputeEstimate:
    """A running (exponentially weighted) estimate of engine seconds per input byte."""

    __slots__ = ("seconds_per_byte", "unpredictable")

    def __init__(self) -> None:
        self.seconds_per_byte: float | None = None
        self.unpredictable = False

    def predict(self, nbytes: int) -> float | None:
        """Predicted engine seconds for ``nbytes`` of input; None before any measurement."""
        rate = self.seconds_per_byte
        return None if rate is None else rate * max(nbytes, 1)

    def observe(self, seconds: float, nbytes: int, budget: float = 0.0) -> None:
        """Record one call; a call far slower than predicted and over ``budget`` marks the
        version unpredictable."""
        predicted = self.predict(nbytes)
        if predicted is not None and seconds > budget and seconds > _SURPRISE * predicted:
            self.unpredictable = True
        rate = seconds / max(nbytes, 1)
        current = self.seconds_per_byte
        self.seconds_per_byte = rate if current is None else current + _SMOOTHING * (rate - current)


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
        if (
            budget > 0
            and rate is not None
            and rate * max(nbytes, 1) <= budget
            and not estimate.unpredictable
        ):
            return self._timed(runtime, estimate, nbytes, inputs, outputs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self._timed, runtime, estimate, nbytes, inputs, outputs
        )

    def _timed(
        self,
        runtime: Runtime,
        estimate: ComputeEstimate,
        nbytes: int,
        inputs: Mapping[str, np.ndarray[Any, Any]],
        outputs: Sequence[str],
    ) -> dict[str, np.ndarray[Any, Any]]:
        started = time.perf_counter()
        result = runtime.infer(inputs, outputs)
        estimate.observe(time.perf_counter() - started, nbytes, self._budget)
        return result
