"""``modelport optimize``: onnxruntime's graph optimizations, saved as a model.

onnxruntime optimizes a graph each time it loads it; saving the optimized graph
(``SessionOptions.optimized_model_filepath``) makes loading faster and shows what the
optimizations did. The source runs with optimizations off, so the parity check and the latency
column measure exactly what they change. ``extended`` is the default level: ``all`` adds layout
changes tuned to this machine's CPU, which onnxruntime advises against saving for other hosts.
"""

from __future__ import annotations

from pathlib import Path

from modelport.convert.errors import CONVERSION_FAILED, USAGE, ConversionError
from modelport.convert.gate import RESULT_FILENAME, Build, Builder
from modelport.convert.progress import Phases
from modelport.convert.runner import onnx_runnable

__all__ = ["LEVELS", "optimizer"]

#: The levels ``--level`` takes, with onnxruntime's names.
LEVELS = {
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def optimizer(model: Path, level: str = "extended") -> Builder:
    """A step that writes ``model`` optimized at ``level`` into the build folder."""
    if level not in LEVELS:
        raise ConversionError(f"--level {level!r} is not one of {', '.join(LEVELS)}", USAGE)
    _check_model(model)

    def build(folder: Path, phases: Phases) -> Build:
        with phases("Loading the source model"):
            source = onnx_runnable(model, model.name, optimization_level="disabled")
        target = folder / RESULT_FILENAME
        with phases(f"Optimizing the graph ({level})"):
            save_optimized(model, target, level)
        return Build(source, target, details={"optimization_level": level})

    return build


def save_optimized(model: Path, target: Path, level: str) -> None:
    """Load ``model`` in onnxruntime at ``level`` and save the optimized graph to ``target``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[level])
    options.optimized_model_filepath = str(target)
    options.log_severity_level = 3
    try:
        ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise ConversionError(
            f"onnxruntime could not optimize {model}: {exc}", CONVERSION_FAILED
        ) from exc
    if not target.is_file():
        raise ConversionError(f"onnxruntime wrote no optimized model for {model}")


def _check_model(model: Path) -> None:
    if not model.is_file():
        raise ConversionError(f"{model} is not a file; give the path of an .onnx model", USAGE)
