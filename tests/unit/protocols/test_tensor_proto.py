"""tensorflow.TensorProto <-> numpy (protocols.md §3.3): both encodings, broadcasting, limits.

Every decoder property ends in one of two ways: the array the proto describes, or InvalidInput.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelport._pb.tensorflow.tensor_pb2 import DataType, TensorProto
from modelport.errors import FailedPrecondition, InvalidInput
from modelport.protocols.tfserving.tensor_proto import (
    MAX_BROADCAST_BYTES,
    TF_DATATYPES,
    datatype_name,
    fill_tensor_proto,
    from_tf_dtype,
    tensor_proto_to_array,
)
from modelport.types import Datatype
from tests.hypothesis_settings import FUZZ, PROPS

ALL = list(Datatype)
NUMERIC = [d for d in Datatype if d is not Datatype.BYTES]
FLOATS = [Datatype.FP32, Datatype.FP64]

#: TensorFlow's DataType numbers (tensorflow/core/framework/types.proto).
TF_NUMBERS = {
    Datatype.FP32: 1,
    Datatype.FP64: 2,
    Datatype.INT32: 3,
    Datatype.UINT8: 4,
    Datatype.INT16: 5,
    Datatype.INT8: 6,
    Datatype.BYTES: 7,
    Datatype.INT64: 9,
    Datatype.BOOL: 10,
    Datatype.BF16: 14,
    Datatype.UINT16: 17,
    Datatype.FP16: 19,
    Datatype.UINT32: 22,
    Datatype.UINT64: 23,
}
#: The typed field TensorFlow reads each dtype's values from (tensor.cc's ProtoHelper).
TYPED_FIELDS = {
    Datatype.FP32: "float_val",
    Datatype.FP64: "double_val",
    Datatype.INT32: "int_val",
    Datatype.INT16: "int_val",
    Datatype.INT8: "int_val",
    Datatype.UINT8: "int_val",
    Datatype.UINT16: "int_val",
    Datatype.INT64: "int64_val",
    Datatype.UINT32: "uint32_val",
    Datatype.UINT64: "uint64_val",
    Datatype.BOOL: "bool_val",
    Datatype.BYTES: "string_val",
    Datatype.FP16: "half_val",
    Datatype.BF16: "half_val",
}

shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3)


def _object_array(items: list[Any], shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out.reshape(shape)


@st.composite
def arrays(
    draw: st.DrawFn, datatype: Datatype, shape_of: st.SearchStrategy[tuple[int, ...]] = shapes
) -> np.ndarray[Any, Any]:
    """Any array of ``datatype``; floats as raw bit patterns (NaN payloads, -0.0, infinities)."""
    shape = draw(shape_of)
    if datatype is Datatype.BYTES:
        count = math.prod(shape)
        items = draw(st.lists(st.binary(max_size=12), min_size=count, max_size=count))
        return _object_array(items, shape)
    if datatype is Datatype.BOOL:
        return draw(hnp.arrays(np.bool_, shape))
    bits = np.dtype(f"<u{datatype.numpy_dtype.itemsize}")
    return draw(hnp.arrays(bits, shape)).view(datatype.numpy_dtype)


def proto(datatype: Datatype, shape: tuple[int, ...]) -> TensorProto:
    out = TensorProto(dtype=TF_NUMBERS[datatype])  # type: ignore[arg-type]
    for size in shape:
        out.tensor_shape.dim.add().size = size
    return out


def typed_values(arr: np.ndarray[Any, Any], datatype: Datatype) -> list[Any]:
    """What a client puts in the typed field: 16-bit floats as their bit patterns."""
    if datatype in (Datatype.FP16, Datatype.BF16):
        return arr.ravel().view(np.uint16).tolist()
    return arr.ravel().tolist()


def same(out: np.ndarray[Any, Any], arr: np.ndarray[Any, Any], datatype: Datatype) -> bool:
    """Equal in shape, dtype and value; 32/64-bit floats may quiet a NaN's payload on the way."""
    if out.shape != arr.shape or out.dtype != datatype.numpy_dtype:
        return False
    if datatype is Datatype.BYTES:
        return bool(out.tolist() == arr.tolist())
    if datatype in FLOATS:
        nan = np.isnan(arr)
        return bool(
            np.array_equal(np.isnan(out), nan)
            and out[~nan].tobytes() == arr[~nan].tobytes()  # -0.0 kept, bit-exact
        )
    return out.tobytes() == arr.tobytes()


