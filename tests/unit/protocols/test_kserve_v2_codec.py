"""KServe V2 inference bodies: JSON tensors, the binary extension, raw binary (protocols §4)."""

from __future__ import annotations

import contextlib
import json
import math
import struct
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelport.errors import FailedPrecondition, InvalidInput, Unimplemented
from modelport.protocols.kserve_v2.codec import (
    HEADER_LENGTH,
    OCTET_STREAM,
    V2InferRequest,
    decode_infer_request,
    encode_infer_response,
    tensor_metadata,
)
from modelport.protocols.tensors import decode_binary, encode_binary
from modelport.protocols.wire import JSON
from modelport.types import Datatype, InferRequest, InferResponse, Signature, TensorSpec

FUZZ = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _sig(inputs: list[tuple[str, Datatype, tuple[int, ...]]]) -> Signature:
    specs = tuple(TensorSpec(n, d, s) for n, d, s in inputs)
    outputs = (TensorSpec("y", Datatype.FP32, (-1, 2)), TensorSpec("z", Datatype.INT64, (-1,)))
    return Signature(specs, outputs)


SIG = _sig([("x", Datatype.FP32, (-1, 2))])
MULTI = _sig(
    [("a", Datatype.FP32, (-1, 2)), ("b", Datatype.INT32, (-1,)), ("s", Datatype.BYTES, (-1,))]
)


def _doc(*inputs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"inputs": list(inputs), **extra}


