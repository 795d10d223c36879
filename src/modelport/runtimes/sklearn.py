"""scikit-learn, XGBoost and LightGBM models, converted to ONNX as they load and run by onnxruntime.

A version folder holds one of these files, looked for in this order (safe formats first):

- ``model.json`` or ``model.ubj``: an XGBoost model saved with ``save_model`` (a ``Booster``, an
  ``XGBClassifier`` or an ``XGBRegressor``);
- ``model.txt``: a LightGBM model saved with ``Booster.save_model``;
- ``model.joblib`` or ``model.pkl``: a fitted scikit-learn estimator or pipeline (XGBoost's and
  LightGBM's scikit-learn wrappers included). Unpickling runs code from the file, so these load
  only when the model's ``config.yaml`` sets ``allow_unsafe_pickle: true``.

The served model has one FP32 input ``input`` of shape ``[-1, n_features]`` (``n_features`` read
from the model). Classifiers answer ``label`` (INT64, or BYTES for string classes) and
``probabilities`` (FP32 ``[-1, n_classes]``); regressors answer ``prediction`` (FP32
``[-1, n_targets]``). ``convert_to_onnx`` is also what ``modelport convert`` uses. The libraries
are imported here only, and only when such a model loads.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from modelport.errors import ModelLoadError
from modelport.runtimes.base import RuntimeOptions
from modelport.runtimes.onnx import OnnxRuntime

if TYPE_CHECKING:
    import onnx

__all__ = [
    "INPUT",
    "LABEL",
    "MODEL_FILES",
    "PREDICTION",
    "PROBABILITIES",
    "NativeFn",
    "SklearnRuntime",
    "convert_to_onnx",
]

log = logging.getLogger(__name__)

#: The input's name, unless config.yaml declares one input under another name.
INPUT = "input"
#: A classifier's predicted class, one per row.
LABEL = "label"
#: A classifier's probability of each class, one row per input row.
PROBABILITIES = "probabilities"
#: A regressor's predicted value(s), one row per input row.
PREDICTION = "prediction"

#: The files looked for in a version folder, in this order.
MODEL_FILES = ("model.json", "model.ubj", "model.txt", "model.joblib", "model.pkl")

Format = Literal["xgboost", "lightgbm", "pickle"]
_FORMATS: dict[str, Format] = {
    ".json": "xgboost",
    ".ubj": "xgboost",
    ".txt": "lightgbm",
    ".joblib": "pickle",
    ".pkl": "pickle",
}

Arrays = dict[str, np.ndarray[Any, Any]]
#: Runs the source model in its own library on named inputs; outputs named as in the ONNX model.
NativeFn = Callable[[Arrays], Arrays]

_SUPPORTED = (
    "modelport converts what skl2onnx and onnxmltools support (see docs/runtimes.md): use a "
    "supported estimator, or convert the model yourself and serve model.onnx "
    "(`modelport convert`, or skl2onnx's to_onnx)"
)


@dataclass(frozen=True, slots=True)
class _Source:
    """A model read from its file: how to convert it, and how to run it in its own library."""

    description: str
    n_features: int
    task: Literal["classifier", "regressor"]
    to_onnx: Callable[[str, int | None], onnx.ModelProto]
    predict: Callable[[np.ndarray[Any, Any]], Arrays]


def convert_to_onnx(
    path: Path, *, allow_unsafe_pickle: bool, opset: int | None = None
) -> tuple[onnx.ModelProto, NativeFn]:
    """Convert the model file at ``path`` to ONNX; return it with a function that runs the
    source model natively on the same named inputs, for parity checks.

    ``opset`` is the default-domain ONNX opset (the converters choose when None). Pickles
    (``.joblib``, ``.pkl``) are read only with ``allow_unsafe_pickle``. Raises ``ModelLoadError``
    saying what to do when the file cannot be read or converted.
    """
    model, native, _ = _convert(path, allow_unsafe_pickle, opset, INPUT, "")
    return model, native


def _convert(
    path: Path, allow_unsafe_pickle: bool, opset: int | None, input_name: str, context: str
) -> tuple[onnx.ModelProto, NativeFn, str]:
    source = _read(path, allow_unsafe_pickle, context)
    try:
        model = source.to_onnx(input_name, opset)
    except ImportError as exc:
        raise _missing_library(path, exc) from exc
    except Exception as exc:  # the converters raise many types, none of them shared
        raise ModelLoadError(
            f"cannot convert {source.description} from {path.name} to ONNX "
            f"({type(exc).__name__}: {_first_line(exc)}); {_SUPPORTED}"
        ) from exc
    _name_outputs(model, source)
    return model, _native(source, input_name), source.description


def _first_line(exc: Exception) -> str:
    """The converters' messages go on for paragraphs; the first line names the problem."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _read(path: Path, allow_unsafe_pickle: bool, context: str) -> _Source:
    kind = _FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ModelLoadError(
            f"{path.name} is not a model file modelport converts: expected {', '.join(MODEL_FILES)}"
            " (or another name with one of these suffixes)"
        )
    if not path.is_file():
        raise ModelLoadError(f"{path} does not exist or is not a file")
    if kind == "pickle" and not allow_unsafe_pickle:
        raise ModelLoadError(
            f"{path.name} is a pickle, and unpickling runs code from the file, so modelport does "
            "not load it by default. Safer: convert it to ONNX once (`modelport convert`) and "
            "serve model.onnx, or save XGBoost models as model.json and LightGBM models as "
            "model.txt. If you trust the file, set allow_unsafe_pickle: true in the model's "
            "config.yaml"
        )
    try:
        if kind == "xgboost":
            return _read_xgboost(path)
        if kind == "lightgbm":
            return _read_lightgbm(path)
        return _read_pickle(path, context)
    except ImportError as exc:
        raise _missing_library(path, exc) from exc


