"""How the engine calls of one model version are scheduled.

Without ``dynamic_batching`` each request is its own engine call, run by the ``Dispatcher``;
with ``instances`` set, at most that many run at once and the rest wait their turn. With
``dynamic_batching`` a ``Batcher`` queues requests and runs them together.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from modelport.core.batcher import Batcher, BatchObserver, batching_problem
from modelport.core.dispatch import ComputeEstimate, Dispatcher
from modelport.model_config import ModelConfig
from modelport.runtimes.base import Runtime
from modelport.types import Signature

__all__ = ["Limited", "Scheduler", "make_scheduler"]

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray[Any, Any]]


class Scheduler(Protocol):
    """Runs checked requests of one model version on its engine."""

    async def submit(
        self,
        inputs: Mapping[str, np.ndarray[Any, Any]],
        outputs: Sequence[str],
        parameters: Mapping[str, Any],
    ) -> Arrays:
        """Run one request; return its ``outputs``."""
        ...


class Limited:
    """One engine call per request, at most ``instances`` at a time."""

    def __init__(
        self, runtime: Runtime, estimate: ComputeEstimate, dispatcher: Dispatcher, instances: int
    ) -> None:
        self._runtime = runtime
        self._estimate = estimate
        self._dispatcher = dispatcher
        self._slots = asyncio.Semaphore(instances)

    async def submit(
        self,
        inputs: Mapping[str, np.ndarray[Any, Any]],
        outputs: Sequence[str],
        parameters: Mapping[str, Any],
    ) -> Arrays:
        async with self._slots:
            return await self._dispatcher.run(self._runtime, self._estimate, inputs, outputs)


def make_scheduler(
    runtime: Runtime,
    signature: Signature,
    *,
    estimate: ComputeEstimate,
    config: ModelConfig,
    dispatcher: Dispatcher,
    observer: BatchObserver | None = None,
) -> Scheduler | None:
    """The scheduler ``config`` asks for; None for a plain call per request."""
    batching = config.dynamic_batching
    problem = batching_problem(signature) if batching is not None else None
    if problem is not None:  # only batching from the server's flags gets here (see loader)
        log.warning("%s; serving it without batching", problem)
        batching = None
    if batching is not None:
        return Batcher(
            runtime,
            signature,
            estimate=estimate,
            dispatcher=dispatcher,
            config=batching,
            instances=config.instances or 1,
            observer=observer,
        )
    if config.instances is not None:
        return Limited(runtime, estimate, dispatcher, config.instances)
    return None
