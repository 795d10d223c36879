"""What bench asks the server before the load: the model's V2 metadata, and single requests.

These exchanges use the standard library's blocking ``http.client``: they happen once, and their
errors become ``ServerError`` or ``UsageError`` messages that quote the server's own words.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from modelport.bench.errors import ServerError, UsageError
from modelport.bench.settings import Target

__all__ = ["ModelSpec", "TensorSpec", "error_message", "exchange", "fetch_model", "model_path"]


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as the V2 metadata describes it; ``-1`` marks a dynamic dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelSpec:
    """A model's name, the version that will answer, and its tensors."""

    name: str
    version: str | None
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @classmethod
    def from_metadata(cls, body: Any, requested: str | None) -> ModelSpec:
        """Read a ``GET /v2/models/{m}`` answer; raise ``ServerError`` if it is malformed."""
        try:
            versions = [str(v) for v in body.get("versions") or []]
            return cls(
                name=str(body["name"]),
                version=requested or (versions[0] if versions else None),
                inputs=tuple(_tensor(t) for t in body["inputs"]),
                outputs=tuple(_tensor(t) for t in body.get("outputs") or []),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ServerError(
                f"the server's model metadata is malformed ({exc!r}): {body}"
            ) from exc


def _tensor(entry: dict[str, Any]) -> TensorSpec:
    return TensorSpec(
        name=str(entry["name"]),
        datatype=str(entry["datatype"]),
        shape=tuple(int(d) for d in entry["shape"]),
    )


def model_path(target: Target, model: str, version: str | None) -> str:
    """``{prefix}/v2/models/{model}[/versions/{version}]``, URL-quoted."""
    path = f"{target.prefix}/v2/models/{quote(model, safe='')}"
    return f"{path}/versions/{version}" if version else path


def exchange(
    target: Target,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: Sequence[tuple[str, str]] = (),
    timeout_s: float = 10.0,
) -> tuple[int, bytes]:
    """Send one request and return the status and body; ``ServerError`` if unreachable."""
    connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout_s)
    try:
        connection.request(method, path, body=body or None, headers=dict(headers))
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else repr(exc)
        raise ServerError(f"cannot reach the server at {target.url}: {reason}") from exc
    finally:
        connection.close()


def error_message(body: bytes, limit: int = 500) -> str:
    """The ``error`` field of a JSON error answer, or the start of the body as text."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        return str(parsed["error"])
    text = body[:limit].decode("utf-8", errors="replace").strip()
    return text or "(empty answer)"


def fetch_model(target: Target, model: str, version: str | None) -> ModelSpec:
    """The model's V2 metadata; a clear error if the model is unknown or not ready."""
    path = model_path(target, model, version)
    status, body = exchange(target, "GET", path)
    named = f"model {model!r}" + (f" version {version}" if version else "")
    if status == 404:
        raise UsageError(f"the server does not serve {named}: {error_message(body)}")
    if status == 503:
        raise ServerError(f"{named} is not ready: {error_message(body)}")
    if status != 200:
        raise ServerError(f"GET {path} answered {status}: {error_message(body)}")
    try:
        metadata = json.loads(body)
    except ValueError as exc:
        raise ServerError(f"GET {path} did not answer JSON: {error_message(body)}") from exc
    spec = ModelSpec.from_metadata(metadata, version)
    if not spec.inputs:
        raise ServerError(f"{named} has no inputs in its metadata: nothing to send")
    return spec