# ---- dtypes ------------------------------------------------------------------------------------


def test_dtype_numbers_are_tensorflows() -> None:
    assert dict(TF_DATATYPES) == TF_NUMBERS
    for datatype, number in TF_NUMBERS.items():
        assert from_tf_dtype(number, "x") is datatype
    assert datatype_name(1) == "DT_FLOAT"
    assert datatype_name(26) == "DataType 26"


@pytest.mark.parametrize(
    "number", [0, 8, 11, 12, 13, 15, 16, 18, 20, 21, 24, 29, 101, 107, 999, -1]
)
def test_dtypes_modelport_does_not_serve_are_refused_with_the_list(number: int) -> None:
    with pytest.raises(InvalidInput, match="which modelport does not serve; use one of DT_BOOL"):
        tensor_proto_to_array(TensorProto(dtype=number), "x")  # type: ignore[arg-type]


# ---- decoding: both encodings ------------------------------------------------------------------


@PROPS
@given(data=st.data(), datatype=st.sampled_from(NUMERIC))
def test_tensor_content_decodes_bit_exact(data: st.DataObject, datatype: Datatype) -> None:
    arr = data.draw(arrays(datatype))
    message = proto(datatype, arr.shape)
    message.tensor_content = arr.tobytes()
    out = tensor_proto_to_array(TensorProto.FromString(message.SerializeToString()), "x")
    assert out.shape == arr.shape
    assert out.dtype == datatype.numpy_dtype
    assert out.tobytes() == arr.tobytes()


@PROPS
@given(data=st.data(), datatype=st.sampled_from(ALL))
def test_typed_values_decode(data: st.DataObject, datatype: Datatype) -> None:
    arr = data.draw(arrays(datatype))
    message = proto(datatype, arr.shape)
    getattr(message, TYPED_FIELDS[datatype]).extend(typed_values(arr, datatype))
    out = tensor_proto_to_array(TensorProto.FromString(message.SerializeToString()), "x")
    assert same(out, arr, datatype)


@PROPS
@given(data=st.data(), datatype=st.sampled_from(ALL))
def test_encoded_outputs_decode_to_the_same_array(data: st.DataObject, datatype: Datatype) -> None:
    arr = data.draw(arrays(datatype))
    message = TensorProto()
    fill_tensor_proto(message, arr, "y")
    assert message.dtype == TF_NUMBERS[datatype]
    assert message.HasField("tensor_shape")
    assert [d.size for d in message.tensor_shape.dim] == list(arr.shape)
    assert not message.tensor_content, "responses use the typed fields, as TF Serving does"
    filled = [f.name for f, _ in message.ListFields() if f.name.endswith("_val")]
    assert filled in ([TYPED_FIELDS[datatype]], []), filled
    out = tensor_proto_to_array(TensorProto.FromString(message.SerializeToString()), "y")
    assert same(out, arr, datatype)


@PROPS
@given(
    datatype=st.sampled_from(ALL),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
    data=st.data(),
)
def test_a_single_typed_value_fills_the_shape(
    datatype: Datatype, shape: tuple[int, ...], data: st.DataObject
) -> None:
    one = data.draw(arrays(datatype, st.just((1,))))
    message = proto(datatype, shape)
    getattr(message, TYPED_FIELDS[datatype]).extend(typed_values(one, datatype))
    out = tensor_proto_to_array(message, "x")
    count = math.prod(shape)
    expected = _object_array([one.ravel()[0]] * count, shape).astype(one.dtype)
    assert same(out, expected, datatype)


