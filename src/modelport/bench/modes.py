"""The two load modes: closed loop (fixed concurrency) and open loop (fixed request rate).

Both drive ``HttpConnection`` objects through callbacks. ``ClosedLoop`` keeps N connections with
one request each in flight, sending the next the moment an answer arrives; latency counts from the
send. ``OpenLoop`` sends on a schedule whatever the answers do, from a pool of connections that
grows on demand up to ``max_connections``; latency counts from the *scheduled* time, so a slow
server or a busy client shows up in the numbers instead of silently lowering the load.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
from collections import deque
from dataclasses import dataclass
from time import perf_counter_ns

from modelport.bench.client import HttpConnection, open_connection
from modelport.bench.encoding import ResponseCheck
from modelport.bench.measure import Recorder
from modelport.bench.server import error_message
from modelport.bench.settings import Target

__all__ = ["ClosedLoop", "LoadMode", "OpenLoop", "StepPlan"]

_SWEEP_S = 0.1  # how often in-flight requests are checked against the timeout
_RETRY_S = 0.1  # wait between attempts to replace a lost connection
_SPIN_NS = 1_500_000  # closer than this to the next send, the scheduler polls instead of sleeping


def _yield_cpu() -> None:
    if hasattr(os, "sched_yield"):
        os.sched_yield()


@dataclass(frozen=True)
class StepPlan:
    """What one process does in one step; times are ``perf_counter_ns`` values.

    ``concurrency`` > 0 selects the closed loop, else ``rate`` (requests/s for this process) the
    open loop, whose schedule is shifted by ``phase`` of an interval so that several processes
    interleave their sends.
    """

    target: Target
    request: bytes
    check: ResponseCheck
    start_ns: int
    measure_ns: int
    end_ns: int
    concurrency: int = 0
    rate: float = 0.0
    phase: float = 0.0
    distribution: str = "constant"
    seed: int = 0
    max_connections: int = 256
    timeout_s: float = 10.0
    check_every: int = 0


class LoadMode:
    """Connection management, answer accounting, timeouts and draining shared by both modes."""

    def __init__(self, plan: StepPlan, recorder: Recorder) -> None:
        self.plan = plan
        self.recorder = recorder
        self.loop = asyncio.get_running_loop()
        self.connections: set[HttpConnection] = set()
        self.in_flight = 0
        self.started = False
        self.stopping = False
        self.finished: asyncio.Future[None] = self.loop.create_future()
        #: Connections being opened in the background.
        self.connecting = 0
        self._timeout_ns = int(plan.timeout_s * 1e9)
        self._answers = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- connections ---------------------------------------------------------------------

    async def connect(self, count: int) -> None:
        """Open ``count`` connections at once; failures count as errors and are retried."""
        results = await asyncio.gather(
            *(open_connection(self.plan.target, self, self.plan.request) for _ in range(count)),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, HttpConnection):
                self._adopt(result)
            else:
                self.recorder.error("connection error", str(result))
                self.replace()

    def _adopt(self, connection: HttpConnection) -> None:
        self.connections.add(connection)
        self.recorder.connections = max(self.recorder.connections, len(self.connections))
        if self.started and not self.stopping:
            self.ready(connection)

    def replace(self) -> None:
        """Open a new connection in the background, retrying until the step stops."""
        self.connecting += 1
        task = self.loop.create_task(self._replace())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _replace(self) -> None:
        connection = None
        try:
            while connection is None and not self.stopping:
                try:
                    connection = await open_connection(self.plan.target, self, self.plan.request)
                except OSError as exc:
                    self.recorder.error("connection error", str(exc))
                    await asyncio.sleep(_RETRY_S)
        finally:
            self.connecting -= 1
        if connection is not None and self.stopping:
            connection.close()
        elif connection is not None:
            self._adopt(connection)

    # ---- ConnectionOwner -------------------------------------------------------------------

    def completed(self, connection: HttpConnection, status: int) -> None:
        """Record the answer's latency (or its error), then let the mode send again."""
        now = perf_counter_ns()
        self.in_flight -= 1
        if status != 200:
            body = b"".join(connection.body)
            self.recorder.error(f"HTTP {status}", error_message(body, 300))
        elif self._good(connection) and self.recorder.measuring:
            self.recorder.add(now - connection.start_ns)
        if self.stopping:
            if not self.in_flight:
                self.finish()
        elif connection.reusable:
            self.next(connection)

    def _good(self, connection: HttpConnection) -> bool:
        every = self.plan.check_every
        if not every:
            return True
        self._answers += 1
        if self._answers % every:
            return True
        problem = self.plan.check(b"".join(connection.body))
        if problem is not None:
            self.recorder.error("invalid answer", problem)
            return False
        return True

    def failed(self, connection: HttpConnection, kind: str) -> None:
        """A protocol-level failure: counted; the connection is about to close."""
        self.in_flight -= 1
        self.recorder.error(kind)

    def lost(self, connection: HttpConnection) -> None:
        """A connection closed: count a request in flight as failed, and replace it."""
        self.connections.discard(connection)
        self.forget(connection)
        if connection.busy:
            connection.busy = False
            self.in_flight -= 1
            self.recorder.error("connection closed", "the server closed the connection")
        if self.stopping:
            if not self.in_flight:
                self.finish()
        elif self.wants_replacement():
            self.replace()

    # ---- timeouts and the end of the step ------------------------------------------------

    def sweep(self) -> None:
        """Abort requests in flight for longer than the timeout; runs every 0.1 s."""
        if self.finished.done():
            return
        limit = perf_counter_ns() - self._timeout_ns
        for connection in list(self.connections):
            if connection.busy and connection.sent_ns < limit:
                connection.busy = False
                self.in_flight -= 1
                self.recorder.error("timeout", f"no answer within {self.plan.timeout_s:g} s")
                connection.abort()
        self.loop.call_later(_SWEEP_S, self.sweep)

    def stop(self) -> None:
        """Send nothing more; finish when the requests in flight are answered."""
        self.stopping = True
        self.recorder.end()
        if not self.in_flight:
            self.finish()
        else:
            self.loop.call_later(self.plan.timeout_s, self.finish)

    def finish(self) -> None:
        """Close every connection and wake ``run_step``."""
        if self.finished.done():
            return
        for connection in list(self.connections):
            connection.close()
        for task in list(self._tasks):
            task.cancel()
        self.finished.set_result(None)

    # ---- what each mode decides ----------------------------------------------------------

    async def open(self) -> None:
        """Open the step's first connections."""
        raise NotImplementedError

    def start(self) -> None:
        """Begin sending."""
        self.started = True
        self.loop.call_later(_SWEEP_S, self.sweep)

    def ready(self, connection: HttpConnection) -> None:
        """A new connection joined after the start."""
        raise NotImplementedError

    def next(self, connection: HttpConnection) -> None:
        """An answer arrived on ``connection``, which can take another request."""
        raise NotImplementedError

    def forget(self, connection: HttpConnection) -> None:
        """``connection`` closed: drop any reference the mode keeps to it."""

    def wants_replacement(self) -> bool:
        """Whether a closed connection should be replaced."""
        return True


