"""A model that parity checks can run: the source in its own engine, or an ONNX file.

ONNX files run through modelport's own onnxruntime engine (``OnnxRuntime``), with the session
settings the server uses, so a result is checked the way it will be served.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.convert.errors import ConversionError
from modelport.errors import ModelLoadError, ModelportError
from modelport.runtimes.base import RuntimeOptions
from modelport.runtimes.onnx import OnnxRuntime
from modelport.types import TensorSpec

__all__ = ["Feeds", "Runnable", "Runner", "onnx_opset", "onnx_runnable", "path_size"]

Feeds = dict[str, np.ndarray[Any, Any]]
Runner = Callable[[Feeds], Feeds]


@dataclass(frozen=True)
class Runnable:
    """A model with what the report says about it.

    ``inputs`` are the tensors it declares, when its format records them (ONNX, SavedModel);
    ``run`` takes inputs by name and returns outputs by name, in the model's output order.
    """

    label: str
    path: Path
    size_bytes: int
    run: Runner
    inputs: tuple[TensorSpec, ...] | None = None
    outputs: tuple[TensorSpec, ...] | None = None


def path_size(path: Path) -> int:
    """Bytes in a file, or in every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def onnx_runnable(path: Path, label: str, optimization_level: str = "all") -> Runnable:
    """An ONNX file in onnxruntime; ``optimization_level`` as in config.yaml's runtime section.

    The size counts the external weight files the model refers to.
    """
    try:
        runtime = OnnxRuntime.load(
            path, RuntimeOptions(graph_optimization_level=optimization_level), context=label
        )
    except ModelLoadError as exc:
        raise ConversionError(f"{label}: {exc}") from exc
    signature = runtime.signature
    names = list(signature.output_names)

    def run(feeds: Feeds) -> Feeds:
        try:
            return runtime.infer(feeds, names)
        except ModelportError as exc:
            raise ConversionError(f"{label} failed on the sample inputs: {exc.message}") from exc

    return Runnable(
        label, path, _onnx_size(path), run, inputs=signature.inputs, outputs=signature.outputs
    )


def _onnx_size(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    external = {
        entry.value
        for tensor in model.graph.initializer
        for entry in tensor.external_data
        if entry.key == "location"
    }
    return path.stat().st_size + sum(
        (path.parent / name).stat().st_size for name in external if (path.parent / name).is_file()
    )


def onnx_opset(path: Path) -> int | None:
    """The default-domain opset an ONNX file imports."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
