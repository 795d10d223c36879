"""The inputs a parity check runs on: the user's ``.npy``/``.npz`` file, or seeded random data.

Random inputs follow the model's declared inputs: a dynamic first dimension becomes the batch
size, other dynamic dimensions come from ``--input-shape`` (or 8). ``--input-shape`` takes
``[NAME=]D1,D2,...[:DTYPE]``, such as ``4,16``, ``ids=4,32:int64``; shapes without a name apply to
the inputs in order. Floats are standard normal, integers lie in [0, 10), booleans are fair coins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.convert.errors import USAGE, ConversionError
from modelport.convert.runner import Feeds
from modelport.types import Datatype, TensorSpec

__all__ = [
    "DEFAULT_DYNAMIC_SIZE",
    "ShapeSpec",
    "cast_feeds",
    "generate_feeds",
    "load_sample_file",
    "match_feeds",
    "parse_input_shapes",
    "specs_from_shapes",
]

#: The size of a dynamic dimension other than the first when ``--input-shape`` names none.
DEFAULT_DYNAMIC_SIZE = 8


@dataclass(frozen=True)
class ShapeSpec:
    """One ``--input-shape``: an input's shape, optionally its name and numpy dtype."""

    shape: tuple[int, ...]
    name: str | None = None
    dtype: np.dtype[Any] | None = None


def parse_input_shapes(texts: Sequence[str]) -> list[ShapeSpec]:
    """Parse ``--input-shape`` values; raise a ``ConversionError`` on a malformed one."""
    return [_parse_shape(text) for text in texts]


def _parse_shape(text: str) -> ShapeSpec:
    name, _, rest = text.rpartition("=")
    dims, _, dtype_text = rest.partition(":")
    try:
        shape = tuple(int(d) for d in dims.split(",") if d.strip())
        dtype = np.dtype(dtype_text) if dtype_text else None
    except (TypeError, ValueError) as exc:
        raise ConversionError(
            f"--input-shape {text!r} is not [NAME=]D1,D2,...[:DTYPE] (for example 4,16 or "
            f"ids=4,32:int64): {exc}",
            USAGE,
        ) from exc
    if not shape or any(d < 1 for d in shape):
        raise ConversionError(
            f"--input-shape {text!r} needs one or more positive sizes, such as 4,16", USAGE
        )
    return ShapeSpec(shape, name or None, dtype)


def load_sample_file(path: Path) -> dict[str, np.ndarray[Any, Any]] | np.ndarray[Any, Any]:
    """The arrays of a ``.npz`` by name, or the one array of a ``.npy`` (never unpickled)."""
    if path.suffix not in (".npy", ".npz"):
        raise ConversionError(f"{path} is not a .npy or .npz file", USAGE)
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConversionError(
            f"cannot read {path}: {exc} (object arrays are refused; save numeric arrays)", USAGE
        ) from exc
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        return {name: loaded[name] for name in loaded.files}


def match_feeds(
    loaded: Mapping[str, np.ndarray[Any, Any]] | np.ndarray[Any, Any],
    names: Sequence[str],
    origin: str,
) -> Feeds:
    """The loaded arrays as the model's inputs ``names``.

    A ``.npz`` matches by name; when none of its names match and it holds as many arrays as the
    model has inputs, they are taken in order (``np.savez(path, a, b)`` names them arr_0, arr_1).
    """
    if isinstance(loaded, np.ndarray):
        if len(names) != 1:
            raise ConversionError(
                f"{origin} holds one array, but the model takes {len(names)} inputs "
                f"({', '.join(names)}); save them with np.savez(path, {'=..., '.join(names)}=...)",
                USAGE,
            )
        return {names[0]: loaded}
    if set(loaded) == set(names):
        return {name: loaded[name] for name in names}
    if not set(loaded) & set(names) and len(loaded) == len(names):
        return dict(zip(names, loaded.values(), strict=True))
    raise ConversionError(
        f"{origin} holds arrays {sorted(loaded)}, but the model's inputs are {list(names)}; "
        "name the arrays after the inputs",
        USAGE,
    )


