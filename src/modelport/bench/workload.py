"""The tensors bench sends: random data shaped from the model's metadata, or a JSON file's.

Random data is reproducible (``--seed``): floats uniform in [0, 1), integers from 0 to 9, booleans
either way, and ``BYTES`` elements of ``--string-length`` random lowercase letters. Every input
comes back as a numpy array of the input's datatype, in the model's input order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from modelport.bench.errors import UsageError
from modelport.bench.server import ModelSpec, TensorSpec

__all__ = ["NUMPY_TYPES", "generate_inputs", "load_inputs", "random_tensor", "resolve_shape"]

#: The numpy type that holds each V2 datatype (``BYTES`` elements are ``bytes`` objects).
NUMPY_TYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "BYTES": np.dtype(np.object_),
}

_INTEGER_HIGH = 10  # random integers are drawn from [0, 10): valid for every integer type


def numpy_type(spec: TensorSpec) -> np.dtype[Any]:
    """The numpy type for ``spec``'s datatype; ``UsageError`` for a datatype bench cannot make."""
    try:
        return NUMPY_TYPES[spec.datatype]
    except KeyError:
        raise UsageError(
            f"input {spec.name!r} has datatype {spec.datatype}, which bench cannot generate"
        ) from None


def resolve_shape(
    spec: TensorSpec, batch_size: int, given: tuple[int, ...] | None = None
) -> tuple[int, ...]:
    """The concrete shape to send for ``spec``.

    A leading ``-1`` is the batch dimension and becomes ``batch_size``. ``given`` (from ``--shape``)
    is either the whole shape or the dimensions after the batch dimension; it must agree with
    every fixed dimension. Any other ``-1`` without ``given`` is a ``UsageError``.
    """
    shape = spec.shape
    batched = bool(shape) and shape[0] == -1
    if given is not None:
        if len(given) == len(shape):
            full = given
        elif batched and len(given) == len(shape) - 1:
            full = (batch_size, *given)
        else:
            raise UsageError(
                f"--shape {spec.name}: {len(given)} dimensions do not fit the input's shape "
                f"{list(shape)}; give the {len(shape) - 1} after the batch dimension"
            )
        for have, want in zip(full, shape, strict=True):
            if want not in (-1, have):
                raise UsageError(
                    f"--shape {spec.name}:{','.join(map(str, given))} does not match the "
                    f"input's shape {list(shape)}"
                )
        return full
    full = (batch_size, *shape[1:]) if batched else shape
    if -1 in full:
        example = ",".join("N" if d == -1 else str(d) for d in (shape[1:] if batched else shape))
        raise UsageError(
            f"input {spec.name!r} has shape {list(shape)}, with a dynamic dimension besides the "
            f"batch: give its size with --shape {spec.name}:{example} (N as you choose)"
        )
    return full


def random_tensor(
    datatype: str, shape: tuple[int, ...], rng: np.random.Generator, string_length: int = 16
) -> np.ndarray[Any, Any]:
    """Random data of ``datatype`` and ``shape``; see the module docstring for the ranges."""
    dtype = NUMPY_TYPES[datatype]
    if datatype == "BYTES":
        count = int(np.prod(shape, dtype=np.int64))
        letters = rng.integers(ord("a"), ord("z") + 1, (count, string_length), dtype=np.uint8)
        strings = np.empty(count, dtype=object)
        strings[:] = [row.tobytes() for row in letters]
        return strings.reshape(shape)
    if datatype == "BOOL":
        return rng.integers(0, 2, shape).astype(np.bool_)
    if dtype.kind in "iu":
        return rng.integers(0, _INTEGER_HIGH, shape, dtype=dtype)
    if datatype == "FP64":
        return rng.random(shape, dtype=np.float64)
    return rng.random(shape, dtype=np.float32).astype(dtype)


def generate_inputs(
    model: ModelSpec,
    batch_size: int,
    shapes: dict[str, tuple[int, ...]],
    seed: int = 0,
    string_length: int = 16,
) -> dict[str, np.ndarray[Any, Any]]:
    """Random data for every input of ``model``; ``--shape`` must name only real inputs."""
    names = {spec.name for spec in model.inputs}
    unknown = sorted(set(shapes) - names)
    if unknown:
        raise UsageError(
            f"--shape names {', '.join(unknown)}, which model {model.name!r} does not take; "
            f"its inputs: {', '.join(sorted(names))}"
        )
    rng = np.random.default_rng(seed)
    inputs = {}
    for spec in model.inputs:
        numpy_type(spec)
        shape = resolve_shape(spec, batch_size, shapes.get(spec.name))
        inputs[spec.name] = random_tensor(spec.datatype, shape, rng, string_length)
    return inputs


def _from_json(spec: TensorSpec, value: Any, source: Path) -> np.ndarray[Any, Any]:
    dtype = numpy_type(spec)
    try:
        if spec.datatype == "BYTES":
            array = np.array(value, dtype=object)
            flat = array.reshape(-1)
            flat[:] = [v.encode() if isinstance(v, str) else bytes(v) for v in flat]
        else:
            array = np.array(value, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise UsageError(
            f"{source}: input {spec.name!r} is not {spec.datatype} data: {exc}"
        ) from exc
    shape = array.shape
    fits = len(shape) == len(spec.shape) and all(
        want in (-1, have) for have, want in zip(shape, spec.shape, strict=True)
    )
    if not fits:
        raise UsageError(
            f"{source}: input {spec.name!r} has shape {list(shape)}, but the model takes "
            f"{list(spec.shape)}"
        )
    return array


def load_inputs(path: Path, model: ModelSpec) -> dict[str, np.ndarray[Any, Any]]:
    """Tensors from a JSON file ``{"inputs": {"name": nested list, ...}}``, checked against
    the model's metadata; every input must be there, and no other."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--input-data {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise UsageError(f"--input-data {path} is not valid JSON: {exc}") from exc
    given = document.get("inputs") if isinstance(document, dict) else None
    if not isinstance(given, dict):
        raise UsageError(f'{path}: expected {{"inputs": {{"<input name>": <nested list>, ...}}}}')
    names = [spec.name for spec in model.inputs]
    missing = [name for name in names if name not in given]
    extra = sorted(set(given) - set(names))
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(extra)}"] if extra else []
        )
        raise UsageError(
            f"{path}: {'; '.join(parts)} (model {model.name!r} takes {', '.join(names)})"
        )
    return {spec.name: _from_json(spec, given[spec.name], path) for spec in model.inputs}
