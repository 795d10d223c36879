"""An in-process fake engine for tests: a signature plus a Python function, no files, no engine."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import ModelLoadError
from modelport.runtimes.base import Runtime, RuntimeOptions
from modelport.types import Signature

__all__ = ["MockRuntime"]

InferFn = Callable[[Mapping[str, np.ndarray[Any, Any]]], dict[str, np.ndarray[Any, Any]]]


class MockRuntime(Runtime):
    """Answers with ``fn(inputs)``; counts calls; can be told to block until released."""

    platform = "mock"
    default_model_filename = "model.mock"

    def __init__(self, signature: Signature, fn: InferFn) -> None:
        self._signature = signature
        self._fn = fn
        self.calls = 0
        self.unloaded = False
        self.gate: threading.Event | None = None

    @classmethod
    def find_model_file(cls, version_dir: Path, filename: str | None) -> Path | None:
        candidate = version_dir / (filename or cls.default_model_filename)
        return candidate if candidate.exists() else None

    @classmethod
    def load(cls, model_path: Path, options: RuntimeOptions, context: str = "") -> Runtime:
        raise ModelLoadError("MockRuntime is built in tests, not loaded from files")

    @property
    def signature(self) -> Signature:
        return self._signature

    def infer(
        self, inputs: Mapping[str, np.ndarray[Any, Any]], outputs: Sequence[str]
    ) -> dict[str, np.ndarray[Any, Any]]:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(timeout=30)
        result = self._fn(inputs)
        return {name: result[name] for name in outputs}

    def unload(self) -> None:
        self.unloaded = True
