"""The median time of a model's call on the sample inputs."""

from __future__ import annotations

import statistics
import time

from modelport.convert.runner import Feeds, Runner

__all__ = ["median_latency_s"]


def median_latency_s(run: Runner, feeds: Feeds, runs: int) -> float | None:
    """The median of ``runs`` timed calls after an untimed warm-up; None if ``runs`` is 0."""
    if runs <= 0:
        return None
    run(feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(feeds)
        times.append(time.perf_counter() - start)
    return statistics.median(times)