def _missing_library(path: Path, exc: ImportError) -> ModelLoadError:
    return ModelLoadError(
        f"serving {path.name} needs scikit-learn, skl2onnx, onnxmltools, XGBoost and LightGBM "
        f"({exc}); install them with: pip install 'modelport[sklearn]'"
    )


def _read_xgboost(path: Path) -> _Source:
    import xgboost

    try:
        booster = xgboost.Booster(model_file=str(path))
        objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    except Exception as exc:  # XGBoostError, or a config without an objective
        raise ModelLoadError(
            f"XGBoost cannot read {path.name}: {exc}; save the model with save_model() "
            "to a .json or .ubj file"
        ) from exc
    wrapper: Any
    if objective.startswith(("binary:", "multi:")):
        wrapper = xgboost.XGBClassifier()
    elif objective.startswith(("reg:", "count:")):
        wrapper = xgboost.XGBRegressor()
    else:
        raise ModelLoadError(
            f"{path.name} is an XGBoost model with objective {objective!r}; modelport serves "
            "classifiers (binary:*, multi:*) and regressors (reg:*, count:*)"
        )
    wrapper.load_model(str(path))  # the same file again, now with the wrapper's attributes
    return _estimator_source(wrapper, f"XGBoost {type(wrapper).__name__} ({objective})")


_LIGHTGBM_REGRESSION = {
    "regression",
    "regression_l1",
    "huber",
    "fair",
    "quantile",
    "mape",
    "poisson",
    "gamma",
    "tweedie",
}


def _read_lightgbm(path: Path) -> _Source:
    import lightgbm

    try:
        booster = lightgbm.Booster(model_file=str(path))
        objective = str(booster.dump_model(num_iteration=1)["objective"]).split()[0]
    except Exception as exc:  # LightGBMError for a file that is not a LightGBM model
        raise ModelLoadError(
            f"LightGBM cannot read {path.name}: {exc}; save the model with "
            "Booster.save_model('model.txt')"
        ) from exc
    description = f"LightGBM Booster ({objective})"
    n_features = int(booster.num_feature())

    def to_onnx(input_name: str, opset: int | None) -> onnx.ModelProto:
        from onnxmltools import convert_lightgbm
        from onnxmltools.convert.common.data_types import FloatTensorType

        initial = [(input_name, FloatTensorType([None, n_features]))]
        converted: onnx.ModelProto = convert_lightgbm(
            booster, initial_types=initial, target_opset=opset, zipmap=False
        )
        return converted

    if objective in ("binary", "multiclass", "multiclassova"):
        return _Source(description, n_features, "classifier", to_onnx, _booster_classes(booster))
    if objective in _LIGHTGBM_REGRESSION:

        def predict(x: np.ndarray[Any, Any]) -> Arrays:
            return {PREDICTION: _rows(booster.predict(x))}

        return _Source(description, n_features, "regressor", to_onnx, predict)
    regressors = ", ".join(sorted(_LIGHTGBM_REGRESSION))
    raise ModelLoadError(
        f"{path.name} is a LightGBM model with objective {objective!r}; modelport serves "
        f"classifiers (binary, multiclass) and regressors ({regressors})"
    )


