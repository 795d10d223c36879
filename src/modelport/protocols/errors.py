"""Rendering the error tree over HTTP: the class's status and a ``{"error": message}`` body.

Surfaces with an error body of their own (TorchServe's) keep the status and ``error_headers``.
"""

from __future__ import annotations

import math

import orjson

from modelport.errors import MethodNotAllowed, ModelportError, Overloaded, PayloadTooLarge
from modelport.protocols.wire import HttpResponse

__all__ = ["error_headers", "error_response", "internal_error_response"]

_INTERNAL = orjson.dumps({"error": "internal server error; the server log has the details"})


def error_response(exc: ModelportError) -> HttpResponse:
    """The HTTP answer for a modelport error."""
    body = orjson.dumps({"error": exc.message})
    return HttpResponse(exc.http_status, body, headers=error_headers(exc))


def error_headers(exc: ModelportError) -> tuple[tuple[bytes, bytes], ...]:
    """The headers an error's answer carries, whatever the shape of its body."""
    if isinstance(exc, Overloaded):
        return ((b"retry-after", str(max(1, math.ceil(exc.retry_after_s))).encode()),)
    if isinstance(exc, MethodNotAllowed) and exc.allowed:
        return ((b"allow", ", ".join(exc.allowed).encode()),)
    if isinstance(exc, PayloadTooLarge):
        # The rest of an oversized body is never read: close instead of reusing the connection.
        return ((b"connection", b"close"),)
    return ()


def internal_error_response() -> HttpResponse:
    """The answer to an unexpected exception: generic, with no details of the server."""
    return HttpResponse(500, _INTERNAL)
