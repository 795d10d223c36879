"""Property tests of the tensor conversions every protocol shares (design robustness.md, T6b).

Each decoder either returns a tensor equal to the reference or raises ``InvalidInput``; any other
exception fails. Hypothesis keeps no example database here, so the tests write no files.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
import warnings
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelport.errors import FailedPrecondition, InvalidInput
from modelport.protocols.tensors import (
    array_from_json,
    array_to_json_values,
    bytes_array,
    decode_binary,
    encode_binary,
    has_nonfinite,
)
from modelport.protocols.wire import dump_json, dump_json_nonfinite, parse_json_object
from modelport.types import Datatype
from tests.hypothesis_settings import FUZZ, PROPS

ALL = list(Datatype)
NUMERIC = [d for d in Datatype if d is not Datatype.BYTES]
INTEGERS = [d for d in Datatype if d.numpy_dtype.kind in "iu"]
FLOATS = [Datatype.FP16, Datatype.FP32, Datatype.FP64, Datatype.BF16]

shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3)


def _object_array(items: list[Any], shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out.reshape(shape)


@st.composite
def wire_arrays(draw: st.DrawFn, datatype: Datatype) -> np.ndarray[Any, Any]:
    """Any array of ``datatype``: floats and ints as raw bit patterns (NaN payloads, -0.0)."""
    shape = draw(shapes)
    if datatype is Datatype.BYTES:
        count = math.prod(shape)
        items = draw(st.lists(st.binary(max_size=12), min_size=count, max_size=count))
        return _object_array(items, shape)
    if datatype is Datatype.BOOL:
        return draw(hnp.arrays(np.bool_, shape))
    bits = np.dtype(f"<u{datatype.numpy_dtype.itemsize}")
    return draw(hnp.arrays(bits, shape)).view(datatype.numpy_dtype)


@st.composite
def text_arrays(draw: st.DrawFn) -> np.ndarray[Any, Any]:
    """BYTES arrays whose elements are UTF-8 text, the only BYTES JSON can carry."""
    shape = draw(shapes)
    count = math.prod(shape)
    items = draw(st.lists(st.text(max_size=8), min_size=count, max_size=count))
    return _object_array([s.encode("utf-8") for s in items], shape)


def _through_json(arr: np.ndarray[Any, Any], datatype: Datatype) -> np.ndarray[Any, Any]:
    """Output encoding, serialisation and parsing as the server does them, then input decoding."""
    values = array_to_json_values(arr, "x")
    doc = {"data": values}
    body = dump_json(doc)
    if isinstance(values, np.ndarray) and has_nonfinite(values):
        body = dump_json_nonfinite(doc)
    parsed = parse_json_object(body)["data"]
    return array_from_json(parsed, datatype, "x").reshape(arr.shape)


def _same_floats(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    """Equal as float64, NaN equal to NaN, and -0.0 told from 0.0 (a NaN's sign is not kept)."""
    with np.errstate(invalid="ignore"):  # widening a signalling NaN raises the invalid flag
        wide_a, wide_b = a.astype(np.float64), b.astype(np.float64)

    numbers = ~np.isnan(wide_a)
    return bool(
        np.array_equal(wide_a, wide_b, equal_nan=True)
        and np.array_equal(np.signbit(wide_a[numbers]), np.signbit(wide_b[numbers]))
    )


# ---- binary extension --------------------------------------------------------------------------


@PROPS
@given(data=st.data(), datatype=st.sampled_from(ALL))
def test_binary_round_trip_is_exact(data: st.DataObject, datatype: Datatype) -> None:
    arr = data.draw(wire_arrays(datatype))
    blob = encode_binary(arr)
    out = decode_binary(memoryview(blob), datatype, arr.shape, "x")
    assert out.shape == arr.shape
    assert out.dtype == datatype.numpy_dtype
    if datatype is Datatype.BYTES:
        assert len(blob) == sum(4 + len(item) for item in arr.flat)
        assert [type(v) for v in out.flat] == [bytes] * arr.size
        assert out.tolist() == arr.tolist()
    else:
        assert len(blob) == arr.size * datatype.numpy_dtype.itemsize
        assert out.tobytes() == arr.tobytes()  # bit-exact, NaN payloads included
    if datatype in FLOATS:
        assert _same_floats(out, arr)


@PROPS
@given(data=st.data(), datatype=st.sampled_from(NUMERIC))
def test_encode_binary_is_little_endian_row_major_for_any_layout(
    data: st.DataObject, datatype: Datatype
) -> None:
    arr = data.draw(wire_arrays(datatype))
    expected = np.ascontiguousarray(arr).tobytes()
    assert encode_binary(np.asfortranarray(arr)) == expected
    assert encode_binary(arr.T) == np.ascontiguousarray(arr.T).tobytes()
    if arr.ndim and arr.shape[0] > 1:
        assert encode_binary(arr[::2]) == np.ascontiguousarray(arr[::2]).tobytes()
    if datatype not in (Datatype.BOOL, Datatype.BF16) and datatype.numpy_dtype.itemsize > 1:
        big = arr.astype(arr.dtype.newbyteorder(">"))
        assert encode_binary(big) == expected


def test_bytes_wire_format_is_length_prefixed() -> None:
    arr = _object_array([b"ab", b"", "é"], (3,))
    assert encode_binary(arr) == b"\x02\x00\x00\x00ab" + b"\x00" * 4 + b"\x02\x00\x00\x00\xc3\xa9"


@PROPS
@given(items=st.lists(st.binary(max_size=10), min_size=1, max_size=6), cut=st.integers(1, 80))
def test_bytes_data_that_ends_early_is_refused(items: list[bytes], cut: int) -> None:
    blob = encode_binary(_object_array(items, (len(items),)))
    truncated = blob[: len(blob) - min(cut, len(blob))]
    with pytest.raises(InvalidInput, match="'x'"):
        decode_binary(memoryview(truncated), Datatype.BYTES, (len(items),), "x")


@PROPS
@given(items=st.lists(st.binary(max_size=10), max_size=6), extra=st.binary(min_size=1, max_size=12))
def test_bytes_data_with_trailing_bytes_is_refused(items: list[bytes], extra: bytes) -> None:
    blob = encode_binary(_object_array(items, (len(items),))) + extra
    with pytest.raises(InvalidInput, match="left after"):
        decode_binary(memoryview(blob), Datatype.BYTES, (len(items),), "x")


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (struct.pack("<I", 5) + b"abc", "runs past"),
        (struct.pack("<I", 2**32 - 1), "runs past"),
        (b"\x01\x00", "ends before element 0"),
        (struct.pack("<I", 1) + b"a" + b"\x00", "ends before element 1"),
    ],
)
def test_bytes_length_prefix_past_the_data_is_refused(blob: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_binary(memoryview(blob), Datatype.BYTES, (2,), "x")


@PROPS
@given(datatype=st.sampled_from(NUMERIC), shape=shapes, delta=st.integers(-17, 17))
def test_wrong_byte_count_for_shape_is_refused(
    datatype: Datatype, shape: tuple[int, ...], delta: int
) -> None:
    size = math.prod(shape) * datatype.numpy_dtype.itemsize + delta
    if delta == 0 or size < 0:
        return
    with pytest.raises(InvalidInput, match=r"'x': \d+ bytes of data, but shape"):
        decode_binary(memoryview(b"\x00" * size), datatype, shape, "x")


def test_wrong_byte_count_message_names_shape_datatype_and_sizes() -> None:
    with pytest.raises(InvalidInput) as info:
        decode_binary(memoryview(b"\x00" * 10), Datatype.FP32, (2, 2), "img")
    assert info.value.message == (
        "input 'img': 10 bytes of data, but shape [2, 2] of FP32 needs 16 bytes"
    )


@FUZZ
@given(
    datatype=st.sampled_from(ALL),
    shape=st.one_of(
        shapes, st.lists(st.integers(0, 2**12), max_size=4).map(tuple)
    ),  # nonzero dims multiply to at most 2**48 elements
    blob=st.one_of(
        st.binary(max_size=64),
        st.lists(
            st.tuples(st.integers(0, 8) | st.integers(0, 2**32 - 1), st.binary(max_size=8)),
            max_size=5,
        ).map(lambda parts: b"".join(struct.pack("<I", n) + d for n, d in parts)),
    ),
)
def test_decode_binary_returns_an_array_or_raises_invalid_input(
    datatype: Datatype, shape: tuple[int, ...], blob: bytes
) -> None:
    try:
        out = decode_binary(memoryview(blob), datatype, shape, "x")
    except InvalidInput:
        return
    assert out.shape == shape
    assert out.dtype == datatype.numpy_dtype


@pytest.mark.parametrize("datatype", [Datatype.FP32, Datatype.BYTES])
def test_zero_element_shape_with_huge_dimension_is_refused(datatype: Datatype) -> None:
    with pytest.raises(InvalidInput):
        decode_binary(memoryview(b""), datatype, (0, 2**62), "x")


# ---- JSON --------------------------------------------------------------------------------------


@PROPS
@given(data=st.data(), datatype=st.sampled_from(NUMERIC))
def test_json_round_trip_of_numbers(data: st.DataObject, datatype: Datatype) -> None:
    arr = data.draw(wire_arrays(datatype))
    out = _through_json(arr, datatype)
    assert out.dtype == datatype.numpy_dtype
    assert out.shape == arr.shape
    if datatype in FLOATS:
        # FP16 and BF16 travel as plain JSON numbers; compare after the same widening.
        assert _same_floats(out, arr)
    else:
        np.testing.assert_array_equal(out, arr)


@PROPS
@given(arr=text_arrays())
def test_json_round_trip_of_utf8_bytes(arr: np.ndarray[Any, Any]) -> None:
    out = _through_json(arr, Datatype.BYTES)
    assert out.shape == arr.shape
    assert out.dtype == object
    assert out.tolist() == arr.tolist()


@PROPS
@given(arr=text_arrays())
def test_b64_objects_decode_to_the_same_bytes(arr: np.ndarray[Any, Any]) -> None:
    encoded = [{"b64": base64.b64encode(item).decode()} for item in arr.flat]
    out = array_from_json(encoded, Datatype.BYTES, "x", allow_b64=True).reshape(arr.shape)
    assert out.tolist() == arr.tolist()


def test_json_values_are_flat_and_bfloat16_becomes_float32() -> None:
    arr = np.arange(6, dtype=np.float32).reshape(2, 3).astype(ml_dtypes.bfloat16)
    values = array_to_json_values(arr, "x")
    assert values.dtype == np.float32
    assert values.shape == (6,)
    assert array_to_json_values(np.array([["a", b"b"]], dtype=object), "x") == ["a", "b"]


@PROPS
@given(
    texts=st.lists(st.text(max_size=4), max_size=4),
    bad=st.binary(min_size=1, max_size=6).filter(lambda b: not _is_utf8(b)),
    index=st.integers(0, 4),
)
def test_non_utf8_bytes_output_in_json_is_a_failed_precondition(
    texts: list[str], bad: bytes, index: int
) -> None:
    items: list[bytes] = [t.encode() for t in texts]
    items.insert(min(index, len(items)), bad)
    with pytest.raises(FailedPrecondition, match=r"'out'.*binary"):
        array_to_json_values(_object_array(items, (len(items),)), "out")


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_json_nan_and_infinity_tokens_are_read_for_floats() -> None:
    doc = parse_json_object(b'{"data": [NaN, Infinity, -Infinity, 1.5]}')
    out = array_from_json(doc["data"], Datatype.FP32, "x")
    assert out.dtype == np.float32
    assert np.isnan(out[0])
    assert out[1:].tolist() == [np.inf, -np.inf, 1.5]


@pytest.mark.parametrize("datatype", NUMERIC)
def test_empty_and_nested_empty_lists_decode(datatype: Datatype) -> None:
    assert array_from_json([], datatype, "x").shape == (0,)
    out = array_from_json([[], []], datatype, "x")
    assert out.shape == (2, 0)
    assert out.dtype == datatype.numpy_dtype


def test_bytes_array_shapes() -> None:
    assert bytes_array("a", "x").shape == ()
    assert bytes_array([["a", "b"], ["c", "d"]], "x").tolist() == [[b"a", b"b"], [b"c", b"d"]]
    assert bytes_array([[], []], "x").shape == (2, 0)


def test_whole_floats_are_accepted_for_integers() -> None:
    out = array_from_json([1.0, -2.0, 3], Datatype.INT16, "x")
    assert out.dtype == np.int16
    assert out.tolist() == [1, -2, 3]


@pytest.mark.parametrize(
    ("values", "datatype", "expected"),
    [
        ([2**63, 1], Datatype.UINT64, [2**63, 1]),
        ([2**64 - 1, 0], Datatype.UINT64, [2**64 - 1, 0]),
        ([-(2**63), 2**63 - 1], Datatype.INT64, [-(2**63), 2**63 - 1]),
    ],
)
def test_64_bit_extremes_are_exact(
    values: list[int], datatype: Datatype, expected: list[int]
) -> None:
    assert array_from_json(values, datatype, "x").tolist() == expected


# ---- invalid JSON input: InvalidInput and nothing else -----------------------------------------


def _leaf(datatype: Datatype) -> Any:
    return {Datatype.BOOL: True, Datatype.BYTES: "a"}.get(datatype, 1)


@PROPS
@given(
    datatype=st.sampled_from(NUMERIC),
    count=st.integers(0, 4),
    text=st.text(max_size=5),
    index=st.integers(0, 4),
    nested=st.booleans(),
)
def test_strings_for_numbers_are_refused(
    datatype: Datatype, count: int, text: str, index: int, nested: bool
) -> None:
    values: Any = [_leaf(datatype)] * count
    values.insert(min(index, count), text)
    if nested:
        values = [values]
    with pytest.raises(InvalidInput, match=f"'x' is {datatype}"):
        array_from_json(values, datatype, "x")
    with pytest.raises(InvalidInput, match=f"'x' is {datatype}"):
        array_from_json(text, datatype, "x")


@PROPS
@given(
    datatype=st.sampled_from(INTEGERS),
    whole=st.lists(st.integers(0, 100), max_size=4),
    fraction=st.floats().filter(lambda f: not math.isfinite(f) or f != math.floor(f)),
    index=st.integers(0, 4),
)
def test_fractions_for_integers_are_refused(
    datatype: Datatype, whole: list[int], fraction: float, index: int
) -> None:
    values: list[Any] = list(whole)
    values.insert(min(index, len(values)), fraction)
    with pytest.raises(InvalidInput, match="whole numbers only"):
        array_from_json(values, datatype, "x")


@st.composite
def out_of_range(draw: st.DrawFn, datatype: Datatype) -> tuple[list[Any], int]:
    info = np.iinfo(datatype.numpy_dtype)
    low, high = int(info.min), int(info.max)
    bad = draw(
        st.integers(max_value=low - 1) | st.integers(min_value=high + 1),
    )
    values: list[Any] = draw(st.lists(st.integers(low, high), max_size=4))
    values.insert(draw(st.integers(0, len(values))), bad)
    if abs(bad) < 2**53 and draw(st.booleans()):
        values = [float(v) for v in values]  # whole floats are range-checked the same way
    return values, bad


@PROPS
@given(data=st.data(), datatype=st.sampled_from(INTEGERS))
def test_out_of_range_integers_are_refused(data: st.DataObject, datatype: Datatype) -> None:
    values, bad = data.draw(out_of_range(datatype))
    with pytest.raises(InvalidInput, match="'x'") as info:
        array_from_json(values, datatype, "x")
    if datatype.numpy_dtype.itemsize < 8 and -(2**63) <= bad < 2**64:
        # (beyond 64 bits numpy makes an object array, reported as "unsupported types")
        assert re.search(rf"the value {bad}(\.0)? is out of its range", info.value.message)


@pytest.mark.parametrize(
    ("value", "datatype"), [(2.0**63, Datatype.INT64), (2.0**64, Datatype.UINT64)]
)
def test_whole_float_just_past_64_bit_range_is_refused(value: float, datatype: Datatype) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # see what it returns, not the warning
        with pytest.raises(InvalidInput, match="out of its range"):
            array_from_json([value], datatype, "x")


@pytest.mark.parametrize(
    ("values", "datatype", "expected"),
    [
        ([True, 2], Datatype.INT32, [1, 2]),
        ([1.5, False], Datatype.FP32, [1.5, 0.0]),
        ([[1], [True]], Datatype.UINT8, [[1], [1]]),
    ],
)
def test_booleans_mixed_with_numbers_read_as_one_and_zero(
    values: list[Any], datatype: Datatype, expected: list[Any]
) -> None:
    # Documented leniency: finding a stray true/false among numbers would cost every request a
    # walk over its data, so a mix is read as numpy reads it. All-boolean data is refused.
    out = array_from_json(values, datatype, "x")
    assert out.dtype == datatype.numpy_dtype
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("datatype", NUMERIC)
def test_all_booleans_for_numbers_and_numbers_for_bool_are_refused(datatype: Datatype) -> None:
    values: list[Any] = [1, 0] if datatype is Datatype.BOOL else [True, False]
    with pytest.raises(InvalidInput, match="the request sent"):
        array_from_json(values, datatype, "x")


@st.composite
def ragged(draw: st.DrawFn, datatype: Datatype) -> Any:
    leaf = _leaf(datatype)
    lengths = draw(st.lists(st.integers(0, 3), min_size=2, max_size=4).filter(_differ))
    rows: list[Any] = [[leaf] * n for n in lengths]
    kind = draw(st.sampled_from(["rows", "deeper", "scalar-and-list"]))
    if kind == "deeper":
        return [[row] for row in rows]
    if kind == "scalar-and-list":
        return [leaf, [leaf]]
    return rows


def _differ(lengths: list[int]) -> bool:
    return len(set(lengths)) > 1


@PROPS
@given(data=st.data(), datatype=st.sampled_from(ALL))
def test_ragged_lists_are_refused(data: st.DataObject, datatype: Datatype) -> None:
    values = data.draw(ragged(datatype))
    with pytest.raises(InvalidInput, match="'x'"):
        array_from_json(values, datatype, "x")


def _not_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        return True
    return False


@PROPS
@given(
    encoded=st.one_of(
        st.text(max_size=12).filter(_not_base64),
        st.integers(),
        st.none(),
        st.booleans(),
        st.lists(st.text(max_size=3), max_size=2),
    ),
    nested=st.booleans(),
)
def test_bad_base64_is_refused(encoded: Any, nested: bool) -> None:
    values: Any = [{"b64": encoded}]
    if nested:
        values = [values]
    with pytest.raises(InvalidInput, match="b64 value is not valid base64"):
        array_from_json(values, Datatype.BYTES, "x", allow_b64=True)


@pytest.mark.parametrize(
    ("values", "allow_b64"),
    [
        ([{"b64": "YQ=="}], False),
        ([{"b64": "YQ==", "extra": 1}], True),
        ([1, 2], True),
        ([None], False),
        ([True], False),
        (1.5, False),
    ],
)
def test_bytes_take_strings_or_allowed_b64_objects_only(values: Any, allow_b64: bool) -> None:
    with pytest.raises(InvalidInput, match="'x' is BYTES and takes strings"):
        array_from_json(values, Datatype.BYTES, "x", allow_b64=allow_b64)


def test_numeric_nesting_deeper_than_numpy_allows_is_refused() -> None:
    values: Any = 1.0
    for _ in range(100):
        values = [values]
    with pytest.raises(InvalidInput, match="'x'"):
        array_from_json(values, Datatype.FP32, "x")


@pytest.mark.parametrize("depth", [65, 600])
def test_deeply_nested_bytes_are_refused(depth: int) -> None:
    values: Any = "a"
    for _ in range(depth):
        values = [values]
    with pytest.raises(InvalidInput, match="'x'"):
        array_from_json(values, Datatype.BYTES, "x")


# ---- fuzz: random JSON-like values -------------------------------------------------------------

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.sampled_from([2.0**63, -(2.0**63), 2.0**64]),
    st.text(max_size=5),
    st.builds(lambda s: {"b64": s}, st.text(max_size=8)),
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=16,
)
regular_values = hnp.arrays(st.sampled_from([np.bool_, np.int64, np.float64]), shapes).map(
    lambda a: a.tolist()
)


