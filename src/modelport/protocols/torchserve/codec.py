"""TorchServe inference bodies: raw or multipart requests, JSON predictions, TorchServe's errors.

A TorchServe request carries one payload for the model's handler: the whole body (``curl -T``,
``curl -d``, any Content-Type), or the part named ``data`` (else ``body``) of a
``multipart/form-data`` body (``curl -F data=@file``), as TorchServe's default handlers read it.
What the payload means is the handler's business. A plain ONNX model has no handler, so modelport
reads its payload as TF Serving's predict JSON: a list of instances, ``{"instances": [...]}`` or
``{"inputs": ...}``, and answers the predictions themselves, without TF Serving's wrapper.

Errors are TorchServe's ``{"code": status, "type": "<Exception>", "message": "..."}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from modelport.errors import (
    Conflict,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidInput,
    MethodNotAllowed,
    ModelNotFound,
    ModelportError,
    NotFound,
    Unavailable,
    UnsupportedMediaType,
    VersionNotFound,
)
from modelport.protocols.errors import error_headers
from modelport.protocols.tensors import dump_outputs_json
from modelport.protocols.tfserving import codec as tfserving
from modelport.protocols.wire import HttpResponse, json_kind, parse_json
from modelport.types import Signature

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = [
    "MAX_PARTS",
    "PAYLOAD_FIELDS",
    "Payload",
    "decode_instances",
    "encode_predictions",
    "error_response",
    "error_type",
    "read_payload",
]

#: Multipart field names holding the payload, in order of preference (TorchServe's default
#: handlers read ``data``, then ``body``).
PAYLOAD_FIELDS = (b"data", b"body")
#: Most parts a multipart body may have. Each part is at most the body, which the HTTP layer
#: has already bounded by ``--max-body-bytes``.
MAX_PARTS = 64

_JSON_START = re.compile(rb"\s*[\[{]")


@dataclass(frozen=True, slots=True)
class Payload:
    """What the handler receives: the bytes, and their Content-Type (lower case, no
    parameters; empty when none was sent)."""

    data: bytes
    content_type: str


# ---- requests --------------------------------------------------------------------------------


def read_payload(body: bytes, content_type: bytes | None) -> Payload:
    """The payload of a request: the whole body, or the ``data`` / ``body`` part of a form."""
    mime, options = parse_options_header(content_type)
    kind = mime.decode("latin-1")
    if kind != "multipart/form-data":
        return Payload(body, kind)
    boundary = options.get(b"boundary")
    if not boundary:
        raise InvalidInput("the multipart/form-data Content-Type has no boundary parameter")
    parts = _MultipartParts(boundary)
    parts.parse(body)
    return parts.payload()


class _MultipartParts:
    """Collects a multipart body's parts: the payload fields' bytes, the others' names."""

    def __init__(self, boundary: bytes) -> None:
        self._boundary = boundary
        self._count = 0
        self._ended = False
        self._headers: dict[bytes, bytes] = {}
        self._header_name: list[bytes] = []
        self._header_value: list[bytes] = []
        self._chunks: list[bytes] | None = None
        self._name = b""
        self.fields: dict[bytes, Payload] = {}
        self.names: list[str] = []

    def parse(self, body: bytes) -> None:
        try:
            parser = MultipartParser(self._boundary, self._callbacks())
            parser.write(body)
            parser.finalize()
        except FormParserError as exc:
            raise InvalidInput(f"malformed multipart/form-data body: {exc}") from exc
        if not self._ended:
            raise InvalidInput(
                "the multipart/form-data body is empty or truncated: its closing boundary is "
                "missing"
            )

    def payload(self) -> Payload:
        for name in PAYLOAD_FIELDS:
            if name in self.fields:
                return self.fields[name]
        found = ", ".join(repr(n) for n in self.names) or "none"
        raise InvalidInput(
            f"the multipart/form-data body has no part named 'data' (or 'body'), which holds "
            f"the model's input; its parts: {found}. Send it as: curl -F data=@file"
        )

    def _callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_end": self._on_end,
        }

    def _on_part_begin(self) -> None:
        self._count += 1
        if self._count > MAX_PARTS:
            raise InvalidInput(f"the multipart/form-data body has more than {MAX_PARTS} parts")
        self._headers = {}

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name.append(data[start:end])

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value.append(data[start:end])

    def _on_header_end(self) -> None:
        name = b"".join(self._header_name).lower()
        self._headers[name] = b"".join(self._header_value).strip()
        self._header_name.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition"))
        name = options.get(b"name")
        if name is None:
            raise InvalidInput("a multipart/form-data part has no name in Content-Disposition")
        self._name = name
        self.names.append(name.decode("utf-8", "replace"))
        wanted = name in PAYLOAD_FIELDS and name not in self.fields
        self._chunks = [] if wanted else None

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._chunks is not None:
            self._chunks.append(data[start:end])

    def _on_part_end(self) -> None:
        if self._chunks is not None:
            kind, _ = parse_options_header(self._headers.get(b"content-type"))
            self.fields[self._name] = Payload(b"".join(self._chunks), kind.decode("latin-1"))
            self._chunks = None

    def _on_end(self) -> None:
        self._ended = True


