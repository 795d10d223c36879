"""Per-request measurements: latencies in a preallocated numpy array, errors counted by kind.

A ``Recorder`` lives in one process for one step. Only answers that complete inside the
measurement window count; errors outside it (warm-up, drain) are kept apart. At the end it
becomes ``StepSamples``, which worker processes send back and ``StepSamples.merge`` combines.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any

import numpy as np

__all__ = ["LATE_NS", "ProgressReport", "Recorder", "StepSamples"]

#: A request the rate scheduler reached more than this long after its time was sent late: the
#: client itself fell behind (waiting for a free connection is counted apart).
LATE_NS = 1_000_000
_PROGRESS_SAMPLE = 2000


@dataclass(frozen=True)
class ProgressReport:
    """A snapshot during a step: good answers so far in the window, and a latency sample."""

    measured_s: float
    completed: int
    errors: int
    sample_ns: np.ndarray[Any, np.dtype[np.int64]]

    @staticmethod
    def merge(reports: Iterable[ProgressReport]) -> ProgressReport:
        """One report for several processes: counts added, samples pooled."""
        items = list(reports)
        return ProgressReport(
            measured_s=max((r.measured_s for r in items), default=0.0),
            completed=sum(r.completed for r in items),
            errors=sum(r.errors for r in items),
            sample_ns=np.concatenate([r.sample_ns for r in items])
            if items
            else np.empty(0, np.int64),
        )


@dataclass
class StepSamples:
    """What one step measured in one process, or merged over several."""

    latencies_ns: np.ndarray[Any, np.dtype[np.int64]]
    window_s: float
    sent: int = 0
    unsent: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    other_errors: dict[str, int] = field(default_factory=dict)
    error_examples: dict[str, str] = field(default_factory=dict)
    late_sends: int = 0
    max_send_lag_ns: int = 0
    connection_waits: int = 0
    connections: int = 0

    @staticmethod
    def merge(parts: Iterable[StepSamples]) -> StepSamples:
        """Combine processes: latencies pooled, counts added, the window averaged."""
        items = list(parts)
        merged = StepSamples(
            latencies_ns=np.concatenate([p.latencies_ns for p in items]),
            window_s=sum(p.window_s for p in items) / max(len(items), 1),
        )
        for part in items:
            merged.sent += part.sent
            merged.unsent += part.unsent
            merged.late_sends += part.late_sends
            merged.max_send_lag_ns = max(merged.max_send_lag_ns, part.max_send_lag_ns)
            merged.connection_waits += part.connection_waits
            merged.connections += part.connections
            for kind, count in part.errors.items():
                merged.errors[kind] = merged.errors.get(kind, 0) + count
            for kind, count in part.other_errors.items():
                merged.other_errors[kind] = merged.other_errors.get(kind, 0) + count
            for kind, example in part.error_examples.items():
                merged.error_examples.setdefault(kind, example)
        return merged


class Recorder:
    """Collects one step's measurements in one process; ``add`` is on the hot path."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        self.latencies: np.ndarray[Any, np.dtype[np.int64]] = np.empty(
            max(capacity, 1024), np.int64
        )
        self.count = 0
        #: The measurement window is open: answers and errors now count.
        self.measuring = False
        self.errors: dict[str, int] = {}
        self.other_errors: dict[str, int] = {}
        self.examples: dict[str, str] = {}
        #: Requests scheduled in the window (rate mode)...
        self.sent = 0
        #: ... and those of them still waiting for a connection when the window closed.
        self.unsent = 0
        self.late_sends = 0
        self.max_send_lag_ns = 0
        self.connection_waits = 0
        self.connections = 0
        self.begin_ns = 0
        self.end_ns = 0

    def add(self, latency_ns: int) -> None:
        """Record one good answer's latency."""
        index = self.count
        if index == len(self.latencies):
            self.latencies = np.concatenate([self.latencies, np.empty_like(self.latencies)])
        self.latencies[index] = latency_ns
        self.count = index + 1

    def error(self, kind: str, example: str = "") -> None:
        """Count a failed request of ``kind``; keep the first ``example`` message of each."""
        counts = self.errors if self.measuring else self.other_errors
        counts[kind] = counts.get(kind, 0) + 1
        if example and kind not in self.examples:
            self.examples[kind] = example

    def send_lag(self, lag_ns: int) -> None:
        """Note how late the scheduler handled a request after its time (rate mode)."""
        if lag_ns > LATE_NS:
            self.late_sends += 1
            self.max_send_lag_ns = max(self.max_send_lag_ns, lag_ns)

    def begin(self) -> None:
        """Open the measurement window now."""
        self.begin_ns = perf_counter_ns()
        self.measuring = True

    def end(self) -> None:
        """Close the measurement window now."""
        if self.measuring:
            self.end_ns = perf_counter_ns()
            self.measuring = False

    def progress(self) -> ProgressReport:
        """A snapshot: the count so far and a strided sample of all latencies so far."""
        measured = (perf_counter_ns() - self.begin_ns) / 1e9 if self.measuring else 0.0
        stride = self.count // _PROGRESS_SAMPLE + 1
        return ProgressReport(
            measured_s=measured,
            completed=self.count,
            errors=sum(self.errors.values()),
            sample_ns=self.latencies[: self.count : stride].copy(),
        )

    def samples(self) -> StepSamples:
        """The step's results; call after ``end``."""
        window = (self.end_ns - self.begin_ns) / 1e9 if self.end_ns else 0.0
        return StepSamples(
            latencies_ns=self.latencies[: self.count].copy(),
            window_s=window,
            sent=self.sent,
            unsent=self.unsent,
            errors=dict(self.errors),
            other_errors=dict(self.other_errors),
            error_examples=dict(self.examples),
            late_sends=self.late_sends,
            max_send_lag_ns=self.max_send_lag_ns,
            connection_waits=self.connection_waits,
            connections=self.connections,
        )
