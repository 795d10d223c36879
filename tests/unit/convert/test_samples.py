"""Parity inputs: --input-shape parsing, seeded generation, and matching sample files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelport.convert.errors import USAGE, ConversionError
from modelport.convert.samples import (
    ShapeSpec,
    cast_feeds,
    generate_feeds,
    load_sample_file,
    match_feeds,
    parse_input_shapes,
    specs_from_shapes,
)
from modelport.types import Datatype, TensorSpec

SPECS = (
    TensorSpec("x", Datatype.FP32, (-1, 16)),
    TensorSpec("ids", Datatype.INT64, (-1, -1)),
    TensorSpec("flag", Datatype.BOOL, (-1,)),
)


def test_input_shapes_take_a_name_and_a_dtype_when_given() -> None:
    assert parse_input_shapes(["4,16", "ids=2,32:int64"]) == [
        ShapeSpec((4, 16)),
        ShapeSpec((2, 32), "ids", np.dtype(np.int64)),
    ]


@pytest.mark.parametrize("text", ["", "4,x", "0,3", "4,16:notatype", "=,"])
def test_malformed_input_shapes_are_usage_errors(text: str) -> None:
    with pytest.raises(ConversionError) as caught:
        parse_input_shapes([text])
    assert caught.value.exit_code == USAGE
    assert "--input-shape" in caught.value.message


def test_generated_inputs_follow_the_signature_and_the_seed() -> None:
    first = generate_feeds(SPECS, batch_size=3, seed=7)
    again = generate_feeds(SPECS, batch_size=3, seed=7)
    other = generate_feeds(SPECS, batch_size=3, seed=8)
    assert {k: (v.shape, v.dtype) for k, v in first.items()} == {
        "x": ((3, 16), np.dtype(np.float32)),
        "ids": ((3, 8), np.dtype(np.int64)),
        "flag": ((3,), np.dtype(np.bool_)),
    }
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    assert not np.array_equal(first["x"], other["x"])
    assert first["ids"].min() >= 0
    assert first["ids"].max() < 10


def test_input_shapes_fill_dynamic_dimensions_by_name() -> None:
    shapes = parse_input_shapes(["x=2,16", "ids=2,5", "flag=2"])
    feeds = generate_feeds(SPECS, batch_size=3, seed=0, shapes=shapes)
    assert feeds["ids"].shape == (2, 5)


def test_an_input_shape_that_contradicts_the_signature_is_refused() -> None:
    with pytest.raises(ConversionError, match="does not fit input x FP32"):
        generate_feeds(SPECS[:1], batch_size=3, seed=0, shapes=parse_input_shapes(["2,15"]))


def test_specs_for_pytorch_come_from_the_shapes_in_input_order() -> None:
    specs = specs_from_shapes(["x", "mask"], parse_input_shapes(["4,8", "4,8:int64"]))
    assert specs == (
        TensorSpec("x", Datatype.FP32, (4, 8)),
        TensorSpec("mask", Datatype.INT64, (4, 8)),
    )
    with pytest.raises(ConversionError, match="takes 2 inputs"):
        specs_from_shapes(["x", "mask"], parse_input_shapes(["4,8"]))


def test_sample_files_match_by_name_or_in_order(tmp_path: Path) -> None:
    a, b = np.zeros((2, 3), np.float32), np.ones((2, 1), np.int64)
    np.savez(tmp_path / "named.npz", mask=b, x=a)
    np.savez(tmp_path / "ordered.npz", a, b)
    np.save(tmp_path / "one.npy", a)
    named = match_feeds(load_sample_file(tmp_path / "named.npz"), ["x", "mask"], "named")
    ordered = match_feeds(load_sample_file(tmp_path / "ordered.npz"), ["x", "mask"], "ordered")
    for feeds in (named, ordered):
        np.testing.assert_array_equal(feeds["x"], a)
        np.testing.assert_array_equal(feeds["mask"], b)
    assert list(match_feeds(load_sample_file(tmp_path / "one.npy"), ["x"], "one")) == ["x"]
    with pytest.raises(ConversionError, match="takes 2 inputs"):
        match_feeds(load_sample_file(tmp_path / "one.npy"), ["x", "mask"], "one")
    with pytest.raises(ConversionError, match="name the arrays after the inputs"):
        match_feeds(load_sample_file(tmp_path / "named.npz"), ["x", "other"], "named")


def test_sample_files_are_never_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ConversionError, match="object arrays are refused"):
        load_sample_file(path)
    with pytest.raises(ConversionError, match=r"not a \.npy or \.npz"):
        load_sample_file(tmp_path / "sample.pkl")


def test_float_inputs_are_cast_to_what_a_model_declares() -> None:
    feeds = {"x": np.ones((2, 2), np.float32), "ids": np.ones((2, 2), np.int64)}
    specs = (TensorSpec("x", Datatype.FP16, (-1, 2)), TensorSpec("ids", Datatype.INT32, (-1, 2)))
    cast = cast_feeds(feeds, specs)
    assert cast["x"].dtype == np.float16
    assert cast["ids"].dtype == np.int64  # only floating types are cast