def decode_instances(
    payload: Payload, signature: Signature, model: str
) -> tuple[dict[str, np.ndarray[Any, Any]], bool]:
    """Inputs from a JSON payload, read as TF Serving's predict body; the flag says whether
    it was the row format (a list of instances)."""
    if not _is_json(payload):
        shown = payload.content_type or "sent without a Content-Type"
        raise UnsupportedMediaType(
            f"model {model!r} is a plain ONNX model, which reads JSON: a list of instances, "
            f'{{"instances": [...]}} or {{"inputs": ...}}. This body ({shown}) is not JSON; raw '
            "bytes such as images need a custom handler to turn them into tensors, and this "
            "model has none"
        )
    doc = parse_json(payload.data)
    if isinstance(doc, list):
        doc = {"instances": doc}
    elif not isinstance(doc, dict):
        raise InvalidInput(
            "the body must be a JSON list of instances, or an object with 'instances' or "
            f"'inputs', not {json_kind(doc)}"
        )
    return tfserving.decode_predict(doc, signature)


def _is_json(payload: Payload) -> bool:
    kind = payload.content_type
    if kind == "application/json" or kind.endswith("+json"):
        return True
    return _JSON_START.match(payload.data) is not None


# ---- answers ---------------------------------------------------------------------------------


def encode_predictions(outputs: dict[str, np.ndarray[Any, Any]], row_format: bool) -> bytes:
    """The answer: one prediction per instance (an object per instance with several outputs),
    or for columnar requests the outputs themselves, as TF Serving's ``predictions`` and
    ``outputs`` hold them."""
    return dump_outputs_json(tfserving.predict_result(outputs, row_format), outputs.values())


#: TorchServe's exception class names, by modelport error class (looked up along the MRO).
_TYPES: dict[type[ModelportError], str] = {
    ModelNotFound: "ModelNotFoundException",
    VersionNotFound: "ModelVersionNotFoundException",
    NotFound: "ResourceNotFoundException",
    InvalidInput: "BadRequestException",
    FailedPrecondition: "BadRequestException",
    MethodNotAllowed: "MethodNotAllowedException",
    Conflict: "ConflictStatusException",
    Unavailable: "ServiceUnavailableException",
    DeadlineExceeded: "RequestTimeoutException",
    ModelportError: "InternalServerException",
}


def error_type(exc: ModelportError) -> str:
    """The ``type`` of an error: TorchServe's class for the same failure, or, for failures
    TorchServe does not have (413, 415, 429, 501), the modelport error's name."""
    for cls in type(exc).__mro__:
        found = _TYPES.get(cls)
        if found is not None:
            if cls is ModelportError and type(exc).http_status != 500:
                return f"{type(exc).__name__}Exception"
            return found
    return "InternalServerException"


def error_response(exc: ModelportError) -> HttpResponse:
    """TorchServe's error answer: ``{"code": status, "type": ..., "message": ...}``."""
    status = exc.http_status
    body = orjson.dumps({"code": status, "type": error_type(exc), "message": exc.message})
    return HttpResponse(status, body, headers=error_headers(exc))
