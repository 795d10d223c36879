"""What every HTTP adapter shares: the response value and JSON reading and writing.

JSON is parsed with orjson; a body orjson refuses is parsed again with the standard library,
which also accepts the ``NaN``, ``Infinity`` and ``-Infinity`` tokens TF Serving clients may send.
Responses are written with orjson, numpy arrays included; an array holding NaN or infinities is
written with the standard library so they appear as ``NaN``/``Infinity`` (as TF Serving writes
them) instead of orjson's ``null``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from modelport.errors import InvalidInput

__all__ = [
    "JSON",
    "HttpResponse",
    "dump_json",
    "dump_json_nonfinite",
    "json_kind",
    "json_response",
    "parse_json",
    "parse_json_object",
]

JSON = b"application/json"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """Status, body and headers of one answer."""

    status: int
    body: bytes
    content_type: bytes = JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()


def parse_json(body: bytes | memoryview) -> Any:
    """Parse any JSON value; raise ``InvalidInput`` naming the problem if it is malformed."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _parse_lenient(body, exc)


def parse_json_object(body: bytes | memoryview, what: str = "request body") -> dict[str, Any]:
    """Parse a JSON object; raise ``InvalidInput`` naming the problem otherwise."""
    value = parse_json(body)
    if not isinstance(value, dict):
        raise InvalidInput(f"the {what} must be a JSON object, not {json_kind(value)}")
    return value


def _parse_lenient(body: bytes | memoryview, first_error: orjson.JSONDecodeError) -> Any:
    try:
        return json.loads(bytes(body))
    except (ValueError, RecursionError):
        raise InvalidInput(f"malformed JSON: {first_error}") from first_error


def json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    return "null" if value is None else f"a {type(value).__name__}"


def dump_json(value: Any) -> bytes:
    """Serialise ``value`` (numpy arrays included) to JSON bytes."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        # Non-contiguous arrays and rare dtypes: fall back to plain Python values.
        return orjson.dumps(_plain(value))


def json_response(value: Any, status: int = 200) -> HttpResponse:
    """A JSON response."""
    return HttpResponse(status, dump_json(value))


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def dump_json_nonfinite(value: Any) -> bytes:
    """Like ``dump_json`` but writes NaN and infinities as the bare tokens NaN/Infinity."""
    return json.dumps(_plain(value), separators=(",", ":"), allow_nan=True).encode()
