"""Counting the requests a surface is answering, so shutdown can wait for there to be none."""

from __future__ import annotations

import asyncio

__all__ = ["Inflight"]


class Inflight:
    """Requests being answered, and who waits for there to be none (only at shutdown)."""

    __slots__ = ("_waiters", "count")

    def __init__(self) -> None:
        self.count = 0
        self._waiters: list[asyncio.Future[None]] = []

    def done(self) -> None:
        """One request finished."""
        self.count -= 1
        if self.count == 0 and self._waiters:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._waiters.clear()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight; False if ``timeout`` passed first."""
        if self.count == 0:
            return True
        idle: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(idle)
        done, _ = await asyncio.wait({idle}, timeout=timeout)
        return bool(done)
