"""Polling the repository and handing each scan to the manager.

**When a version folder counts as complete.** A version folder is loaded once its contents (the
path, size and modification time of every file in it) are the same in two consecutive scans, one
poll interval apart. A folder that is still being copied therefore waits; the first scan at
start-up takes the repository as it is. The safest way to publish a version is still to copy it
under a name that is not a number (``.incoming-3``) and rename it to ``3`` when complete: a rename
is atomic, and folders not named by a number are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from modelport.lifecycle.manager import ModelManager
from modelport.lifecycle.repository import Fingerprint, RepositorySource, ScanError

__all__ = ["RepositoryWatcher"]

log = logging.getLogger(__name__)


class RepositoryWatcher:
    """Scans ``source`` every ``poll_interval_s`` seconds (0 or less: only once, at start-up)."""

    def __init__(
        self, source: RepositorySource, manager: ModelManager, poll_interval_s: float
    ) -> None:
        self._source = source
        self._manager = manager
        self._poll_interval_s = poll_interval_s
        self._previous: dict[tuple[str, int], Fingerprint] = {}
        self._last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def scan(self, *, initial: bool = False) -> None:
        """Scan once and apply the result; a scan that fails leaves everything as it was.

        ``initial`` takes every version folder as complete (at start-up, and when a model is
        loaded on request), instead of waiting for a second scan to see it unchanged.
        """
        async with self._lock:
            await self._scan(initial)

    async def _scan(self, initial: bool) -> None:
        loop = asyncio.get_running_loop()
        try:
            sources = await loop.run_in_executor(None, self._source.scan)
        except ScanError as exc:
            if str(exc) != self._last_error:
                log.error("%s; keeping the models loaded now", exc)
                self._last_error = str(exc)
            return
        if self._last_error is not None:
            log.info("%s is readable again", self._source.describe())
            self._last_error = None
        current = {
            (name, version): folder.fingerprint
            for name, source in sources.items()
            for version, folder in source.versions.items()
        }
        stable = {
            key for key, print_ in current.items() if initial or self._previous.get(key) == print_
        }
        self._previous = current
        await self._manager.apply(sources, stable)

    def start(self) -> None:
        """Start polling in the background (after the initial scan)."""
        if self._poll_interval_s > 0 and self._task is None:
            self._task = asyncio.create_task(self._poll(), name="repository-watcher")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval_s)
            try:
                await self.scan()
            except Exception:  # a bug in one scan must not stop polling for good
                log.exception("scanning %s failed", self._source.describe())

    async def stop(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
