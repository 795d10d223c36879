"""Which converter a ``modelport convert SOURCE`` argument names.

- ``file.py:ClassName``: a PyTorch module class (with ``--weights``);
- a folder with ``saved_model.pb``: a TensorFlow SavedModel;
- ``.pt``, ``.pth``, ``.ts``: a TorchScript archive;
- ``.pkl``, ``.joblib``, ``.json``, ``.ubj``, ``.txt``: scikit-learn, XGBoost or
  LightGBM.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.convert.errors import USAGE, ConversionError
from modelport.convert.gate import Builder
from modelport.convert.sklearn_source import SUFFIXES as SKLEARN_SUFFIXES
from modelport.convert.sklearn_source import sklearn_converter
from modelport.convert.tensorflow_source import is_saved_model, saved_model_converter
from modelport.convert.torch_source import module_converter, torchscript_converter

__all__ = ["TORCHSCRIPT_SUFFIXES", "SourceOptions", "converter_for"]

TORCHSCRIPT_SUFFIXES = frozenset({".pt", ".pth", ".ts"})


@dataclass(frozen=True)
class SourceOptions:
    """The ``convert`` options that concern the source."""

    weights: Path | None = None
    init_args: dict[str, Any] | None = None
    sample: Path | None = None
    input_shapes: tuple[str, ...] = ()
    seed: int = 0
    opset: int | None = None
    allow_unsafe_pickle: bool = False
    signature: str = "serving_default"


def converter_for(source: str, options: SourceOptions) -> Builder:
    """The conversion step for ``source``; raise a ``ConversionError`` when none fits."""
    file, _, class_name = source.rpartition(":")
    if file.endswith(".py") and class_name:
        return module_converter(
            source,
            weights=options.weights,
            init_args=options.init_args or {},
            sample=options.sample,
            input_shapes=options.input_shapes,
            seed=options.seed,
            opset=options.opset,
        )
    path = Path(source)
    if options.weights is not None or options.init_args:
        raise ConversionError("--weights and --init-args go with a FILE.py:ClassName source", USAGE)
    if not path.exists():
        raise ConversionError(f"{source} does not exist", USAGE)
    if is_saved_model(path):
        return saved_model_converter(path, opset=options.opset, signature=options.signature)
    if path.is_file() and path.suffix in TORCHSCRIPT_SUFFIXES:
        return torchscript_converter(
            path,
            sample=options.sample,
            input_shapes=options.input_shapes,
            seed=options.seed,
            opset=options.opset,
        )
    if path.is_file() and path.suffix in SKLEARN_SUFFIXES:
        return sklearn_converter(
            path, allow_unsafe_pickle=options.allow_unsafe_pickle, opset=options.opset
        )
    if path.suffix == ".onnx":
        raise ConversionError(
            f"{source} is already ONNX: use modelport optimize or modelport quantize on it", USAGE
        )
    raise ConversionError(
        f"cannot tell what {source} is: give a TorchScript file (.pt), FILE.py:ClassName, a "
        "SavedModel folder, or a scikit-learn/XGBoost/LightGBM model file (.pkl, .joblib, "
        ".json, .ubj, .txt)",
        USAGE,
    )
