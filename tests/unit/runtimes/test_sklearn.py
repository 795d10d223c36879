"""scikit-learn, XGBoost and LightGBM models: conversion to ONNX, parity, pickle opt-in, loading."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from modelport.errors import ModelLoadError
from modelport.lifecycle.loader import LoadedVersion, load_version
from modelport.lifecycle.repository import VersionFolder, fingerprint
from modelport.model_config import ModelConfig
from modelport.runtimes import select_runtime
from modelport.runtimes.sklearn import SklearnRuntime, convert_to_onnx
from modelport.types import Datatype, TensorSpec
from tests.sklearn_models import (
    EXAMPLES,
    N_CLASSES,
    N_FEATURES,
    Example,
    features,
    kernel_ridge,
    logistic_pipeline,
    write_marker_pickle,
)

TOLERANCE = 1e-5
ROWS = features(64, seed=99)


def run_onnx(model: onnx.ModelProto, x: np.ndarray[Any, Any]) -> dict[str, Any]:
    session = ort.InferenceSession(model.SerializeToString())
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"input": x}), strict=True))


def assert_same_answers(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert set(got) == set(expected)
    for name, want in expected.items():
        if name == "label":
            np.testing.assert_array_equal(got[name], want)
        else:
            np.testing.assert_allclose(got[name], want, rtol=TOLERANCE, atol=TOLERANCE)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_converted_model_answers_as_the_library_does(example: Example, tmp_path: Path) -> None:
    path = example.write(tmp_path)
    model, native = convert_to_onnx(path, allow_unsafe_pickle=example.pickled)
    (tensor,) = model.graph.input
    assert tensor.name == "input"
    assert tensor.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert tensor.type.tensor_type.shape.dim[1].dim_value == N_FEATURES
    expected = example.expected(ROWS)
    onnx_answers = run_onnx(model, ROWS)
    assert_same_answers(onnx_answers, expected)
    assert_same_answers(native({"input": ROWS}), expected)
    if example.task == "classifier":
        assert onnx_answers["label"].dtype == np.int64
        assert onnx_answers["probabilities"].shape == (len(ROWS), N_CLASSES)
        assert len(set(expected["label"].tolist())) > 1, "the rows should not all be one class"
    else:
        assert onnx_answers["prediction"].dtype == np.float32
        assert onnx_answers["prediction"].shape == (len(ROWS), 1)


def test_opset_is_the_one_asked_for(tmp_path: Path) -> None:
    path = EXAMPLES[0].write(tmp_path)
    model, _ = convert_to_onnx(path, allow_unsafe_pickle=True, opset=15)
    default_domain = {o.domain: o.version for o in model.opset_import}[""]
    assert default_domain == 15


def test_pickle_refused_without_the_opt_in_and_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    path = write_marker_pickle(tmp_path / "model.joblib", marker)
    with pytest.raises(ModelLoadError) as caught:
        convert_to_onnx(path, allow_unsafe_pickle=False)
    message = str(caught.value)
    assert "allow_unsafe_pickle: true" in message
    assert "modelport convert" in message
    assert "model.json" in message
    assert "model.txt" in message
    assert not marker.exists()


def test_the_opt_in_unpickles_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The marker file appearing is the danger the warning is about: the pickle ran code.
    marker = tmp_path / "unpickled"
    path = write_marker_pickle(tmp_path / "model.pkl", marker)
    with caplog.at_level(logging.WARNING), pytest.raises(ModelLoadError) as caught:
        convert_to_onnx(path, allow_unsafe_pickle=True)
    assert marker.exists()
    assert "not a fitted scikit-learn estimator" in str(caught.value)
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert str(path.resolve()) in warning.getMessage()
    assert "runs whatever code the file holds" in warning.getMessage()


def test_unsupported_estimator_is_named_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump(kernel_ridge(), path)
    with pytest.raises(ModelLoadError) as caught:
        convert_to_onnx(path, allow_unsafe_pickle=True)
    message = str(caught.value)
    assert "KernelRidge" in message
    assert "modelport convert" in message
    assert "supported estimator" in message


def test_a_file_that_is_not_an_xgboost_model(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_text('{"weights": [1, 2, 3]}')
    with pytest.raises(ModelLoadError, match=r"XGBoost cannot read model\.json"):
        convert_to_onnx(path, allow_unsafe_pickle=False)


def test_an_unknown_suffix_lists_the_accepted_files(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"\0")
    with pytest.raises(ModelLoadError, match=r"expected model\.json, model\.ubj, model\.txt"):
        convert_to_onnx(path, allow_unsafe_pickle=True)


# ---- finding and loading a version folder -----------------------------------------------------


def test_safe_formats_are_found_before_pickles(tmp_path: Path) -> None:
    for name in ("model.pkl", "model.joblib", "model.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert SklearnRuntime.find_model_file(tmp_path, None) == tmp_path / "model.txt"
    assert SklearnRuntime.find_model_file(tmp_path, "model.pkl") == tmp_path / "model.pkl"
    assert SklearnRuntime.find_model_file(tmp_path, "weights.bin") is None
    assert select_runtime(tmp_path, None) == (SklearnRuntime, tmp_path / "model.txt")


def load(folder: Path, **config: Any) -> LoadedVersion:
    version = VersionFolder(1, folder, fingerprint(folder))
    return load_version(version, ModelConfig.model_validate(config), "model m version 1")


def test_a_version_folder_loads_and_serves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    example = EXAMPLES[2]  # XGBoost model.json: no pickle, no opt-in
    example.write(tmp_path / "1")
    with caplog.at_level(logging.INFO):
        loaded = load(tmp_path / "1")
    try:
        assert isinstance(loaded.runtime, SklearnRuntime)
        assert loaded.runtime.platform == "onnxruntime_onnx"
        assert loaded.signature.inputs == (TensorSpec("input", Datatype.FP32, (-1, N_FEATURES)),)
        assert [(o.name, o.datatype) for o in loaded.signature.outputs] == [
            ("label", Datatype.INT64),
            ("probabilities", Datatype.FP32),
        ]
        answers = loaded.runtime.infer({"input": ROWS}, ["label", "probabilities"])
        assert_same_answers(answers, example.expected(ROWS))
    finally:
        loaded.runtime.unload()
    assert any("converted model.json (XGBoost XGBClassifier" in r.message for r in caplog.records)


def test_config_yaml_opts_in_to_pickles_and_can_rename_the_input(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    joblib.dump(logistic_pipeline(), tmp_path / "1" / "model.joblib")
    with pytest.raises(ModelLoadError, match="allow_unsafe_pickle"):
        load(tmp_path / "1")
    loaded = load(
        tmp_path / "1",
        allow_unsafe_pickle=True,
        inputs=[{"name": "features", "shape": [-1, N_FEATURES]}],
    )
    try:
        assert loaded.signature.input_names == ("features",)
        answers = loaded.runtime.infer({"features": ROWS}, ["label"])
        np.testing.assert_array_equal(answers["label"], logistic_pipeline().predict(ROWS))
    finally:
        loaded.runtime.unload()
