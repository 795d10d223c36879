"""Datatype names, as the engines spell their dtypes."""

from __future__ import annotations

import pytest

from modelport.types import Datatype


@pytest.mark.parametrize(
    ("name", "datatype"),
    [("float32", Datatype.FP32), ("bfloat16", Datatype.BF16), ("bool", Datatype.BOOL),
     ("uint64", Datatype.UINT64), ("float16", Datatype.FP16)],
)  # fmt: skip
def test_dtype_names_map_to_datatypes(name: str, datatype: Datatype) -> None:
    assert Datatype.from_dtype_name(name) is datatype


@pytest.mark.parametrize("name", ["object", "string", "complex64", "qint8", ""])
def test_other_dtype_names_have_no_datatype(name: str) -> None:
    assert Datatype.from_dtype_name(name) is None
