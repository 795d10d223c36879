"""The onnxruntime engine: loads ``model.onnx`` and runs it with the configured providers.

Execution providers are tried in the configured order; any that this onnxruntime build lacks (for
example CUDA or TensorRT on a CPU-only machine) are dropped with one clear log line, and the CPU
provider is always the last fallback, so a GPU configuration still serves on a CPU host.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from modelport.errors import InvalidInput, ModelLoadError, RuntimeFailure
from modelport.runtimes.base import ExecutionProvider, Runtime, RuntimeOptions, available_cpus
from modelport.types import Datatype, Signature, TensorSpec

if TYPE_CHECKING:
    import onnxruntime

__all__ = ["OnnxRuntime"]

log = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"

_ORT_TYPES: dict[str, Datatype] = {
    "tensor(bool)": Datatype.BOOL,
    "tensor(uint8)": Datatype.UINT8,
    "tensor(uint16)": Datatype.UINT16,
    "tensor(uint32)": Datatype.UINT32,
    "tensor(uint64)": Datatype.UINT64,
    "tensor(int8)": Datatype.INT8,
    "tensor(int16)": Datatype.INT16,
    "tensor(int32)": Datatype.INT32,
    "tensor(int64)": Datatype.INT64,
    "tensor(float16)": Datatype.FP16,
    "tensor(float)": Datatype.FP32,
    "tensor(double)": Datatype.FP64,
    "tensor(string)": Datatype.BYTES,
}

_OPTIMIZATION_LEVELS = {
    "disabled": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


class OnnxRuntime(Runtime):
    """An ONNX model served by onnxruntime."""

    platform = "onnxruntime_onnx"
    default_model_filename = "model.onnx"

    def __init__(self, session: onnxruntime.InferenceSession, signature: Signature) -> None:
        self._session: onnxruntime.InferenceSession | None = session
        # InferenceSession.run re-checks the feed names and ownership on every call, which
        # modelport has already done; the C++ session under it takes the same arguments.
        self._run: Callable[..., list[Any]] | None = getattr(session, "_sess", session).run
        self._signature = signature
        self._string_inputs = frozenset(
            t.name for t in signature.inputs if t.datatype is Datatype.BYTES
        )
        self._string_outputs = frozenset(
            t.name for t in signature.outputs if t.datatype is Datatype.BYTES
        )
        self.providers: tuple[str, ...] = tuple(session.get_providers())

    @classmethod
    def find_model_file(cls, version_dir: Path, filename: str | None) -> Path | None:
        if filename:
            candidate = version_dir / filename
            return candidate if candidate.is_file() else None
        default = version_dir / cls.default_model_filename
        if default.is_file():
            return default
        onnx_files = sorted(p for p in version_dir.glob("*.onnx") if p.is_file())
        return onnx_files[0] if len(onnx_files) == 1 else None

    @classmethod
    def load(cls, model_path: Path, options: RuntimeOptions, context: str = "") -> OnnxRuntime:
        return cls.from_source(str(model_path), model_path.name, options, context)

    @classmethod
    def from_source(
        cls, source: str | bytes, name: str, options: RuntimeOptions, context: str = ""
    ) -> Self:
        """A session on ``source``: a file path, or a serialized ONNX model (e.g. one converted
        in memory). ``name`` names the model in error messages."""
        import onnxruntime as ort

        session_options = _session_options(ort, options)
        providers = _choose_providers(ort, options.execution_providers, context)
        try:
            session = ort.InferenceSession(
                source,
                sess_options=session_options,
                providers=[p.name for p in providers],
                provider_options=[dict(p.options) for p in providers],
            )
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise ModelLoadError(f"onnxruntime could not load {name}: {exc}") from exc
        signature = Signature(
            inputs=tuple(_spec(arg) for arg in session.get_inputs()),
            outputs=tuple(_spec(arg) for arg in session.get_outputs()),
        )
        return cls(session, signature)

    @property
    def signature(self) -> Signature:
        return self._signature

    def infer(
        self, inputs: Mapping[str, np.ndarray[Any, Any]], outputs: Sequence[str]
    ) -> dict[str, np.ndarray[Any, Any]]:
        run = self._run
        if run is None:
            raise RuntimeFailure("the model was unloaded while a request was running")
        feeds = inputs
        if self._string_inputs:
            feeds = {
                name: _to_str_array(arr, name) if name in self._string_inputs else arr
                for name, arr in inputs.items()
            }
        try:
            results = run(outputs, feeds, None)
        except Exception as exc:
            raise _translate(exc) from exc
        if not self._string_outputs:
            return dict(zip(outputs, results, strict=True))
        return {
            name: _to_bytes_array(arr) if name in self._string_outputs else arr
            for name, arr in zip(outputs, results, strict=True)
        }

    def unload(self) -> None:
        self._session = None
        self._run = None


def _session_options(ort: Any, options: RuntimeOptions) -> Any:
    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads = options.intra_op_threads or available_cpus()
    session_options.inter_op_num_threads = options.inter_op_threads or 1
    session_options.log_severity_level = 3
    level = _OPTIMIZATION_LEVELS[options.graph_optimization_level]
    session_options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    return session_options


def _choose_providers(
    ort: Any, wanted: Sequence[ExecutionProvider], context: str
) -> list[ExecutionProvider]:
    """The wanted providers this build has, in order, always ending with the CPU provider."""
    available = set(ort.get_available_providers())
    chosen: list[ExecutionProvider] = []
    for provider in wanted:
        if provider.name in available:
            chosen.append(provider)
        else:
            log.warning(
                "%s: execution provider %s is not available in this onnxruntime build "
                "(available: %s); falling back to the next provider",
                context or "model",
                provider.name,
                ", ".join(sorted(available)),
            )
    if not any(p.name == CPU_PROVIDER for p in chosen):
        chosen.append(ExecutionProvider(CPU_PROVIDER))
    if wanted and chosen[0].name != wanted[0].name:
        log.warning("%s: running on %s", context or "model", chosen[0].name)
    return chosen


def _spec(arg: Any) -> TensorSpec:
    datatype = _ORT_TYPES.get(arg.type)
    if arg.type == "tensor(bfloat16)":
        raise ModelLoadError(
            f"tensor {arg.name!r} is bfloat16, which onnxruntime's Python API cannot exchange; "
            "export the model with FP16 or FP32 inputs and outputs"
        )
    if datatype is None:
        raise ModelLoadError(
            f"tensor {arg.name!r} has type {arg.type}, which modelport cannot serve; export the "
            "model with plain tensor inputs and outputs (for skl2onnx, use zipmap=False)"
        )
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or ()))
    return TensorSpec(arg.name, datatype, shape)


def _to_str_array(arr: np.ndarray[Any, Any], name: str) -> np.ndarray[Any, Any]:
    """onnxruntime's Python API takes string tensors as text: the bytes must be UTF-8."""
    try:
        flat = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in arr.flat]
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"input {name!r} holds bytes that are not UTF-8 text; onnxruntime string tensors "
            "take UTF-8 text only"
        ) from exc
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(arr.shape)


def _to_bytes_array(arr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    flat = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in arr.flat]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(arr.shape)


def _translate(exc: Exception) -> Exception:
    """Engine errors about the request's values become 400s; anything else is a failure."""
    text = str(exc)
    if "INVALID_ARGUMENT" in text or type(exc).__name__ == "InvalidArgument":
        return InvalidInput(f"the model rejected the input: {text}")
    log.error("onnxruntime failed while running a request: %s", text)
    return RuntimeFailure("the model failed while running this request; see the server log")