@FUZZ
@given(
    values=st.one_of(json_values, regular_values),
    datatype=st.sampled_from(ALL),
    allow_b64=st.booleans(),
)
def test_array_from_json_returns_an_array_or_raises_invalid_input(
    values: Any, datatype: Datatype, allow_b64: bool
) -> None:
    with warnings.catch_warnings():
        # A finite float beyond FP16/FP32 range becomes +-inf, as IEEE rounding does.
        warnings.filterwarnings("ignore", "overflow encountered in cast", RuntimeWarning)
        try:
            out = array_from_json(values, datatype, "x", allow_b64=allow_b64)
        except InvalidInput:
            return
    assert isinstance(out, np.ndarray)
    assert out.dtype == datatype.numpy_dtype
    if datatype is Datatype.BYTES:
        assert all(type(item) is bytes for item in out.flat)


# ---- non-finite detection ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arr", "expected"),
    [
        (np.array([1.0, np.nan]), True),
        (np.array([np.inf], np.float16), True),
        (np.array([-np.inf], np.float32), True),
        (np.array([1.0, 2.0]), False),
        (np.array([], np.float64), False),
        (np.array([1, 2]), False),
        (np.array([b"nan"], dtype=object), False),
    ],
)
def test_has_nonfinite(arr: np.ndarray[Any, Any], expected: bool) -> None:
    assert has_nonfinite(arr) is expected


def test_has_nonfinite_sees_bfloat16_nan() -> None:
    assert has_nonfinite(np.array([np.nan, 1.0], dtype=ml_dtypes.bfloat16))
