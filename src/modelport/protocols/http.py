"""The HTTP front door: routes requests to the protocol adapters.

``HttpApp.handle`` answers an ``HttpRequest`` whose body the listener has read (within the size
limit); the same application also runs as an ASGI app. It is deliberately thin, because every
microsecond here is paid on every request:

- it matches the path against each protocol surface's routes (raw, still percent-encoded, path);
- it checks the body's Content-Type against the route's list, and inflates a gzip or deflate
  body, refusing it with 413 as soon as it grows past the limit (as an ASGI app, it also refuses
  a body over the limit from ``Content-Length`` before reading it);
- it answers 503 to new requests while the server drains, except on the health endpoints;
- it turns every ``ModelportError`` into an answer in the shape of the surface that owns the path
  (``{"error": ...}`` unless the mount renders errors its own way), and any other exception into
  a generic 500 (the traceback goes to the server log, never to the client).
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelport.errors import (
    InvalidInput,
    ModelportError,
    NotFound,
    PayloadTooLarge,
    ShuttingDown,
    UnsupportedMediaType,
)
from modelport.protocols.errors import error_response
from modelport.protocols.inflight import Inflight
from modelport.protocols.wire import HttpResponse

__all__ = ["BODY_CONTENT_TYPES", "HttpApp", "HttpRequest", "HttpResponse", "Mount", "Route"]

log = logging.getLogger(__name__)

ASGIReceive = Callable[[], Awaitable[dict[str, Any]]]
ASGISend = Callable[[dict[str, Any]], Awaitable[None]]

#: Request Content-Types read as JSON or the V2 binary extension. curl's default form type is
#: accepted because TF Serving tutorials post JSON with ``curl -d``.
BODY_CONTENT_TYPES = frozenset(
    {
        b"",
        b"application/json",
        b"application/octet-stream",
        b"application/x-www-form-urlencoded",
        b"text/plain",
    }
)


@dataclass(slots=True)
class HttpRequest:
    """One HTTP request as the adapters see it. ``path`` is the raw, percent-encoded path."""

    method: str
    path: str
    headers: Sequence[tuple[bytes, bytes]]
    body: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header; ``name`` in lower case."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


Handler = Callable[[HttpRequest, "re.Match[str]"], Awaitable[HttpResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """A path pattern and the handler for each HTTP method it accepts."""

    pattern: re.Pattern[str]
    handlers: Mapping[str, Handler]
    #: Health endpoints keep answering while the server drains.
    during_drain: bool = False
    #: The body Content-Types (lower case, without parameters) the route reads; others get 415.
    #: ``None`` takes any type: the handler reads the Content-Type itself.
    content_types: frozenset[bytes] | None = BODY_CONTENT_TYPES


@dataclass(frozen=True, slots=True)
class Mount:
    """One protocol surface: the paths it owns, its routes, and its answer to unknown paths."""

    owns: Callable[[str], bool]
    routes: Sequence[Route]
    unmatched: Callable[[str, str, tuple[str, ...]], ModelportError]
    """Error for a request no route takes: (method, path, methods the path takes, if any)."""
    render_error: Callable[[ModelportError], HttpResponse] = error_response
    """The answer for an error on one of the mount's paths, raised by a handler or by the app
    (draining, body size, Content-Type, unmatched path)."""


class HttpApp:
    """Routes HTTP requests to the protocol surfaces; usable directly or as an ASGI app."""

    def __init__(
        self,
        mounts: Sequence[Mount],
        *,
        max_body_bytes: int,
        is_draining: Callable[[], bool],
    ) -> None:
        self._mounts = tuple(mounts)
        self._max_body = max_body_bytes
        self._is_draining = is_draining
        self._inflight = Inflight()
        self._route_cache: dict[tuple[str, str], tuple[Route, re.Match[str]]] = {}

    @property
    def inflight(self) -> int:
        """Requests being answered now."""
        return self._inflight.count

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight; False if ``timeout`` passed first."""
        return await self._inflight.wait_idle(timeout)

    async def handle(self, request: HttpRequest) -> HttpResponse:
        """Answer one request whose body has been read (up to the limit). Never raises."""
        inflight = self._inflight
        inflight.count += 1
        try:
            return await self._respond(request)
        finally:
            inflight.done()

    async def _respond(self, request: HttpRequest) -> HttpResponse:
        method = request.method
        try:
            route, match = self._match(method, request.path)
            if self._is_draining() and not route.during_drain:
                raise ShuttingDown(
                    "the server is shutting down; send the request to another replica"
                )
            if method in ("POST", "PUT"):
                request.body = self._decode_body(request.headers, request.body, route.content_types)
            return await route.handlers[method](request, match)
        except ModelportError as exc:
            return self._error(request.path, exc)
        except Exception:
            log.exception("unexpected error answering %s %s", method, request.path)
            return self._error(request.path, _INTERNAL)

    def _error(self, path: str, exc: ModelportError) -> HttpResponse:
        """The error answer in the shape of the mount that owns ``path`` (off the hot path)."""
        for mount in self._mounts:
            if mount.owns(path):
                return mount.render_error(exc)
        return error_response(exc)

    async def __call__(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        """The same application as an ASGI app, for any ASGI server."""
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        method: str = scope["method"]
        raw_path: bytes | None = scope.get("raw_path")
        path = raw_path.decode("latin-1").partition("?")[0] if raw_path else scope["path"]
        headers = scope["headers"]
        body = b""
        if method in ("POST", "PUT"):
            try:
                body = await self._receive_body(headers, receive)
            except ModelportError as exc:
                await _send(send, self._error(path, exc))
                return
        response = await self.handle(HttpRequest(method, path, headers, body))
        await _send(send, response)

    def _match(self, method: str, path: str) -> tuple[Route, re.Match[str]]:
        key = (method, path)
        found = self._route_cache.get(key)
        if found is None:
            found = self._match_uncached(method, path)
            if len(self._route_cache) < _ROUTE_CACHE_SIZE:
                self._route_cache[key] = found
        return found

    def _match_uncached(self, method: str, path: str) -> tuple[Route, re.Match[str]]:
        for mount in self._mounts:
            if not mount.owns(path):
                continue
            allowed: list[str] = []
            for route in mount.routes:
                match = route.pattern.fullmatch(path)
                if match is None:
                    continue
                if method in route.handlers:
                    return route, match
                allowed.extend(route.handlers)
            raise mount.unmatched(method, path, tuple(sorted(allowed)))

        raise _NOT_FOUND

    async def _receive_body(
        self, headers: Sequence[tuple[bytes, bytes]], receive: ASGIReceive
    ) -> bytes:
        for key, value in headers:
            if key == b"content-length" and value.isdigit() and int(value) > self._max_body:
                raise _too_large(self._max_body)
        return await _receive_body(receive, self._max_body)

    def _decode_body(
        self,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        content_types: frozenset[bytes] | None,
    ) -> bytes:
        """Check the Content-Type and undo any Content-Encoding, within the size limit."""
        content_type = b""
        encoding = b""
        for key, value in headers:
            if key == b"content-type":
                content_type = value.partition(b";")[0].strip().lower()
            elif key == b"content-encoding":
                encoding = value.strip().lower()
        if content_types is not None and content_type not in content_types:
            raise UnsupportedMediaType(
                f"Content-Type {content_type.decode('latin-1')!r} is not supported; send "
                "application/json, or application/octet-stream with the binary tensor extension"
            )
        if encoding in (b"", b"identity"):
            return body
        return _decompress(body, encoding, self._max_body)


_NOT_FOUND = NotFound("Not Found")
#: What an unexpected exception becomes: generic, with no details of the server.
_INTERNAL = ModelportError("internal server error; the server log has the details")
#: Matched (method, path) pairs remembered, so repeated requests skip the regular expressions.
_ROUTE_CACHE_SIZE = 4096


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body is larger than the limit of {limit} bytes; send less data per "
        "request or raise --max-body-bytes"
    )


async def _receive_body(receive: ASGIReceive, limit: int) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if len(body) > limit:
        raise _too_large(limit)
    if not message.get("more_body", False):
        return body
    chunks = [body]

    total = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidInput("the client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _decompress(body: bytes, encoding: bytes, limit: int) -> bytes:
    """Inflate a gzip or deflate (zlib) body, refusing output past ``limit`` as it grows."""
    if encoding == b"gzip":
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == b"deflate":
        decoder = zlib.decompressobj(zlib.MAX_WBITS)
    else:
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding.decode('latin-1')!r} is not supported; use gzip or deflate"
        )
    try:
        out = decoder.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"the body is not valid {encoding.decode()} data: {exc}") from exc
    if len(out) > limit or decoder.unconsumed_tail:
        raise _too_large(limit)
    if not decoder.eof:
        raise InvalidInput(f"the {encoding.decode()} body is truncated")
    return out


async def _send(send: ASGISend, response: HttpResponse) -> None:
    headers = [
        (b"content-type", response.content_type),
        (b"content-length", str(len(response.body)).encode()),
        *response.headers,
    ]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


async def _lifespan(receive: ASGIReceive, send: ASGISend) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
