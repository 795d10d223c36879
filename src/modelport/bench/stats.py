"""From raw samples to the numbers bench reports: throughput and latency percentiles per step."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.bench.measure import StepSamples
from modelport.bench.settings import LoadStep

__all__ = ["LATENCY_KEYS", "PERCENTILES", "StepSummary", "percentile", "summarize"]

#: The percentiles reported, by name.
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
)
#: Every latency figure in a summary, in report order.
LATENCY_KEYS = ("p50", "p90", "p99", "p99.9", "max", "mean", "min")

#: A rate step fell behind when more than this share of its requests were sent late.
_LATE_SHARE = 0.01


def percentile(sorted_values: np.ndarray[Any, Any], p: float) -> float:
    """The nearest-rank percentile of ascending ``sorted_values``: the smallest value with at
    least ``p`` % of all values at or below it (always one of the values; NaN when empty)."""
    count = len(sorted_values)
    if count == 0:
        return math.nan
    rank = math.ceil(p * count / 100 - 1e-9)  # the epsilon absorbs 99.9 * n not being exact
    return float(sorted_values[min(max(rank, 1), count) - 1])


@dataclass(frozen=True)
class StepSummary:
    """One step's results, as reported; latencies in microseconds."""

    step: LoadStep
    requests: int
    window_s: float
    requests_per_s: float
    latency_us: dict[str, float]
    errors: dict[str, int]
    other_errors: dict[str, int]
    error_examples: dict[str, str]
    sent: int = 0
    unsent: int = 0
    late_sends: int = 0
    max_send_lag_us: float = 0.0
    connection_waits: int = 0
    connections: int = 0

    @property
    def error_count(self) -> int:
        """Failed requests inside the measurement window."""
        return sum(self.errors.values())

    @property
    def any_errors(self) -> bool:
        """Whether any request failed, in the window or outside it (warm-up, drain)."""
        return bool(self.error_count or sum(self.other_errors.values()))

    @property
    def late_share(self) -> float:
        """The share of a rate step's requests the client sent more than 1 ms after their time."""
        return self.late_sends / self.sent if self.sent else 0.0

    @property
    def wait_share(self) -> float:
        """The share of a rate step's requests that waited for a free connection."""
        return self.connection_waits / self.sent if self.sent else 0.0

    @property
    def fell_behind(self) -> bool:
        """A rate step whose client could not keep to the schedule."""
        return self.step.rate is not None and self.late_share > _LATE_SHARE

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values, for the JSON report."""
        return {
            "mode": self.step.kind,
            "concurrency": self.step.concurrency,
            "rate": self.step.rate,
            "requests": self.requests,
            "window_s": round(self.window_s, 6),
            "requests_per_s": round(self.requests_per_s, 3),
            "latency_us": {k: _rounded(v) for k, v in self.latency_us.items()},
            "errors": self.error_count,
            "errors_by_kind": dict(self.errors),
            "errors_outside_window": dict(self.other_errors),
            "error_examples": dict(self.error_examples),
            "sent": self.sent,
            "unsent": self.unsent,
            "late_sends": self.late_sends,
            "max_send_lag_us": round(self.max_send_lag_us, 1),
            "connection_waits": self.connection_waits,
            "connections": self.connections,
            "fell_behind": self.fell_behind,
        }


def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 1)


def summarize(step: LoadStep, samples: StepSamples) -> StepSummary:
    """Throughput and latency percentiles of one step's merged samples."""
    ordered = np.sort(samples.latencies_ns)
    latency = {name: percentile(ordered, p) / 1000 for name, p in PERCENTILES}
    empty = len(ordered) == 0
    latency["max"] = math.nan if empty else float(ordered[-1]) / 1000
    latency["mean"] = math.nan if empty else float(ordered.mean()) / 1000
    latency["min"] = math.nan if empty else float(ordered[0]) / 1000
    return StepSummary(
        step=step,
        requests=len(ordered),
        window_s=samples.window_s,
        requests_per_s=len(ordered) / samples.window_s if samples.window_s > 0 else 0.0,
        latency_us=latency,
        errors=dict(samples.errors),
        other_errors=dict(samples.other_errors),
        error_examples=dict(samples.error_examples),
        sent=samples.sent,
        unsent=samples.unsent,
        late_sends=samples.late_sends,
        max_send_lag_us=samples.max_send_lag_ns / 1000,
        connection_waits=samples.connection_waits,
        connections=samples.connections,
    )
