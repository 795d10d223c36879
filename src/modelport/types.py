"""The contract every layer shares: datatypes, tensor specs, signatures, requests and responses.

Datatypes use the KServe V2 vocabulary (``FP32``, ``INT64``, ``BYTES`` ...). Protocol adapters
convert at the edges (TF Serving's ``DT_FLOAT``, numpy dtypes); the core never sees another name.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ml_dtypes
import numpy as np

__all__ = [
    "DEFAULT_SIGNATURE_NAME",
    "Datatype",
    "IndexEntry",
    "InferRequest",
    "InferResponse",
    "ModelState",
    "Signature",
    "TensorSpec",
    "VersionStatus",
]


class Datatype(enum.StrEnum):
    """A tensor element type, named as in the KServe V2 / Open Inference Protocol."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BF16 = "BF16"
    BYTES = "BYTES"

    @property
    def numpy_dtype(self) -> np.dtype[Any]:
        """The numpy dtype holding elements of this type (``object`` for BYTES)."""
        return _TO_NUMPY[self]

    @property
    def itemsize(self) -> int | None:
        """Bytes per element on the wire, or None for variable-length BYTES."""
        return None if self is Datatype.BYTES else _TO_NUMPY[self].itemsize

    @classmethod
    def from_dtype_name(cls, name: str) -> Datatype | None:
        """The numeric or boolean datatype a dtype name gives (``float32``, ``bfloat16``, ...),
        as numpy, PyTorch (without ``torch.``) and TensorFlow spell it; None for any other."""
        return _BY_DTYPE_NAME.get(name)

    @classmethod
    def from_numpy(cls, dtype: np.dtype[Any]) -> Datatype:
        """The datatype of a numpy dtype; strings and objects map to BYTES."""
        found = _FROM_NUMPY.get(dtype) or _FROM_NUMPY.get(np.dtype(dtype))
        if found is not None:
            return found
        if np.dtype(dtype).kind in "OSU":
            return cls.BYTES
        raise ValueError(f"numpy dtype {dtype} has no V2 datatype")


_TO_NUMPY: dict[Datatype, np.dtype[Any]] = {
    Datatype.BOOL: np.dtype(np.bool_),
    Datatype.UINT8: np.dtype(np.uint8),
    Datatype.UINT16: np.dtype(np.uint16),
    Datatype.UINT32: np.dtype(np.uint32),
    Datatype.UINT64: np.dtype(np.uint64),
    Datatype.INT8: np.dtype(np.int8),
    Datatype.INT16: np.dtype(np.int16),
    Datatype.INT32: np.dtype(np.int32),
    Datatype.INT64: np.dtype(np.int64),
    Datatype.FP16: np.dtype(np.float16),
    Datatype.FP32: np.dtype(np.float32),
    Datatype.FP64: np.dtype(np.float64),
    Datatype.BF16: np.dtype(ml_dtypes.bfloat16),
    Datatype.BYTES: np.dtype(object),
}
_BY_DTYPE_NAME: dict[str, Datatype] = {
    dtype.name: datatype for datatype, dtype in _TO_NUMPY.items() if datatype is not Datatype.BYTES
}
_FROM_NUMPY: dict[np.dtype[Any], Datatype] = {
    dt: name for name, dt in _TO_NUMPY.items() if name is not Datatype.BYTES
}


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """Name, datatype and shape of one model input or output; -1 marks a dynamic dimension."""

    name: str
    datatype: Datatype
    shape: tuple[int, ...]

    def describe(self) -> str:
        """A short human form such as ``images FP32 [-1, 784]``, for error messages."""
        return f"{self.name} {self.datatype} {list(self.shape)}"


InputCheck = tuple[str, np.dtype[Any], int, tuple[tuple[int, int], ...]]


#: The signature every protocol serves; TF Serving's name for it.
DEFAULT_SIGNATURE_NAME = "serving_default"


@dataclass(frozen=True, slots=True)
class Signature:
    """The inputs and outputs of a model version, in the model's own order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    _inputs_by_name: Mapping[str, TensorSpec] = field(init=False, repr=False, compare=False)
    _outputs_by_name: Mapping[str, TensorSpec] = field(init=False, repr=False, compare=False)
    #: Per input: name, numpy dtype, rank, and the (axis, size) pairs of its fixed dimensions.
    input_checks: tuple[InputCheck, ...] = field(init=False, repr=False, compare=False)
    input_names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    output_names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_inputs_by_name", {t.name: t for t in self.inputs})
        object.__setattr__(self, "_outputs_by_name", {t.name: t for t in self.outputs})
        checks = tuple(
            (
                t.name,
                t.datatype.numpy_dtype,
                len(t.shape),
                tuple((axis, size) for axis, size in enumerate(t.shape) if size != -1),
            )
            for t in self.inputs
        )
        object.__setattr__(self, "input_checks", checks)
        object.__setattr__(self, "input_names", tuple(t.name for t in self.inputs))
        object.__setattr__(self, "output_names", tuple(t.name for t in self.outputs))

    def input(self, name: str) -> TensorSpec | None:
        """The input called ``name``, or None."""
        return self._inputs_by_name.get(name)

    def output(self, name: str) -> TensorSpec | None:
        """The output called ``name``, or None."""
        return self._outputs_by_name.get(name)


@dataclass(slots=True)
class InferRequest:
    """One inference call after decoding: named numpy inputs and the outputs wanted.

    ``outputs`` None means every output of the model. ``signature`` names another signature
    than ``serving_default`` (a SavedModel's, by TF Serving's ``signature_name``).
    """

    inputs: dict[str, np.ndarray[Any, Any]]
    outputs: list[str] | None = None
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    signature: str | None = None


@dataclass(slots=True)
class InferResponse:
    """The result of one inference call: which version answered and its named outputs."""

    model: str
    version: int
    outputs: dict[str, np.ndarray[Any, Any]]
    id: str | None = None


class ModelState(enum.StrEnum):
    """The life of one model version; ``lifecycle.states`` says which transitions are allowed."""

    START = "START"  #: known, not yet loading
    LOADING = "LOADING"  #: the engine is loading and warming it up
    AVAILABLE = "AVAILABLE"  #: serving requests
    UNLOADING = "UNLOADING"  #: takes no new requests; in-flight ones finish, then it unloads
    END = "END"  #: unloaded
    FAILED = "FAILED"  #: could not load; ``error`` says why


@dataclass(frozen=True, slots=True)
class VersionStatus:
    """What the status APIs report about one version."""

    version: int
    state: ModelState
    error: str | None = None


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One row of the repository index: a model, or one version of it, and its state
    (Triton's names: READY, LOADING, UNLOADING, UNAVAILABLE)."""

    name: str
    version: int | None
    state: str
    reason: str
