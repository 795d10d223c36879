"""``tensorflow.TensorProto`` to numpy and back, as TF Serving's gRPC API carries tensors.

A request tensor comes in one of two encodings, and both are read:

- ``tensor_content``: the raw little-endian, row-major bytes of every element (what
  ``tf.make_tensor_proto`` writes for a numpy array). Its size must match the shape exactly.
  Strings cannot travel this way; they go in ``string_val``.
- a typed field (``float_val``, ``int_val`` ...), the one TensorFlow names for the dtype. It
  holds one value per element, or a single value that fills the whole shape (TensorFlow's
  broadcast of a lone value). ``half_val`` holds the 16-bit patterns of DT_HALF and
  DT_BFLOAT16 elements; ``int_val`` holds the 8- and 16-bit integer types as int32.

Every size is checked before anything is allocated: the shape's element count is computed on
Python integers with a bound per dimension, data must match it, and a broadcast value may fill at
most ``MAX_BROADCAST_BYTES``. Anything wrong is an ``InvalidInput`` naming the input.

Responses use the typed fields, as TF Serving does by default (strings as ``string_val`` bytes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from modelport._pb.tensorflow import tensor_pb2
from modelport._pb.tensorflow.tensor_pb2 import TensorProto
from modelport.errors import FailedPrecondition, InvalidInput
from modelport.protocols.tensors import decode_binary, element_count
from modelport.protocols.tfserving.codec import TF_DTYPES
from modelport.types import Datatype

__all__ = [
    "MAX_BROADCAST_BYTES",
    "TF_DATATYPES",
    "datatype_name",
    "fill_tensor_proto",
    "from_tf_dtype",
    "tensor_proto_to_array",
]

DataType = tensor_pb2.DataType

#: Each datatype's ``tensorflow.DataType`` number.
TF_DATATYPES: dict[Datatype, DataType] = {
    d: cast(DataType, DataType.Value(name)) for d, name in TF_DTYPES.items()
}
_FROM_TF: dict[int, Datatype] = {number: d for d, number in TF_DATATYPES.items()}

#: The most a single broadcast value may expand to: the size of the largest request message.
MAX_BROADCAST_BYTES = 64 * 2**20

#: The typed field that carries each datatype's values.
_FIELDS: dict[Datatype, str] = {
    Datatype.BOOL: "bool_val",
    Datatype.UINT8: "int_val",
    Datatype.UINT16: "int_val",
    Datatype.UINT32: "uint32_val",
    Datatype.UINT64: "uint64_val",
    Datatype.INT8: "int_val",
    Datatype.INT16: "int_val",
    Datatype.INT32: "int_val",
    Datatype.INT64: "int64_val",
    Datatype.FP16: "half_val",
    Datatype.FP32: "float_val",
    Datatype.FP64: "double_val",
    Datatype.BF16: "half_val",
    Datatype.BYTES: "string_val",
}
#: Every typed value field of TensorProto (those of dtypes modelport does not serve too).
_VALUE_FIELDS = (
    "float_val",
    "double_val",
    "int_val",
    "string_val",
    "scomplex_val",
    "int64_val",
    "bool_val",
    "dcomplex_val",
    "half_val",
    "uint32_val",
    "uint64_val",
)
#: The numpy dtype each field's values arrive in (before narrowing to the tensor's dtype).
_FIELD_DTYPES: dict[str, np.dtype[Any]] = {
    "bool_val": np.dtype(np.bool_),
    "int_val": np.dtype(np.int32),
    "uint32_val": np.dtype(np.uint32),
    "uint64_val": np.dtype(np.uint64),
    "int64_val": np.dtype(np.int64),
    "half_val": np.dtype(np.int32),
    "float_val": np.dtype(np.float32),
    "double_val": np.dtype(np.float64),
}
#: Bytes a string element costs beyond its own length (an object array's reference).
_STRING_OVERHEAD = 8


def datatype_name(number: int) -> str:
    """``DT_FLOAT`` for 1; a number the enum does not know is shown as such."""
    try:
        return DataType.Name(number)
    except ValueError:
        return f"DataType {number}"


def from_tf_dtype(number: int, name: str) -> Datatype:
    """The datatype of a ``tensorflow.DataType`` number; InvalidInput if modelport has none."""
    found = _FROM_TF.get(number)
    if found is None:
        served = ", ".join(TF_DTYPES[d] for d in Datatype)
        raise InvalidInput(
            f"input {name!r} has dtype {datatype_name(number)}, which modelport does not serve; "
            f"use one of {served}"
        )
    return found


# ---- decoding ----------------------------------------------------------------------------------


def tensor_proto_to_array(proto: TensorProto, name: str) -> np.ndarray[Any, Any]:
    """The numpy array a request's TensorProto holds; InvalidInput if it is malformed."""
    datatype = from_tf_dtype(proto.dtype, name)
    shape = _shape(proto, name)
    typed = [field for field in _VALUE_FIELDS if len(getattr(proto, field))]
    if proto.tensor_content:
        if typed:
            raise InvalidInput(
                f"input {name!r} sets both tensor_content and {typed[0]}; send its values in "
                "only one of them"
            )
        return _from_content(proto.tensor_content, datatype, shape, name)
    expected = _FIELDS[datatype]
    wrong = [field for field in typed if field != expected]
    if wrong:
        raise InvalidInput(
            f"input {name!r} is {TF_DTYPES[datatype]}, whose values go in {expected} (or "
            f"tensor_content); the request set {wrong[0]}"
        )
    return _from_field(proto, datatype, shape, name)


