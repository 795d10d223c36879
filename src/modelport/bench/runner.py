"""Running one step in one process, and dividing a step between processes.

A step has a fixed timeline in ``perf_counter_ns`` time (system-wide on Linux and macOS, so every
process shares it): connections open before ``start_ns``, requests flow from ``start_ns``, the
measurement window is ``[measure_ns, end_ns)``, then the requests in flight drain.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from time import perf_counter_ns

from modelport.bench.encoding import ResponseCheck
from modelport.bench.loop import run
from modelport.bench.measure import ProgressReport, Recorder, StepSamples
from modelport.bench.modes import ClosedLoop, LoadMode, OpenLoop, StepPlan
from modelport.bench.settings import BenchSettings, LoadStep

__all__ = ["ProgressCallback", "plan_step", "run_step", "run_step_blocking"]

ProgressCallback = Callable[[ProgressReport], None]

#: Time between setting a step up and its first request, for connections to open.
_LEAD_S = 0.25
_LEAD_PER_CONNECTION_S = 0.0005


def _until(when_ns: int) -> float:
    return max(0.0, (when_ns - perf_counter_ns()) / 1e9)


def _capacity(plan: StepPlan) -> int:
    if plan.rate:
        return int(plan.rate * (plan.end_ns - plan.measure_ns) / 1e9 * 1.2) + 1024
    return 1 << 16


async def run_step(
    plan: StepPlan, on_progress: ProgressCallback | None = None, interval_s: float = 0.5
) -> StepSamples:
    """Run one step on the running event loop and return what it measured."""
    loop = asyncio.get_running_loop()
    recorder = Recorder(_capacity(plan))
    mode: LoadMode = ClosedLoop(plan, recorder) if plan.concurrency else OpenLoop(plan, recorder)
    await mode.open()
    await asyncio.sleep(_until(plan.start_ns))
    if plan.measure_ns <= perf_counter_ns():
        recorder.begin()
    else:
        loop.call_later(_until(plan.measure_ns), recorder.begin)
    loop.call_later(_until(plan.end_ns), mode.stop)
    mode.start()

    def report() -> None:
        """Hand a snapshot to ``on_progress``, again every ``interval_s`` until the end."""
        if not mode.finished.done() and on_progress is not None:
            on_progress(recorder.progress())
            loop.call_later(interval_s, report)

    report()
    try:
        await mode.finished
    finally:
        mode.finish()
    return recorder.samples()


def run_step_blocking(
    plan: StepPlan, on_progress: ProgressCallback | None = None, interval_s: float = 0.5
) -> StepSamples:
    """Run one step on a new uvloop event loop in this thread."""
    return run(run_step(plan, on_progress, interval_s))


def plan_step(
    step: LoadStep, settings: BenchSettings, request: bytes, check: ResponseCheck
) -> list[StepPlan]:
    """The plans for one step, one per process that takes part, on a shared timeline.

    A concurrency is divided as evenly as possible (at most one process per connection); a rate
    is divided equally, each process's schedule shifted so their requests interleave.
    """
    if step.concurrency is not None:
        parts = min(settings.processes, step.concurrency)
        shares = [step.concurrency // parts + (i < step.concurrency % parts) for i in range(parts)]
    else:
        parts = settings.processes
        shares = [0] * parts
    per_process = max(shares) if step.concurrency else settings.max_connections / parts
    lead = _LEAD_S + _LEAD_PER_CONNECTION_S * per_process
    start = perf_counter_ns() + int(lead * 1e9)
    measure = start + int(settings.warmup_s * 1e9)
    end = measure + int(settings.duration_s * 1e9)
    return [
        StepPlan(
            target=settings.target,
            request=request,
            check=check,
            start_ns=start,
            measure_ns=measure,
            end_ns=end,
            concurrency=shares[i],
            rate=(step.rate or 0.0) / parts,
            phase=i / parts,
            distribution=settings.distribution,
            seed=settings.seed + i,
            max_connections=math.ceil(settings.max_connections / parts),
            timeout_s=settings.timeout_s,
            check_every=settings.check_every,
        )
        for i in range(parts)
    ]
