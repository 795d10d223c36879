"""The HTTP/1.1 listener: connections parsed with httptools on the event loop's transports.

modelport answers HTTP itself rather than through an ASGI server because the request path is
its product: a response goes out in one write (status line, headers and body together), no
per-request message dictionaries or header re-validation are built, and the limits a model
server needs are enforced here, before any work:

- a body whose ``Content-Length`` is over ``max_body_bytes`` is answered 413 and the connection
  closed without reading it; a chunked body is cut off as soon as it passes the limit;
- a client that sends its headers slower than ``header_timeout_s``, or its body slower than
  ``body_timeout_s``, gets 408 and is disconnected (slow-client defence);
- idle keep-alive connections close after ``keep_alive_timeout_s``;
- pipelined requests are answered in order, and reading pauses when too many are queued.

Requests are handed to a ``RequestHandler`` (``protocols.http.HttpApp``) as ``HttpRequest``
values; what comes back is written as is.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import http
import logging
import socket
import time
from dataclasses import dataclass
from typing import Protocol, cast

import httptools
import orjson

from modelport.protocols.errors import internal_error_response
from modelport.protocols.http import HttpRequest
from modelport.protocols.wire import HttpResponse

__all__ = ["HttpLimits", "HttpListener", "RequestHandler"]

log = logging.getLogger(__name__)

_STATUS_LINES = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode()
    for status in http.HTTPStatus
}
_NEVER = float("inf")
#: Responses bigger than this go out as two buffers instead of being copied into one.
_COPY_LIMIT = 64 * 1024


class RequestHandler(Protocol):
    """What answers requests: ``protocols.http.HttpApp``."""

    async def handle(self, request: HttpRequest) -> HttpResponse:
        """Answer one request; never raise."""
        ...


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Bounds on what one connection may send and how slowly."""

    max_body_bytes: int = 64 * 1024 * 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_timeout_s: float = 75.0
    max_pipelined: int = 16


