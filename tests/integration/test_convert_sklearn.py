"""``modelport convert`` on scikit-learn, XGBoost and LightGBM files, through the sklearn
runtime's converter: pickles only with --allow-unsafe-pickle, plain model files without."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.convert_models import modelport

pytestmark = pytest.mark.slow

LATENCY = ("--latency-runs", "3", "--quiet")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 5)).astype(np.float32)
    y = ((x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)) + (x[:, 2] > 1).astype(np.int64)
    return x, y


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, data: tuple[np.ndarray, np.ndarray]) -> Path:
    import joblib
    import lightgbm
    import xgboost
    from sklearn.ensemble import RandomForestClassifier

    folder = tmp_path_factory.mktemp("sklearn")
    x, y = data
    joblib.dump(
        RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(x, y),
        folder / "forest.joblib",
    )
    xgboost.XGBClassifier(n_estimators=8, max_depth=3).fit(x, y).save_model(folder / "xgb.json")
    booster = lightgbm.LGBMClassifier(n_estimators=8, num_leaves=7, verbose=-1).fit(x, y).booster_
    booster.save_model(str(folder / "lgbm.txt"))
    return folder


def report_of(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "report.json").read_text())  # type: ignore[no-any-return]


def test_a_pickle_is_refused_without_the_flag(files: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = modelport("convert", files / "forest.joblib", "--output", out, *LATENCY)
    assert done.returncode == 2
    assert "--allow-unsafe-pickle" in done.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_pickled_forest_converts_with_the_flag(files: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = modelport(
        "convert", files / "forest.joblib", "--allow-unsafe-pickle", "--output", out, *LATENCY
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = report_of(out)
    assert report["passed"] is True
    assert report["details"]["converter"] == "modelport.runtimes.sklearn"
    assert any("unpickled" in note for note in report["notes"])
    assert report["result"]["inputs"][0]["shape"][-1] == 5
    # A label or score output is compared by the classes it picks.
    assert any(o["agreement"] == 1.0 for o in report["outputs"])


@pytest.mark.parametrize("name", ["xgb.json", "lgbm.txt"])
def test_plain_model_files_convert_without_the_flag(files: Path, tmp_path: Path, name: str) -> None:
    out = tmp_path / "out"
    done = modelport("convert", files / name, "--output", out, *LATENCY)
    assert done.returncode == 0, done.stdout + done.stderr
    report = report_of(out)
    assert report["source"]["label"] == name
    assert all(o["passed"] for o in report["outputs"])
    assert report["notes"] == []
