"""scikit-learn, XGBoost and LightGBM models served by a real modelport process.

Every protocol's answer must equal what the model's own library predicts: TF Serving REST,
KServe V2 REST and KServe V2 gRPC (tritonclient.grpc).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton

from tests.server import ServerProcess
from tests.sklearn_models import EXAMPLES, N_FEATURES, Example, build_sklearn_repository, features

ROWS = features(6, seed=7)
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = build_sklearn_repository(tmp_path_factory.mktemp("sklearn") / "models")
    process = ServerProcess(
        ["--model-repository", str(root), "--no-exit-on-error"], root.parent / "server.log"
    )
    process.wait_live()
    process.wait_log("ready: serving")
    yield process
    process.stop()


def assert_same_answers(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert set(got) == set(expected)
    for name, want in expected.items():
        answer = np.asarray(got[name])
        assert answer.shape == want.shape, name
        if name == "label":
            np.testing.assert_array_equal(answer, want)
        else:
            np.testing.assert_allclose(answer, want, rtol=TOLERANCE, atol=TOLERANCE)


def tf_serving_rest(server: ServerProcess, model: str) -> dict[str, Any]:
    body = {"instances": ROWS.tolist()}
    response = httpx.post(f"{server.url}/v1/models/{model}:predict", json=body, timeout=30)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    if isinstance(predictions[0], dict):  # several outputs: one object per row
        return {name: [row[name] for row in predictions] for name in predictions[0]}
    return {"prediction": predictions}


def v2_rest(server: ServerProcess, model: str) -> dict[str, Any]:
    tensor = {
        "name": "input",
        "shape": list(ROWS.shape),
        "datatype": "FP32",
        "data": ROWS.ravel().tolist(),
    }
    response = httpx.post(
        f"{server.url}/v2/models/{model}/infer", json={"inputs": [tensor]}, timeout=30
    )
    assert response.status_code == 200, response.text
    return {
        out["name"]: np.asarray(out["data"]).reshape(out["shape"])
        for out in response.json()["outputs"]
    }


def v2_grpc(server: ServerProcess, model: str) -> dict[str, Any]:
    client = triton.InferenceServerClient(server.grpc_target)
    try:
        tensor = triton.InferInput("input", list(ROWS.shape), "FP32")
        tensor.set_data_from_numpy(ROWS)
        result = client.infer(model, [tensor], client_timeout=30)
        names = [o.name for o in result.get_response().outputs]
        return {name: result.as_numpy(name) for name in names}
    finally:
        client.close()


PROTOCOLS = {"tfserving_rest": tf_serving_rest, "v2_rest": v2_rest, "v2_grpc": v2_grpc}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_answers_equal_the_library_predictions(
    server: ServerProcess, example: Example, protocol: str
) -> None:
    got = PROTOCOLS[protocol](server, example.name)
    assert_same_answers(got, example.expected(ROWS))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_metadata_declares_the_input_and_named_outputs(
    server: ServerProcess, example: Example
) -> None:
    metadata = httpx.get(f"{server.url}/v2/models/{example.name}", timeout=10).json()
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, N_FEATURES]}]
    outputs = [(o["name"], o["datatype"]) for o in metadata["outputs"]]
    if example.task == "classifier":
        assert outputs == [("label", "INT64"), ("probabilities", "FP32")]
    else:
        assert outputs == [("prediction", "FP32")]


def test_a_pickle_without_the_opt_in_fails_to_load_and_says_why(server: ServerProcess) -> None:
    response = httpx.get(f"{server.url}/v1/models/refused", timeout=10)
    (status,) = response.json()["model_version_status"]
    assert status["state"] == "END"
    assert "allow_unsafe_pickle: true" in status["status"]["error_message"]
    infer = httpx.post(f"{server.url}/v2/models/refused/infer", json={"inputs": []}, timeout=10)
    assert infer.status_code == 503, infer.text
    unpickled = [line for line in server.log().splitlines() if "unpickling" in line]
    assert any("/logistic/1/model.joblib" in line for line in unpickled)
    assert not any("/refused/" in line for line in unpickled)