def _shape(proto: TensorProto, name: str) -> tuple[int, ...]:
    if not proto.HasField("tensor_shape"):
        return ()
    tensor_shape = proto.tensor_shape
    if tensor_shape.unknown_rank:
        raise InvalidInput(
            f"input {name!r} has an unknown rank; give tensor_shape the dimensions of the data"
        )
    shape = tuple(dim.size for dim in tensor_shape.dim)
    if any(size < 0 for size in shape):
        raise InvalidInput(
            f"input {name!r} has shape {list(shape)}; a request tensor's dimensions are sizes, "
            "0 or more (-1 is only for signatures)"
        )
    return shape


def _from_content(
    content: bytes, datatype: Datatype, shape: tuple[int, ...], name: str
) -> np.ndarray[Any, Any]:
    if datatype is Datatype.BYTES:
        raise InvalidInput(
            f"input {name!r} is DT_STRING; send its strings in string_val, not tensor_content"
        )
    return decode_binary(memoryview(content), datatype, shape, name)


def _from_field(
    proto: TensorProto, datatype: Datatype, shape: tuple[int, ...], name: str
) -> np.ndarray[Any, Any]:
    field = _FIELDS[datatype]
    count = element_count(shape, name)
    values = getattr(proto, field)
    given = len(values)
    if given not in (count, 1):
        raise InvalidInput(
            f"input {name!r} has {given} values in {field}, but its shape {list(shape)} holds "
            f"{count}; send {count} values, or a single one to fill the shape"
        )
    if given != count:
        _check_broadcast(count * _element_bytes(datatype, values), name, shape)
    if datatype is Datatype.BYTES:
        flat = _strings(values, count)
    else:
        flat = _numbers(values, datatype, field, name)
        if given != count:
            flat = np.full(count, flat[0], dtype=flat.dtype)
    return flat.reshape(shape)


def _element_bytes(datatype: Datatype, values: Sequence[Any]) -> int:
    """What one element costs in memory (a string: its length and a reference to it)."""
    if datatype is Datatype.BYTES:
        return len(values[0]) + _STRING_OVERHEAD
    return datatype.numpy_dtype.itemsize


def _check_broadcast(size: int, name: str, shape: tuple[int, ...]) -> None:
    if size > MAX_BROADCAST_BYTES:
        raise InvalidInput(
            f"input {name!r}: a single value filling shape {list(shape)} would take {size} "
            f"bytes, more than the {MAX_BROADCAST_BYTES} a request tensor may; send a smaller "
            "shape"
        )


def _strings(values: Sequence[bytes], count: int) -> np.ndarray[Any, Any]:
    out = np.empty(count, dtype=object)
    if len(values) == count:
        out[:] = list(values)
    elif count:
        out.fill(values[0])
    return out


def _numbers(
    values: Sequence[Any], datatype: Datatype, field: str, name: str
) -> np.ndarray[Any, Any]:
    raw = np.array(values, dtype=_FIELD_DTYPES[field])
    if datatype in (Datatype.FP16, Datatype.BF16):
        return _half_patterns(raw, datatype, name)
    target = datatype.numpy_dtype
    if raw.dtype == target:
        return raw
    if raw.size:
        info = np.iinfo(target)
        low, high = int(raw.min()), int(raw.max())
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise InvalidInput(
                f"input {name!r} is {TF_DTYPES[datatype]}; the value {bad} in {field} is out of "
                f"its range [{info.min}, {info.max}]"
            )
    return raw.astype(target)


def _half_patterns(
    raw: np.ndarray[Any, Any], datatype: Datatype, name: str
) -> np.ndarray[Any, Any]:
    """16-bit floats from their bit patterns (0..65535; -32768..-1 is read as their int16 form)."""
    if raw.size and (int(raw.min()) < -(2**15) or int(raw.max()) >= 2**16):
        raise InvalidInput(
            f"input {name!r} is {TF_DTYPES[datatype]}; half_val holds 16-bit patterns, 0 to 65535"
        )
    return (raw & 0xFFFF).astype(np.uint16).view(datatype.numpy_dtype)


# ---- encoding ----------------------------------------------------------------------------------


def fill_tensor_proto(proto: TensorProto, arr: np.ndarray[Any, Any], name: str) -> None:
    """Write ``arr`` into an empty TensorProto: dtype, shape and the typed value field."""
    try:
        datatype = Datatype.from_numpy(arr.dtype)
    except ValueError as exc:
        raise FailedPrecondition(
            f"output {name!r} is of numpy dtype {arr.dtype}, which a TensorProto cannot carry"
        ) from exc
    proto.dtype = TF_DATATYPES[datatype]
    dims = proto.tensor_shape.dim
    for size in arr.shape:
        dims.add().size = size
    if not arr.shape:
        proto.tensor_shape.SetInParent()
    field = getattr(proto, _FIELDS[datatype])
    field.extend(_field_values(arr, datatype))


def _field_values(arr: np.ndarray[Any, Any], datatype: Datatype) -> list[Any]:
    flat = arr.ravel()
    if datatype is Datatype.BYTES:
        return [item if isinstance(item, bytes) else str(item).encode("utf-8") for item in flat]
    if datatype in (Datatype.FP16, Datatype.BF16):
        flat = flat.view(np.uint16)
    values: list[Any] = flat.tolist()
    return values
