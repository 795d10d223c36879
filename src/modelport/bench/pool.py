"""``--processes P``: worker processes that each run their share of a step's connections.

Each worker is a spawned process that waits for a ``StepPlan``, runs it on its own uvloop loop,
sends ``ProgressMessage`` snapshots while it runs and one ``ResultMessage`` (or
``FailureMessage``) at the end. The parent merges progress for the display and samples for the
report. Workers live for the whole run, so only the first step pays for starting them.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from modelport.bench.errors import BenchError
from modelport.bench.measure import ProgressReport, StepSamples
from modelport.bench.modes import StepPlan
from modelport.bench.runner import ProgressCallback, run_step_blocking

__all__ = ["FailureMessage", "ProgressMessage", "ResultMessage", "WorkerPool"]

_POLL_S = 0.5
_JOIN_S = 5.0


@dataclass(frozen=True)
class ProgressMessage:
    """A worker's snapshot during a step."""

    worker: int
    report: ProgressReport


@dataclass(frozen=True)
class ResultMessage:
    """A worker's measurements at the end of a step."""

    worker: int
    samples: StepSamples


@dataclass(frozen=True)
class FailureMessage:
    """A worker's step failed; ``details`` is its traceback."""

    worker: int
    details: str


def _worker(index: int, pipe: Connection) -> None:
    """A worker's main loop: run each plan received until told to stop (``None``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    while (plan := pipe.recv()) is not None:
        try:
            samples = run_step_blocking(
                plan, lambda report: pipe.send(ProgressMessage(index, report))
            )
            pipe.send(ResultMessage(index, samples))
        except Exception:
            pipe.send(FailureMessage(index, traceback.format_exc()))


class WorkerPool:
    """``processes`` worker processes; ``run`` spreads one step's plans over them."""

    def __init__(self, processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes: list[BaseProcess] = []
        for index in range(processes):
            parent, child = context.Pipe()
            process = context.Process(
                target=_worker, args=(index, child), name=f"modelport-bench-{index}", daemon=True
            )
            process.start()
            child.close()
            self.pipes.append(parent)
            self.processes.append(process)

    def run(self, plans: Sequence[StepPlan], on_progress: ProgressCallback) -> StepSamples:
        """Run one plan per worker; merge their progress and their results."""
        for pipe, plan in zip(self.pipes, plans, strict=False):
            pipe.send(plan)
        active = self.pipes[: len(plans)]
        latest: dict[int, ProgressReport] = {}
        results: dict[int, StepSamples] = {}
        while len(results) < len(plans):
            for ready in wait(active, timeout=_POLL_S):
                assert isinstance(ready, Connection)
                self._receive(ready, latest, results)
            self._check_alive(len(plans))
            if latest:
                on_progress(ProgressReport.merge(latest.values()))
        return StepSamples.merge(results[i] for i in sorted(results))

    def _receive(
        self, pipe: Connection, latest: dict[int, ProgressReport], results: dict[int, StepSamples]
    ) -> None:
        try:
            message = pipe.recv()
        except EOFError:
            return  # the process died: _check_alive reports it
        if isinstance(message, ProgressMessage):
            latest[message.worker] = message.report
        elif isinstance(message, ResultMessage):
            results[message.worker] = message.samples
        elif isinstance(message, FailureMessage):
            raise BenchError(f"worker process {message.worker} failed:\n{message.details}")

    def _check_alive(self, count: int) -> None:
        for process in self.processes[:count]:
            if not process.is_alive():
                raise BenchError(f"worker process {process.name} exited ({process.exitcode})")

    def terminate(self) -> None:
        """Stop the workers at once, mid-step (after Ctrl-C or a failure)."""
        for process in self.processes:
            if process.is_alive():
                process.terminate()

    def close(self) -> None:
        """Stop the workers: ask politely, then terminate any that do not exit."""
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        for process in self.processes:
            process.join(_JOIN_S)
            if process.is_alive():
                process.terminate()
                process.join()
        for pipe in self.pipes:
            pipe.close()