def _x(data: Any = None, **fields: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": "x", "shape": [2, 2], "datatype": "FP32"}
    if data is not None:
        entry["data"] = data
    entry.update(fields)
    return entry


def decode_json(doc: Any, signature: Signature = SIG) -> V2InferRequest:
    return decode_infer_request(json.dumps(doc).encode(), None, signature)


def decode_with_blobs(
    doc: dict[str, Any], *blobs: bytes, signature: Signature = SIG
) -> V2InferRequest:
    header = json.dumps(doc).encode()
    body = header + b"".join(blobs)
    return decode_infer_request(body, str(len(header)).encode(), signature)


def _blob(values: list[Any], dtype: Any) -> bytes:
    if dtype is object:
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        return encode_binary(arr)
    return encode_binary(np.asarray(values, dtype=dtype))


# ---- JSON requests -----------------------------------------------------------------------------


@pytest.mark.parametrize("data", [[1, 2, 3, 4], [[1, 2], [3, 4]], [1.0, 2.0, 3.0, 4.0]])
def test_json_data_may_be_flat_or_nested(data: Any) -> None:
    decoded = decode_json(_doc(_x(data)))
    x = decoded.request.inputs["x"]
    assert x.dtype == np.float32
    assert x.shape == (2, 2)
    assert x.tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize(
    ("datatype", "data", "expected"),
    [
        ("BOOL", [True, False], [True, False]),
        ("UINT8", [0, 255], [0, 255]),
        ("UINT16", [0, 65535], [0, 65535]),
        ("UINT32", [0, 2**32 - 1], [0, 2**32 - 1]),
        ("UINT64", [0, 2**64 - 1], [0, 2**64 - 1]),
        ("INT8", [-128, 127], [-128, 127]),
        ("INT16", [-(2**15), 2**15 - 1], [-(2**15), 2**15 - 1]),
        ("INT32", [-(2**31), 2**31 - 1], [-(2**31), 2**31 - 1]),
        ("INT64", [-(2**63), 2**63 - 1], [-(2**63), 2**63 - 1]),
        ("FP16", [0.5, -2.0], [0.5, -2.0]),
        ("FP32", [0.5, -2.0], [0.5, -2.0]),
        ("FP64", [0.1, -2.0], [0.1, -2.0]),
        ("BF16", [0.5, -2.0], [0.5, -2.0]),
        ("BYTES", ["ab", "é"], [b"ab", "é".encode()]),
    ],
)
def test_json_data_of_every_datatype(datatype: str, data: list[Any], expected: list[Any]) -> None:
    entry = {"name": "x", "shape": [2], "datatype": datatype, "data": data}
    x = decode_json(_doc(entry)).request.inputs["x"]
    assert x.dtype == Datatype(datatype).numpy_dtype
    assert x.tolist() == expected


def test_request_id_parameters_and_default_outputs() -> None:
    decoded = decode_json(_doc(_x([1, 2, 3, 4]), id="42", parameters={"priority": 1}))
    request = decoded.request
    assert request.id == "42"
    assert request.parameters == {"priority": 1}
    assert request.outputs is None
    assert decoded.binary_default is False
    assert decoded.binary("y") is False


def test_id_may_be_absent_or_null() -> None:
    assert decode_json(_doc(_x([1, 2, 3, 4]))).request.id is None
    assert decode_json(_doc(_x([1, 2, 3, 4]), id=None)).request.id is None


def test_nan_and_infinity_tokens_are_accepted_in_request_data() -> None:
    body = (
        b'{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32",'
        b'"data":[NaN,Infinity,-Infinity,1]}]}'
    )
    x = decode_infer_request(body, None, SIG).request.inputs["x"]
    assert np.isnan(x[0, 0])
    assert x.ravel()[1:].tolist() == [np.inf, -np.inf, 1.0]


def test_inputs_keep_the_request_order_and_every_input_is_decoded() -> None:
    doc = _doc(
        {"name": "s", "shape": [1], "datatype": "BYTES", "data": ["hi"]},
        {"name": "b", "shape": [3], "datatype": "INT32", "data": [1, 2, 3]},
        {"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [[0.5, 1.5]]},
    )
    inputs = decode_json(doc, MULTI).request.inputs
    assert list(inputs) == ["s", "b", "a"]
    assert inputs["s"].tolist() == [b"hi"]
    assert inputs["b"].dtype == np.int32


# ---- JSON + binary blobs -----------------------------------------------------------------------


def test_binary_inputs_take_blobs_in_the_order_they_are_listed() -> None:
    doc = _doc(
        {"name": "b", "shape": [3], "datatype": "INT32", "parameters": {"binary_data_size": 12}},
        {"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]},
        {"name": "s", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 13}},
    )
    decoded = decode_with_blobs(
        doc, _blob([7, 8, 9], np.int32), _blob([b"abc", b"de"], object), signature=MULTI
    )
    inputs = decoded.request.inputs
    assert inputs["b"].tolist() == [7, 8, 9]
    assert inputs["b"].dtype == np.int32
    assert inputs["a"].tolist() == [[1.0, 2.0]]
    assert inputs["s"].tolist() == [b"abc", b"de"]


@pytest.mark.parametrize("datatype", [d for d in Datatype if d is not Datatype.BYTES])
def test_binary_input_of_every_fixed_size_datatype(datatype: Datatype) -> None:
    arr = np.arange(6).reshape(2, 3).astype(datatype.numpy_dtype)
    blob = encode_binary(arr)
    entry: dict[str, Any] = {"name": "x", "shape": [2, 3], "datatype": datatype.value}
    entry["parameters"] = {"binary_data_size": len(blob)}
    x = decode_with_blobs(_doc(entry), blob).request.inputs["x"]
    assert x.dtype == datatype.numpy_dtype
    assert x.tobytes() == arr.tobytes()


def test_header_length_equal_to_the_body_is_a_json_only_request() -> None:
    # The C++ client (perf_analyzer) always sends Inference-Header-Content-Length.
    x = decode_with_blobs(_doc(_x([1, 2, 3, 4]))).request.inputs["x"]
    assert x.shape == (2, 2)


def test_empty_binary_input() -> None:
    entry: dict[str, Any] = {"name": "x", "shape": [0, 2], "datatype": "FP32"}
    entry["parameters"] = {"binary_data_size": 0}
    assert decode_with_blobs(_doc(entry)).request.inputs["x"].shape == (0, 2)


@st.composite
def mixed_requests(draw: st.DrawFn) -> tuple[dict[str, Any], list[bytes], dict[str, Any]]:
    """A request for MULTI whose inputs are each sent as JSON or as a blob, in any order."""
    rows = draw(st.integers(0, 3))
    expected: dict[str, Any] = {
        "a": draw(st.lists(st.floats(-1e6, 1e6, width=32), min_size=2 * rows, max_size=2 * rows)),
        "b": draw(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=rows, max_size=rows)),
        "s": draw(st.lists(st.text(max_size=6), min_size=rows, max_size=rows)),
    }
    dtypes: dict[str, tuple[str, Any, list[int]]] = {
        "a": ("FP32", np.float32, [rows, 2]),
        "b": ("INT32", np.int32, [rows]),
        "s": ("BYTES", object, [rows]),
    }
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name in draw(st.permutations(["a", "b", "s"])):
        datatype, dtype, shape = dtypes[name]
        entry: dict[str, Any] = {"name": name, "shape": shape, "datatype": datatype}
        values = expected[name]
        if draw(st.booleans()):
            items = [v.encode() for v in values] if dtype is object else values
            blob = _blob(items, dtype)
            blobs.append(blob)
            entry["parameters"] = {"binary_data_size": len(blob)}
        else:
            entry["data"] = values
        entries.append(entry)
    return _doc(*entries), blobs, expected


@FUZZ
@given(case=mixed_requests())
def test_mixed_json_and_binary_inputs_decode_to_the_same_tensors(
    case: tuple[dict[str, Any], list[bytes], dict[str, Any]],
) -> None:
    doc, blobs, expected = case
    inputs = decode_with_blobs(doc, *blobs, signature=MULTI).request.inputs
    assert inputs["a"].ravel().tolist() == expected["a"]
    assert inputs["b"].tolist() == expected["b"]
    assert inputs["s"].tolist() == [v.encode() for v in expected["s"]]


# ---- raw binary (Inference-Header-Content-Length: 0) -------------------------------------------


def test_raw_binary_is_the_single_input_with_batch_one_and_binary_outputs() -> None:
    signature = _sig([("x", Datatype.FP32, (-1, 3))])
    blob = np.array([1, 2, 3], np.float32).tobytes()
    decoded = decode_infer_request(blob, b"0", signature)
    x = decoded.request.inputs["x"]
    assert x.shape == (1, 3)
    assert x.tolist() == [[1, 2, 3]]
    assert decoded.request.outputs is None
    assert decoded.binary_default is True
    assert decoded.binary("y") is True


@pytest.mark.parametrize(("shape", "expected"), [((-1,), (1,)), ((), ()), ((1,), (1,))])
def test_raw_binary_bytes_input_is_one_element_holding_the_whole_body(
    shape: tuple[int, ...], expected: tuple[int, ...]
) -> None:
    signature = _sig([("s", Datatype.BYTES, shape)])
    body = b"\x00\xff raw \x01"
    s = decode_infer_request(body, b"0", signature).request.inputs["s"]
    assert s.shape == expected
    assert s.dtype == object
    assert s.ravel().tolist() == [body]


@pytest.mark.parametrize(
    ("signature", "body", "message"),
    [
        (MULTI, b"\x00" * 8, "only for models with one input; this one has 3"),
        (_sig([("x", Datatype.FP32, (-1, -1))]), b"\x00" * 8, "fixed shape apart from the batch"),
        (_sig([("x", Datatype.FP32, (-1, 3))]), b"\x00" * 8, "8 bytes of data, but shape"),
    ],
)
def test_raw_binary_errors(signature: Signature, body: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_infer_request(body, b"0", signature)


def test_raw_binary_bytes_input_with_several_elements_per_row_is_refused() -> None:
    with pytest.raises(InvalidInput):
        decode_infer_request(b"hello", b"0", _sig([("s", Datatype.BYTES, (-1, 3))]))


# ---- errors ------------------------------------------------------------------------------------

X4 = [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_doc(_x(X4), extra=1), "unknown field 'extra' in the inference request"),
        (_doc(_x(X4, dtype="FP32")), "unknown field 'dtype' in input 'x'"),
        (_doc(_x(X4), _x(X4)), "input 'x' appears twice"),
        (_doc(_x(X4), id=42), "'id' must be a string"),
        (_doc(_x(X4), id=["42"]), "'id' must be a string"),
        ({}, "non-empty 'inputs' list"),
        ({"inputs": []}, "non-empty 'inputs' list"),
        ({"inputs": {"x": X4}}, "non-empty 'inputs' list"),
        ({"inputs": [[1, 2]]}, "must be an object with name, shape, datatype"),
        ({"inputs": ["x"]}, "must be an object with name, shape, datatype"),
        (_doc({"shape": [4], "datatype": "FP32", "data": X4}), "needs a 'name' string"),
        (_doc(_x(X4, name="")), "needs a 'name' string"),
        (_doc(_x(X4, name=3)), "needs a 'name' string"),
        (_doc({"name": "x", "datatype": "FP32", "data": X4}), "'x' needs a 'shape' list"),
        (_doc(_x(X4, shape="2,2")), "'x' needs a 'shape' list"),
        (_doc(_x(X4, shape=[2, -2])), "'x' needs a 'shape' list of non-negative integers"),
        (_doc(_x(X4, shape=[2.0, 2])), "'x' needs a 'shape' list"),
        (_doc(_x(X4, shape=[True, 4])), "'x' needs a 'shape' list"),
        (_doc(_x(X4, shape=[[2], 2])), "'x' needs a 'shape' list"),
        (_doc(_x(X4, datatype="FLOAT32")), "'x' has datatype 'FLOAT32'; use one of BOOL, UINT8"),
        (_doc(_x(X4, datatype="fp32")), "'x' has datatype 'fp32'"),
        (_doc(_x(X4, datatype=5)), "'x' has datatype 5"),
        (_doc({"name": "x", "shape": [4], "data": X4}), "'x' has datatype None"),
        (_doc(_x([1, 2, 3])), r"shape \[2, 2\] holds 4 elements, but 'data' has 3"),
        (_doc(_x([[1, 2, 3], [4, 5, 6]])), "holds 4 elements, but 'data' has 6"),
        (_doc(_x(["a", "b", "c", "d"])), "'x' is FP32 and takes numbers; the request sent strings"),
        (_doc(_x([[1, 2], [3]])), "'x': nested lists must all have the same length"),
        (_doc(_x()), "'x' has neither 'data' nor a binary_data_size parameter"),
        (_doc({**_x(), "data": None}), "has neither 'data' nor a binary_data_size"),
        (_doc(_x(X4, parameters={"binary_data_size": 16})), "both 'data' and binary_data_size"),
        (_doc(_x(X4, parameters="binary")), "'parameters' of input 'x' must be an object"),
        (_doc(_x(X4), parameters=[1]), "'parameters' of the request must be an object"),
        (
            _doc(_x(X4), parameters={"binary_data_output": "yes"}),
            "'binary_data_output' must be true or false",
        ),
        (_doc(_x(X4), outputs={"y": {}}), "'outputs' must be a list"),
        (_doc(_x(X4), outputs=["y"]), "each entry of 'outputs' needs a 'name' string"),
        (_doc(_x(X4), outputs=[{"parameters": {}}]), "needs a 'name' string"),
        (_doc(_x(X4), outputs=[{"name": 1}]), "needs a 'name' string"),
        (_doc(_x(X4), outputs=[{"name": "y", "shape": [1]}]), "unknown field 'shape' in requested"),
        (
            _doc(_x(X4), outputs=[{"name": "y", "parameters": {"binary_data": 1}}]),
            "output 'y': binary_data must be true or false",
        ),
        (
            _doc(_x(X4), outputs=[{"name": "y", "parameters": True}]),
            "'parameters' of output 'y' must be an object",
        ),
    ],
)
def test_malformed_json_requests_are_invalid_input(doc: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_json(doc)


@pytest.mark.parametrize(
    "body", [b"", b"[]", b'"inputs"', b"null", b"{", b'{"inputs": [}', b"\xff\xfe"]
)
def test_a_body_that_is_not_a_json_object_is_invalid_input(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        decode_infer_request(body, None, SIG)


@pytest.mark.parametrize(
    "doc",
    [
        _doc(_x(parameters={"shared_memory_region": "r", "shared_memory_byte_size": 16})),
        _doc(_x(X4), outputs=[{"name": "y", "parameters": {"classification": 2}}]),
        _doc(_x(X4), parameters={"shared_memory_region": "r"}),
    ],
)
def test_shared_memory_and_classification_are_unimplemented(doc: dict[str, Any]) -> None:
    with pytest.raises(Unimplemented):
        decode_json(doc)


@pytest.mark.parametrize("size", [-1, 1.5, True, "16", [16]])
def test_binary_data_size_must_be_a_non_negative_integer(size: Any) -> None:
    doc = _doc(_x(parameters={"binary_data_size": size}))
    with pytest.raises(InvalidInput, match="binary_data_size must be a non-negative integer"):
        decode_with_blobs(doc, b"\x00" * 16)


def test_binary_data_size_past_the_body_is_refused() -> None:
    doc = _doc(_x(parameters={"binary_data_size": 32}))
    with pytest.raises(InvalidInput, match="binary_data_size is 32 but only 16 bytes"):
        decode_with_blobs(doc, b"\x00" * 16)


def test_binary_data_size_without_a_header_length_is_refused() -> None:
    doc = _doc(_x(parameters={"binary_data_size": 16}))
    with pytest.raises(InvalidInput, match="only 0 bytes of binary data are left"):
        decode_json(doc)


def test_blob_bytes_no_input_accounts_for_are_refused() -> None:
    doc = _doc(_x(parameters={"binary_data_size": 16}))
    with pytest.raises(InvalidInput, match="3 bytes of binary data follow the JSON header"):
        decode_with_blobs(doc, b"\x00" * 19)
    with pytest.raises(InvalidInput, match="2 bytes of binary data follow"):
        decode_with_blobs(_doc(_x(X4)), b"\x00\x00")


def test_binary_data_size_that_does_not_fit_the_shape_is_refused() -> None:
    doc = _doc(_x(parameters={"binary_data_size": 12}))
    with pytest.raises(InvalidInput, match=r"'x': 12 bytes of data, but shape \[2, 2\] of FP32"):
        decode_with_blobs(doc, b"\x00" * 12)


@pytest.mark.parametrize("header_length", [b"999", b"abc", b"-1", b"", b" 10", b"1.5", b"0x10"])
def test_bad_inference_header_content_length_is_refused(header_length: bytes) -> None:
    body = json.dumps(_doc(_x(X4))).encode()
    with pytest.raises(InvalidInput, match="Inference-Header-Content-Length is"):
        decode_infer_request(body, header_length, SIG)


def test_very_long_header_length_is_refused() -> None:
    with pytest.raises(InvalidInput, match="Inference-Header-Content-Length"):
        decode_infer_request(b"{}", b"1" * 5000, SIG)


@pytest.mark.parametrize("datatype", [["FP32"], {"type": "FP32"}])
def test_unhashable_datatype_is_refused(datatype: Any) -> None:
    with pytest.raises(InvalidInput, match="has datatype"):
        decode_json(_doc(_x(X4, datatype=datatype)))


@pytest.mark.parametrize("binary", [False, True])
def test_zero_element_shape_with_huge_dimension_is_refused(binary: bool) -> None:
    entry: dict[str, Any] = {"name": "x", "shape": [0, 2**62], "datatype": "FP32"}
    if binary:
        entry["parameters"] = {"binary_data_size": 0}
    else:
        entry["data"] = []
    with pytest.raises(InvalidInput, match="'x'"):
        decode_with_blobs(_doc(entry))


def test_deeply_nested_bytes_data_is_refused() -> None:
    body = b'{"inputs":[{"name":"s","shape":[1],"datatype":"BYTES","data":%s"a"%s}]}' % (
        b"[" * 100,
        b"]" * 100,
    )
    with pytest.raises(InvalidInput):
        decode_infer_request(body, None, MULTI)


# ---- requested outputs and binary flags --------------------------------------------------------


def test_requested_outputs_keep_their_order() -> None:
    doc = _doc(_x(X4), outputs=[{"name": "z"}, {"name": "y", "parameters": {}}])
    assert decode_json(doc).request.outputs == ["z", "y"]


@pytest.mark.parametrize(
    ("default", "flags", "expected"),
    [
        (None, {}, {"y": False, "z": False}),
        (True, {}, {"y": True, "z": True}),
        (False, {"y": True}, {"y": True, "z": False}),
        (True, {"y": False}, {"y": False, "z": True}),
        (None, {"y": True, "z": False}, {"y": True, "z": False}),
    ],
)
def test_binary_data_flags_override_binary_data_output(
    default: bool | None, flags: dict[str, bool], expected: dict[str, bool]
) -> None:
    outputs = [
        {"name": name, "parameters": {"binary_data": flag}} for name, flag in flags.items()
    ] + [{"name": name} for name in ("y", "z") if name not in flags]
    parameters = {} if default is None else {"binary_data_output": default}
    decoded = decode_json(_doc(_x(X4), outputs=outputs, parameters=parameters))
    assert {name: decoded.binary(name) for name in ("y", "z")} == expected
    assert sorted(decoded.request.outputs or []) == ["y", "z"]


# ---- fuzz --------------------------------------------------------------------------------------

json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 5), st.floats(-1e3, 1e3), st.text(max_size=4)
)
json_values = st.recursive(
    json_leaves,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=3), c, max_size=2),
    max_leaves=10,
)
datatypes = st.one_of(
    st.sampled_from([d.value for d in Datatype]),
    st.text(max_size=5),
    st.integers(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)
input_entries = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["x", "a", "b", "s", ""]) | json_leaves,
        "shape": st.lists(st.integers(-1, 4), max_size=3) | json_values,
        "datatype": datatypes,
        "data": json_values,
        "parameters": st.fixed_dictionaries(
            {}, optional={"binary_data_size": st.integers(-1, 24) | json_leaves}
        )
        | json_values,
    },
)
request_docs = st.fixed_dictionaries(
    {},
    optional={
        "id": json_leaves,
        "inputs": st.lists(input_entries, max_size=3) | json_values,
        "outputs": st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["y", "z"]) | json_leaves},
                optional={"parameters": st.fixed_dictionaries({"binary_data": json_leaves})},
            ),
            max_size=2,
        )
        | json_values,
        "parameters": st.fixed_dictionaries({}, optional={"binary_data_output": json_leaves}),
    },
)


