"""Checks of decoded inputs against a model's signature, before anything runs.

Each failure is an ``InvalidInput`` whose message names the input, what the model expects and
what the request sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelport.errors import InvalidInput
from modelport.types import Datatype, Signature, TensorSpec

__all__ = ["check_inputs", "describe_specs", "describe_target", "resolve_outputs"]


def describe_specs(specs: Sequence[TensorSpec]) -> str:
    """``images FP32 [-1, 784], mask BOOL [-1]`` for error messages."""
    return ", ".join(spec.describe() for spec in specs) or "none"


def describe_target(model: str, version: int) -> str:
    """``model 'mnist' version 2``, for error messages."""
    return f"model {model!r} version {version}"


def check_inputs(
    signature: Signature,
    inputs: Mapping[str, np.ndarray[Any, Any]],
    max_batch_size: int,
    model: str,
    version: int,
) -> None:
    """Raise ``InvalidInput`` unless ``inputs`` are exactly the signature's, in dtype and shape."""
    if not _fits(signature, inputs):
        _explain_misfit(signature, inputs, describe_target(model, version))
    if max_batch_size:
        _check_batch(signature, inputs, max_batch_size, describe_target(model, version))


def _fits(signature: Signature, inputs: Mapping[str, np.ndarray[Any, Any]]) -> bool:
    """The fast check every request takes; ``_explain_misfit`` says what is wrong."""
    checks = signature.input_checks
    if len(inputs) != len(checks):
        return False
    for name, dtype, rank, fixed in checks:
        arr = inputs.get(name)
        if arr is None or arr.dtype != dtype or arr.ndim != rank:
            return False
        shape = arr.shape
        for axis, size in fixed:
            if shape[axis] != size:
                return False
    return True


def _explain_misfit(
    signature: Signature, inputs: Mapping[str, np.ndarray[Any, Any]], where: str
) -> None:
    for name in inputs:
        if signature.input(name) is None:
            raise InvalidInput(
                f"unknown input {name!r} for {where}; it takes: {describe_specs(signature.inputs)}"
            )
    for spec in signature.inputs:
        arr = inputs.get(spec.name)
        if arr is None:
            raise InvalidInput(
                f"missing input {spec.name!r} for {where}; it takes: "
                f"{describe_specs(signature.inputs)}"
            )
        _check_dtype(spec, arr, where)
        _check_shape(spec, arr.shape, where)


def _check_batch(
    signature: Signature,
    inputs: Mapping[str, np.ndarray[Any, Any]],
    max_batch_size: int,
    where: str,
) -> None:
    for spec in signature.inputs:
        arr = inputs[spec.name]
        if spec.shape and spec.shape[0] == -1 and arr.shape[0] > max_batch_size:
            raise InvalidInput(
                f"input {spec.name!r} of {where} has a batch of {arr.shape[0]}, more than the "
                f"model's max_batch_size of {max_batch_size}; send smaller batches"
            )


def _datatype_name(dtype: np.dtype[Any]) -> str:
    try:
        return str(Datatype.from_numpy(dtype))
    except ValueError:
        return str(dtype)


def _check_dtype(spec: TensorSpec, arr: np.ndarray[Any, Any], where: str) -> None:
    if arr.dtype != spec.datatype.numpy_dtype:
        raise InvalidInput(
            f"input {spec.name!r} of {where} has datatype {_datatype_name(arr.dtype)}, but the "
            f"model expects {spec.datatype}"
        )


def _check_shape(spec: TensorSpec, shape: tuple[int, ...], where: str) -> None:
    expected = spec.shape
    fits = len(shape) == len(expected) and all(
        want in (-1, got) for want, got in zip(expected, shape, strict=True)
    )
    if not fits:
        raise InvalidInput(
            f"input {spec.name!r} of {where} has shape {list(shape)}, but the model expects "
            f"{list(expected)} (-1 is any size)"
        )


def resolve_outputs(
    signature: Signature, requested: Sequence[str] | None, model: str, version: int
) -> Sequence[str]:
    """The output names to compute: all of them by default, else the requested ones, checked."""
    if requested is None:
        return signature.output_names
    for name in requested:
        if signature.output(name) is None:
            raise InvalidInput(
                f"unknown output {name!r} requested from {describe_target(model, version)}; it "
                f"has: {describe_specs(signature.outputs)}"
            )
    return list(dict.fromkeys(requested))
