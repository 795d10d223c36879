"""TF Serving REST bodies: predict (row and columnar), classify, regress, metadata (§1)."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from modelport.errors import FailedPrecondition, InvalidInput
from modelport.model_config import ClassificationConfig, ModelConfig, RegressionConfig
from modelport.protocols.tfserving.codec import (
    DEFAULT_SIGNATURE,
    classify_outputs,
    decode_examples,
    decode_predict,
    encode_classify,
    encode_predict,
    encode_regress,
    regress_output,
    select_signature,
    signature_def,
)
from modelport.types import Datatype, Signature, TensorSpec

FP32 = Datatype.FP32


def _sig(
    inputs: list[tuple[str, Datatype, tuple[int, ...]]],
    outputs: list[tuple[str, Datatype, tuple[int, ...]]] | None = None,
) -> Signature:
    outs = outputs or [("y", FP32, (-1, 2))]
    return Signature(
        tuple(TensorSpec(*spec) for spec in inputs), tuple(TensorSpec(*spec) for spec in outs)
    )


SINGLE = _sig([("x", FP32, (-1, 2))])
STRINGS = _sig([("s", Datatype.BYTES, (-1,))])
MULTI = _sig([("a", FP32, (-1, 2)), ("b", Datatype.INT32, (-1,)), ("s", Datatype.BYTES, (-1,))])


def b64(raw: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(raw).decode()}


# ---- predict: row format -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "instances", [[[1, 2], [3, 4]], [{"x": [1, 2]}, {"x": [3, 4]}], [[1.0, 2.0], [3, 4]]]
)
def test_row_format_single_input(instances: list[Any]) -> None:
    inputs, row_format = decode_predict({"instances": instances}, SINGLE)
    assert row_format is True
    assert list(inputs) == ["x"]
    assert inputs["x"].dtype == np.float32
    assert inputs["x"].tolist() == [[1, 2], [3, 4]]


def test_row_format_scalars_stack_into_a_batch() -> None:
    inputs, _ = decode_predict({"instances": [1, 2, 3]}, _sig([("x", FP32, (-1,))]))
    assert inputs["x"].tolist() == [1.0, 2.0, 3.0]


def test_row_format_b64_objects_are_values_of_a_string_input() -> None:
    instances = [b64(b"\x00\xffabc"), b64(b""), "plain"]
    inputs, _ = decode_predict({"instances": instances}, STRINGS)
    assert inputs["s"].dtype == object
    assert inputs["s"].tolist() == [b"\x00\xffabc", b"", b"plain"]


def test_row_format_several_named_inputs() -> None:
    instances = [
        {"a": [1, 2], "b": 3, "s": "first"},
        {"s": b64(b"\x01"), "b": -4, "a": [5.5, 6]},
    ]
    inputs, row_format = decode_predict({"instances": instances}, MULTI)
    assert row_format is True
    assert list(inputs) == ["a", "b", "s"]
    assert inputs["a"].tolist() == [[1, 2], [5.5, 6]]
    assert inputs["b"].dtype == np.int32
    assert inputs["b"].tolist() == [3, -4]
    assert inputs["s"].tolist() == [b"first", b"\x01"]


@pytest.mark.parametrize(
    ("instances", "message"),
    [
        (
            [{"a": [1, 2], "b": 3}],
            r"instance 0 must be an object with exactly the inputs \['a', 'b', 's'\]; "
            r"it has \['a', 'b'\]",
        ),
        ([{"a": [1, 2], "b": 3, "s": "x", "t": 1}], r"it has \['a', 'b', 's', 't'\]"),
        ([{"a": [1, 2], "b": 3, "s": "x"}, [1, 2]], "instance 1 must be an object .* it has list"),
        ([{"a": [1, 2], "b": 3, "s": "x"}, b64(b"x")], r"instance 1 .* it has \['b64'\]"),
        ([[1, 2], [3, 4]], r"the model has 3 inputs \(a, b, s\); each instance must be an object"),
        ([b64(b"x")], "the model has 3 inputs"),
    ],
)
def test_row_format_mismatched_keys(instances: list[Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_predict({"instances": instances}, MULTI)


@pytest.mark.parametrize("instances", [[], {}, "x", None, 3])
def test_instances_must_be_a_non_empty_list(instances: Any) -> None:
    with pytest.raises(InvalidInput, match="'instances' must be a non-empty list"):
        decode_predict({"instances": instances}, SINGLE)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"instances": [b64(b"x")]}, "'x' is FP32; b64 values are only for string inputs"),
        ({"instances": [[b64(b"x")]]}, "b64 values are only for string inputs"),
        ({"inputs": {"x": b64(b"x")}}, "b64 values are only for string inputs"),
        ({"instances": [[1, 2], [3]]}, "nested lists must all have the same length"),
        ({"instances": [["a", "b"]]}, "'x' is FP32 and takes numbers"),
        ({"instances": [{"x": [1, 2]}, {"y": [1, 2]}]}, r"instance 1 .* it has \['y'\]"),
    ],
)
def test_row_and_column_value_errors(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_predict(doc, SINGLE)


# ---- predict: columnar format ------------------------------------------------------------------


@pytest.mark.parametrize("value", [[[1, 2], [3, 4]], {"x": [[1, 2], [3, 4]]}])
def test_columnar_single_input(value: Any) -> None:
    inputs, row_format = decode_predict({"inputs": value}, SINGLE)
    assert row_format is False
    assert inputs["x"].tolist() == [[1, 2], [3, 4]]


def test_columnar_b64_object_is_the_value_of_the_single_input() -> None:
    inputs, _ = decode_predict({"inputs": b64(b"raw")}, STRINGS)
    assert inputs["s"].shape == ()
    assert inputs["s"].item() == b"raw"


def test_columnar_several_inputs_need_no_common_batch_and_ignore_extra_keys() -> None:
    doc = {"inputs": {"a": [[1, 2]], "b": [1, 2, 3], "s": ["p", b64(b"q")], "extra": 1}}
    inputs, _ = decode_predict(doc, MULTI)
    assert list(inputs) == ["a", "b", "s"]
    assert inputs["a"].shape == (1, 2)
    assert inputs["b"].tolist() == [1, 2, 3]
    assert inputs["s"].tolist() == [b"p", b"q"]


def test_columnar_missing_named_input() -> None:
    with pytest.raises(InvalidInput, match="Missing named input: b in 'inputs' object"):
        decode_predict({"inputs": {"a": [[1, 2]], "s": ["p"]}}, MULTI)


@pytest.mark.parametrize("value", [[1, 2], b64(b"x"), "x"])
def test_columnar_several_inputs_need_an_object(value: Any) -> None:
    with pytest.raises(InvalidInput, match="'inputs' must be an object naming them"):
        decode_predict({"inputs": value}, MULTI)


# ---- predict: request keys and signature_name --------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"instances": [[1, 2]], "inputs": [[1, 2]]}, "both 'instances' and 'inputs'"),
        ({}, "Missing 'inputs' or 'instances' key"),
        ({"signature_name": "serving_default"}, "Missing 'inputs' or 'instances' key"),
        ({"instance": [[1, 2]]}, "unknown field 'instance' in the predict request"),
    ],
)
def test_predict_request_errors(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_predict(doc, SINGLE)


@pytest.mark.parametrize("name", ["", DEFAULT_SIGNATURE])
def test_empty_or_default_signature_name_is_serving_default(name: str) -> None:
    assert select_signature({"signature_name": name}, {DEFAULT_SIGNATURE: SINGLE}) == (
        DEFAULT_SIGNATURE
    )
    inputs, _ = decode_predict({"signature_name": name, "instances": [[1, 2]]}, SINGLE)
    assert inputs["x"].shape == (1, 2)


# ---- predict: responses ------------------------------------------------------------------------

Y = np.array([[1.5, 2.0], [3.0, -4.0]], np.float32)
Z = np.array([7, 8], np.int64)


def test_row_format_one_output_leaves_the_name_out() -> None:
    assert json.loads(encode_predict({"y": Y}, True)) == {"predictions": [[1.5, 2.0], [3.0, -4.0]]}


def test_row_format_several_outputs_are_one_object_per_row() -> None:
    assert json.loads(encode_predict({"y": Y, "z": Z}, True)) == {
        "predictions": [{"y": [1.5, 2.0], "z": 7}, {"y": [3.0, -4.0], "z": 8}]
    }


def test_columnar_one_output_leaves_the_name_out() -> None:
    assert json.loads(encode_predict({"y": Y}, False)) == {"outputs": [[1.5, 2.0], [3.0, -4.0]]}


def test_columnar_several_outputs_are_a_dict_of_tensors() -> None:
    scalar = np.array(3.5, np.float64)
    odd = np.arange(3, dtype=np.int8)
    assert json.loads(encode_predict({"y": Y, "n": scalar, "o": odd}, False)) == {
        "outputs": {"y": [[1.5, 2.0], [3.0, -4.0]], "n": 3.5, "o": [0, 1, 2]}
    }


def test_string_outputs_raw_and_bytes_suffix_as_b64() -> None:
    outputs = {
        "text": np.array([b"caf\xc3\xa9", b"x"], dtype=object),
        "blob_bytes": np.array([b"caf\xc3\xa9", b"\xff"], dtype=object),
        "odd": np.array([b"\xff\xfe", "str"], dtype=object),
    }
    assert json.loads(encode_predict(outputs, True))["predictions"] == [
        {"text": "café", "blob_bytes": b64(b"caf\xc3\xa9"), "odd": b64(b"\xff\xfe")},
        {"text": "x", "blob_bytes": b64(b"\xff"), "odd": "str"},
    ]


def test_scalar_string_output_in_columnar_format() -> None:
    outputs = {"label_bytes": np.array(b"\x00", dtype=object)}
    assert json.loads(encode_predict(outputs, False)) == {"outputs": b64(b"\x00")}


def test_non_finite_floats_are_nan_and_infinity_tokens() -> None:
    outputs: dict[str, np.ndarray[Any, Any]] = {
        "y": np.array([[np.nan, np.inf], [-np.inf, 1.0]], np.float32),
        "z": Z,
    }
    for row_format in (True, False):
        body = encode_predict(outputs, row_format)
        assert b"null" not in body
        assert b"NaN" in body
        assert b"-Infinity" in body
        parsed = json.loads(body)
        values = parsed["predictions"][0]["y"] if row_format else parsed["outputs"]["y"][0]
        assert math.isnan(values[0])
        assert values[1] == math.inf


def test_bfloat16_outputs_are_numbers() -> None:
    outputs = {"y": np.array([[0.5, -2.0]], ml_dtypes.bfloat16)}
    assert json.loads(encode_predict(outputs, True)) == {"predictions": [[0.5, -2.0]]}


def test_bfloat16_nan_is_a_token() -> None:
    body = encode_predict({"y": np.array([[np.nan, 1.0]], ml_dtypes.bfloat16)}, True)
    assert body == b'{"predictions":[[NaN,1.0]]}'


def test_inconsistent_batch_sizes_are_a_failed_precondition_in_row_format() -> None:
    outputs: dict[str, np.ndarray[Any, Any]] = {"y": Y, "z": np.arange(3)}
    with pytest.raises(FailedPrecondition, match="inconsistent batch size"):
        encode_predict(outputs, True)
    assert json.loads(encode_predict(outputs, False))["outputs"]["z"] == [0, 1, 2]


def test_scalar_output_is_a_failed_precondition_in_row_format() -> None:
    with pytest.raises(FailedPrecondition, match="'n' is a scalar"):
        encode_predict({"y": Y, "n": np.array(1.0)}, True)


def test_empty_batch_with_several_outputs() -> None:
    outputs: dict[str, np.ndarray[Any, Any]] = {
        "y": np.zeros((0, 2), np.float32),
        "z": np.zeros(0, np.int64),
    }
    assert json.loads(encode_predict(outputs, True)) == {"predictions": []}


# ---- classify and regress: requests ------------------------------------------------------------


def test_examples_become_one_row_each() -> None:
    signature = _sig([("x", FP32, (-1, 3)), ("w", FP32, (-1,))])
    doc = {"examples": [{"x": [1, 2, 3], "w": 0.5}, {"x": [4, 5, 6], "w": [1.5]}]}
    inputs = decode_examples(doc, signature)
    assert inputs["x"].tolist() == [[1, 2, 3], [4, 5, 6]]
    assert inputs["x"].dtype == np.float32
    assert inputs["w"].tolist() == [0.5, 1.5]


def test_context_features_are_shared_and_examples_override_them() -> None:
    signature = _sig([("x", FP32, (-1, 2)), ("c", Datatype.INT64, (-1,))])
    doc = {
        "context": {"c": 7, "x": [0, 0]},
        "examples": [{"x": [1, 2]}, {"x": [3, 4], "c": 8}],
    }
    inputs = decode_examples(doc, signature)
    assert inputs["c"].tolist() == [7, 8]
    assert inputs["x"].tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize(
    ("shape", "values", "expected"),
    [
        ((-1, -1), [1, 2, 3], (2, 3)),
        ((-1, 2, -1), [1, 2, 3, 4], (2, 2, 2)),
        ((-1, 2, 2), [1, 2, 3, 4], (2, 2, 2)),
        ((-1,), [5], (2,)),
        ((-1, 1), [5], (2, 1)),
    ],
)
def test_feature_values_fill_the_input_shape(
    shape: tuple[int, ...], values: list[int], expected: tuple[int, ...]
) -> None:
    inputs = decode_examples({"examples": [{"f": values}] * 2}, _sig([("f", FP32, shape)]))
    assert inputs["f"].shape == expected


def test_string_features_and_b64() -> None:
    doc = {"examples": [{"s": "a"}, {"s": [b64(b"\xff")]}]}
    assert decode_examples(doc, STRINGS)["s"].tolist() == [b"a", b"\xff"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"examples": [{"x": [1, 2, 3]}, {"y": 1}]},
            r"example 1 has no feature 'x' \(nor does 'context'\); the model reads "
            r"x FP32 \[-1, 3\]",
        ),
        ({"examples": [{"x": None}]}, "example 0 has no feature 'x'"),
        ({"examples": [{"x": [1, 2, 3]}, {"x": [1, 2]}]}, "different length in different exam"),
        ({"examples": [{"x": [1, 2]}, {"x": [3, 4]}]}, r"2 values per example, .* \[-1, 3\]"),
        ({"examples": [{"x": [[1, 2, 3]]}]}, "feature 'x' of example 0 must be a flat list"),
        ({"examples": [{"x": [{"a": 1}, 2, 3]}]}, "must be a flat list"),
        ({"examples": [{"x": ["a", "b", "c"]}]}, "'x' is FP32 and takes numbers"),
        ({"examples": [[1, 2, 3]]}, "example 0 must be an object of features"),
        ({"examples": []}, "'examples' must be a non-empty list"),
        ({"examples": {"x": [1, 2, 3]}}, "'examples' must be a non-empty list"),
        ({"context": [1], "examples": [{"x": [1, 2, 3]}]}, "'context' must be an object"),
        ({"examples": [{"x": [1, 2, 3]}], "inputs": 1}, "unknown field 'inputs'"),
    ],
)
def test_example_errors(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_examples(doc, _sig([("x", FP32, (-1, 3))]))


def test_feature_with_too_many_dynamic_dims_is_refused() -> None:
    with pytest.raises(InvalidInput, match="does not fit the input shape"):
        decode_examples({"examples": [{"f": [1, 2]}]}, _sig([("f", FP32, (-1, -1, -1))]))


def test_feature_for_a_zero_sized_dimension_is_refused() -> None:
    with pytest.raises(InvalidInput):
        decode_examples({"examples": [{"f": [1, 2]}]}, _sig([("f", FP32, (-1, -1, 0))]))


# ---- classify and regress: choosing outputs ----------------------------------------------------


def _config(**sections: Any) -> ModelConfig:
    return ModelConfig(
        classification=ClassificationConfig(**sections.get("classification", {})),
        regression=RegressionConfig(**sections.get("regression", {})),
    )


def _outputs(*specs: tuple[str, Datatype, tuple[int, ...]]) -> Signature:
    return _sig([("x", FP32, (-1, 3))], list(specs))


def test_classify_picks_the_one_two_dimensional_float_output() -> None:
    signature = _outputs(
        ("ids", Datatype.INT64, (-1, 3)), ("probs", FP32, (-1, 3)), ("v", FP32, (-1,))
    )
    assert classify_outputs(signature, _config()) == ["probs"]


def test_classify_uses_configured_scores_and_classes() -> None:
    signature = _outputs(("a", FP32, (-1, 3)), ("b", FP32, (-1, 3)), ("c", Datatype.BYTES, (-1, 3)))
    config = _config(classification={"scores": "b", "classes": "c"})
    assert classify_outputs(signature, config) == ["b", "c"]


@pytest.mark.parametrize(
    ("outputs", "found"),
    [
        ([("a", FP32, (-1, 3)), ("b", Datatype.FP64, (-1, 4))], "found a, b among a, b"),
        ([("a", FP32, (-1,)), ("i", Datatype.INT32, (-1, 3))], "found none among a, i"),
    ],
)
def test_classify_without_exactly_one_candidate_names_the_setting(
    outputs: list[tuple[str, Datatype, tuple[int, ...]]], found: str
) -> None:
    with pytest.raises(FailedPrecondition) as info:
        classify_outputs(_outputs(*outputs), _config())
    assert info.value.message == (
        f"this model cannot serve :classify: it needs exactly one suitable output, {found}; "
        "name it in config.yaml under classification.scores"
    )


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        ([("v", FP32, (-1,)), ("m", FP32, (-1, 3))], "v"),
        ([("v", Datatype.BF16, (-1, 1)), ("i", Datatype.INT64, (-1,))], "v"),
        ([("v", Datatype.FP16, (-1,)), ("s", Datatype.BYTES, (-1,))], "v"),
    ],
)
def test_regress_picks_the_one_vector_float_output(
    outputs: list[tuple[str, Datatype, tuple[int, ...]]], expected: str
) -> None:
    assert regress_output(_outputs(*outputs), _config()) == expected


def test_regress_ambiguous_or_configured() -> None:
    signature = _outputs(("p", FP32, (-1,)), ("q", Datatype.FP64, (-1, 1)))
    with pytest.raises(FailedPrecondition) as info:
        regress_output(signature, _config())
    assert info.value.message == (
        "this model cannot serve :regress: it needs exactly one suitable output, found p, q "
        "among p, q; name it in config.yaml under regression.output"
    )
    assert regress_output(signature, _config(regression={"output": "q"})) == "q"


# ---- classify and regress: responses -----------------------------------------------------------

SCORES = np.array([[0.25, 0.75], [0.5, 0.5]], np.float32)


def test_classify_labels_from_the_classes_output() -> None:
    classes = np.array([[b"cat", b"dog"], [b"\xff", b""]], dtype=object)
    body = encode_classify({"p": SCORES, "c": classes}, ["p", "c"], _config())
    assert json.loads(body) == {
        "results": [[["cat", 0.25], ["dog", 0.75]], [["\ufffd", 0.5], ["", 0.5]]]
    }


def test_classify_numeric_classes_are_written_as_text() -> None:
    body = encode_classify({"p": SCORES, "c": np.array([[3, 4], [5, 6]])}, ["p", "c"], _config())
    assert json.loads(body)["results"][1] == [["5", 0.5], ["6", 0.5]]


def test_classify_labels_from_config() -> None:
    config = _config(classification={"labels": ["no", "yes"]})
    assert json.loads(encode_classify({"p": SCORES}, ["p"], config)) == {
        "results": [[["no", 0.25], ["yes", 0.75]], [["no", 0.5], ["yes", 0.5]]]
    }


def test_classify_labels_default_to_class_indices() -> None:
    assert json.loads(encode_classify({"p": SCORES}, ["p"], _config())) == {
        "results": [[["0", 0.25], ["1", 0.75]], [["0", 0.5], ["1", 0.5]]]
    }


@pytest.mark.parametrize(
    ("outputs", "names", "config", "message"),
    [
        ({"p": SCORES[0]}, ["p"], _config(), r"'p' must be \[batch, classes\]"),
        (
            {"p": SCORES, "c": np.array([b"a", b"b"], dtype=object)},
            ["p", "c"],
            _config(),
            r"'c' has shape \[2\]; classes must match the scores' shape \[2, 2\]",
        ),
        (
            {"p": SCORES},
            ["p"],
            _config(classification={"labels": ["a", "b", "c"]}),
            "lists 3 classification labels but the model scores 2 classes",
        ),
    ],
)
def test_classify_errors(
    outputs: dict[str, Any], names: list[str], config: ModelConfig, message: str
) -> None:
    with pytest.raises(FailedPrecondition, match=message):
        encode_classify(outputs, names, config)


@pytest.mark.parametrize("shape", [(3,), (3, 1)])
def test_regress_results_are_one_value_per_example(shape: tuple[int, ...]) -> None:
    values = np.array([0.5, -1.0, 2.0], np.float32).reshape(shape)
    assert json.loads(encode_regress({"v": values}, "v")) == {"results": [0.5, -1.0, 2.0]}


def test_classify_and_regress_write_non_finite_as_tokens() -> None:
    scores = np.array([[np.nan, np.inf]], np.float32)
    assert b"NaN" in encode_classify({"p": scores}, ["p"], _config())
    assert encode_regress({"v": np.array([np.nan], np.float32)}, "v") == b'{"results":[NaN]}'


# ---- metadata ----------------------------------------------------------------------------------


def test_signature_def_renders_as_tf_serving_does() -> None:
    signature = _sig([("x", FP32, (-1, 784))], [("probs", Datatype.FP64, (-1, 10))])
    assert signature_def({"serving_default": signature}) == {
        "serving_default": {
            "inputs": {
                "x": {
                    "dtype": "DT_FLOAT",
                    "tensor_shape": {
                        "dim": [{"size": "-1", "name": ""}, {"size": "784", "name": ""}],
                        "unknown_rank": False,
                    },
                    "name": "x",
                }
            },
            "outputs": {
                "probs": {
                    "dtype": "DT_DOUBLE",
                    "tensor_shape": {
                        "dim": [{"size": "-1", "name": ""}, {"size": "10", "name": ""}],
                        "unknown_rank": False,
                    },
                    "name": "probs",
                }
            },
            "method_name": "tensorflow/serving/predict",
            "defaults": {},
        }
    }


@pytest.mark.parametrize(
    ("datatype", "dtype"),
    [
        (Datatype.BOOL, "DT_BOOL"),
        (Datatype.UINT8, "DT_UINT8"),
        (Datatype.UINT16, "DT_UINT16"),
        (Datatype.UINT32, "DT_UINT32"),
        (Datatype.UINT64, "DT_UINT64"),
        (Datatype.INT8, "DT_INT8"),
        (Datatype.INT16, "DT_INT16"),
        (Datatype.INT32, "DT_INT32"),
        (Datatype.INT64, "DT_INT64"),
        (Datatype.FP16, "DT_HALF"),
        (Datatype.FP32, "DT_FLOAT"),
        (Datatype.FP64, "DT_DOUBLE"),
        (Datatype.BF16, "DT_BFLOAT16"),
        (Datatype.BYTES, "DT_STRING"),
    ],
)
def test_signature_def_dtypes(datatype: Datatype, dtype: str) -> None:
    rendered = signature_def({DEFAULT_SIGNATURE: _sig([("t", datatype, ())])})[DEFAULT_SIGNATURE][
        "inputs"
    ]["t"]
    assert rendered["dtype"] == dtype
    assert rendered["tensor_shape"] == {"dim": [], "unknown_rank": False}
    assert json.dumps(rendered)  # plain JSON values only


def test_a_named_signature_is_chosen_and_an_unknown_one_lists_those_there_are() -> None:
    signatures = {DEFAULT_SIGNATURE: SINGLE, "total": SINGLE}
    assert select_signature({"signature_name": "total"}, signatures) == "total"
    assert select_signature({}, signatures) == DEFAULT_SIGNATURE
    with pytest.raises(InvalidInput) as caught:
        select_signature({"signature_name": "other"}, signatures)
    assert str(caught.value).startswith(
        'Serving signature name: "other" not found in signature def.'
    )
    assert 'has the signatures "serving_default", "total"' in str(caught.value)
    with pytest.raises(InvalidInput, match="must be a string"):
        select_signature({"signature_name": 3}, signatures)