@FUZZ
@given(
    doc=request_docs,
    blobs=st.binary(max_size=32),
    signature=st.sampled_from([SIG, MULTI]),
)
def test_random_request_documents_decode_or_raise_invalid_input(
    doc: dict[str, Any], blobs: bytes, signature: Signature
) -> None:
    header = json.dumps(doc).encode()
    try:
        decoded = decode_infer_request(header + blobs, str(len(header)).encode(), signature)
    except (InvalidInput, Unimplemented):
        return
    assert isinstance(decoded.request, InferRequest)
    for arr in decoded.request.inputs.values():
        assert isinstance(arr, np.ndarray)


@FUZZ
@given(
    body=st.binary(max_size=64),
    header_length=st.none() | st.binary(max_size=4) | st.integers(0, 80).map(lambda n: b"%d" % n),
    signature=st.sampled_from(
        [SIG, MULTI, _sig([("s", Datatype.BYTES, (-1,))]), _sig([("x", Datatype.INT8, (-1, 4))])]
    ),
)
def test_random_bodies_decode_or_raise_invalid_input(
    body: bytes, header_length: bytes | None, signature: Signature
) -> None:
    with contextlib.suppress(InvalidInput, Unimplemented):
        decode_infer_request(body, header_length, signature)


# ---- responses ---------------------------------------------------------------------------------


