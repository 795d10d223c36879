"""A lean HTTP/1.1 client connection for load generation: keep-alive, one request in flight.

``HttpConnection`` is an asyncio ``Protocol``: it writes the same pre-encoded request bytes every
time, feeds what arrives to httptools' response parser, and reports each finished answer to its
``ConnectionOwner`` from inside the parser's callback, with no future, task or coroutine per
request. The owner (a load mode in ``modes.py``) decides what to send next.

A gRPC client would be another class with the same ``send``/``abort`` surface, reporting to the
same ``ConnectionOwner``.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Protocol, cast

import httptools

from modelport.bench.settings import Target

__all__ = ["ConnectionOwner", "HttpConnection", "open_connection"]


class ConnectionOwner(Protocol):
    """What a connection reports to: the load mode that drives it."""

    def completed(self, connection: HttpConnection, status: int) -> None:
        """An answer arrived in full; ``connection.body`` holds its body until the next send."""

    def failed(self, connection: HttpConnection, kind: str) -> None:
        """The request failed in a way that ends the connection (``kind`` names it)."""

    def lost(self, connection: HttpConnection) -> None:
        """The connection closed; a request still in flight on it has failed."""


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection that sends ``request`` whenever its owner says so."""

    def __init__(self, owner: ConnectionOwner, request: bytes) -> None:
        self.owner = owner
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        #: A request is in flight.
        self.busy = False
        #: When the request in flight counts from: its send time, or its scheduled time.
        self.start_ns = 0
        #: When the request in flight was written, for the timeout.
        self.sent_ns = 0
        #: The server allows another request on this connection.
        self.reusable = True
        #: The body of the last answer, in the pieces it came in.
        self.body: list[bytes] = []

    # ---- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport; turn off Nagle's algorithm so small requests leave at once."""
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        """Feed the parser; it calls ``on_body`` and ``on_message_complete``."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.busy = False
            self.owner.failed(self, "invalid HTTP")
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        """Tell the owner; it counts a request in flight as failed and may reconnect."""
        self.transport = None
        self.reusable = False
        self.owner.lost(self)

    # ---- httptools callbacks -------------------------------------------------------------

    def on_body(self, body: bytes) -> None:
        """Keep the body: the owner reads it for ``--check`` and for error messages."""
        self.body.append(body)

    def on_message_complete(self) -> None:
        """An answer is complete: report it, with its status."""
        self.busy = False
        self.reusable = self.parser.should_keep_alive()
        self.owner.completed(self, self.parser.get_status_code())

    # ---- driven by the owner -------------------------------------------------------------

    def send(self, start_ns: int, sent_ns: int) -> None:
        """Write the request; its latency counts from ``start_ns``."""
        self.busy = True
        self.start_ns = start_ns
        self.sent_ns = sent_ns
        self.body.clear()
        assert self.transport is not None
        self.transport.write(self.request)

    @property
    def open(self) -> bool:
        """The connection can take a request now."""
        return self.transport is not None and self.reusable and not self.busy

    def abort(self) -> None:
        """Close at once, dropping anything in flight (``lost`` follows)."""
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Close after anything already written has been sent."""
        if self.transport is not None:
            self.transport.close()


async def open_connection(target: Target, owner: ConnectionOwner, request: bytes) -> HttpConnection:
    """Connect to ``target``; raises ``OSError`` if it cannot."""
    loop = asyncio.get_running_loop()
    _, connection = await loop.create_connection(
        lambda: HttpConnection(owner, request), target.host, target.port
    )
    return connection