class ClosedLoop(LoadMode):
    """``concurrency`` connections, each sending its next request as soon as it is answered."""

    async def open(self) -> None:
        """Open one connection per unit of concurrency."""
        await self.connect(self.plan.concurrency)

    def start(self) -> None:
        """Send the first request on every connection."""
        super().start()
        for connection in list(self.connections):
            self.next(connection)

    def ready(self, connection: HttpConnection) -> None:
        """A replacement connection starts sending at once."""
        self.next(connection)

    def next(self, connection: HttpConnection) -> None:
        """Send again, timed from now."""
        now = perf_counter_ns()
        self.in_flight += 1
        connection.send(now, now)


class OpenLoop(LoadMode):
    """Requests at ``rate`` per second on a fixed or Poisson schedule, answered or not."""

    def __init__(self, plan: StepPlan, recorder: Recorder) -> None:
        super().__init__(plan, recorder)
        self.interval_ns = 1e9 / plan.rate
        self.idle: list[HttpConnection] = []
        self.pending: deque[int] = deque()
        self._next_ns = float(plan.start_ns) + plan.phase * self.interval_ns
        self._random = random.Random(plan.seed)
        self._poisson = plan.distribution == "poisson"

    async def open(self) -> None:
        """Start with about one connection per 1000 requests/s; more open when needed."""
        first = min(self.plan.max_connections, math.ceil(self.plan.rate / 1000) + 1)
        await self.connect(first)

    def start(self) -> None:
        """Run the scheduler."""
        super().start()
        self.idle = [c for c in self.connections if c.open]
        self.tick()

    def tick(self) -> None:
        """Send every request whose time has come, then wait for the next one."""
        if self.stopping:
            return
        now = perf_counter_ns()
        due = self._next_ns
        end = self.plan.end_ns
        while due <= now:
            if due >= end:
                return
            self.dispatch(int(due), now)
            due += self._gap()
        self._next_ns = due
        wait = due - perf_counter_ns()
        if wait > _SPIN_NS:
            self.loop.call_later((wait - _SPIN_NS + 200_000) / 1e9, self.tick)
        else:  # event loops sleep in whole milliseconds: poll, letting others use the CPU
            _yield_cpu()
            self.loop.call_soon(self.tick)

    def _gap(self) -> float:
        if self._poisson:
            return self._random.expovariate(1.0) * self.interval_ns
        return self.interval_ns

    def dispatch(self, scheduled_ns: int, now_ns: int) -> None:
        """Send the request scheduled for ``scheduled_ns``, or queue it for a connection.

        ``now_ns - scheduled_ns`` is how late the scheduler itself is: the client's own delay,
        as opposed to waiting for a free connection.
        """
        recorder = self.recorder
        if scheduled_ns >= self.plan.measure_ns:
            recorder.sent += 1
            recorder.send_lag(now_ns - scheduled_ns)
        if self.idle:
            self._send(self.idle.pop(), scheduled_ns)
            if not self.idle:
                self._open_spare()  # keep one connection ready for the next request
            return
        self.pending.append(scheduled_ns)
        if recorder.measuring:
            recorder.connection_waits += 1
        if self.connecting < len(self.pending):
            self._open_spare()

    def _open_spare(self) -> None:
        if len(self.connections) + self.connecting < self.plan.max_connections:
            self.replace()

    def _send(self, connection: HttpConnection, scheduled_ns: int) -> None:
        self.in_flight += 1
        connection.send(scheduled_ns, perf_counter_ns())

    def ready(self, connection: HttpConnection) -> None:
        """A new connection takes the oldest queued request, or waits."""
        self.next(connection)

    def next(self, connection: HttpConnection) -> None:
        """Take the oldest queued request, or wait in the idle pool."""
        if self.pending:
            self._send(connection, self.pending.popleft())
        else:
            self.idle.append(connection)

    def forget(self, connection: HttpConnection) -> None:
        """Drop a closed connection from the idle pool."""
        if connection in self.idle:
            self.idle.remove(connection)

    def wants_replacement(self) -> bool:
        """Replace a closed connection only when requests wait for one."""
        return bool(self.pending)

    def stop(self) -> None:
        """Drop the requests still waiting for a connection, and drain the rest."""
        measure = self.plan.measure_ns
        self.recorder.unsent = sum(1 for scheduled in self.pending if scheduled >= measure)
        self.pending.clear()
        super().stop()