def test_make_tensor_proto_of_a_scalar_with_a_shape_is_broadcast() -> None:
    # What tf.make_tensor_proto(0.5, shape=[2, 3]) sends.
    message = proto(Datatype.FP32, (2, 3))
    message.float_val.append(0.5)
    assert tensor_proto_to_array(message, "x").tolist() == [[0.5] * 3] * 2


def test_a_tensor_without_a_shape_is_a_scalar() -> None:
    message = TensorProto(dtype=DataType.DT_INT64, int64_val=[7])
    out = tensor_proto_to_array(message, "x")
    assert out.shape == ()
    assert out.dtype == np.int64
    assert int(out) == 7


def test_strings_stay_bytes_and_empty_tensors_decode() -> None:
    message = proto(Datatype.BYTES, (2,))
    message.string_val.extend([b"\x00\xff", "é".encode()])
    assert tensor_proto_to_array(message, "s").tolist() == [b"\x00\xff", b"\xc3\xa9"]
    empty = proto(Datatype.FP32, (0, 4))
    assert tensor_proto_to_array(empty, "x").shape == (0, 4)


def test_half_val_accepts_patterns_written_as_int16() -> None:
    patterns = np.array([-1.5, 2.0], np.float16).view(np.uint16)
    message = proto(Datatype.FP16, (2,))
    message.half_val.extend(patterns.view(np.int16).tolist())  # -15872 is 0xC200
    assert tensor_proto_to_array(message, "h").tolist() == [-1.5, 2.0]
    message = proto(Datatype.BF16, (1,))
    message.half_val.append(int(np.array([1.5], ml_dtypes.bfloat16).view(np.uint16)[0]))
    assert tensor_proto_to_array(message, "h").astype(np.float32).tolist() == [1.5]


# ---- decoding: what is refused -----------------------------------------------------------------


@PROPS
@given(datatype=st.sampled_from(NUMERIC), shape=shapes, delta=st.integers(-9, 9))
def test_tensor_content_must_match_the_shape_exactly(
    datatype: Datatype, shape: tuple[int, ...], delta: int
) -> None:
    size = math.prod(shape) * datatype.numpy_dtype.itemsize
    message = proto(datatype, shape)
    message.tensor_content = bytes(max(size + delta, 0))
    if len(message.tensor_content) == size:
        assert tensor_proto_to_array(message, "x").shape == shape
    else:
        # (Empty content is no content: then the typed field is read, and it is empty too.)
        refused = r"input 'x': \d+ bytes of data, but shape|input 'x' has 0 values in"
        with pytest.raises(InvalidInput, match=refused):
            tensor_proto_to_array(message, "x")


@PROPS
@given(datatype=st.sampled_from(ALL), shape=shapes, given_count=st.integers(0, 30))
def test_typed_values_must_be_one_or_one_per_element(
    datatype: Datatype, shape: tuple[int, ...], given_count: int
) -> None:
    count = math.prod(shape)
    message = proto(datatype, shape)
    value: Any = b"s" if datatype is Datatype.BYTES else (True if datatype is Datatype.BOOL else 1)
    getattr(message, TYPED_FIELDS[datatype]).extend([value] * given_count)
    if given_count in (count, 1):
        assert tensor_proto_to_array(message, "x").shape == shape
    else:
        with pytest.raises(
            InvalidInput,
            match=rf"input 'x' has {given_count} values in {TYPED_FIELDS[datatype]}, but its "
            rf"shape .* holds {count}; send {count} values, or a single one",
        ):
            tensor_proto_to_array(message, "x")


