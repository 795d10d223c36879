"""TF Serving REST clients, unmodified, against a real modelport process on the example models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import requests

from tests.server import ServerProcess


def reference(repository: Path, model: str, version: int, feeds: dict[str, Any]) -> list[Any]:
    session = ort.InferenceSession(str(repository / model / str(version) / "model.onnx"))
    return session.run(None, feeds)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(42).random((3, 784), dtype=np.float32)


def test_tutorial_client_predicts_with_the_latest_version(
    examples_server: ServerProcess, example_repository_template: Path, images: np.ndarray
) -> None:
    # As TF Serving's REST tutorial writes it.
    data = json.dumps({"signature_name": "serving_default", "instances": images.tolist()})
    headers = {"content-type": "application/json"}
    json_response = requests.post(
        f"{examples_server.url}/v1/models/mnist:predict", data=data, headers=headers, timeout=10
    )
    assert json_response.status_code == 200, json_response.text
    predictions = json.loads(json_response.text)["predictions"]
    (expected,) = reference(example_repository_template, "mnist", 2, {"images": images})
    np.testing.assert_allclose(np.array(predictions, dtype=np.float32), expected, rtol=1e-6)


def test_requests_json_form_and_a_specific_version(
    examples_server: ServerProcess, example_repository_template: Path, images: np.ndarray
) -> None:
    url = f"{examples_server.url}/v1/models/mnist/versions/1:predict"
    response = requests.post(url, json={"instances": images.tolist()}, timeout=10)
    assert response.status_code == 200, response.text
    (expected,) = reference(example_repository_template, "mnist", 1, {"images": images})
    np.testing.assert_allclose(response.json()["predictions"], expected, rtol=1e-6)
    other = requests.post(
        f"{examples_server.url}/v1/models/mnist/versions/2:predict",
        json={"instances": images.tolist()},
        timeout=10,
    ).json()["predictions"]
    assert not np.allclose(other, expected), "versions 1 and 2 have different weights"


def test_labels_resolve_to_their_versions(
    examples_server: ServerProcess, example_repository_template: Path, images: np.ndarray
) -> None:
    for label, version in (("stable", 1), ("canary", 2)):
        response = requests.post(
            f"{examples_server.url}/v1/models/mnist/labels/{label}:predict",
            json={"instances": images[:1].tolist()},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        (expected,) = reference(
            example_repository_template, "mnist", version, {"images": images[:1]}
        )
        np.testing.assert_allclose(response.json()["predictions"], expected, rtol=1e-6)
        status = requests.get(f"{examples_server.url}/v1/models/mnist/labels/{label}", timeout=10)
        assert status.json()["model_version_status"][0]["version"] == str(version)


def test_columnar_request_answers_outputs(
    examples_server: ServerProcess, example_repository_template: Path, images: np.ndarray
) -> None:
    response = requests.post(
        f"{examples_server.url}/v1/models/mnist:predict",
        json={"inputs": images.tolist()},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"outputs"}
    (expected,) = reference(example_repository_template, "mnist", 2, {"images": images})
    np.testing.assert_allclose(body["outputs"], expected, rtol=1e-6)
    named = requests.post(
        f"{examples_server.url}/v1/models/mnist:predict",
        json={"inputs": {"images": images.tolist()}},
        timeout=10,
    )
    np.testing.assert_allclose(named.json()["outputs"], expected, rtol=1e-6)


def test_multi_input_model_in_row_and_columnar_form(
    examples_server: ServerProcess, example_repository_template: Path
) -> None:
    features = np.array([[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0]], dtype=np.float32)
    category = np.array([[1], [3]], dtype=np.int64)
    probabilities, score = reference(
        example_repository_template, "tabular", 1, {"features": features, "category": category}
    )
    rows = requests.post(
        f"{examples_server.url}/v1/models/tabular:predict",
        json={
            "instances": [
                {"features": f.tolist(), "category": c.tolist()}
                for f, c in zip(features, category, strict=True)
            ]
        },
        timeout=10,
    )
    assert rows.status_code == 200, rows.text
    predictions = rows.json()["predictions"]
    assert [set(p) for p in predictions] == [{"probabilities", "score"}] * 2
    np.testing.assert_allclose([p["probabilities"] for p in predictions], probabilities, rtol=1e-6)
    np.testing.assert_allclose([p["score"] for p in predictions], score, rtol=1e-6)
    columns = requests.post(
        f"{examples_server.url}/v1/models/tabular:predict",
        json={"inputs": {"features": features.tolist(), "category": category.tolist()}},
        timeout=10,
    )
    outputs = columns.json()["outputs"]
    np.testing.assert_allclose(outputs["probabilities"], probabilities, rtol=1e-6)
    np.testing.assert_allclose(outputs["score"], score, rtol=1e-6)


def test_model_status_lists_every_version(examples_server: ServerProcess) -> None:
    response = requests.get(f"{examples_server.url}/v1/models/mnist", timeout=10)
    assert response.status_code == 200
    assert response.json() == {
        "model_version_status": [
            {
                "version": v,
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
            for v in ("2", "1")
        ]
    }
    one = requests.get(f"{examples_server.url}/v1/models/mnist/versions/1", timeout=10).json()
    assert [s["version"] for s in one["model_version_status"]] == ["1"]


def test_metadata_has_the_serving_default_signature(examples_server: ServerProcess) -> None:
    response = requests.get(f"{examples_server.url}/v1/models/tabular/metadata", timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["model_spec"] == {"name": "tabular", "signature_name": "", "version": "1"}
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    assert signature["inputs"]["features"] == {
        "dtype": "DT_FLOAT",
        "tensor_shape": {
            "dim": [{"size": "-1", "name": ""}, {"size": "4", "name": ""}],
            "unknown_rank": False,
        },
        "name": "features",
    }
    assert signature["inputs"]["category"]["dtype"] == "DT_INT64"
    assert set(signature["outputs"]) == {"probabilities", "score"}
    versioned = requests.get(
        f"{examples_server.url}/v1/models/mnist/versions/1/metadata", timeout=10
    )
    assert versioned.json()["model_spec"]["version"] == "1"


def test_classify_and_regress_where_the_outputs_allow(
    examples_server: ServerProcess, example_repository_template: Path
) -> None:
    features = [0.5, 0.1, -0.2, 1.5]
    probabilities, score = reference(
        example_repository_template,
        "tabular",
        1,
        {
            "features": np.array([features], np.float32),
            "category": np.array([[2]], np.int64),
        },
    )
    classify = requests.post(
        f"{examples_server.url}/v1/models/tabular:classify",
        json={"examples": [{"features": features}], "context": {"category": 2}},
        timeout=10,
    )
    assert classify.status_code == 200, classify.text
    (result,) = classify.json()["results"]
    assert [label for label, _ in result] == ["low", "medium", "high"]
    np.testing.assert_allclose([s for _, s in result], probabilities[0], rtol=1e-6)
    regress = requests.post(
        f"{examples_server.url}/v1/models/tabular:regress",
        json={"examples": [{"features": features, "category": 2}]},
        timeout=10,
    )
    assert regress.status_code == 200, regress.text
    np.testing.assert_allclose(regress.json()["results"], score[:, 0], rtol=1e-6)


def test_regress_is_refused_with_a_reason_when_no_output_fits(
    examples_server: ServerProcess,
) -> None:
    response = requests.post(
        f"{examples_server.url}/v1/models/mnist:regress",
        json={"examples": [{"images": [0.0] * 784}]},
        timeout=10,
    )
    assert response.status_code == 400
    message = response.json()["error"]
    assert ":regress" in message
    assert "regression.output" in message


def test_paths_match_case_insensitively_and_names_are_url_decoded(
    examples_server: ServerProcess,
) -> None:
    response = requests.get(f"{examples_server.url}/V1/MODELS/%6Dnist/VERSIONS/1", timeout=10)
    assert response.status_code == 200
    assert response.json()["model_version_status"][0]["version"] == "1"


def test_malformed_v1_requests_get_400_with_the_path(examples_server: ServerProcess) -> None:
    wrong_verb = requests.post(
        f"{examples_server.url}/v1/models/mnist/metadata", json={}, timeout=10
    )
    assert wrong_verb.status_code == 400
    assert wrong_verb.json() == {"error": "Malformed request: POST /v1/models/mnist/metadata"}
    no_name = requests.get(f"{examples_server.url}/v1/models", timeout=10)
    assert no_name.status_code == 400
    assert no_name.json() == {"error": "Missing model name in request."}
