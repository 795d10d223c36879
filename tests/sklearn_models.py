"""Tiny scikit-learn, XGBoost and LightGBM models the tests train on the fly, with fixed seeds."""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from lightgbm import LGBMRegressor
from sklearn.ensemble import RandomForestRegressor
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from xgboost import XGBClassifier

N_FEATURES = 4
N_CLASSES = 3
ALLOW_PICKLE = "allow_unsafe_pickle: true\n"


def features(rows: int, seed: int) -> np.ndarray[Any, Any]:
    """``rows`` random rows of ``N_FEATURES`` FP32 values."""
    return np.random.default_rng(seed).normal(size=(rows, N_FEATURES)).astype(np.float32)


def _classes(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    weights = np.random.default_rng(10).normal(size=(N_FEATURES, N_CLASSES))
    return np.asarray(np.argmax(x @ weights, axis=1))


def _values(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.asarray(x @ np.array([1.5, -2.0, 0.5, 1.0]) + 0.1 * np.sin(7 * x[:, 0]))


@functools.cache
def logistic_pipeline() -> Pipeline:
    x = features(150, seed=1)
    model = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression())])
    return model.fit(x, _classes(x))


@functools.cache
def random_forest() -> RandomForestRegressor:
    x = features(150, seed=2)
    model = RandomForestRegressor(n_estimators=8, max_depth=5, random_state=0, n_jobs=1)
    return model.fit(x, _values(x))


@functools.cache
def xgboost_classifier() -> XGBClassifier:
    x = features(150, seed=3)
    model = XGBClassifier(n_estimators=10, max_depth=3, random_state=0, n_jobs=1)
    return model.fit(x, _classes(x))


@functools.cache
def lightgbm_regressor() -> LGBMRegressor:
    x = features(150, seed=4)
    model = LGBMRegressor(
        n_estimators=20, num_leaves=8, min_child_samples=5, random_state=0, n_jobs=1, verbose=-1
    )
    return model.fit(x, _values(x))


def kernel_ridge() -> KernelRidge:
    """A regressor skl2onnx has no converter for."""
    x = features(50, seed=5)
    return KernelRidge().fit(x, _values(x))


@dataclass(frozen=True)
class Example:
    """A trained model, the file it is saved as, and what the library itself predicts."""

    name: str
    filename: str
    task: str
    model: Callable[[], Any]
    save: Callable[[Any, Path], None]

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / self.filename
        self.save(self.model(), path)
        return path

    def expected(self, x: np.ndarray[Any, Any]) -> dict[str, np.ndarray[Any, Any]]:
        """The library's own answers, named as the served model's outputs."""
        model = self.model()
        if self.task == "regressor":
            return {"prediction": np.asarray(model.predict(x)).reshape(len(x), 1)}
        return {"label": np.asarray(model.predict(x)), "probabilities": model.predict_proba(x)}

    @property
    def pickled(self) -> bool:
        return self.filename.endswith((".joblib", ".pkl"))


def _joblib(model: Any, path: Path) -> None:
    joblib.dump(model, path)


def _save_model(model: Any, path: Path) -> None:
    model.save_model(str(path))


def _save_booster(model: Any, path: Path) -> None:
    model.booster_.save_model(str(path))


EXAMPLES = [
    Example("logistic", "model.joblib", "classifier", logistic_pipeline, _joblib),
    Example("forest", "model.pkl", "regressor", random_forest, _joblib),
    Example("xgboost", "model.json", "classifier", xgboost_classifier, _save_model),
    Example("lightgbm", "model.txt", "regressor", lightgbm_regressor, _save_booster),
]


class _TouchOnLoad:
    """Pickles to a call of ``Path.touch(marker)``: loading the pickle creates the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def write_marker_pickle(path: Path, marker: Path) -> Path:
    """A pickle whose loading creates ``marker``: proof of whether it was unpickled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(_TouchOnLoad(marker)))
    return path


def build_sklearn_repository(root: Path) -> Path:
    """One model per example (pickles with ``allow_unsafe_pickle: true``), and ``refused``: a
    pickle without the opt-in."""
    for example in EXAMPLES:
        example.write(root / example.name / "1")
        if example.pickled:
            (root / example.name / "config.yaml").write_text(ALLOW_PICKLE)
    (root / "refused" / "1").mkdir(parents=True)
    _joblib(logistic_pipeline(), root / "refused" / "1" / "model.joblib")
    return root