@pytest.mark.parametrize(
    ("datatype", "values", "bad"),
    [
        (Datatype.UINT8, [1, 256], 256),
        (Datatype.UINT8, [-1], -1),
        (Datatype.INT8, [128], 128),
        (Datatype.INT8, [-129], -129),
        (Datatype.INT16, [40000], 40000),
        (Datatype.UINT16, [-5], -5),
        (Datatype.UINT16, [70000], 70000),
    ],
)
def test_int_val_out_of_the_dtypes_range_is_refused(
    datatype: Datatype, values: list[int], bad: int
) -> None:
    message = proto(datatype, (len(values),))
    message.int_val.extend(values)
    with pytest.raises(InvalidInput, match=rf"the value {bad} in int_val is out of its range"):
        tensor_proto_to_array(message, "x")


@pytest.mark.parametrize("pattern", [65536, -32769, 2**31 - 1])
def test_half_val_outside_16_bits_is_refused(pattern: int) -> None:
    message = proto(Datatype.FP16, (1,))
    message.half_val.append(pattern)
    with pytest.raises(InvalidInput, match="half_val holds 16-bit patterns, 0 to 65535"):
        tensor_proto_to_array(message, "x")


def test_refusals_name_the_input_and_say_what_to_send() -> None:
    cases: list[tuple[TensorProto, str]] = []
    strings = proto(Datatype.BYTES, (1,))
    strings.tensor_content = b"\x01\x00\x00\x00a"
    cases.append((strings, "is DT_STRING; send its strings in string_val, not tensor_content"))
    both = proto(Datatype.FP32, (1,))
    both.tensor_content = bytes(4)
    both.float_val.append(1.0)
    cases.append((both, "sets both tensor_content and float_val; send its values in only one"))
    wrong = proto(Datatype.FP32, (2,))
    wrong.int_val.extend([1, 2])
    cases.append((wrong, "is DT_FLOAT, whose values go in float_val .*; the request set int_val"))
    negative = proto(Datatype.FP32, (2, -1))
    negative.float_val.append(1.0)
    cases.append((negative, r"has shape \[2, -1\]; a request tensor's dimensions are sizes"))
    unknown = proto(Datatype.FP32, ())
    unknown.tensor_shape.unknown_rank = True
    cases.append((unknown, "has an unknown rank; give tensor_shape the dimensions"))
    deep = proto(Datatype.FP32, (1,) * 65)
    cases.append((deep, "has 65 dimensions; at most 64"))
    none = proto(Datatype.FP32, (3,))
    cases.append((none, "has 0 values in float_val, but its shape \\[3\\] holds 3"))
    for message, expected in cases:
        with pytest.raises(InvalidInput, match=expected) as info:
            tensor_proto_to_array(message, "x")
        assert "'x'" in info.value.message


