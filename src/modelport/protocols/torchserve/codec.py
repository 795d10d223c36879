"""TorchServe inference bodies: raw or multipart requests, JSON predictions, TorchServe's errors.

A TorchServe request carries one payload for the model's handler: the whole body (``curl -T``,
``curl -d``, any Content-Type), or the part named ``data`` (else ``body``) of a
``multipart/form-data`` body (``curl -F data=@file``), as TorchServe's default handlers read it.
What the payload means is the handler's business. A model served by a handler (platform
``python``) whose one input is BYTES gets the payload as one request row, decoded as TorchServe
decodes it (the parsed JSON of an ``application/json`` payload, the text of a ``text/*`` one, else
the bytes), and its answer is that request's result: bytes as they are, text as text, anything
else as JSON. A plain ONNX model has no handler, so modelport reads its payload as TF Serving's
predict JSON: a list of instances, ``{"instances": [...]}`` or ``{"inputs": ...}``, and answers the
predictions themselves, without TF Serving's wrapper.

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
from modelport.types import Datatype, Signature

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = [
    "HANDLER_PLATFORMS",
    "MAX_PARTS",
    "PAYLOAD_FIELDS",
    "Payload",
    "decode_instances",
    "encode_predictions",
    "error_response",
    "error_type",
    "handler_answer",
    "handler_inputs",
    "read_payload",
    "takes_payload",
]

#: Multipart field names holding the payload, in order of preference (TorchServe's default
#: handlers read ``data``, then ``body``).
PAYLOAD_FIELDS = (b"data", b"body")
#: Most parts a multipart body may have. Each part is at most the body, which the HTTP layer
#: has already bounded by ``--max-body-bytes``.
MAX_PARTS = 64

_JSON_START = re.compile(rb"\s*[\[{]")
#: Platforms of models served by a TorchServe-style handler, which read the payload themselves.
HANDLER_PLATFORMS = frozenset({"python", "torchserve"})
_TEXT = b"text/plain; charset=utf-8"
_OCTETS = b"application/octet-stream"


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


def takes_payload(platform: str, signature: Signature) -> bool:
    """Whether the model's handler reads the payload itself: a handler model with one BYTES
    input."""
    inputs = signature.inputs
    return (
        platform in HANDLER_PLATFORMS
        and len(inputs) == 1
        and inputs[0].datatype is Datatype.BYTES
        and len(inputs[0].shape) == 1
    )


def handler_inputs(
    payload: Payload, signature: Signature, list_batch: bool
) -> tuple[dict[str, np.ndarray[Any, Any]], bool]:
    """The payload as request rows of the handler's input, decoded as TorchServe decodes it,
    and whether it is a batch.

    The payload is one request, as in TorchServe, unless it is a JSON list and the model's
    config sets ``torchserve_list_batch`` (``list_batch``): then each element is one request.
    """
    decoded = _decoded(payload)
    batch = isinstance(decoded, list) and list_batch
    if batch and not decoded:
        raise InvalidInput("the body is an empty JSON list; send at least one item to predict")
    values = decoded if batch else [decoded]
    rows = np.empty(len(values), dtype=object)
    rows[:] = values
    return {signature.inputs[0].name: rows}, batch


def _decoded(payload: Payload) -> Any:
    kind, data = payload.content_type, payload.data
    if kind == "application/json":
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            return data
    if kind.startswith("text"):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data
    return data


def handler_answer(outputs: dict[str, np.ndarray[Any, Any]], batch: bool) -> HttpResponse:
    """The handler's result for the one request: a BYTES result as it is (JSON, text or bytes,
    told by its content), any other as JSON. A batch (a JSON list body) is answered in TF
    Serving's columnar form: the list of results of the one output, or an object of such lists
    keyed by output name."""
    if batch:
        columns = tfserving.predict_result(outputs, row_format=False)
        return HttpResponse(200, dump_outputs_json(columns, outputs.values()))
    if len(outputs) == 1:
        (arr,) = outputs.values()
        if arr.dtype == object and arr.shape == (1,):
            value = arr[0]
            data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            return HttpResponse(200, data, content_type=_content_type(data))
    rows = tfserving.predict_result(outputs, row_format=True)
    doc = rows[0] if isinstance(rows, (list, np.ndarray)) and len(rows) == 1 else rows
    return HttpResponse(200, dump_outputs_json(doc, outputs.values()))


def _content_type(data: bytes) -> bytes:
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    else:
        return b"application/json"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return _OCTETS
    return _TEXT


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