def _request(**parameters: Any) -> V2InferRequest:
    return decode_json(_doc(_x(X4), **parameters))


def _response(outputs: dict[str, np.ndarray[Any, Any]], request_id: str | None = None) -> Any:
    return InferResponse("mnist", 3, outputs, request_id)


def test_json_response_body() -> None:
    outputs: dict[str, np.ndarray[Any, Any]] = {
        "y": np.array([[1.5, 2.0]], np.float32),
        "z": np.array([7, -1], np.int64),
        "ok": np.array([True, False]),
    }
    response = encode_infer_response(_response(outputs, "42"), _request())
    assert response.status == 200
    assert response.content_type == JSON
    assert response.headers == ()
    assert json.loads(response.body) == {
        "model_name": "mnist",
        "model_version": "3",
        "id": "42",
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [1.5, 2.0]},
            {"name": "z", "datatype": "INT64", "shape": [2], "data": [7, -1]},
            {"name": "ok", "datatype": "BOOL", "shape": [2], "data": [True, False]},
        ],
    }


def test_id_is_left_out_when_the_request_had_none() -> None:
    body = encode_infer_response(_response({"z": np.array([1])}), _request()).body
    assert "id" not in json.loads(body)


def _split(response: Any) -> tuple[dict[str, Any], bytes]:
    (key, value), *_ = response.headers
    assert key == HEADER_LENGTH
    length = int(value)
    return json.loads(response.body[:length]), response.body[length:]