def specs_from_shapes(names: Sequence[str], shapes: Sequence[ShapeSpec]) -> tuple[TensorSpec, ...]:
    """Input specs for a model that records no shapes (PyTorch), from ``--input-shape``."""
    specs = []
    for name, given in zip(names, _by_input(names, shapes), strict=True):
        dtype = given.dtype if given.dtype is not None else np.dtype(np.float32)
        specs.append(TensorSpec(name, Datatype.from_numpy(dtype), given.shape))
    return tuple(specs)


def generate_feeds(
    specs: Sequence[TensorSpec],
    *,
    batch_size: int,
    seed: int,
    shapes: Sequence[ShapeSpec] = (),
) -> Feeds:
    """Seeded random inputs for ``specs``; see the module docstring for the rules."""
    names = [spec.name for spec in specs]
    overrides = dict(zip(names, _by_input(names, shapes), strict=True)) if shapes else {}
    rng = np.random.default_rng(seed)
    feeds: Feeds = {}
    for spec in specs:
        given = overrides.get(spec.name)
        shape = _concrete_shape(spec, given, batch_size)
        datatype = Datatype.from_numpy(given.dtype) if given and given.dtype else spec.datatype
        feeds[spec.name] = _random(rng, datatype, shape)
    return feeds


def _by_input(names: Sequence[str], shapes: Sequence[ShapeSpec]) -> list[ShapeSpec]:
    """``shapes`` in the order of ``names``: by name when named, else in the order given."""
    named = {s.name: s for s in shapes if s.name is not None}
    unknown = set(named) - set(names)
    if unknown:
        raise ConversionError(
            f"--input-shape names {sorted(unknown)}, but the model's inputs are {list(names)}",
            USAGE,
        )
    if named:
        if len(named) != len(shapes) or set(named) != set(names):
            raise ConversionError(
                f"name every input in --input-shape ({', '.join(names)}), or none", USAGE
            )
        return [named[name] for name in names]
    if len(shapes) != len(names):
        raise ConversionError(
            f"the model takes {len(names)} inputs ({', '.join(names)}) but {len(shapes)} "
            "--input-shape values were given; give one per input",
            USAGE,
        )
    return list(shapes)


def _concrete_shape(spec: TensorSpec, given: ShapeSpec | None, batch_size: int) -> tuple[int, ...]:
    if given is not None:
        if len(given.shape) != len(spec.shape) or any(
            want not in (-1, got) for want, got in zip(spec.shape, given.shape, strict=True)
        ):
            raise ConversionError(
                f"--input-shape {list(given.shape)} does not fit input {spec.describe()}", USAGE
            )
        return given.shape
    return tuple(
        size if size != -1 else batch_size if axis == 0 else DEFAULT_DYNAMIC_SIZE
        for axis, size in enumerate(spec.shape)
    )


def _random(
    rng: np.random.Generator, datatype: Datatype, shape: tuple[int, ...]
) -> np.ndarray[Any, Any]:
    dtype = datatype.numpy_dtype
    if datatype is Datatype.BYTES:
        words = rng.integers(0, 26, size=shape)
        out = np.empty(shape, dtype=object)
        out.flat[:] = [bytes([97 + int(w)]) * 3 for w in words.flat]
        return out
    if datatype is Datatype.BOOL:
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        return rng.integers(0, 10, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def cast_feeds(feeds: Feeds, specs: Sequence[TensorSpec] | None) -> Feeds:
    """``feeds`` with floating inputs cast to the float type each spec declares (FP16 models)."""
    if not specs:
        return feeds
    wanted = {spec.name: spec.datatype.numpy_dtype for spec in specs}
    out: Feeds = {}
    for name, array in feeds.items():
        dtype = wanted.get(name)
        if dtype is not None and dtype.kind == "f" and array.dtype.kind == "f":
            out[name] = array.astype(dtype, copy=False)
        else:
            out[name] = array
    return out