def _booster_classes(booster: Any) -> Callable[[np.ndarray[Any, Any]], Arrays]:
    """A LightGBM classifier's label and probabilities, as LGBMClassifier computes them."""

    def predict(x: np.ndarray[Any, Any]) -> Arrays:
        scores = np.asarray(booster.predict(x))
        if scores.ndim == 1:  # binary: the probability of class 1
            scores = np.stack([1 - scores, scores], axis=1)
        return {
            LABEL: np.argmax(scores, axis=1).astype(np.int64),
            PROBABILITIES: scores.astype(np.float32),
        }

    return predict


def _read_pickle(path: Path, context: str) -> _Source:
    log.warning(
        "%sunpickling %s because allow_unsafe_pickle is on. Unpickling runs "
        "whatever code the file holds, with this server's permissions: serve only pickles you "
        "trust, and prefer ONNX (`modelport convert`), XGBoost model.json or LightGBM model.txt",
        f"{context}: " if context else "",
        path.resolve(),
    )
    import joblib

    try:
        estimator = joblib.load(path)
    except Exception as exc:  # unpickling raises whatever the pickle's code raises
        raise ModelLoadError(
            f"cannot unpickle {path.name} ({type(exc).__name__}: {exc}); pickles load only with "
            "the library versions that wrote them: re-save the model with the versions "
            "installed here, or convert it to ONNX"
        ) from exc
    return _estimator_source(estimator, _describe(estimator))


def _estimator_source(estimator: Any, description: str) -> _Source:
    """A scikit-learn estimator or pipeline (or a wrapper that follows its API)."""
    from sklearn.base import is_classifier, is_regressor

    if not hasattr(estimator, "predict"):
        raise ModelLoadError(
            f"the model file holds a {type(estimator).__name__}, not a fitted scikit-learn "
            "estimator or pipeline; save the fitted estimator itself with joblib.dump"
        )
    n_features = getattr(estimator, "n_features_in_", None)
    if not isinstance(n_features, int | np.integer):
        raise ModelLoadError(
            f"{description} does not say how many features it takes (no n_features_in_): "
            "fit it on a 2-D array before saving it"
        )
    if is_classifier(estimator):
        task: Literal["classifier", "regressor"] = "classifier"
    elif is_regressor(estimator):
        task = "regressor"
    else:
        raise ModelLoadError(
            f"{description} is neither a classifier nor a regressor, which is what modelport "
            "serves from scikit-learn files; convert other estimators to ONNX yourself and "
            "serve model.onnx"
        )

    def to_onnx(input_name: str, opset: int | None) -> onnx.ModelProto:
        return _skl2onnx(estimator, int(n_features), input_name, opset)

    return _Source(description, int(n_features), task, to_onnx, _estimator_predict(estimator, task))


def _estimator_predict(
    estimator: Any, task: Literal["classifier", "regressor"]
) -> Callable[[np.ndarray[Any, Any]], Arrays]:
    def predict(x: np.ndarray[Any, Any]) -> Arrays:
        if task == "regressor":
            return {PREDICTION: _rows(estimator.predict(x))}
        labels = np.asarray(estimator.predict(x))
        out = {LABEL: labels.astype(np.int64) if labels.dtype.kind in "iub" else labels}
        if hasattr(estimator, "predict_proba"):
            out[PROBABILITIES] = np.asarray(estimator.predict_proba(x), dtype=np.float32)
        return out

    return predict


def _rows(values: Any) -> np.ndarray[Any, Any]:
    array = np.asarray(values, dtype=np.float32)
    return array.reshape(len(array), -1)


def _describe(estimator: Any) -> str:
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list):
        return f"{type(estimator).__name__}({', '.join(type(s[1]).__name__ for s in steps)})"
    return type(estimator).__name__


