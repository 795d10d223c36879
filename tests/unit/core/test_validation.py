"""Checks of decoded inputs against a signature: each failure names input, expected and actual."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelport.core.validation import (
    check_inputs,
    describe_specs,
    describe_target,
    resolve_outputs,
)
from modelport.errors import InvalidInput
from modelport.types import Datatype, Signature, TensorSpec

SIG = Signature(
    (
        TensorSpec("img", Datatype.FP32, (-1, 4)),
        TensorSpec("mask", Datatype.BOOL, (-1,)),
        TensorSpec("ids", Datatype.INT64, (2, -1, 3)),
    ),
    (TensorSpec("y", Datatype.FP32, (-1, 2)), TensorSpec("z", Datatype.INT64, (-1,))),
)
TAKES = "it takes: img FP32 [-1, 4], mask BOOL [-1], ids INT64 [2, -1, 3]"
WHERE = "model 'mnist' version 2"


def _inputs(**override: Any) -> dict[str, Any]:
    inputs: dict[str, Any] = {
        "img": np.zeros((3, 4), np.float32),
        "mask": np.ones(3, np.bool_),
        "ids": np.zeros((2, 5, 3), np.int64),
    }
    inputs.update(override)
    return {k: v for k, v in inputs.items() if v is not None}


def _check(inputs: dict[str, Any], max_batch_size: int = 0) -> None:
    check_inputs(SIG, inputs, max_batch_size, "mnist", 2)


def test_matching_inputs_pass() -> None:
    _check(_inputs())
    _check(_inputs(img=np.zeros((0, 4), np.float32), ids=np.zeros((2, 0, 3), np.int64)))


def test_missing_input_names_it_and_the_signature() -> None:
    with pytest.raises(InvalidInput) as info:
        _check(_inputs(mask=None))
    assert info.value.message == f"missing input 'mask' for {WHERE}; {TAKES}"


def test_unknown_input_names_it_and_the_signature() -> None:
    with pytest.raises(InvalidInput) as info:
        _check(_inputs(extra=np.zeros(1)))
    assert info.value.message == f"unknown input 'extra' for {WHERE}; {TAKES}"


def test_unknown_input_is_reported_even_when_one_is_missing() -> None:
    with pytest.raises(InvalidInput, match="unknown input 'image'"):
        _check(_inputs(img=None, image=np.zeros((3, 4), np.float32)))


@pytest.mark.parametrize(
    ("arr", "actual"),
    [
        (np.zeros((3, 4), np.float64), "FP64"),
        (np.zeros((3, 4), np.float16), "FP16"),
        (np.zeros((3, 4), ml_dtypes.bfloat16), "BF16"),
        (np.zeros((3, 4), np.int32), "INT32"),
        (np.zeros((3, 4), object), "BYTES"),
        (np.zeros((3, 4), np.complex64), "complex64"),
    ],
)
def test_wrong_datatype_names_input_expected_and_actual(arr: Any, actual: str) -> None:
    with pytest.raises(InvalidInput) as info:
        _check(_inputs(img=arr))
    assert info.value.message == (
        f"input 'img' of {WHERE} has datatype {actual}, but the model expects FP32"
    )


@pytest.mark.parametrize(
    ("name", "arr", "actual", "expected"),
    [
        ("img", np.zeros(4, np.float32), [4], [-1, 4]),
        ("img", np.zeros((3, 5), np.float32), [3, 5], [-1, 4]),
        ("img", np.zeros((1, 3, 4), np.float32), [1, 3, 4], [-1, 4]),
        ("mask", np.ones((3, 1), np.bool_), [3, 1], [-1]),
        ("mask", np.bool_(True), [], [-1]),
        ("ids", np.zeros((3, 5, 3), np.int64), [3, 5, 3], [2, -1, 3]),
        ("ids", np.zeros((2, 5, 4), np.int64), [2, 5, 4], [2, -1, 3]),
    ],
)
def test_wrong_shape_names_input_expected_and_actual(
    name: str, arr: Any, actual: list[int], expected: list[int]
) -> None:
    with pytest.raises(InvalidInput) as info:
        _check(_inputs(**{name: np.asarray(arr)}))
    assert info.value.message == (
        f"input {name!r} of {WHERE} has shape {actual}, but the model expects {expected} "
        "(-1 is any size)"
    )


def test_the_datatype_is_checked_before_the_shape() -> None:
    with pytest.raises(InvalidInput, match="has datatype FP64"):
        _check(_inputs(img=np.zeros(7, np.float64)))


def test_max_batch_size() -> None:
    _check(_inputs(), max_batch_size=3)
    _check(_inputs(), max_batch_size=0)  # 0: no limit
    with pytest.raises(InvalidInput) as info:
        _check(_inputs(), max_batch_size=2)
    assert info.value.message == (
        f"input 'img' of {WHERE} has a batch of 3, more than the model's max_batch_size of 2; "
        "send smaller batches"
    )


def test_max_batch_size_ignores_inputs_without_a_dynamic_first_dimension() -> None:
    signature = Signature(
        (TensorSpec("fixed", Datatype.FP32, (8, 2)), TensorSpec("scalar", Datatype.FP32, ())),
        (),
    )
    inputs = {"fixed": np.zeros((8, 2), np.float32), "scalar": np.array(1.0, np.float32)}
    check_inputs(signature, inputs, 1, "m", 1)


def test_bytes_inputs_are_object_arrays() -> None:
    signature = Signature((TensorSpec("s", Datatype.BYTES, (-1,)),), ())
    arr = np.empty(2, dtype=object)
    arr[:] = [b"a", b"b"]
    check_inputs(signature, {"s": arr}, 0, "m", 1)


shape_specs = st.lists(st.sampled_from([-1, 0, 1, 2, 3]), max_size=3).map(tuple)
shapes = st.lists(st.integers(0, 3), max_size=3).map(tuple)


def _fits(spec: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    return len(spec) == len(shape) and all(w in (-1, g) for w, g in zip(spec, shape, strict=True))


@settings(max_examples=300, deadline=None, database=None)
@given(
    spec=shape_specs,
    shape=shapes,
    datatype=st.sampled_from([Datatype.FP32, Datatype.INT8, Datatype.BOOL]),
    actual=st.sampled_from([np.float32, np.int8, np.bool_, np.float64]),
)
def test_check_inputs_accepts_exactly_the_fitting_inputs(
    spec: tuple[int, ...], shape: tuple[int, ...], datatype: Datatype, actual: Any
) -> None:
    signature = Signature((TensorSpec("t", datatype, spec),), ())
    arr = np.zeros(shape, actual)
    fits = _fits(spec, shape) and np.dtype(actual) == datatype.numpy_dtype
    if fits:
        check_inputs(signature, {"t": arr}, 0, "m", 1)
    else:
        with pytest.raises(InvalidInput, match="input 't' of model 'm' version 1 has"):
            check_inputs(signature, {"t": arr}, 0, "m", 1)


# ---- outputs -----------------------------------------------------------------------------------


def test_resolve_outputs_defaults_to_every_output_in_order() -> None:
    assert list(resolve_outputs(SIG, None, "mnist", 2)) == ["y", "z"]


def test_resolve_outputs_keeps_the_requested_order_without_duplicates() -> None:
    assert resolve_outputs(SIG, ["z", "y", "z"], "mnist", 2) == ["z", "y"]
    assert resolve_outputs(SIG, [], "mnist", 2) == []


def test_resolve_outputs_refuses_unknown_names() -> None:
    with pytest.raises(InvalidInput) as info:
        resolve_outputs(SIG, ["y", "logits"], "mnist", 2)
    assert info.value.message == (
        f"unknown output 'logits' requested from {WHERE}; it has: y FP32 [-1, 2], z INT64 [-1]"
    )


def test_descriptions() -> None:
    assert describe_specs(()) == "none"
    assert describe_target("a b", 7) == "model 'a b' version 7"
