"""Model engines behind one ``Runtime`` contract, and the choice of engine for a version folder."""

from __future__ import annotations

from pathlib import Path

from modelport.runtimes.base import ExecutionProvider as ExecutionProvider
from modelport.runtimes.base import Runtime as Runtime
from modelport.runtimes.base import RuntimeOptions as RuntimeOptions
from modelport.runtimes.base import available_cpus as available_cpus
from modelport.runtimes.onnx import OnnxRuntime
from modelport.runtimes.python_handler import PythonHandlerRuntime
from modelport.runtimes.sklearn import SklearnRuntime
from modelport.runtimes.tensorflow import TensorFlowRuntime
from modelport.runtimes.torchscript import TorchExportRuntime, TorchScriptRuntime
from modelport.runtimes.torchserve_mar import TorchServeArchiveRuntime

__all__ = [
    "ExecutionProvider",
    "Runtime",
    "RuntimeOptions",
    "available_cpus",
    "known_model_files",
    "select_runtime",
]

#: Engines in the order they are tried on a version folder: a Python handler first (it may load
#: the folder's other model files itself), then a TorchServe archive, then ONNX.
RUNTIMES: tuple[type[Runtime], ...] = (
    PythonHandlerRuntime,
    TorchServeArchiveRuntime,
    OnnxRuntime,
    SklearnRuntime,
    TorchScriptRuntime,
    TorchExportRuntime,
    TensorFlowRuntime,
)


def select_runtime(version_dir: Path, filename: str | None) -> tuple[type[Runtime], Path] | None:
    """The engine whose model file is in ``version_dir``, with that file; None if no engine fits.

    The files decide the engine, whatever platform string the configuration names. A file
    named by ``default_model_filename`` goes to the engine its suffix belongs to; onnxruntime,
    which takes an ONNX model under any name, is asked last.
    """
    order: tuple[type[Runtime], ...] = (
        RUNTIMES
        if filename is None
        else (*(r for r in RUNTIMES if r is not OnnxRuntime), OnnxRuntime)
    )
    for runtime in order:
        found = runtime.find_model_file(version_dir, filename)
        if found is not None:
            return runtime, found
    return None


def known_model_files() -> list[str]:
    """The default model file names of every engine, for error messages (``model.onnx`` first)."""
    ordered: tuple[type[Runtime], ...] = (
        OnnxRuntime,
        *(r for r in RUNTIMES if r is not OnnxRuntime),
    )
    return [runtime.default_model_filename for runtime in ordered]