class _Date:
    """The Date header value, formatted at most once a second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def header(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = (
                b"date: "
                + time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)).encode()
                + b"\r\n"
            )
        return self._value


_DATE = _Date()


def _head(response: HttpResponse, body_length: int, close: bool) -> bytes:
    status_line = _STATUS_LINES.get(response.status) or f"HTTP/1.1 {response.status} \r\n".encode()
    parts = [
        status_line,
        _DATE.header(),
        b"content-type: ",
        response.content_type,
        b"\r\ncontent-length: ",
        str(body_length).encode(),
        b"\r\n",
    ]
    for name, value in response.headers:
        if name != b"connection":
            parts += [name, b": ", value, b"\r\n"]
    if close:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def _plain_error(status: int, message: str) -> HttpResponse:
    return HttpResponse(status, orjson.dumps({"error": message}))


class _Connection(asyncio.Protocol):
    """One client connection: parses requests, answers them in order, enforces the limits."""

    def __init__(self, listener: HttpListener) -> None:
        self._listener = listener
        self._limits = listener.limits
        self._loop = listener.loop
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._queue: collections.deque[tuple[HttpRequest, bool]] = collections.deque()
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._reading_paused = False
        self.deadline = _NEVER
        # The request being parsed.
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._body_size = 0
        self._rejected = False
        self._parsing = False  # between the first byte of a request and its end

    # ---- transport events --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):  # not TCP (a UNIX socket)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.deadline = self._loop.time() + self._limits.header_timeout_s
        self._listener.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._queue.clear()
        if self._task is not None and not self._task.done():
            # Nobody will read the answer: a request still queued for its turn is dropped.
            self._task.cancel()
        self._listener.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, "protocol upgrades are not supported")
        except httptools.HttpParserError:
            self._reject(400, "malformed HTTP request")

    # ---- parser callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._body = []
        self._body_size = 0
        self._rejected = False
        self._parsing = True
        self.deadline = self._loop.time() + self._limits.header_timeout_s

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.deadline = self._loop.time() + self._limits.body_timeout_s
        expect_continue = False
        for name, value in self._headers:
            if name == b"content-length":
                if value.isdigit() and int(value) > self._limits.max_body_bytes:
                    self._reject(413, self._too_large())
                    return
            elif name == b"expect" and value.lower() == b"100-continue":
                expect_continue = True
        if expect_continue and self._transport is not None:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self._rejected:
            return
        self._body_size += len(body)
        if self._body_size > self._limits.max_body_bytes:
            self._reject(413, self._too_large())
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._parsing = False
        if self._rejected or self._closing:
            return
        parts = self._body
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        path = self._url.partition(b"?")[0].decode("latin-1")
        method = self._parser.get_method().decode("ascii")
        request = HttpRequest(method, path, self._headers, body)
        self._body = []
        self._queue.append((request, self._parser.should_keep_alive()))
        self.deadline = _NEVER
        if not self._busy:
            self._next()
        elif len(self._queue) >= self._limits.max_pipelined and self._transport is not None:
            self._transport.pause_reading()
            self._reading_paused = True

    # ---- answering ---------------------------------------------------------------------

    def _next(self) -> None:
        request, keep_alive = self._queue.popleft()
        self._busy = True
        if self._reading_paused and self._transport is not None:
            self._transport.resume_reading()
            self._reading_paused = False
        self._task = self._loop.create_task(self._answer(request, keep_alive))

    async def _answer(self, request: HttpRequest, keep_alive: bool) -> None:
        try:
            response = await self._listener.handler.handle(request)
        except Exception:  # the handler promises not to raise; stay safe if it does
            log.exception("unexpected error answering %s %s", request.method, request.path)
            response = internal_error_response()
        close = (
            not keep_alive
            or self._listener.closing
            or (b"connection", b"close") in (response.headers)
        )
        self._write(response, close, head_only=request.method == "HEAD")
        self._busy = False
        if close:
            self._close()
        elif self._queue:
            self._next()
        elif not self._parsing:  # a request under way keeps its own, shorter, deadline
            self.deadline = self._loop.time() + self._limits.keep_alive_timeout_s

    def _write(self, response: HttpResponse, close: bool, head_only: bool = False) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        body = response.body
        head = _head(response, len(body), close)
        if head_only:
            transport.write(head)
        elif len(body) > _COPY_LIMIT:
            transport.writelines((head, body))
        else:
            transport.write(head + body)

    def _reject(self, status: int, message: str) -> None:
        """Answer an error at once and close, whatever else is queued."""
        self._rejected = True
        self._queue.clear()
        self._write(_plain_error(status, message), close=True)
        self._close()

    def _too_large(self) -> str:
        return (
            f"the request body is larger than the limit of {self._limits.max_body_bytes} bytes; "
            "send less data per request or raise --max-body-bytes"
        )

    def _close(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    # ---- housekeeping ------------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Close the connection if it passed its deadline while not answering a request."""
        if self._busy or now < self.deadline or self._closing:
            return
        if self._parsing:
            self._reject(408, "the request took too long to arrive")
        else:
            self._close()

    def close_when_idle(self) -> None:
        """Close now if idle; otherwise after the response being prepared."""
        if not self._busy and not self._queue:
            self._close()


class HttpListener:
    """Accepts connections on a socket and serves them until ``close``."""

    def __init__(self, handler: RequestHandler, limits: HttpLimits) -> None:
        self.handler = handler
        self.limits = limits
        self.connections: set[_Connection] = set()
        self.closing = False
        self.loop = asyncio.get_running_loop()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, sock: socket.socket) -> None:
        """Start accepting on ``sock`` (bound, not yet listening)."""
        self._server = await self.loop.create_server(
            lambda: _Connection(self), sock=sock, backlog=2048
        )
        self._sweeper = self.loop.create_task(self._sweep(), name="http-timeouts")

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = self.loop.time()
            for connection in list(self.connections):
                connection.expire(now)

    async def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, close idle connections, and give busy ones ``timeout`` to finish."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.close_when_idle()
        deadline = self.loop.time() + timeout
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            connection._close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            await self._server.wait_closed()