def _skl2onnx(
    estimator: Any, n_features: int, input_name: str, opset: int | None
) -> onnx.ModelProto:
    from skl2onnx import convert_sklearn, get_latest_tested_opset_version
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.base import is_classifier

    _register_boosters()
    parts = [estimator, *estimator.get_params(deep=True).values()]
    options = {
        id(part): {"zipmap": False}
        for part in parts
        if hasattr(part, "fit") and is_classifier(part) and not hasattr(part, "steps")
    }
    converted: onnx.ModelProto = convert_sklearn(
        estimator,
        initial_types=[(input_name, FloatTensorType([None, n_features]))],
        # onnxmltools' tree converters (XGBoost, LightGBM) write version 3 of ai.onnx.ml
        target_opset={"": opset or get_latest_tested_opset_version(), "ai.onnx.ml": 3},
        options=options,
    )
    return converted


@functools.cache
def _register_boosters() -> None:
    """Teach skl2onnx XGBoost's and LightGBM's scikit-learn wrappers (onnxmltools converts them)."""
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    wrappers: list[tuple[str, str, str, Any]] = [
        ("xgboost", "XGBClassifier", "XGBoostXGBClassifier", convert_xgboost),
        ("xgboost", "XGBRegressor", "XGBoostXGBRegressor", convert_xgboost),
        ("lightgbm", "LGBMClassifier", "LightGbmLGBMClassifier", convert_lightgbm),
        ("lightgbm", "LGBMRegressor", "LightGbmLGBMRegressor", convert_lightgbm),
    ]
    for module_name, class_name, alias, converter in wrappers:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # then no pickle can hold its models either
            continue
        classifier = class_name.endswith("Classifier")
        update_registered_converter(
            getattr(module, class_name),
            alias,
            calculate_linear_classifier_output_shapes
            if classifier
            else calculate_linear_regressor_output_shapes,
            converter,
            options=classifier_options if classifier else None,
        )


def _name_outputs(model: onnx.ModelProto, source: _Source) -> None:
    """Give the outputs modelport's names (``label``, ``probabilities`` or ``prediction``)."""
    from onnx import helper

    graph = model.graph
    for output in graph.output:
        if not output.type.HasField("tensor_type"):
            raise ModelLoadError(
                f"{source.description} converts to an ONNX model whose output {output.name!r} "
                "is not a tensor; convert it yourself with zipmap=False and serve model.onnx"
            )
    wanted = [LABEL, PROBABILITIES] if source.task == "classifier" else [PREDICTION]
    for output, name in zip(graph.output, wanted, strict=False):
        if output.name != name:
            graph.node.append(helper.make_node("Identity", [output.name], [name]))
            output.name = name
        if name == LABEL:  # onnxmltools declares LightGBM boosters' labels as shape [1]
            dims = output.type.tensor_type.shape.dim
            del dims[:]
            dims.add().dim_param = "N"


def _native(source: _Source, input_name: str) -> NativeFn:
    def run(inputs: Arrays) -> Arrays:
        return source.predict(np.asarray(inputs[input_name], dtype=np.float32))

    return run


class SklearnRuntime(OnnxRuntime):
    """A scikit-learn, XGBoost or LightGBM model, converted to ONNX as it loads.

    The converted model runs on onnxruntime exactly as a ``model.onnx`` would, with the same
    ``runtime:`` settings; metadata reports the ``onnxruntime_onnx`` platform.
    """

    default_model_filename = "model.joblib"

    @classmethod
    def find_model_file(cls, version_dir: Path, filename: str | None) -> Path | None:
        if filename:
            candidate = version_dir / filename
            known = candidate.suffix.lower() in _FORMATS
            return candidate if known and candidate.is_file() else None
        for name in MODEL_FILES:
            candidate = version_dir / name
            if candidate.is_file():
                return candidate
        return None

    @classmethod
    def load(cls, model_path: Path, options: RuntimeOptions, context: str = "") -> SklearnRuntime:
        started = time.monotonic()
        declared = options.declared_inputs
        input_name = declared[0].name if len(declared) == 1 else INPUT
        model, _, description = _convert(
            model_path, options.allow_unsafe_pickle, None, input_name, context
        )
        log.info(
            "%s: converted %s (%s) to ONNX in %.2f s",
            context or "model",
            model_path.name,
            description,
            time.monotonic() - started,
        )
        return cls.from_source(model.SerializeToString(), model_path.name, options, context)
