"""``GET /metrics``: the Prometheus scrape endpoint, on the HTTP port.

The same text is also served at TF Serving's path, ``/monitoring/prometheus/metrics``, so a
scrape configuration written for TF Serving finds it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from modelport.errors import MethodNotAllowed, ModelportError, NotFound
from modelport.protocols.http import HttpRequest, Mount, Route
from modelport.protocols.wire import HttpResponse

__all__ = ["CONTENT_TYPE", "metrics_mount"]

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
_PATHS = ("/metrics", "/monitoring/prometheus/metrics")


def metrics_mount(render: Callable[[], bytes]) -> Mount:
    """A surface answering the scrape paths with ``render()``."""

    async def scrape(request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        return HttpResponse(200, render(), content_type=CONTENT_TYPE)

    route = Route(re.compile("|".join(re.escape(p) for p in _PATHS)), {"GET": scrape}, True)
    return Mount(owns=lambda path: path in _PATHS, routes=[route], unmatched=_unmatched)


def _unmatched(method: str, path: str, allowed: tuple[str, ...]) -> ModelportError:
    if allowed:
        return MethodNotAllowed(f"{method} is not allowed on {path}", allowed)
    return NotFound("Not Found")
