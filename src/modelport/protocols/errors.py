"""Rendering the error tree over HTTP: the class's status and a ``{"error": message}`` body."""

from __future__ import annotations

import math

import orjson

from modelport.errors import MethodNotAllowed, ModelportError, Overloaded, PayloadTooLarge
from modelport.protocols.wire import HttpResponse

__all__ = ["error_response", "internal_error_response"]

_INTERNAL = orjson.dumps({"error": "internal server error; the server log has the details"})


def error_response(exc: ModelportError) -> HttpResponse:
    """The HTTP answer for a modelport error."""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    if isinstance(exc, Overloaded):
        headers = ((b"retry-after", str(max(1, math.ceil(exc.retry_after_s))).encode()),)
    elif isinstance(exc, MethodNotAllowed) and exc.allowed:
        headers = ((b"allow", ", ".join(exc.allowed).encode()),)
    elif isinstance(exc, PayloadTooLarge):
        # The rest of an oversized body is never read: close instead of reusing the connection.
        headers = ((b"connection", b"close"),)
    return HttpResponse(exc.http_status, orjson.dumps({"error": exc.message}), headers=headers)


def internal_error_response() -> HttpResponse:
    """The answer to an unexpected exception: generic, with no details of the server."""
    return HttpResponse(500, _INTERNAL)
