"""scikit-learn, XGBoost and LightGBM sources, converted by modelport's sklearn runtime.

``modelport.runtimes.sklearn.convert_to_onnx`` does the conversion (skl2onnx, onnxmltools) and
returns a function running the source model natively, which the gate compares the ONNX model
with. Pickle and joblib files run code when loaded, so they are read only with
``--allow-unsafe-pickle``; XGBoost's ``.json``/``.ubj`` and LightGBM's ``.txt`` model files are
plain data.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelport.convert.errors import CONVERSION_FAILED, USAGE, ConversionError
from modelport.convert.gate import RESULT_FILENAME, Build, Builder
from modelport.convert.progress import Phases
from modelport.convert.runner import Feeds, Runnable, onnx_opset, path_size

__all__ = ["PICKLE_SUFFIXES", "SUFFIXES", "sklearn_converter"]

PICKLE_SUFFIXES = frozenset({".pkl", ".joblib"})
#: File endings taken as scikit-learn-family models.
SUFFIXES = PICKLE_SUFFIXES | {".json", ".ubj", ".txt"}

_ENGINES = ("sklearn", "skl2onnx", "onnxmltools", "xgboost", "lightgbm", "onnxconverter_common")

ConvertFunction = Callable[..., tuple[Any, Callable[[Feeds], Feeds]]]


def sklearn_converter(path: Path, *, allow_unsafe_pickle: bool, opset: int | None) -> Builder:
    """A step converting the scikit-learn, XGBoost or LightGBM model file at ``path``."""
    if not path.is_file():
        raise ConversionError(f"{path} is not a file", USAGE)
    if path.suffix in PICKLE_SUFFIXES and not allow_unsafe_pickle:
        raise ConversionError(
            f"{path.name} is a pickle: loading it runs any code it holds. Convert only files you "
            "trust, with --allow-unsafe-pickle; or save XGBoost models as .json/.ubj and LightGBM "
            "models as .txt, which need no pickle",
            USAGE,
        )

    def build(folder: Path, phases: Phases) -> Build:
        import onnx

        convert = _convert_function()
        with phases(f"Converting {path.name} to ONNX"):
            try:
                proto, native = convert(path, allow_unsafe_pickle=allow_unsafe_pickle, opset=opset)
            except ImportError as exc:
                raise _missing(exc) from exc
            except Exception as exc:
                raise ConversionError(f"cannot convert {path}: {exc}", CONVERSION_FAILED) from exc
        target = folder / RESULT_FILENAME
        onnx.save(proto, str(target))
        source = Runnable(path.name, path, path_size(path), native)
        details = {"converter": "modelport.runtimes.sklearn", "opset": onnx_opset(target)}
        notes = (
            [f"{path.name} was unpickled (--allow-unsafe-pickle)"]
            if (path.suffix in PICKLE_SUFFIXES)
            else []
        )
        return Build(source, target, details=details, notes=notes)

    return build


def _convert_function() -> ConvertFunction:
    try:
        runtime = importlib.import_module("modelport.runtimes.sklearn")
    except ImportError as exc:
        raise _missing(exc) from exc
    convert: ConvertFunction = runtime.convert_to_onnx
    return convert


def _missing(exc: ImportError) -> ConversionError:
    return ConversionError(
        f"converting scikit-learn, XGBoost or LightGBM models needs their engines ({exc}); "
        "install them with: pip install 'modelport[sklearn]'",
        USAGE,
    )
