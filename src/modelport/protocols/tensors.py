"""Tensor conversions shared by the protocols: JSON values and raw bytes to numpy, and back.

JSON numbers become numpy arrays in one C call (``np.asarray``); the element kind is then checked
against the datatype, so a string, a fraction for an integer input, or an out-of-range integer is
refused with a message instead of being silently converted. BYTES tensors are numpy object arrays
of ``bytes``.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Iterable
from typing import Any

import numpy as np

from modelport.errors import FailedPrecondition, InvalidInput
from modelport.protocols.wire import dump_json, dump_json_nonfinite
from modelport.types import Datatype

__all__ = [
    "array_from_json",
    "array_to_json_values",
    "bytes_array",
    "decode_binary",
    "dump_outputs_json",
    "element_count",
    "encode_binary",
    "has_nonfinite",
    "reshaped",
]


_LENGTH = struct.Struct("<I")

#: The most dimensions a tensor may have (numpy's own limit).
MAX_RANK = 64


def array_from_json(
    values: Any, datatype: Datatype, name: str, *, allow_b64: bool = False
) -> np.ndarray[Any, Any]:
    """A numpy array of ``datatype`` from (possibly nested) JSON values."""
    if datatype is Datatype.BYTES:
        return bytes_array(values, name, allow_b64=allow_b64)
    try:
        raw = np.asarray(values)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            f"input {name!r}: nested lists must all have the same length and be at most "
            f"{MAX_RANK} deep ({exc})"
        ) from exc

    kind = raw.dtype.kind
    target = datatype.numpy_dtype
    if datatype is Datatype.BOOL:
        if kind != "b" and raw.size:
            raise _wrong_kind(name, datatype, raw)
        return raw.astype(target, copy=False)
    if target.kind in "iu":
        return _integers(values, raw, datatype, name)
    if kind not in "fiu" and raw.size:
        raise _wrong_kind(name, datatype, raw)
    return raw.astype(target, copy=False)


def _integers(
    values: Any, raw: np.ndarray[Any, Any], datatype: Datatype, name: str
) -> np.ndarray[Any, Any]:
    target = datatype.numpy_dtype
    if not raw.size:
        return raw.astype(target)
    kind = raw.dtype.kind
    if kind == "f":
        exact = np.asarray(values, dtype=object)
        if all(type(v) is int for v in exact.flat):
            # Integers beyond int64 next to small ones make numpy fall back to float64.
            raw = exact
        elif not np.all(np.isfinite(raw)) or not np.array_equal(raw, np.trunc(raw)):
            raise InvalidInput(f"input {name!r} is {datatype}; it takes whole numbers only")
    elif kind not in "iu":
        raise _wrong_kind(name, datatype, raw)
    info = np.iinfo(target)
    low, high = raw.min(), raw.max()
    if raw.dtype.kind == "f":
        # Compare floats against exact powers of two: float(info.max) rounds up to one past it.
        out_of_range = low < float(info.min) or high >= 2.0 ** (info.bits - (info.min < 0))
    else:
        out_of_range = low < info.min or high > info.max
    if out_of_range:
        raise InvalidInput(
            f"input {name!r} is {datatype}; the value {low if low < info.min else high} is out "
            f"of its range [{info.min}, {info.max}]"
        )
    return raw.astype(target, copy=False)


def _wrong_kind(name: str, datatype: Datatype, raw: np.ndarray[Any, Any]) -> InvalidInput:
    found = {
        "b": "true/false values",
        "U": "strings",
        "S": "strings",
        "O": "values of mixed or unsupported types",
        "f": "numbers",
        "i": "numbers",
        "u": "numbers",
    }.get(raw.dtype.kind, str(raw.dtype))
    wanted = "true/false values" if datatype is Datatype.BOOL else "numbers"
    return InvalidInput(
        f"input {name!r} is {datatype} and takes {wanted}; the request sent {found}"
    )


def bytes_array(values: Any, name: str, *, allow_b64: bool = False) -> np.ndarray[Any, Any]:
    """An object array of ``bytes`` from nested JSON strings (and ``{"b64": ...}`` if allowed)."""
    flat, shape = _flatten_bytes(values, name, allow_b64, 0)
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(shape)


def _flatten_bytes(
    values: Any, name: str, allow_b64: bool, depth: int
) -> tuple[list[bytes], tuple[int, ...]]:
    if isinstance(values, list):
        if depth >= MAX_RANK:
            raise InvalidInput(f"input {name!r}: nested more than {MAX_RANK} lists deep")
        if not values:
            return [], (0,)
        parts = [_flatten_bytes(v, name, allow_b64, depth + 1) for v in values]

        inner = parts[0][1]
        if any(shape != inner for _, shape in parts):
            raise InvalidInput(f"input {name!r}: nested lists must all have the same length")
        return [item for flat, _ in parts for item in flat], (len(values), *inner)
    return [_one_bytes(values, name, allow_b64)], ()


def _one_bytes(value: Any, name: str, allow_b64: bool) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if allow_b64 and isinstance(value, dict) and set(value) == {"b64"}:
        encoded = value["b64"]
        try:
            if not isinstance(encoded, str):
                raise ValueError("not a string")
            return base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise InvalidInput(f"input {name!r}: the b64 value is not valid base64") from exc
    raise InvalidInput(f"input {name!r} is BYTES and takes strings; the request sent {value!r:.40}")


def decode_binary(
    data: memoryview, datatype: Datatype, shape: tuple[int, ...], name: str
) -> np.ndarray[Any, Any]:
    """A tensor from little-endian, row-major raw bytes (BYTES: 4-byte length + bytes each)."""
    count = element_count(shape, name)
    if datatype is Datatype.BYTES:
        return reshaped(_decode_bytes_elements(data, count, name), shape, name)
    itemsize = datatype.itemsize or 1
    if len(data) != count * itemsize:
        raise InvalidInput(
            f"input {name!r}: {len(data)} bytes of data, but shape {list(shape)} of {datatype} "
            f"needs {count * itemsize} bytes"
        )
    # Wire data is little-endian; so is every host modelport supports (x86-64, aarch64).
    arr = np.frombuffer(data, dtype=datatype.numpy_dtype)
    if datatype is Datatype.BOOL and count and arr.view(np.uint8).max() > 1:
        raise InvalidInput(f"input {name!r}: BOOL elements are one byte each, 0 or 1")
    return reshaped(arr, shape, name)


#: The largest size of one dimension: far past any real tensor, small enough to never overflow.
MAX_DIM = 2**40


def element_count(shape: tuple[int, ...], name: str) -> int:
    """The number of elements of ``shape``, after checking its rank and dimensions."""
    if len(shape) > MAX_RANK:
        raise InvalidInput(f"input {name!r} has {len(shape)} dimensions; at most {MAX_RANK}")
    count = 1
    for dim in shape:
        if dim > MAX_DIM:
            raise InvalidInput(
                f"input {name!r}: dimension {dim} of shape {list(shape)} is too large"
            )
        count *= dim
    return count


def reshaped(arr: np.ndarray[Any, Any], shape: tuple[int, ...], name: str) -> np.ndarray[Any, Any]:
    """``arr`` in ``shape``; a shape numpy refuses is the request's error."""
    try:
        return arr.reshape(shape)
    except ValueError as exc:
        raise InvalidInput(f"input {name!r} cannot take the shape {list(shape)}: {exc}") from exc


