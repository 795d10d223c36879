"""TF Serving's own Python client (tensorflow-serving-api) against a real modelport's gRPC port.

The client runs under .venv-tf's interpreter (built by ``make tools``), in a subprocess, as
``tests/tf_serving_client.py``; expected values come from onnxruntime on the same model files.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import StartServer
from tests.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
TF_PYTHON = ROOT / ".venv-tf" / "bin" / "python"
CLIENT_TIMEOUT_S = 300


def client(server: ServerProcess, scenario: str, argument: str = "") -> Any:
    """Run one scenario of tests/tf_serving_client.py; return the JSON it prints."""
    if not TF_PYTHON.exists():
        pytest.fail(
            f"TF Serving's Python client is missing ({TF_PYTHON} does not exist); run "
            "`make tools` to build .venv-tf, then run these tests again",
            pytrace=False,
        )
    target = f"127.0.0.1:{server.grpc_port}"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [str(TF_PYTHON), "-m", "tests.tf_serving_client", scenario, target, argument],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_S,
        check=False,
    )
    # TensorFlow writes start-up notices to stderr: only the exit code and stdout count.
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{server.log()}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def reference(repository: Path, model: str, version: int, feeds: dict[str, Any]) -> list[Any]:
    session = ort.InferenceSession(str(repository / model / str(version) / "model.onnx"))
    return session.run(None, feeds)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, Path]:
    arr = np.random.default_rng(7).random((3, 784), dtype=np.float32)
    path = tmp_path_factory.mktemp("inputs") / "images.npy"
    np.save(path, arr)
    return arr, path


def test_predict_in_both_tensor_encodings(
    examples_server: ServerProcess,
    example_repository_template: Path,
    images: tuple[np.ndarray, Path],
) -> None:
    arr, path = images
    result = client(examples_server, "predict", str(path))
    assert result["content_encoding"], "tf.make_tensor_proto sends numpy arrays as tensor_content"
    (latest,) = reference(example_repository_template, "mnist", 2, {"images": arr})
    (first,) = reference(example_repository_template, "mnist", 1, {"images": arr})
    for key, version, expected in (
        ("latest", 2, latest),
        ("version_1", 1, first),
        ("stable", 1, first),
        ("typed", 2, latest),
    ):
        answer = result[key]
        assert answer["model_spec"] == {
            "name": "mnist",
            "version": version,
            "signature_name": "serving_default",
        }
        assert answer["dtype"] == "float32"
        assert answer["fields"] == ["float_val"], "answers use typed fields, as TF Serving's do"
        assert not answer["has_tensor_content"]
        np.testing.assert_allclose(answer["scores"], expected, rtol=1e-6)
    (broadcast,) = reference(
        example_repository_template, "mnist", 2, {"images": np.full((2, 784), 0.5, np.float32)}
    )
    np.testing.assert_allclose(result["broadcast"]["scores"], broadcast, rtol=1e-6)
    _, score = reference(
        example_repository_template,
        "tabular",
        1,
        {"features": np.full((2, 4), 0.25, np.float32), "category": np.array([[1], [3]])},
    )
    assert list(result["tabular"]) == ["score"]
    np.testing.assert_allclose(result["tabular"]["score"], score, rtol=1e-6)


def test_metadata_unpacks_into_a_signature_def_map(examples_server: ServerProcess) -> None:
    result = client(examples_server, "metadata", "tabular")
    assert result["type_url"] == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    assert result["unpacked"] is True
    assert result["model_spec"]["name"] == "tabular"
    assert result["model_spec"]["version"] == 1
    assert result["signatures"] == {
        "serving_default": {
            "method_name": "tensorflow/serving/predict",
            "inputs": {
                "features": {"name": "features", "dtype": "float32", "shape": [-1, 4]},
                "category": {"name": "category", "dtype": "int64", "shape": [-1, 1]},
            },
            "outputs": {
                "probabilities": {"name": "probabilities", "dtype": "float32", "shape": [-1, 3]},
                "score": {"name": "score", "dtype": "float32", "shape": [-1, 1]},
            },
        }
    }


def test_status_lists_every_version(examples_server: ServerProcess) -> None:
    assert client(examples_server, "status", "mnist") == [
        {"version": v, "state": "AVAILABLE", "error_code": 0, "error_message": ""} for v in (2, 1)
    ]
    missing = client(examples_server, "status", "nope")
    assert missing["code"] == "NOT_FOUND"


def test_classify_regress_and_multi_inference_on_examples(
    examples_server: ServerProcess, example_repository_template: Path
) -> None:
    rows = [
        {"features": [0.5, 0.1, -0.2, 1.5], "category": 2},
        {"features": [1.0, 2.0, 3.0, 4.0], "category": 2},
    ]
    result = client(examples_server, "examples", json.dumps(rows))
    probabilities, score = reference(
        example_repository_template,
        "tabular",
        1,
        {
            "features": np.array([r["features"] for r in rows], np.float32),
            "category": np.array([[r["category"]] for r in rows], np.int64),
        },
    )
    spec = {"name": "tabular", "version": 1, "signature_name": "serving_default"}
    assert result["classify"]["model_spec"] == spec
    classes = result["classify"]["classes"]
    assert [[label for label, _ in row] for row in classes] == [["low", "medium", "high"]] * 2
    np.testing.assert_allclose([[s for _, s in row] for row in classes], probabilities, rtol=1e-6)
    assert result["regress"]["model_spec"] == spec
    np.testing.assert_allclose(result["regress"]["values"], score[:, 0], rtol=1e-6)
    assert result["multi"] == ["classification_result", "regression_result"]


def test_errors_carry_grpc_codes_and_say_what_to_send(examples_server: ServerProcess) -> None:
    result = client(examples_server, "errors")
    expected = {
        "unknown_model": ("NOT_FOUND", "model 'nope' is not in the repository"),
        "unknown_version": ("NOT_FOUND", "model 'mnist' has no version 9"),
        "wrong_dtype": ("INVALID_ARGUMENT", "is DT_DOUBLE, but model 'mnist' version 2 expects"),
        "wrong_shape": ("INVALID_ARGUMENT", "has shape [1, 783], but the model expects"),
        "wrong_alias": ("INVALID_ARGUMENT", "input tensor alias not found in signature: pixels"),
        "unknown_output": ("INVALID_ARGUMENT", "output tensor alias not found in signature"),
        "unknown_signature": ("FAILED_PRECONDITION", 'Serving signature key "other" not found'),
        "metadata_field": ("INVALID_ARGUMENT", "Metadata field graph is not supported"),
        "empty_input": ("INVALID_ARGUMENT", "Input is empty"),
    }
    assert set(result) == set(expected)
    for name, (code, fragment) in expected.items():
        assert result[name]["code"] == code, (name, result[name])
        assert fragment in result[name]["details"], (name, result[name])


def _config(tmp: Path, models: dict[str, Path]) -> str:
    entries = " ".join(
        f'config {{ name: "{name}" base_path: "{path}" model_platform: "onnx" }}'
        for name, path in models.items()
    )
    text = f"model_config_list {{ {entries} }}"
    (tmp / "models.config").write_text(text)
    return text


def test_reload_config_replaces_the_served_models(
    start_server: StartServer, example_repository: Path, tmp_path: Path
) -> None:
    _config(tmp_path, {"mnist": example_repository / "mnist"})
    server = start_server("--model_config_file", str(tmp_path / "models.config"), "--model-control")
    both = _config(
        tmp_path, {"mnist": example_repository / "mnist", "tabular": example_repository / "tabular"}
    )
    assert client(server, "reload", both) == {"error_code": 0, "message": ""}
    assert [s["state"] for s in client(server, "status", "tabular")] == ["AVAILABLE"]
    only_tabular = _config(tmp_path, {"tabular": example_repository / "tabular"})
    assert client(server, "reload", only_tabular) == {"error_code": 0, "message": ""}
    assert client(server, "status", "mnist")["code"] == "NOT_FOUND"
    broken = _config(tmp_path, {"ghost": tmp_path / "ghost"})
    refused = client(server, "reload", broken)
    assert refused["code"] == "UNAVAILABLE"
    assert "its base_path" in refused["details"]


def test_reload_config_is_refused_without_model_control(
    start_server: StartServer, example_repository: Path, tmp_path: Path
) -> None:
    text = _config(tmp_path, {"mnist": example_repository / "mnist"})
    server = start_server("--model_config_file", str(tmp_path / "models.config"))
    refused = client(server, "reload", text)
    assert refused["code"] == "PERMISSION_DENIED"
    assert "--model-control" in refused["details"]


def test_reload_config_needs_a_model_config_file(
    start_server: StartServer, example_repository: Path, tmp_path: Path
) -> None:
    server = start_server("--model-repository", str(example_repository), "--model-control")
    refused = client(server, "reload", _config(tmp_path, {"mnist": example_repository / "mnist"}))
    assert refused["code"] == "FAILED_PRECONDITION"
    assert "--model_config_file" in refused["details"]
