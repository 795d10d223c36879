"""Prometheus metrics, served as text at ``/metrics`` on the HTTP port.

======================================  =========  ================================================
``modelport_requests_total``             counter    inference requests by model, version, protocol
                                                    and outcome (``success`` or the error's code)
``modelport_request_duration_seconds``   histogram  time from taking the request to its answer
``modelport_queue_duration_seconds``     histogram  time a request waited for its batch
``modelport_compute_duration_seconds``   histogram  time of one engine call (one batch)
``modelport_batch_size``                 histogram  rows in one engine call
``modelport_queue_depth``                gauge      requests waiting in a version's queue now
``modelport_model_load_failures_total``  counter    versions that failed to load, by model
======================================  =========  ================================================

Label children are looked up once and cached, so recording costs a dictionary lookup and the
observation itself on the request path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["Metrics", "VersionMetrics"]

_LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

#: (model, version, depth) for every version that has a queue.
QueueDepths = Callable[[], Iterable[tuple[str, int, int]]]


class _QueueDepthCollector(Collector):
    def __init__(self, source: QueueDepths) -> None:
        self._source = source

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "modelport_queue_depth",
            "Requests waiting in a model version's batching queue.",
            labels=["model", "version"],
        )
        for model, version, depth in self._source():
            gauge.add_metric([model, str(version)], depth)
        yield gauge


class VersionMetrics:
    """Records the engine calls of one model version (a ``BatchObserver``)."""

    def __init__(self, metrics: Metrics, model: str, version: int) -> None:
        labels = (model, str(version))
        self._queue = metrics.queue_duration.labels(*labels)
        self._compute = metrics.compute_duration.labels(*labels)
        self._batch = metrics.batch_size.labels(*labels)

    def on_batch(self, rows: int, queue_seconds: Sequence[float], compute_seconds: float) -> None:
        """One engine call of ``rows`` rows; its requests waited ``queue_seconds``."""
        self._batch.observe(rows)
        self._compute.observe(compute_seconds)
        for waited in queue_seconds:
            self._queue.observe(waited)


class Metrics:
    """Every modelport metric, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "modelport_requests",
            "Inference requests by model, version, protocol and outcome.",
            ["model", "version", "protocol", "outcome"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "modelport_request_duration_seconds",
            "Time from taking an inference request to its answer.",
            ["model", "version", "protocol"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_duration = Histogram(
            "modelport_queue_duration_seconds",
            "Time a request waited in its version's queue for a batch.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.compute_duration = Histogram(
            "modelport_compute_duration_seconds",
            "Time of one engine call.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "modelport_batch_size",
            "Rows in one engine call.",
            ["model", "version"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.load_failures = Counter(
            "modelport_model_load_failures",
            "Model versions that failed to load.",
            ["model"],
            registry=self.registry,
        )
        self._children: dict[tuple[str, int, str, str], tuple[Any, Any]] = {}

    def watch_queues(self, source: QueueDepths) -> None:
        """Report the queue depths ``source`` gives at every scrape."""
        self.registry.register(_QueueDepthCollector(source))

    def on_request(
        self, model: str, version: int, protocol: str, outcome: str, seconds: float
    ) -> None:
        """One inference request answered (``outcome`` is ``success`` or an error code)."""
        key = (model, version, protocol, outcome)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(model, str(version), protocol, outcome),
                self.request_duration.labels(model, str(version), protocol),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def for_version(self, model: str, version: int) -> VersionMetrics:
        """The recorder of one version's engine calls."""
        return VersionMetrics(self, model, version)

    def on_load_failure(self, model: str) -> None:
        self.load_failures.labels(model).inc()

    def render(self) -> bytes:
        """Everything, in the Prometheus text format."""
        return generate_latest(self.registry)
