"""Model engines behind one ``Runtime`` contract, and the choice of engine for a version folder."""

from __future__ import annotations

from pathlib import Path

from modelport.runtimes.base import ExecutionProvider as ExecutionProvider
from modelport.runtimes.base import Runtime as Runtime
from modelport.runtimes.base import RuntimeOptions as RuntimeOptions
from modelport.runtimes.base import available_cpus as available_cpus
from modelport.runtimes.onnx import OnnxRuntime

__all__ = [
    "ExecutionProvider",
    "Runtime",
    "RuntimeOptions",
    "available_cpus",
    "known_model_files",
    "select_runtime",
]

#: Engines in the order they are tried on a version folder.
RUNTIMES: tuple[type[Runtime], ...] = (OnnxRuntime,)


def select_runtime(version_dir: Path, filename: str | None) -> tuple[type[Runtime], Path] | None:
    """The engine whose model file is in ``version_dir``, with that file; None if no engine fits.

    The files decide the engine, whatever platform string the configuration names.
    """
    for runtime in RUNTIMES:
        found = runtime.find_model_file(version_dir, filename)
        if found is not None:
            return runtime, found
    return None


def known_model_files() -> list[str]:
    """The default model file names of every engine, for error messages."""
    return [runtime.default_model_filename for runtime in RUNTIMES]