def test_binary_outputs_follow_the_json_header_in_output_order() -> None:
    y = np.array([[1.5, -2.0], [3.0, 4.0]], np.float32)
    z = np.array([5, 6, 7], np.int64)
    s = np.array([b"ab", b"\xff"], dtype=object)
    request = _request(parameters={"binary_data_output": True})
    response = encode_infer_response(_response({"y": y, "z": z, "s": s}), request)
    assert response.content_type == OCTET_STREAM
    header, blobs = _split(response)
    sizes = [out["parameters"]["binary_data_size"] for out in header["outputs"]]
    assert sizes == [16, 24, 4 + 2 + 4 + 1]
    assert all("data" not in out for out in header["outputs"])
    assert [out["shape"] for out in header["outputs"]] == [[2, 2], [3], [2]]
    assert blobs == encode_binary(y) + encode_binary(z) + encode_binary(s)
    offset = 0
    for out, ref in zip(header["outputs"], (y, z, s), strict=True):
        size = out["parameters"]["binary_data_size"]
        part = memoryview(blobs)[offset : offset + size]
        decoded = decode_binary(part, Datatype(out["datatype"]), tuple(out["shape"]), out["name"])
        assert decoded.tolist() == ref.tolist()
        offset += size


def test_binary_and_json_outputs_mixed() -> None:
    request = _request(outputs=[{"name": "y", "parameters": {"binary_data": True}}, {"name": "z"}])
    outputs: dict[str, np.ndarray[Any, Any]] = {
        "y": np.array([[1.0, 2.0]], np.float32),
        "z": np.array([3], np.int64),
    }
    header, blobs = _split(encode_infer_response(_response(outputs), request))
    y, z = header["outputs"]
    assert y["parameters"] == {"binary_data_size": 8}
    assert "data" not in y
    assert z["data"] == [3]
    assert "parameters" not in z
    assert blobs == np.array([1.0, 2.0], np.float32).tobytes()