@pytest.mark.parametrize(
    ("datatype", "shape"),
    [
        (Datatype.FP32, (2**31, 2**31)),
        (Datatype.BOOL, (MAX_BROADCAST_BYTES + 1,)),
        (Datatype.FP64, (MAX_BROADCAST_BYTES // 8 + 1,)),
        (Datatype.BYTES, (2**30,)),
        (Datatype.INT8, (2**40, 2**40, 2**40)),
    ],
)
def test_a_broadcast_never_allocates_past_the_limit(
    datatype: Datatype, shape: tuple[int, ...]
) -> None:
    message = proto(datatype, shape)
    value: Any = b"long string" if datatype is Datatype.BYTES else 1
    getattr(message, TYPED_FIELDS[datatype]).append(value)
    with pytest.raises(InvalidInput, match=r"would take \d+ bytes, more than the 67108864"):
        tensor_proto_to_array(message, "x")


def test_a_dimension_past_the_bound_is_refused_before_anything_else() -> None:
    message = proto(Datatype.FP32, (2**41,))
    message.tensor_content = bytes(8)
    with pytest.raises(InvalidInput, match="is too large"):
        tensor_proto_to_array(message, "x")


dims = st.one_of(st.integers(0, 4), st.integers(2**31, 2**62), st.integers(-3, -1))


@st.composite
def any_tensor_protos(draw: st.DrawFn) -> TensorProto:
    """TensorProtos with any dtype number, shape, content and typed values, valid or not."""
    message = TensorProto(
        dtype=draw(st.one_of(st.integers(0, 31), st.integers(100, 124))),  # type: ignore[arg-type]
        version_number=draw(st.integers(0, 2)),
    )
    if draw(st.booleans()):
        message.tensor_shape.unknown_rank = draw(st.booleans())
        for size in draw(st.lists(dims, max_size=5)):
            message.tensor_shape.dim.add().size = size
    message.tensor_content = draw(st.binary(max_size=40))
    small = st.lists(st.integers(-(2**31), 2**31 - 1), max_size=4)
    message.float_val.extend(draw(st.lists(st.floats(width=32), max_size=4)))
    message.double_val.extend(draw(st.lists(st.floats(), max_size=4)))
    message.int_val.extend(draw(small))
    message.half_val.extend(draw(small))
    message.int64_val.extend(draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4)))
    message.uint32_val.extend(draw(st.lists(st.integers(0, 2**32 - 1), max_size=4)))
    message.uint64_val.extend(draw(st.lists(st.integers(0, 2**64 - 1), max_size=4)))
    message.bool_val.extend(draw(st.lists(st.booleans(), max_size=4)))
    message.string_val.extend(draw(st.lists(st.binary(max_size=6), max_size=4)))
    message.scomplex_val.extend(draw(st.lists(st.floats(width=32), max_size=2)))
    return message


def _keep_some_fields(message: TensorProto, keep: set[str]) -> None:
    for field in [f.name for f, _ in message.ListFields()]:
        if field not in keep:
            message.ClearField(field)


@FUZZ
@given(message=any_tensor_protos(), keep=st.sets(st.sampled_from(list(TYPED_FIELDS.values()))))
def test_any_tensor_proto_decodes_or_is_invalid_input(message: TensorProto, keep: set[str]) -> None:
    _keep_some_fields(message, keep | {"dtype", "tensor_shape", "tensor_content", "version_number"})
    error: str | None = None
    try:
        out = tensor_proto_to_array(message, "x")
    except InvalidInput as exc:
        error = exc.message
    else:
        shape = tuple(d.size for d in message.tensor_shape.dim)
        assert out.shape == shape
        assert out.dtype == from_tf_dtype(message.dtype, "x").numpy_dtype
    assert error is None or "'x'" in error


@FUZZ
@given(blob=st.binary(max_size=200))
def test_any_bytes_that_parse_as_a_tensor_proto_decode_or_are_invalid_input(blob: bytes) -> None:
    try:
        message = TensorProto.FromString(blob)
    except Exception:  # the gRPC layer answers INVALID_ARGUMENT for unparseable messages
        return
    with contextlib.suppress(InvalidInput):
        tensor_proto_to_array(message, "x")


# ---- encoding ----------------------------------------------------------------------------------


def test_encoding_writes_strings_as_utf8_bytes_and_scalars_with_an_empty_shape() -> None:
    message = TensorProto()
    fill_tensor_proto(message, np.array(["é", b"\x00"], dtype=object), "text")
    assert message.dtype == DataType.DT_STRING
    assert list(message.string_val) == [b"\xc3\xa9", b"\x00"]
    scalar = TensorProto()
    fill_tensor_proto(scalar, np.array(2.5, np.float32), "total")
    assert scalar.HasField("tensor_shape")
    assert list(scalar.tensor_shape.dim) == []
    assert list(scalar.float_val) == [2.5]
    half = TensorProto()
    fill_tensor_proto(half, np.array([1.0], np.float16), "h")
    assert list(half.half_val) == [0x3C00]


def test_an_output_numpy_cannot_carry_as_a_tensor_proto_is_a_failed_precondition() -> None:
    with pytest.raises(FailedPrecondition, match="output 'z' is of numpy dtype complex64"):
        fill_tensor_proto(TensorProto(), np.zeros(2, np.complex64), "z")
