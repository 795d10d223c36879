"""The ``context`` a TorchServe handler receives: its model folder, manifest and request headers.

When TorchServe's ``ts`` package is installed (the ``modelport[torchserve]`` extra), handlers get
TorchServe's own ``ts.context.Context``, so code written for TorchServe (``BaseHandler`` and its
subclasses included) finds exactly what it expects. Without it, a small compatible context stands
in: ``model_name``, ``manifest``, ``system_properties``, ``metrics``, ``get_request_header`` and
the response-header calls.

Metrics a handler records (``context.metrics.add_time(...)`` and the like) are logged at debug
level and otherwise dropped; modelport's own metrics cover every request.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "HandlerMetrics",
    "SimpleContext",
    "import_ts_context",
    "make_context",
    "set_requests",
]

log = logging.getLogger(__name__)

#: What ``system_properties["server_name"]`` and ``server_version`` say.
SERVER_NAME = "modelport"


class HandlerMetrics:
    """Accepts TorchServe's metric calls (``add_time``, ``add_counter`` ...) and logs them."""

    def __init__(self, model_name: str) -> None:
        self._model_name = model_name

    def _record(self, kind: str, name: str, value: Any) -> None:
        log.debug("%s: handler metric %s %s = %s", self._model_name, kind, name, value)

    def add_time(self, name: str, value: float, idx: Any = None, unit: str = "ms", *a: Any) -> None:
        """A duration, in ``unit``."""
        self._record("time", name, value)

    def add_counter(self, name: str, value: float, idx: Any = None, *a: Any, **k: Any) -> None:
        """A count."""
        self._record("counter", name, value)

    def add_size(self, name: str, value: float, idx: Any = None, unit: str = "MB", *a: Any) -> None:
        """A size, in ``unit``."""
        self._record("size", name, value)

    def add_percent(self, name: str, value: float, idx: Any = None, *a: Any, **k: Any) -> None:
        """A percentage."""
        self._record("percent", name, value)

    def add_error(self, name: str, value: Any, *a: Any, **k: Any) -> None:
        """An error."""
        self._record("error", name, value)

    def add_metric(self, name: str, value: Any = None, *a: Any, **k: Any) -> None:
        """Any other metric."""
        self._record("metric", name, value)

    def add_metric_to_cache(self, name: str, *a: Any, **k: Any) -> HandlerMetrics:
        """TorchServe's custom metric registration; the returned object takes updates."""
        return self

    def get_metric(self, name: str, *a: Any, **k: Any) -> HandlerMetrics:
        """A metric registered with ``add_metric_to_cache``; it takes updates."""
        return self

    def update(self, value: Any, *a: Any, **k: Any) -> None:
        """An update of a registered metric."""
        self._record("update", "", value)

    def __getattr__(self, name: str) -> Callable[..., None]:
        """Any other TorchServe metric call is accepted and ignored."""
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None


class _Requests:
    """TorchServe's per-request headers (``ts.context.RequestProcessor``'s interface)."""

    def __init__(self, headers: Mapping[str, Any]) -> None:
        self._request = dict(headers)
        self._response: dict[str, str] = {}
        self._status = 200
        self._phrase: str | None = None

    def get_request_property(self, key: str) -> Any:
        return self._request.get(key)

    def get_request_properties(self) -> dict[str, Any]:
        return self._request

    def report_status(self, code: int, reason_phrase: str | None = None) -> None:
        self._status, self._phrase = code, reason_phrase

    def get_response_status_code(self) -> int:
        return self._status

    def get_response_status_phrase(self) -> str | None:
        return self._phrase

    def add_response_property(self, key: str, value: str) -> None:
        self._response[key] = value

    def get_response_headers(self) -> dict[str, str]:
        return self._response

    def get_response_header(self, key: str) -> str | None:
        return self._response.get(key)


class SimpleContext:
    """A stand-in for ``ts.context.Context`` when TorchServe's package is not installed."""

    def __init__(
        self, model_name: str, model_dir: str, manifest: dict[str, Any], batch_size: int
    ) -> None:
        self.model_name = model_name
        self.manifest = manifest
        self.system_properties: dict[str, Any] = {
            "model_dir": model_dir,
            "gpu_id": None,
            "batch_size": batch_size,
            "server_name": SERVER_NAME,
            "server_version": SERVER_NAME,
            "limit_max_image_pixels": True,
        }
        self.metrics = HandlerMetrics(model_name)
        self.request_processor: list[Any] = []
        self.request_ids: dict[int, str] | None = None
        self.model_yaml_config: dict[str, Any] = {}

    def get_request_id(self, idx: int = 0) -> str | None:
        """The request's id (modelport gives none)."""
        return None if self.request_ids is None else self.request_ids.get(idx)

    def get_request_header(self, idx: int, key: str) -> Any:
        """A header of request ``idx`` of the batch."""
        return self.request_processor[idx].get_request_property(key)

    def get_all_request_header(self, idx: int) -> dict[str, Any]:
        """Every header of request ``idx``."""
        headers: dict[str, Any] = self.request_processor[idx].get_request_properties()
        return headers

    def set_response_content_type(self, idx: int, value: str) -> None:
        """Accepted; the protocol decides the answer's Content-Type."""
        self.set_response_header(idx, "content-type", value)

    def get_response_content_type(self, idx: int) -> str | None:
        """What ``set_response_content_type`` recorded."""
        value: str | None = self.request_processor[idx].get_response_header("content-type")
        return value

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        """Accepted and recorded; modelport's protocols set their own headers."""
        self.request_processor[idx].add_response_property(key, value)

    def get_response_headers(self, idx: int) -> dict[str, str]:
        """What ``set_response_header`` recorded."""
        headers: dict[str, str] = self.request_processor[idx].get_response_headers()
        return headers

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        """Accepted and recorded; a failed request is answered by an exception instead."""
        self.request_processor[idx].report_status(code, phrase)


def make_context(
    model_name: str, model_dir: Path, manifest: dict[str, Any], batch_size: int
) -> Any:
    """TorchServe's ``Context`` when ``ts`` is installed, else a ``SimpleContext``."""
    ts_context = import_ts_context()
    if ts_context is None:
        return SimpleContext(model_name, str(model_dir), manifest, batch_size)
    Context = ts_context.Context  # noqa: N806 - TorchServe's class
    context = Context(
        model_name,
        str(model_dir),
        manifest,
        batch_size,
        None,
        SERVER_NAME,
        metrics=HandlerMetrics(model_name),
        model_yaml_config={},
    )
    context.system_properties["server_name"] = SERVER_NAME
    context.request_processor = []
    return context


def set_requests(context: Any, count: int) -> None:
    """Give the context one set of (empty) request headers per request of the coming batch."""
    ts_context = import_ts_context()
    if ts_context is None:
        context.request_processor = [_Requests({}) for _ in range(count)]
        return
    context.request_processor = [ts_context.RequestProcessor({}) for _ in range(count)]
    context.request_ids = {idx: str(idx) for idx in range(count)}


def import_ts_context() -> Any:
    """TorchServe's ``ts.context`` module, or None when TorchServe's package is not installed.

    ``import ts`` reads its version file without closing it; the ResourceWarning that leaves is
    TorchServe's own, and silenced here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            import ts.context  # type: ignore[import-untyped]
        except ImportError:
            return None
    return ts.context
