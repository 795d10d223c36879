"""KServe V2 gRPC inference messages to tensors and back.

A ``ModelInferRequest`` carries each input's data one of two ways, the same way for every input:

- ``raw_input_contents``: one entry per input, in the order of ``inputs``; little-endian,
  row-major bytes (BYTES: a 4-byte length before each element), as in the binary extension;
- typed ``contents``: the repeated field of the input's datatype (``fp32_contents`` for FP32,
  ``uint_contents`` for UINT8/16/32, ...). FP16 and BF16 have no typed field and travel raw.

Every size is checked against the shape before anything is allocated. Answers always carry
``raw_output_contents``: tritonclient's ``as_numpy`` reads nothing else for numeric outputs.

Request parameters reach the scheduler as plain values (``priority``, ``timeout``); Triton's
other reserved ones (``sequence_*``, ``triton_enable_empty_final_response``, ...) are accepted
and have no effect, as over REST. Shared memory and classification are refused as unsupported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelport._pb.kserve import grpc_service_pb2 as pb
from modelport.errors import InvalidInput, Unimplemented
from modelport.protocols.kserve_v2.codec import UNSUPPORTED_PARAMETERS
from modelport.protocols.tensors import decode_binary, element_count, encode_binary, reshaped
from modelport.types import Datatype, InferRequest, InferResponse, TensorSpec

__all__ = [
    "decode_infer_request",
    "encode_infer_response",
    "parameter_values",
    "tensor_metadata",
]

InputTensor = pb.ModelInferRequest.InferInputTensor
Parameters = Mapping[str, pb.InferParameter]

#: Per datatype: the typed contents field and the dtype its values are read into.
_CONTENTS: dict[Datatype, tuple[str, np.dtype[Any]]] = {
    Datatype.BOOL: ("bool_contents", np.dtype(np.bool_)),
    Datatype.UINT8: ("uint_contents", np.dtype(np.uint32)),
    Datatype.UINT16: ("uint_contents", np.dtype(np.uint32)),
    Datatype.UINT32: ("uint_contents", np.dtype(np.uint32)),
    Datatype.UINT64: ("uint64_contents", np.dtype(np.uint64)),
    Datatype.INT8: ("int_contents", np.dtype(np.int32)),
    Datatype.INT16: ("int_contents", np.dtype(np.int32)),
    Datatype.INT32: ("int_contents", np.dtype(np.int32)),
    Datatype.INT64: ("int64_contents", np.dtype(np.int64)),
    Datatype.FP32: ("fp32_contents", np.dtype(np.float32)),
    Datatype.FP64: ("fp64_contents", np.dtype(np.float64)),
    Datatype.BYTES: ("bytes_contents", np.dtype(object)),
}


def decode_infer_request(message: pb.ModelInferRequest) -> InferRequest:
    """The inputs, requested outputs, id and parameters of a ``ModelInferRequest``."""
    parameters = parameter_values(message.parameters, "the request")
    tensors = message.inputs
    if not tensors:
        raise InvalidInput("the inference request needs at least one entry in 'inputs'")
    for tensor in tensors:
        parameter_values(tensor.parameters, f"input {tensor.name!r}")
    raw = message.raw_input_contents
    if raw:
        _check_raw_count(tensors, len(raw))
    inputs: dict[str, np.ndarray[Any, Any]] = {}
    for index, tensor in enumerate(tensors):
        name = tensor.name
        if name in inputs:
            raise InvalidInput(f"input {name!r} appears twice in the request")
        inputs[name] = _decode_raw(tensor, raw[index]) if raw else _decode_typed(tensor)
    return InferRequest(inputs, _requested_outputs(message), message.id or None, parameters)


def parameter_values(parameters: Parameters, what: str) -> dict[str, Any]:
    """Plain values of an ``InferParameter`` map; refuses the parameters of unsupported
    extensions (shared memory, classification)."""
    for key, message in UNSUPPORTED_PARAMETERS.items():
        if key in parameters:
            raise Unimplemented(f"{what}: {message}")
    values: dict[str, Any] = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        if choice is not None:
            values[key] = getattr(parameter, choice)
    return values


def _check_raw_count(tensors: Sequence[InputTensor], entries: int) -> None:
    if entries != len(tensors):
        raise InvalidInput(
            f"the request has {entries} raw_input_contents entries for {len(tensors)} inputs; "
            "send one entry per input, in the order of 'inputs'"
        )
    for tensor in tensors:
        if _has_typed_contents(tensor):
            raise InvalidInput(
                f"input {tensor.name!r} has typed contents, but the request also has "
                "raw_input_contents; send every input's data in raw_input_contents, or every "
                "input's in its typed contents"
            )


def _has_typed_contents(tensor: InputTensor) -> bool:
    return tensor.HasField("contents") and bool(tensor.contents.ListFields())


def _datatype(tensor: InputTensor) -> Datatype:
    try:
        return Datatype(tensor.datatype)
    except ValueError:
        valid = ", ".join(d.value for d in Datatype)
        raise InvalidInput(
            f"input {tensor.name!r} has datatype {tensor.datatype!r}; use one of {valid}"
        ) from None


def _shape(tensor: InputTensor) -> tuple[int, ...]:
    shape = tuple(tensor.shape)
    if any(dim < 0 for dim in shape):
        raise InvalidInput(
            f"input {tensor.name!r} has shape {list(shape)}; dimensions must not be negative"
        )
    return shape


def _decode_raw(tensor: InputTensor, data: bytes) -> np.ndarray[Any, Any]:
    return decode_binary(memoryview(data), _datatype(tensor), _shape(tensor), tensor.name)


def _decode_typed(tensor: InputTensor) -> np.ndarray[Any, Any]:
    name = tensor.name
    datatype = _datatype(tensor)
    shape = _shape(tensor)
    count = element_count(shape, name)
    field = _CONTENTS.get(datatype)
    if field is None:
        raise InvalidInput(
            f"input {name!r} is {datatype}, which has no typed contents field; send its data in "
            "raw_input_contents"
        )
    field_name, wide = field
    values = getattr(tensor.contents, field_name)
    if len(values) != count:
        raise _count_mismatch(tensor, datatype, field_name, len(values), count)
    if datatype is Datatype.BYTES:
        arr = np.empty(count, dtype=object)
        arr[:] = list(values)
        return reshaped(arr, shape, name)
    arr = np.fromiter(values, dtype=wide, count=count)
    return reshaped(_narrowed(arr, datatype, name), shape, name)


def _count_mismatch(
    tensor: InputTensor, datatype: Datatype, field_name: str, got: int, expected: int
) -> InvalidInput:
    name = tensor.name
    if not got:
        other = [f.name for f, _ in tensor.contents.ListFields()]
        if other:
            return InvalidInput(
                f"input {name!r} is {datatype}: its data goes in contents.{field_name}, but the "
                f"request filled contents.{other[0]}"
            )
        if expected:
            return InvalidInput(
                f"input {name!r} has no data: send it in raw_input_contents (one entry per "
                f"input) or in contents.{field_name}"
            )
    return InvalidInput(
        f"input {name!r}: shape {list(tensor.shape)} holds {expected} elements, but "
        f"contents.{field_name} has {got}"
    )


def _narrowed(arr: np.ndarray[Any, Any], datatype: Datatype, name: str) -> np.ndarray[Any, Any]:
    """``arr`` in the datatype's own dtype; a value out of its range is the request's error."""
    target = datatype.numpy_dtype
    if arr.dtype == target:
        return arr
    info = np.iinfo(target)
    if arr.size:
        low, high = int(arr.min()), int(arr.max())
        if low < info.min or high > info.max:
            raise InvalidInput(
                f"input {name!r} is {datatype}; the value {low if low < info.min else high} is "
                f"out of its range [{info.min}, {info.max}]"
            )
    return arr.astype(target)


def _requested_outputs(message: pb.ModelInferRequest) -> list[str] | None:
    if not message.outputs:
        return None
    names = []
    for output in message.outputs:
        parameter_values(output.parameters, f"output {output.name!r}")
        names.append(output.name)
    return names


def encode_infer_response(response: InferResponse) -> pb.ModelInferResponse:
    """A ``ModelInferResponse`` with every output's data in ``raw_output_contents``."""
    outputs = []
    contents = []
    for name, arr in response.outputs.items():
        outputs.append(
            pb.ModelInferResponse.InferOutputTensor(
                name=name, datatype=Datatype.from_numpy(arr.dtype).value, shape=arr.shape
            )
        )
        contents.append(encode_binary(arr))
    return pb.ModelInferResponse(
        model_name=response.model,
        model_version=str(response.version),
        id=response.id or "",
        outputs=outputs,
        raw_output_contents=contents,
    )


def tensor_metadata(
    specs: tuple[TensorSpec, ...],
) -> list[pb.ModelMetadataResponse.TensorMetadata]:
    """The ``inputs``/``outputs`` of ``ModelMetadataResponse``."""
    return [
        pb.ModelMetadataResponse.TensorMetadata(
            name=spec.name, datatype=spec.datatype.value, shape=spec.shape
        )
        for spec in specs
    ]