def test_raw_binary_request_gets_binary_outputs() -> None:
    signature = _sig([("x", Datatype.FP32, (-1, 2))])
    request = decode_infer_request(b"\x00" * 8, b"0", signature)
    response = encode_infer_response(_response({"y": np.zeros((1, 2), np.float32)}), request)
    header, blobs = _split(response)
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 8}
    assert blobs == b"\x00" * 8


def test_nan_and_infinity_are_written_as_tokens_not_null() -> None:
    outputs = {
        "y": np.array([np.nan, np.inf, -np.inf, 1.0], np.float32),
        "s": np.array([b"null"], dtype=object),
    }
    body = encode_infer_response(_response(outputs), _request()).body
    assert b"NaN" in body
    assert b"-Infinity" in body
    assert b":null" not in body
    assert b"[null" not in body
    doc = json.loads(body)  # Python's parser reads the tokens, as TF Serving's clients do
    data = doc["outputs"][0]["data"]
    assert math.isnan(data[0])
    assert data[1:] == [math.inf, -math.inf, 1.0]
    assert doc["outputs"][1]["data"] == ["null"]


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_nan_of_other_float_widths_is_a_token(dtype: Any) -> None:
    body = encode_infer_response(_response({"y": np.array([np.nan], dtype)}), _request()).body
    assert b"[NaN]" in body


