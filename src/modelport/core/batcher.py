"""Dynamic batching: requests to one model version are queued and run together in one engine call.

How a batch forms:

- Requests queue by priority (level 1 first), each with the rows it carries. A full queue
  (``max_queue_size`` requests) refuses new ones with 429 and ``Retry-After``.
- The queue is looked at once per turn of the event loop, so every request that arrived in the
  same turn (a burst from many connections) is batched together without waiting at all.
- When an instance is free, a batch is cut from the head of the queue: whole requests, in
  priority order, up to ``max_batch_size`` rows, trimmed to the largest preferred size that fits.
  Requests whose shapes cannot be stacked with the head's wait for a later batch (unless inputs
  are padded, see below).
- **A lone request never waits out the window.** When no other batch of the version is running,
  what is queued runs at once: at concurrency 1 there is never anything to wait for. Only while
  another batch runs, and the queue is short of a preferred size, does the head wait, at most
  ``max_queue_delay_us``, for company.
- With ``pad_variable_length_inputs``, inputs whose dynamic non-batch dimensions differ (token
  ids of different lengths, say) are padded with ``pad_value`` to the longest in the batch, and
  each output dimension that is dynamic and came back with a padded length is cut back to the
  request's own length, so every caller gets what it would have got alone.

Invariants (each tested): every caller gets its own rows back; a failed batch fails each of its
requests with that error; a request cancelled, or past its timeout, while queued is dropped
before it runs; the engine must return as many rows as it was given, else every caller gets an
error naming both counts; the queue never exceeds its bound.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from modelport.core.dispatch import ComputeEstimate, Dispatcher
from modelport.errors import (
    DeadlineExceeded,
    InvalidInput,
    ModelportError,
    Overloaded,
    RuntimeFailure,
)
from modelport.model_config import DynamicBatchingConfig
from modelport.runtimes.base import Runtime
from modelport.types import Signature

__all__ = ["BatchObserver", "Batcher", "batching_problem"]

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray[Any, Any]]


class BatchObserver(Protocol):
    """Receives what metrics need to know about each executed batch."""

    def on_batch(self, rows: int, queue_seconds: Sequence[float], compute_seconds: float) -> None:
        """A batch of ``rows`` rows ran; its requests waited ``queue_seconds`` each."""
        ...


def batching_problem(signature: Signature) -> str | None:
    """Why this signature cannot be batched, or None if it can."""
    for spec in (*signature.inputs, *signature.outputs):
        if not spec.shape or spec.shape[0] != -1:
            return (
                f"dynamic_batching needs a dynamic first (batch) dimension on every input and "
                f"output, but {spec.describe()} has none; remove dynamic_batching or re-export "
                "the model with a dynamic batch dimension"
            )
    return None


@dataclass(eq=False, slots=True)
class _Pending:
    """One queued request (or one piece of a split request)."""

    inputs: Mapping[str, np.ndarray[Any, Any]]
    rows: int
    key: tuple[tuple[int, ...], ...] | None
    future: asyncio.Future[Arrays]
    enqueued: float
    queued: bool = True
    timer: asyncio.TimerHandle | None = None


@dataclass(eq=False, slots=True)
class _Batch:
    members: list[_Pending]
    rows: int
    #: After padding: each padded length, with every member's own length along that dimension.
    lengths: dict[int, list[int]] = field(default_factory=dict)


class Batcher:
    """Queues the requests of one model version and runs them in batches."""

    def __init__(
        self,
        runtime: Runtime,
        signature: Signature,
        *,
        estimate: ComputeEstimate,
        dispatcher: Dispatcher,
        config: DynamicBatchingConfig,
        instances: int = 1,
        observer: BatchObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runtime = runtime
        self._signature = signature
        self._estimate = estimate
        self._dispatcher = dispatcher
        self._config = config
        self._observer = observer
        self._clock = clock
        self._input_names = signature.input_names
        self._output_names = signature.output_names
        self._queues: list[collections.deque[_Pending]] = [
            collections.deque() for _ in range(config.priority_levels)
        ]
        self._default_level = (config.default_priority_level or config.priority_levels) - 1
        self._preferred: list[int] = sorted(set(config.preferred_batch_sizes))
        self._running: set[asyncio.Task[None]] = set()
        self._delay_s = config.max_queue_delay_us / 1e6
        self._free = instances
        self._instances = instances
        self._queued = 0
        self._dispatch_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._dynamic_axes = {
            spec.name: tuple(i for i, d in enumerate(spec.shape) if i > 0 and d == -1)
            for spec in signature.inputs
        }
        self._output_dynamic_axes = {
            spec.name: tuple(i for i, d in enumerate(spec.shape) if i > 0 and d == -1)
            for spec in signature.outputs
        }

    @property
    def queued(self) -> int:
        """Requests waiting now."""
        return self._queued

    # ---- submitting ------------------------------------------------------------------------

    async def submit(
        self,
        inputs: Mapping[str, np.ndarray[Any, Any]],
        outputs: Sequence[str],
        parameters: Mapping[str, Any],
    ) -> Arrays:
        """Queue a checked request, wait for its batch, return its rows of ``outputs``."""
        rows = self._rows(inputs)
        level = self._level(parameters)
        timeout_s = self._timeout(parameters)
        limit = self._config.max_batch_size
        if rows > limit:
            if not self._config.split_large_requests:
                raise InvalidInput(
                    f"the request has {rows} rows, more than this model's dynamic_batching "
                    f"max_batch_size of {limit}; send at most {limit} rows per request"
                )
            result = await self._submit_split(inputs, rows, level, timeout_s)
        else:
            result = await self._submit_one(inputs, rows, level, timeout_s)
        return {name: result[name] for name in outputs}

    async def _submit_split(
        self,
        inputs: Mapping[str, np.ndarray[Any, Any]],
        rows: int,
        level: int,
        timeout_s: float,
    ) -> Arrays:
        limit = self._config.max_batch_size
        pieces = [
            self._submit_one(
                {name: arr[start : start + limit] for name, arr in inputs.items()},
                min(limit, rows - start),
                level,
                timeout_s,
            )
            for start in range(0, rows, limit)
        ]
        results = await asyncio.gather(*pieces)
        return {
            name: np.concatenate([part[name] for part in results]) for name in self._output_names
        }

    async def _submit_one(
        self,
        inputs: Mapping[str, np.ndarray[Any, Any]],
        rows: int,
        level: int,
        timeout_s: float,
    ) -> Arrays:
        if self._queued >= self._config.max_queue_size:
            raise Overloaded(
                f"the queue of this model holds {self._queued} requests, its limit "
                "(dynamic_batching max_queue_size); retry shortly",
                retry_after_s=1.0,
            )
        loop = asyncio.get_running_loop()
        pending = _Pending(inputs, rows, self._key(inputs), loop.create_future(), self._clock())
        self._queues[level].append(pending)
        self._queued += 1
        if timeout_s > 0:
            pending.timer = loop.call_later(timeout_s, self._expire, pending, timeout_s)
        if not self._dispatch_scheduled:
            self._dispatch_scheduled = True
            loop.call_soon(self._dispatch)
        try:
            return await pending.future
        except asyncio.CancelledError:
            self._drop(pending)
            raise

    def _rows(self, inputs: Mapping[str, np.ndarray[Any, Any]]) -> int:
        counts: set[int] = {int(arr.shape[0]) for arr in inputs.values()}

        if len(counts) != 1:
            raise InvalidInput(
                "the inputs have different batch sizes (first dimensions): "
                + ", ".join(f"{name} {arr.shape[0]}" for name, arr in inputs.items())
            )
        return counts.pop()

    def _level(self, parameters: Mapping[str, Any]) -> int:
        priority = parameters.get("priority", 0)
        levels = self._config.priority_levels
        if type(priority) is not int or priority < 0 or priority > levels:
            raise InvalidInput(
                f"the request's priority must be a whole number from 1 (highest) to {levels}, "
                f"or 0 for the default; got {priority!r}"
            )
        return self._default_level if priority == 0 else priority - 1

    def _timeout(self, parameters: Mapping[str, Any]) -> float:
        timeout_us = parameters.get("timeout", self._config.default_timeout_us)
        if type(timeout_us) is not int or timeout_us < 0:
            raise InvalidInput(
                f"the request's timeout must be a whole number of microseconds; got {timeout_us!r}"
            )
        return timeout_us / 1e6

    def _key(
        self, inputs: Mapping[str, np.ndarray[Any, Any]]
    ) -> tuple[tuple[int, ...], ...] | None:
        if self._config.pad_variable_length_inputs:
            return None
        return tuple(inputs[name].shape[1:] for name in self._input_names)

    # ---- leaving the queue ----------------------------------------------------------------

    def _unqueue(self, pending: _Pending) -> None:
        pending.queued = False
        self._queued -= 1
        if pending.timer is not None:
            pending.timer.cancel()
            pending.timer = None

    def _drop(self, pending: _Pending) -> None:
        """A cancelled request leaves the queue (the deque forgets it when it reaches it)."""
        if pending.queued:
            self._unqueue(pending)

    def _expire(self, pending: _Pending, timeout_s: float) -> None:
        if pending.queued and not pending.future.done():
            self._unqueue(pending)
            pending.future.set_exception(
                DeadlineExceeded(
                    f"the request waited longer than its timeout of {timeout_s * 1e6:.0f} µs "
                    "for its turn; raise the timeout or send fewer requests at once"
                )
            )

    # ---- forming batches -------------------------------------------------------------------

    def _dispatch(self) -> None:
        self._dispatch_scheduled = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop = asyncio.get_running_loop()
        while self._free > 0:
            head = self._head()
            if head is None:
                return
            available = self._stackable_rows(head)
            wait = self._wait_for_company(head, available)
            if wait > 0:
                self._timer = loop.call_later(wait, self._dispatch)
                return
            batch = self._take(head, self._target(available))
            self._free -= 1
            task = loop.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _head(self) -> _Pending | None:
        for queue in self._queues:
            while queue and not queue[0].queued:
                queue.popleft()
            if queue:
                return queue[0]
        return None

    def _stackable_rows(self, head: _Pending) -> int:
        """Rows that could run with ``head``, up to the size limit."""
        limit = self._config.max_batch_size
        rows = 0
        for queue in self._queues:
            for pending in queue:
                if pending.queued and pending.key == head.key and rows + pending.rows <= limit:
                    rows += pending.rows
        return rows

    def _target(self, available: int) -> int:
        """The batch size to cut: the largest preferred size that fits, else the limit."""
        fitting = [size for size in self._preferred if size <= available]
        return fitting[-1] if fitting else self._config.max_batch_size

    def _take(self, head: _Pending, target: int) -> _Batch:
        """Whole requests from the queues, in priority order, stackable with ``head``."""
        members: list[_Pending] = []
        rows = 0
        for queue in self._queues:
            kept: collections.deque[_Pending] = collections.deque()
            while queue:
                pending = queue.popleft()
                if not pending.queued:
                    continue
                if pending.key == head.key and rows + pending.rows <= target:
                    members.append(pending)
                    rows += pending.rows
                else:
                    kept.append(pending)
            queue.extend(kept)
        for pending in members:
            self._unqueue(pending)
        return _Batch(members, rows)

    def _wait_for_company(self, head: _Pending, rows: int) -> float:
        """Seconds the head should still wait for more requests; 0 to run now."""
        if self._delay_s <= 0 or self._free == self._instances:
            return 0.0  # nothing else of this version runs: go at once
        target = self._preferred[0] if self._preferred else self._config.max_batch_size
        if rows >= target:
            return 0.0
        return max(0.0, head.enqueued + self._delay_s - self._clock())

    # ---- running ---------------------------------------------------------------------------

    async def _run(self, batch: _Batch) -> None:
        started = self._clock()
        try:
            inputs = self._assemble(batch)
            result = await self._dispatcher.run(
                self._runtime, self._estimate, inputs, self._output_names
            )
            self._check_rows(result, batch.rows)
            self._deliver(batch, result)
        except ModelportError as exc:
            self._fail(batch, exc)
        except Exception as exc:
            log.exception("a batch of %d rows failed", batch.rows)
            self._fail(batch, RuntimeFailure(f"the model failed on this batch: {exc}"))
        finally:
            self._free += 1
            if self._observer is not None:
                self._observer.on_batch(
                    batch.rows,
                    [started - pending.enqueued for pending in batch.members],
                    self._clock() - started,
                )
            self._dispatch()

    def _assemble(self, batch: _Batch) -> Arrays:
        members = batch.members
        if len(members) == 1 and not self._config.pad_variable_length_inputs:
            return dict(members[0].inputs)
        if self._config.pad_variable_length_inputs:
            return self._pad(batch)
        return {
            name: np.concatenate([pending.inputs[name] for pending in members])
            for name in self._input_names
        }

    def _pad(self, batch: _Batch) -> Arrays:
        """Stack inputs padded to the longest of each dynamic dimension; note the cut-backs."""
        assembled: Arrays = {}
        lengths: dict[int, list[int]] = {}  # padded length -> each member's own length
        for name in self._input_names:
            arrays = [pending.inputs[name] for pending in batch.members]
            axes = self._dynamic_axes[name]
            target = list(arrays[0].shape)
            for axis in axes:
                target[axis] = max(arr.shape[axis] for arr in arrays)
                lengths.setdefault(target[axis], [arr.shape[axis] for arr in arrays])
            padded = [self._pad_one(arr, target) for arr in arrays]
            assembled[name] = padded[0] if len(padded) == 1 else np.concatenate(padded)
        batch.lengths = lengths
        return assembled

    def _pad_one(self, arr: np.ndarray[Any, Any], target: list[int]) -> np.ndarray[Any, Any]:
        widths = [(0, t - s) for s, t in zip(arr.shape, target, strict=True)]
        if not any(after for _, after in widths):
            return arr
        if arr.dtype == object:
            raise InvalidInput("BYTES inputs cannot be padded; send requests of one length")
        return np.pad(arr, widths, constant_values=self._config.pad_value)

    def _check_rows(self, result: Arrays, rows: int) -> None:
        for name, arr in result.items():
            got = arr.shape[0] if arr.ndim else 0
            if got != rows:
                raise RuntimeFailure(
                    f"the model returned {got} rows of output {name!r} for a batch of {rows} "
                    "rows; it cannot be batched (remove dynamic_batching from its config.yaml)"
                )

    def _deliver(self, batch: _Batch, result: Arrays) -> None:
        offset = 0
        lengths = batch.lengths
        for index, pending in enumerate(batch.members):
            end = offset + pending.rows
            mine = {name: arr[offset:end] for name, arr in result.items()}
            if lengths:
                mine = self._cut_back(mine, lengths, index)
            offset = end
            if not pending.future.done():
                pending.future.set_result(mine)

    def _cut_back(self, mine: Arrays, lengths: dict[int, list[int]], index: int) -> Arrays:
        for name, axes in self._output_dynamic_axes.items():
            arr = mine[name]
            for axis in axes:
                own = lengths.get(arr.shape[axis])
                if own is not None and own[index] != arr.shape[axis]:
                    slicer = [slice(None)] * arr.ndim
                    slicer[axis] = slice(0, own[index])
                    arr = arr[tuple(slicer)]
            mine[name] = arr
        return mine

    def _fail(self, batch: _Batch, exc: ModelportError) -> None:
        for pending in batch.members:
            if not pending.future.done():
                pending.future.set_exception(exc)
