"""Live progress: one rich progress bar per step, with requests/s and p50 so far.

The display is refreshed by hand from ``update`` (no refresh thread), so in a single-process run
the rendering happens on the load's own event loop, twice a second, and never competes with it
for the GIL in between. On a terminal that is not interactive, each step prints one line instead.
"""

from __future__ import annotations

from time import perf_counter_ns
from types import TracebackType

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from modelport.bench.measure import ProgressReport
from modelport.bench.report import format_latency

__all__ = ["StepProgress"]


class StepProgress:
    """Progress bars for a run's steps; does nothing when ``enabled`` is false."""

    def __init__(self, console: Console, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled
        self.live = enabled and console.is_terminal
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[clock]}"),
            TextColumn("{task.fields[stats]}"),
            console=console,
            auto_refresh=False,
            transient=False,
        )
        self._task: TaskID | None = None
        self._label = ""
        self._start_ns = 0
        self._warmup_s = 0.0
        self._total_s = 0.0

    def __enter__(self) -> StepProgress:
        if self.live:
            self.progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.live:
            self.progress.stop()

    def begin(self, label: str, start_ns: int, warmup_s: float, duration_s: float) -> None:
        """A new step starts at ``start_ns``: add its bar."""
        self._label = label
        self._start_ns = start_ns
        self._warmup_s = warmup_s
        self._total_s = warmup_s + duration_s
        if not self.enabled:
            return
        if not self.live:
            self.console.print(
                f"{label}: {warmup_s:g} s warm-up, {duration_s:g} s measured", highlight=False
            )
            return
        self._task = self.progress.add_task(
            label, total=self._total_s, clock="", stats="connecting"
        )
        self.progress.refresh()

    def update(self, report: ProgressReport) -> None:
        """Show a report from the running step."""
        if not self.live or self._task is None:
            return
        elapsed = min(max((perf_counter_ns() - self._start_ns) / 1e9, 0.0), self._total_s)
        if report.measured_s <= 0:
            stats = "warming up"
        else:
            rate = report.completed / report.measured_s
            p50 = float(np.median(report.sample_ns)) / 1000 if len(report.sample_ns) else 0.0
            stats = f"{rate:,.0f} req/s  p50 {format_latency(p50)}"
            if report.errors:
                stats += f"  [red]{report.errors} errors[/red]"
        self.progress.update(
            self._task, completed=elapsed, clock=f"{elapsed:.1f}/{self._total_s:.1f} s", stats=stats
        )
        self.progress.refresh()

    def end(self, requests_per_s: float, p50_us: float, errors: int) -> None:
        """The step is over: show its final numbers on its bar."""
        if not self.live or self._task is None:
            return
        stats = f"{requests_per_s:,.0f} req/s  p50 {format_latency(p50_us)}"
        if errors:
            stats += f"  [red]{errors} errors[/red]"
        self.progress.update(
            self._task,
            completed=self._total_s,
            clock=f"{self._total_s:.1f}/{self._total_s:.1f} s",
            stats=stats,
        )
        self.progress.refresh()
        self._task = None
