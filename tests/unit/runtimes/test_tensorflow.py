"""The TensorFlow runtime's choice of version folder, and its answer when TensorFlow is missing.

Serving real SavedModels is tested in tests/integration/test_tensorflow_runtime.py, under
.venv-tf, where TensorFlow is installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from modelport.errors import ModelLoadError
from modelport.runtimes import RuntimeOptions, select_runtime
from modelport.runtimes.tensorflow import TensorFlowRuntime


def savedmodel_folder(root: Path) -> Path:
    (root / "variables").mkdir(parents=True)
    (root / "saved_model.pb").write_bytes(b"")
    return root


def test_a_tf_serving_version_folder_goes_to_tensorflow(tmp_path: Path) -> None:
    version = savedmodel_folder(tmp_path / "1")
    assert select_runtime(version, None) == (TensorFlowRuntime, version / "saved_model.pb")
    assert select_runtime(version, "saved_model.pb") == (
        TensorFlowRuntime,
        version / "saved_model.pb",
    )


def test_a_configured_subfolder_holding_the_savedmodel_is_found(tmp_path: Path) -> None:
    savedmodel_folder(tmp_path / "1" / "exported")
    found = TensorFlowRuntime.find_model_file(tmp_path / "1", "exported")
    assert found == tmp_path / "1" / "exported" / "saved_model.pb"
    assert select_runtime(tmp_path / "1", "exported") == (TensorFlowRuntime, found)
    assert TensorFlowRuntime.find_model_file(tmp_path / "1", None) is None
    assert TensorFlowRuntime.find_model_file(tmp_path / "1", "model.onnx") is None


def test_missing_tensorflow_names_the_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = savedmodel_folder(tmp_path / "1")
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # makes `import tensorflow` fail
    with pytest.raises(ModelLoadError, match=r"pip install 'modelport\[tensorflow\]'"):
        TensorFlowRuntime.load(version / "saved_model.pb", RuntimeOptions(), "m version 1")
