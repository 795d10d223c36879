"""KServe V2 REST clients (plain JSON and tritonclient with its binary defaults) against a real
modelport process."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from tests.models import (
    DATATYPE_SAMPLES,
    ONNX_TYPES,
    build_example_repository,
    identity_model,
    save,
    string_model,
)
from tests.server import ServerProcess

SAMPLES = DATATYPE_SAMPLES


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = build_example_repository(tmp_path_factory.mktemp("v2") / "models")
    for datatype in ONNX_TYPES:
        save(identity_model(datatype), root / f"identity_{datatype.lower()}" / "1" / "model.onnx")
    save(string_model(), root / "strings" / "1" / "model.onnx")
    process = ServerProcess(["--model-repository", str(root)], root.parent / "server.log")
    process.wait_ready()
    yield process
    process.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    yield c
    c.close()


def test_tritonclient_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("mnist")
    assert client.is_model_ready("mnist", "1")
    assert not client.is_model_ready("mnist", "7")
    metadata = client.get_server_metadata()
    assert metadata["name"] == "modelport"
    assert metadata["extensions"] == [
        "binary_tensor_data",
        "model_repository",
        "model_configuration",
        "statistics",
    ]

    model = client.get_model_metadata("tabular")
    assert model == {
        "name": "tabular",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [
            {"name": "features", "datatype": "FP32", "shape": [-1, 4]},
            {"name": "category", "datatype": "INT64", "shape": [-1, 1]},
        ],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
            {"name": "score", "datatype": "FP32", "shape": [-1, 1]},
        ],
    }
    assert client.get_model_metadata("mnist")["versions"] == ["2", "1"]
    assert client.get_model_metadata("mnist", "1")["versions"] == ["1"]


def test_tritonclient_infer_with_binary_defaults(
    client: triton.InferenceServerClient, example_repository_template: Path
) -> None:
    import onnxruntime as ort

    images = np.random.default_rng(1).random((4, 784), dtype=np.float32)
    request = triton.InferInput("images", list(images.shape), "FP32")
    request.set_data_from_numpy(images)  # binary_data=True is the default
    result = client.infer("mnist", [request], model_version="1", request_id="req-7")
    response = result.get_response()
    assert response["model_name"] == "mnist"
    assert response["model_version"] == "1"
    assert response["id"] == "req-7"
    assert response["outputs"][0]["parameters"]["binary_data_size"] == 4 * 10 * 4
    session = ort.InferenceSession(str(example_repository_template / "mnist/1/model.onnx"))
    np.testing.assert_array_equal(
        result.as_numpy("scores"), session.run(None, {"images": images})[0]
    )


def test_tritonclient_multi_input_with_json_and_binary_outputs(
    client: triton.InferenceServerClient,
) -> None:
    features = triton.InferInput("features", [2, 4], "FP32")
    features.set_data_from_numpy(np.ones((2, 4), np.float32), binary_data=False)
    category = triton.InferInput("category", [2, 1], "INT64")
    category.set_data_from_numpy(np.array([[1], [2]], np.int64))
    outputs = [
        triton.InferRequestedOutput("score", binary_data=False),
        triton.InferRequestedOutput("probabilities", binary_data=True),
    ]
    result = client.infer("tabular", [features, category], outputs=outputs)
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == ["score", "probabilities"]
    assert "data" in response["outputs"][0]
    assert response["outputs"][1]["parameters"] == {"binary_data_size": 2 * 3 * 4}
    assert result.as_numpy("score").shape == (2, 1)
    np.testing.assert_allclose(result.as_numpy("probabilities").sum(axis=1), [1, 1], rtol=1e-6)


@pytest.mark.parametrize("datatype", sorted(SAMPLES))
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_every_datatype_round_trips(
    client: triton.InferenceServerClient, datatype: str, binary: bool
) -> None:
    data = SAMPLES[datatype]
    request = triton.InferInput("input", list(data.shape), datatype)
    request.set_data_from_numpy(data, binary_data=binary)
    output = triton.InferRequestedOutput("output", binary_data=binary)
    result = client.infer(f"identity_{datatype.lower()}", [request], outputs=[output])
    got = result.as_numpy("output")
    if datatype == "BYTES":
        got = np.array([v if isinstance(v, bytes) else v.encode() for v in got.flat], object)
        np.testing.assert_array_equal(got.reshape(data.shape), data)
    else:
        assert got.dtype == data.dtype
        np.testing.assert_array_equal(got, data)


def test_plain_json_nested_and_flat_data(server: ServerProcess) -> None:
    url = f"{server.url}/v2/models/identity_int32/infer"
    nested = {
        "inputs": [
            {"name": "input", "shape": [2, 3], "datatype": "INT32", "data": [[1, 2, 3], [4, 5, 6]]}
        ]
    }
    flat = {
        "inputs": [
            {"name": "input", "shape": [2, 3], "datatype": "INT32", "data": [1, 2, 3, 4, 5, 6]}
        ]
    }
    for body in (nested, flat):
        response = httpx.post(url, json=body)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.json()["outputs"] == [
            {"name": "output", "datatype": "INT32", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}
        ]


def test_request_parameters_and_id_are_accepted_and_id_echoed(server: ServerProcess) -> None:
    body = {
        "id": "abc",
        "parameters": {"custom": "value", "priority": 1},
        "inputs": [
            {
                "name": "input",
                "shape": [1, 3],
                "datatype": "FP32",
                "data": [1, 2, 3],
                "parameters": {},
            }
        ],
        "outputs": [{"name": "output"}],
    }
    response = httpx.post(f"{server.url}/v2/models/identity_fp32/infer", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == "abc"
    assert response.json()["model_version"] == "1"


def test_bytes_model_answers_strings(server: ServerProcess) -> None:
    body = {
        "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["hello", "wörld"]}]
    }
    response = httpx.post(f"{server.url}/v2/models/strings/infer", json=body)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["text_bytes"]["data"] == ["hello", "wörld"]
    assert outputs["text_bytes"]["datatype"] == "BYTES"
    assert outputs["length"]["data"] == [2]


def test_tfserving_b64_strings_and_bytes_suffix(server: ServerProcess) -> None:
    response = httpx.post(
        f"{server.url}/v1/models/strings:predict",
        json={"inputs": {"text": [{"b64": "aGk="}, "plain"]}},
    )
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    assert outputs["text_bytes"] == [{"b64": "aGk="}, {"b64": "cGxhaW4="}]
    assert outputs["length"] == [2]


def test_raw_binary_request(server: ServerProcess) -> None:
    data = np.arange(3, dtype=np.float32)
    response = httpx.post(
        f"{server.url}/v2/models/identity_fp32/infer",
        content=data.tobytes(),
        headers={
            "Inference-Header-Content-Length": "0",
            "Content-Type": "application/octet-stream",
        },
    )
    assert response.status_code == 200, response.text
    header_length = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:header_length])
    assert header["outputs"][0]["shape"] == [1, 3]
    np.testing.assert_array_equal(np.frombuffer(response.content[header_length:], np.float32), data)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_requests(client: triton.InferenceServerClient, encoding: str) -> None:
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    request = triton.InferInput("input", [2, 3], "FP32")
    request.set_data_from_numpy(data)
    result = client.infer("identity_fp32", [request], request_compression_algorithm=encoding)
    np.testing.assert_array_equal(result.as_numpy("output"), data)


def test_compressed_body_is_decoded_before_parsing(server: ServerProcess) -> None:
    body = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]}]}
    ).encode()
    for encoding, packed in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        response = httpx.post(
            f"{server.url}/v2/models/identity_int64/infer",
            content=packed,
            headers={"Content-Encoding": encoding, "Content-Type": "application/json"},
        )
        assert response.status_code == 200, response.text


def test_health_endpoints_and_server_metadata_over_plain_http(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
    assert httpx.get(f"{server.url}/v2/health/ready").json() == {"ready": True}
    ready = httpx.get(f"{server.url}/v2/models/mnist/versions/1/ready")
    assert ready.status_code == 200
    assert ready.json() == {"name": "mnist", "ready": True}
    assert httpx.get(f"{server.url}/v2").json()["extensions"] == [
        "binary_tensor_data",
        "model_repository",
        "model_configuration",
        "statistics",
    ]


def test_unknown_paths_and_methods(server: ServerProcess) -> None:
    missing = httpx.get(f"{server.url}/v2/nothing/here")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Not Found"}
    wrong_method = httpx.get(f"{server.url}/v2/models/mnist/infer")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"

    assert "error" in wrong_method.json()
    elsewhere = httpx.get(f"{server.url}/favicon.ico")
    assert elsewhere.status_code == 404


def test_non_finite_outputs_are_written_as_tokens(server: ServerProcess) -> None:
    body = (
        b'{"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", '
        b'"data": [NaN, Infinity, -Infinity]}]}'
    )
    response = httpx.post(f"{server.url}/v2/models/identity_fp32/infer", content=body)
    assert response.status_code == 200, response.text
    assert b"[NaN,Infinity,-Infinity]" in response.content
    values = json.loads(response.content)["outputs"][0]["data"]
    assert np.isnan(values[0])
    assert values[1:] == [float("inf"), float("-inf")]