def _decode_bytes_elements(data: memoryview, count: int, name: str) -> np.ndarray[Any, Any]:
    items: list[bytes] = []
    offset = 0
    end = len(data)
    for _ in range(count):
        if offset + 4 > end:
            raise InvalidInput(f"input {name!r}: the BYTES data ends before element {len(items)}")
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += 4
        if offset + length > end:
            raise InvalidInput(f"input {name!r}: BYTES element {len(items)} runs past the data")
        items.append(bytes(data[offset : offset + length]))
        offset += length
    if offset != end:
        raise InvalidInput(
            f"input {name!r}: {end - offset} bytes left after the {count} BYTES elements of its "
            "shape"
        )
    out = np.empty(count, dtype=object)
    out[:] = items
    return out


def encode_binary(arr: np.ndarray[Any, Any]) -> bytes:
    """Raw little-endian bytes of a tensor (BYTES: 4-byte length prefix per element)."""
    if arr.dtype.kind in "OSU":
        parts: list[bytes] = []
        for item in arr.flat:
            raw = item if isinstance(item, bytes) else str(item).encode("utf-8")
            parts.append(_LENGTH.pack(len(raw)))
            parts.append(raw)
        return b"".join(parts)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return np.ascontiguousarray(arr).tobytes()


def has_nonfinite(arr: np.ndarray[Any, Any]) -> bool:
    """Whether a float array (bfloat16 included) holds NaN or an infinity."""
    kind = arr.dtype.kind
    if kind == "V" and arr.dtype == _BF16:
        arr = arr.astype(np.float32)
    elif kind != "f":
        return False
    return arr.size > 0 and not bool(np.isfinite(arr).all())


_BF16 = Datatype.BF16.numpy_dtype


def array_to_json_values(arr: np.ndarray[Any, Any], name: str) -> Any:
    """A JSON-serialisable form of an output: the array itself where orjson can write it."""
    if arr.dtype.kind in "OSU":
        try:
            return [
                item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in arr.flat
            ]
        except UnicodeDecodeError as exc:
            raise FailedPrecondition(
                f"output {name!r} holds bytes that are not UTF-8 text; request it as binary data"
            ) from exc
    if arr.dtype.kind == "V":  # bfloat16 (ml_dtypes): JSON carries it as a plain number
        return arr.astype(np.float32).ravel()
    return arr.ravel()


def dump_outputs_json(doc: Any, arrays: Iterable[np.ndarray[Any, Any]]) -> bytes:
    """``doc`` as JSON, with NaN and infinities in ``arrays`` written as NaN/Infinity tokens.

    orjson writes them as ``null``; TF Serving and Triton write the bare tokens, so a body in
    which orjson wrote ``null`` is written again with the standard library when one of the
    arrays it came from really holds a non-finite value.
    """
    body = dump_json(doc)
    if b"null" in body and any(has_nonfinite(arr) for arr in arrays):
        body = dump_json_nonfinite(doc)
    return body
