"""KServe V2 / Open Inference Protocol inference bodies: JSON tensors and the binary extension.

A request body is a JSON header, optionally followed by raw tensor blobs; the header's length is
in ``Inference-Header-Content-Length``. An input with ``parameters.binary_data_size`` takes its
data from the blobs, in the order such inputs are listed. An output is returned as a blob when
its ``parameters.binary_data`` is true, or when the request's ``binary_data_output`` is true and
the output says nothing. A header length of 0 means the whole body is the raw data of the
model's single input (batch 1), and every output comes back binary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.errors import InvalidInput, Unimplemented
from modelport.protocols.tensors import (
    array_from_json,
    array_to_json_values,
    decode_binary,
    dump_outputs_json,
    element_count,
    encode_binary,
    reshaped,
)
from modelport.protocols.wire import HttpResponse, parse_json_object
from modelport.types import Datatype, InferRequest, InferResponse, Signature, TensorSpec

__all__ = [
    "UNSUPPORTED_PARAMETERS",
    "V2InferRequest",
    "decode_infer_request",
    "encode_infer_response",
    "tensor_metadata",
]

OCTET_STREAM = b"application/octet-stream"
HEADER_LENGTH = b"inference-header-content-length"

_REQUEST_KEYS = frozenset({"id", "parameters", "inputs", "outputs"})
_INPUT_KEYS = frozenset({"name", "shape", "datatype", "parameters", "data"})
_OUTPUT_KEYS = frozenset({"name", "parameters"})
_DATATYPES = {d.value: d for d in Datatype}
_DIGITS = re.compile(rb"[0-9]{1,18}")

#: Request parameters of V2 extensions modelport does not implement (REST and gRPC refuse them).
UNSUPPORTED_PARAMETERS = {
    "shared_memory_region": "shared memory is not supported; send the data in the request",
    "classification": "the classification extension is not supported; request the raw output",
}


@dataclass(slots=True)
class V2InferRequest:
    """A decoded V2 inference request, with how each output should be returned."""

    request: InferRequest
    binary_default: bool = False
    binary_outputs: dict[str, bool] = field(default_factory=dict)

    def binary(self, name: str) -> bool:
        return self.binary_outputs.get(name, self.binary_default)


def decode_infer_request(
    body: bytes, header_length: bytes | None, signature: Signature
) -> V2InferRequest:
    """Decode a V2 request body (JSON, or JSON + binary blobs, or raw binary)."""
    if header_length is None:
        return _decode_json(body, memoryview(b""))
    if not _DIGITS.fullmatch(header_length) or int(header_length) > len(body):
        raise InvalidInput(
            f"Inference-Header-Content-Length is {header_length.decode('latin-1')!r}, but it must "
            f"be a number of bytes no larger than the body ({len(body)} bytes)"
        )
    split = int(header_length)
    if split == 0:
        return _decode_raw(memoryview(body), signature)
    view = memoryview(body)
    return _decode_json(view[:split], view[split:])


def _decode_json(header: bytes | memoryview, blobs: memoryview) -> V2InferRequest:
    doc = parse_json_object(header, "inference request")
    if not _REQUEST_KEYS.issuperset(doc):
        _no_unknown_keys(doc, _REQUEST_KEYS, "the inference request")
    parameters = _parameters(doc.get("parameters"), "the request")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("the request 'id' must be a string")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("the inference request needs a non-empty 'inputs' list")
    inputs: dict[str, np.ndarray[Any, Any]] = {}
    offset = 0
    for item in raw_inputs:
        name, arr, used = _decode_input(item, blobs, offset)
        if name in inputs:
            raise InvalidInput(f"input {name!r} appears twice in the request")
        inputs[name] = arr
        offset += used
    if offset != len(blobs):
        raise InvalidInput(
            f"{len(blobs) - offset} bytes of binary data follow the JSON header but no input's "
            "binary_data_size accounts for them"
        )
    binary_default = parameters.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise InvalidInput("the request parameter 'binary_data_output' must be true or false")
    outputs, binary_outputs = _decode_outputs(doc.get("outputs"))
    return V2InferRequest(
        InferRequest(inputs, outputs, request_id, parameters), binary_default, binary_outputs
    )


def _decode_input(
    item: Any, blobs: memoryview, offset: int
) -> tuple[str, np.ndarray[Any, Any], int]:
    if type(item) is not dict:
        raise InvalidInput("each entry of 'inputs' must be an object with name, shape, datatype")
    name = item.get("name")
    if type(name) is not str or not name:
        raise InvalidInput("each input needs a 'name' string")
    if not _INPUT_KEYS.issuperset(item):
        _no_unknown_keys(item, _INPUT_KEYS, f"input {name!r}")
    shape = _shape(item.get("shape"), name)
    raw_datatype = item.get("datatype")
    datatype = _DATATYPES.get(raw_datatype) if type(raw_datatype) is str else None
    if datatype is None:
        raise _bad_datatype(raw_datatype, name)

    raw_parameters = item.get("parameters")
    size = None
    if raw_parameters:
        size = _parameters(raw_parameters, f"input {name!r}").get("binary_data_size")
    if size is not None:
        if "data" in item:
            raise InvalidInput(f"input {name!r} has both 'data' and binary_data_size; send one")
        if type(size) is not int or size < 0:
            raise InvalidInput(f"input {name!r}: binary_data_size must be a non-negative integer")
        if offset + size > len(blobs):
            raise InvalidInput(
                f"input {name!r}: binary_data_size is {size} but only {len(blobs) - offset} bytes "
                "of binary data are left in the body"
            )
        return name, decode_binary(blobs[offset : offset + size], datatype, shape, name), size
    data = item.get("data")
    if data is None:
        raise InvalidInput(f"input {name!r} has neither 'data' nor a binary_data_size parameter")
    arr = array_from_json(data, datatype, name)
    expected = element_count(shape, name)

    if arr.size != expected:
        raise InvalidInput(
            f"input {name!r}: shape {list(shape)} holds {expected} elements, but 'data' has "
            f"{arr.size}"
        )
    return name, reshaped(arr, shape, name), 0


def _decode_outputs(raw: Any) -> tuple[list[str] | None, dict[str, bool]]:
    if raw is None:
        return None, {}
    if not isinstance(raw, list):
        raise InvalidInput("'outputs' must be a list of {name, parameters} objects")
    names: list[str] = []
    binary: dict[str, bool] = {}
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput("each entry of 'outputs' needs a 'name' string")
        name = item["name"]
        _no_unknown_keys(item, _OUTPUT_KEYS, f"requested output {name!r}")
        parameters = _parameters(item.get("parameters"), f"output {name!r}")
        flag = parameters.get("binary_data")
        if flag is not None:
            if not isinstance(flag, bool):
                raise InvalidInput(f"output {name!r}: binary_data must be true or false")
            binary[name] = flag
        names.append(name)
    return names, binary


def _decode_raw(body: memoryview, signature: Signature) -> V2InferRequest:
    if len(signature.inputs) != 1:
        raise InvalidInput(
            "a raw binary request (Inference-Header-Content-Length: 0) is only for models with "
            f"one input; this one has {len(signature.inputs)}"
        )
    spec = signature.inputs[0]
    shape = _raw_shape(spec)
    if spec.datatype is Datatype.BYTES:
        if element_count(shape, spec.name) != 1:
            raise InvalidInput(
                f"a raw binary request carries one BYTES element, but input {spec.name!r} has "
                f"shape {list(spec.shape)}; send a JSON header with the shape instead"
            )
        arr = np.empty(1, dtype=object)
        arr[0] = bytes(body)
        arr = arr.reshape(shape)
    else:
        arr = decode_binary(body, spec.datatype, shape, spec.name)
    return V2InferRequest(InferRequest({spec.name: arr}), binary_default=True)


def _raw_shape(spec: TensorSpec) -> tuple[int, ...]:
    shape = tuple(1 if (i == 0 and d == -1) else d for i, d in enumerate(spec.shape))
    if -1 in shape:
        raise InvalidInput(
            f"a raw binary request needs input {spec.name!r} to have a fixed shape apart from the "
            f"batch; it is {list(spec.shape)}; send a JSON header with the shape instead"
        )
    return shape


def _no_unknown_keys(doc: dict[str, Any], allowed: frozenset[str], what: str) -> None:
    unknown = set(doc) - allowed
    if unknown:
        raise InvalidInput(
            f"unknown field {sorted(unknown)[0]!r} in {what}; allowed fields: "
            f"{', '.join(sorted(allowed))}"
        )


def _parameters(raw: Any, what: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidInput(f"'parameters' of {what} must be an object")
    for key, message in UNSUPPORTED_PARAMETERS.items():
        if key in raw:
            raise Unimplemented(f"{what}: {message}")
    return raw


def _shape(raw: Any, name: str) -> tuple[int, ...]:
    if type(raw) is not list:
        raise InvalidInput(f"input {name!r} needs a 'shape' list of non-negative integers")
    for dim in raw:
        if type(dim) is not int or dim < 0:
            raise InvalidInput(f"input {name!r} needs a 'shape' list of non-negative integers")
    return tuple(raw)


def _bad_datatype(raw: Any, name: str) -> InvalidInput:
    valid = ", ".join(d.value for d in Datatype)
    return InvalidInput(f"input {name!r} has datatype {raw!r}; use one of {valid}")


def encode_infer_response(response: InferResponse, request: V2InferRequest) -> HttpResponse:
    """The V2 response body: JSON outputs, with binary blobs appended where asked for."""
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, arr in response.outputs.items():
        entry: dict[str, Any] = {
            "name": name,
            "datatype": Datatype.from_numpy(arr.dtype),
            "shape": arr.shape,
        }
        if request.binary(name):
            blob = encode_binary(arr)
            blobs.append(blob)
            entry["parameters"] = {"binary_data_size": len(blob)}
        else:
            entry["data"] = array_to_json_values(arr, name)
        outputs.append(entry)
    doc: dict[str, Any] = {"model_name": response.model, "model_version": str(response.version)}
    if response.id is not None:
        doc["id"] = response.id
    doc["outputs"] = outputs
    header = dump_outputs_json(doc, response.outputs.values())

    if not blobs:
        return HttpResponse(200, header)
    return HttpResponse(
        200,
        header + b"".join(blobs),
        content_type=OCTET_STREAM,
        headers=((HEADER_LENGTH, str(len(header)).encode()),),
    )


def tensor_metadata(specs: tuple[TensorSpec, ...]) -> list[dict[str, Any]]:
    """The ``inputs``/``outputs`` lists of V2 model metadata."""
    return [{"name": s.name, "datatype": s.datatype.value, "shape": list(s.shape)} for s in specs]