def test_bfloat16_nan_is_a_token() -> None:
    arr = np.array([np.nan, np.inf], dtype=ml_dtypes.bfloat16)
    body = encode_infer_response(_response({"y": arr}), _request()).body
    assert b"[NaN,Infinity]" in body


def test_half_precision_outputs_are_json_numbers() -> None:
    outputs = {
        "h": np.array([0.5, -1.25], np.float16),
        "b": np.array([0.5, -1.25], ml_dtypes.bfloat16),
    }
    doc = json.loads(encode_infer_response(_response(outputs), _request()).body)
    assert [(o["datatype"], o["data"]) for o in doc["outputs"]] == [
        ("FP16", [0.5, -1.25]),
        ("BF16", [0.5, -1.25]),
    ]


def test_bytes_outputs_are_json_strings() -> None:
    outputs = {"s": np.array([[b"caf\xc3\xa9", b""]], dtype=object)}
    doc = json.loads(encode_infer_response(_response(outputs), _request()).body)
    assert doc["outputs"][0] == {
        "name": "s",
        "datatype": "BYTES",
        "shape": [1, 2],
        "data": ["café", ""],
    }


def test_non_utf8_bytes_output_in_json_is_a_failed_precondition() -> None:
    outputs = {"s": np.array([b"\xff\xfe"], dtype=object)}
    with pytest.raises(FailedPrecondition, match="'s' holds bytes that are not UTF-8"):
        encode_infer_response(_response(outputs), _request())
    binary = _request(parameters={"binary_data_output": True})
    _, blobs = _split(encode_infer_response(_response(outputs), binary))
    assert blobs == struct.pack("<I", 2) + b"\xff\xfe"


@pytest.mark.parametrize("arr", [np.array(["ab", "c"]), np.array([b"ab", b"c"])])
def test_numpy_string_outputs_are_length_prefixed_bytes(arr: np.ndarray[Any, Any]) -> None:
    request = _request(parameters={"binary_data_output": True})
    header, blobs = _split(encode_infer_response(_response({"s": arr}), request))
    assert header["outputs"][0]["datatype"] == "BYTES"
    assert blobs == b"\x02\x00\x00\x00ab\x01\x00\x00\x00c"


def test_tensor_metadata() -> None:
    assert tensor_metadata(MULTI.inputs) == [
        {"name": "a", "datatype": "FP32", "shape": [-1, 2]},
        {"name": "b", "datatype": "INT32", "shape": [-1]},
        {"name": "s", "datatype": "BYTES", "shape": [-1]},
    ]
