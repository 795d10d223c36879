"""Per-version inference statistics in the shape of Triton's statistics extension.

perf_analyzer reads these between measurement windows: counts must be integers, ``queue.count``
must grow with every request, and durations are cumulative nanoseconds. modelport does not time
input and output conversion apart from the engine call, so ``compute_input`` and
``compute_output`` count executions with no time, and ``compute_infer`` holds the engine time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from modelport.core.batcher import BatchObserver

__all__ = ["Duration", "Observers", "VersionStats"]


@dataclass(slots=True)
class Duration:
    """How many times something happened, and for how long in all (nanoseconds)."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.ns += int(seconds * 1e9)

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass(slots=True)
class _BatchDurations:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass(slots=True)
class VersionStats:
    """Counters of one model version since it loaded (a ``BatchObserver``)."""

    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    batches: dict[int, _BatchDurations] = field(default_factory=dict)

    def on_request(self, succeeded: bool, seconds: float) -> None:
        """One inference request answered."""
        (self.success if succeeded else self.fail).add(seconds)
        self.last_inference_ms = int(time.time() * 1000)

    def on_batch(self, rows: int, queue_seconds: Sequence[float], compute_seconds: float) -> None:
        """One engine call of ``rows`` rows; its requests waited ``queue_seconds``."""
        self.execution_count += 1
        self.inference_count += rows
        for waited in queue_seconds:
            self.queue.add(waited)
        self.compute_input.add(0.0)
        self.compute_infer.add(compute_seconds)
        self.compute_output.add(0.0)
        batch = self.batches.get(rows)
        if batch is None:
            batch = self.batches[rows] = _BatchDurations()
        batch.compute_input.add(0.0)
        batch.compute_infer.add(compute_seconds)
        batch.compute_output.add(0.0)

    def as_dict(self, name: str, version: int) -> dict[str, object]:
        """Triton's JSON form of one ``model_stats`` entry."""
        zero = Duration().as_dict()
        return {
            "name": name,
            "version": str(version),
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.as_dict(),
                "fail": self.fail.as_dict(),
                "queue": self.queue.as_dict(),
                "compute_input": self.compute_input.as_dict(),
                "compute_infer": self.compute_infer.as_dict(),
                "compute_output": self.compute_output.as_dict(),
                "cache_hit": zero,
                "cache_miss": zero,
            },
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": batch.compute_input.as_dict(),
                    "compute_infer": batch.compute_infer.as_dict(),
                    "compute_output": batch.compute_output.as_dict(),
                }
                for size, batch in sorted(self.batches.items())
            ],
            "memory_usage": [],
        }


class Observers:
    """Several ``BatchObserver`` values heard as one."""

    __slots__ = ("_observers",)

    def __init__(self, observers: Iterable[BatchObserver]) -> None:
        self._observers = tuple(observers)

    def on_batch(self, rows: int, queue_seconds: Sequence[float], compute_seconds: float) -> None:
        for observer in self._observers:
            observer.on_batch(rows, queue_seconds, compute_seconds)
