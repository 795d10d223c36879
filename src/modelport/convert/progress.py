"""Progress of a step's phases: a spinner while one runs, then a line with its time.

The display goes to standard error, so standard output holds only the tables.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

__all__ = ["Phases"]


class Phases:
    """Shows each phase (``with phases("Exporting to ONNX"): ...``); silent when not enabled."""

    def __init__(self, console: Console, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled

    @contextmanager
    def __call__(self, description: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        start = time.perf_counter()
        if self.console.is_terminal:
            with self.console.status(f"{description} ..."):
                yield
        else:
            yield
        elapsed = time.perf_counter() - start
        self.console.print(f"[dim]{description}: done in {elapsed:.1f} s[/]", highlight=False)
