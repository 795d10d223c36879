"""tritonclient's gRPC client against a real modelport process (``--grpc-port``).

The same calls as the REST suite, over ``inference.GRPCInferenceService``. tritonclient's
``as_json`` prints messages with proto field names, so int64 and uint64 values are strings.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import StartServer, repository_args
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
EXTENSIONS = ["binary_tensor_data", "model_repository", "model_configuration", "statistics"]
#: Long enough for any healthy answer; only a hung server reaches it.
PATIENCE_S = 30


def build_repository(root: Path) -> Path:
    build_example_repository(root)
    for datatype in ONNX_TYPES:
        save(identity_model(datatype), root / f"identity_{datatype.lower()}" / "1" / "model.onnx")
    save(string_model(), root / "strings" / "1" / "model.onnx")
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = build_repository(tmp_path_factory.mktemp("v2grpc") / "models")
    process = ServerProcess(["--model-repository", str(root)], root.parent / "server.log")
    process.wait_ready()
    yield process
    process.stop()


def grpc_client(server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")


@pytest.fixture
def client(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    c = grpc_client(server)
    yield c
    c.close()


def infer_input(name: str, data: np.ndarray[Any, Any], datatype: str) -> triton.InferInput:
    tensor = triton.InferInput(name, list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    return tensor


def test_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("mnist")
    assert client.is_model_ready("mnist", "1")
    assert not client.is_model_ready("mnist", "7")
    assert not client.is_model_ready("nothing")
    metadata = client.get_server_metadata(as_json=True)
    assert metadata["name"] == "modelport"
    assert metadata["extensions"] == EXTENSIONS

    assert client.get_model_metadata("tabular", as_json=True) == {
        "name": "tabular",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [
            {"name": "features", "datatype": "FP32", "shape": ["-1", "4"]},
            {"name": "category", "datatype": "INT64", "shape": ["-1", "1"]},
        ],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": ["-1", "3"]},
            {"name": "score", "datatype": "FP32", "shape": ["-1", "1"]},
        ],
    }
    assert list(client.get_model_metadata("mnist").versions) == ["2", "1"]
    assert list(client.get_model_metadata("mnist", "1").versions) == ["1"]


def test_model_config_as_perf_analyzer_reads_it(client: triton.InferenceServerClient) -> None:
    config = client.get_model_config("tabular", as_json=True)["config"]
    assert config["name"] == "tabular"
    assert config["max_batch_size"] == 64
    assert [(i["name"], i["data_type"], i["dims"]) for i in config["input"]] == [
        ("features", "TYPE_FP32", ["4"]),
        ("category", "TYPE_INT64", ["1"]),
    ]
    assert [o["name"] for o in config["output"]] == ["probabilities", "score"]
    assert not config.get("model_transaction_policy", {}).get("decoupled", False)
    assert client.get_model_config("mnist", "1").config.name == "mnist"


def test_infer_matches_onnxruntime_and_echoes_the_id(
    client: triton.InferenceServerClient, example_repository_template: Path
) -> None:
    import onnxruntime as ort

    images = np.random.default_rng(1).random((4, 784), dtype=np.float32)
    result = client.infer(
        "mnist", [infer_input("images", images, "FP32")], model_version="1", request_id="req-7"
    )
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("mnist", "1", "req-7")
    session = ort.InferenceSession(str(example_repository_template / "mnist/1/model.onnx"))
    np.testing.assert_array_equal(
        result.as_numpy("scores"), session.run(None, {"images": images})[0]
    )
    newest = client.infer("mnist", [infer_input("images", images, "FP32")])
    assert newest.get_response().model_version == "2"


def test_multi_input_with_requested_outputs(client: triton.InferenceServerClient) -> None:
    inputs = [
        infer_input("features", np.ones((2, 4), np.float32), "FP32"),
        infer_input("category", np.array([[1], [2]], np.int64), "INT64"),
    ]
    outputs = [triton.InferRequestedOutput("score")]
    result = client.infer("tabular", inputs, outputs=outputs)
    assert [o.name for o in result.get_response().outputs] == ["score"]
    assert result.as_numpy("score").shape == (2, 1)
    assert result.as_numpy("probabilities") is None
    everything = client.infer("tabular", inputs)
    np.testing.assert_allclose(everything.as_numpy("probabilities").sum(axis=1), [1, 1], rtol=1e-6)


@pytest.mark.parametrize("datatype", sorted(SAMPLES))
def test_every_datatype_round_trips(client: triton.InferenceServerClient, datatype: str) -> None:
    data = SAMPLES[datatype]
    result = client.infer(f"identity_{datatype.lower()}", [infer_input("input", data, datatype)])
    got = result.as_numpy("output")
    if datatype == "BYTES":
        assert got.tolist() == data.tolist()
    else:
        assert got.dtype == data.dtype
        np.testing.assert_array_equal(got, data)


def test_bytes_model(client: triton.InferenceServerClient) -> None:
    text = np.array([b"hello", "w\u00f6rld".encode()], dtype=object)
    result = client.infer("strings", [infer_input("text", text, "BYTES")])
    assert result.as_numpy("text_bytes").tolist() == text.tolist()
    assert result.as_numpy("length").tolist() == [2]


def test_async_infer(client: triton.InferenceServerClient) -> None:
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    client.async_infer(
        "identity_fp32",
        [infer_input("input", data, "FP32")],
        callback=lambda result, error: answers.put((result, error)),
        request_id="async-1",
    )
    result, error = answers.get(timeout=PATIENCE_S)
    assert error is None
    assert result.get_response().id == "async-1"
    np.testing.assert_array_equal(result.as_numpy("output"), data)


def test_a_stream_answers_every_request_and_survives_a_failure(
    client: triton.InferenceServerClient,
) -> None:
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for index in range(8):
            data = np.full((1, 3), index, np.float32)
            client.async_stream_infer(
                "identity_fp32", [infer_input("input", data, "FP32")], request_id=str(index)
            )
        wrong = np.zeros((1, 4), np.float32)
        client.async_stream_infer(
            "identity_fp32", [infer_input("input", wrong, "FP32")], request_id="bad"
        )
        client.async_stream_infer(
            "identity_fp32",
            [infer_input("input", np.ones((1, 3), np.float32), "FP32")],
            request_id="final",
            enable_empty_final_response=True,
        )
        received = [answers.get(timeout=PATIENCE_S) for _ in range(10)]
    finally:
        client.stop_stream()
    errors = [error for _, error in received if error is not None]
    assert len(errors) == 1
    assert "has shape [1, 4], but the model expects [-1, 3]" in errors[0].message()
    results = {r.get_response().id: r for r, error in received if error is None}
    assert sorted(results) == sorted([*map(str, range(8)), "final"])
    for index in range(8):
        assert results[str(index)].as_numpy("output").tolist() == [[float(index)] * 3]
    final = results["final"].get_response()
    assert final.parameters["triton_final_response"].bool_param


def test_inference_statistics(client: triton.InferenceServerClient) -> None:
    client.infer("identity_int32", [infer_input("input", np.zeros((2, 3), np.int32), "INT32")])
    stats = client.get_inference_statistics("identity_int32", as_json=True)["model_stats"]
    assert [(s["name"], s["version"]) for s in stats] == [("identity_int32", "1")]
    assert int(stats[0]["inference_stats"]["success"]["count"]) >= 1
    assert int(stats[0]["inference_stats"]["queue"]["count"]) >= 1
    everything = client.get_inference_statistics(as_json=True)["model_stats"]
    assert {("mnist", "1"), ("mnist", "2"), ("tabular", "1")} <= {
        (s["name"], s["version"]) for s in everything
    }


def test_repository_index(client: triton.InferenceServerClient) -> None:
    index = client.get_model_repository_index(as_json=True)["models"]
    rows = {(m["name"], m.get("version"), m["state"]) for m in index}
    assert {("mnist", "1", "READY"), ("mnist", "2", "READY"), ("tabular", "1", "READY")} <= rows


def test_errors_carry_the_status_and_a_message(client: triton.InferenceServerClient) -> None:
    data = np.zeros((1, 3), np.float32)
    cases = [
        (lambda: client.infer("nothing", [infer_input("x", data, "FP32")]), "NOT_FOUND"),
        (
            lambda: client.infer(
                "identity_fp32", [infer_input("input", data, "FP32")], model_version="9"
            ),
            "NOT_FOUND",
        ),
        (
            lambda: client.infer(
                "identity_fp32", [infer_input("input", np.zeros((1, 3), np.int32), "INT32")]
            ),
            "INVALID_ARGUMENT",
        ),
        (lambda: client.get_model_metadata("nothing"), "NOT_FOUND"),
        (lambda: client.get_model_config("mnist", "x"), "INVALID_ARGUMENT"),
        (lambda: client.load_model("mnist"), "PERMISSION_DENIED"),
        (lambda: client.unload_model("mnist"), "PERMISSION_DENIED"),
    ]
    for call, code in cases:
        with pytest.raises(InferenceServerException) as caught:
            call()
        assert caught.value.status() == f"StatusCode.{code}", caught.value.message()
        assert caught.value.message()


def test_load_and_unload_with_model_control(
    start_server: StartServer, example_repository: Path
) -> None:
    server = start_server(*repository_args(example_repository, "--model-control"))
    client = grpc_client(server)
    try:
        client.unload_model("tabular")
        assert not client.is_model_ready("tabular")
        assert client.is_model_ready("mnist")
        index = client.get_model_repository_index(as_json=True)["models"]
        assert {"name": "tabular", "state": "UNAVAILABLE", "reason": "unloaded on request"} in index
        client.load_model("tabular")
        assert client.is_model_ready("tabular")
        with pytest.raises(InferenceServerException) as caught:
            client.load_model("tabular", config='{"max_batch_size": 8}')
        assert caught.value.status() == "StatusCode.UNIMPLEMENTED"
    finally:
        client.close()


def test_concurrent_callers(client: triton.InferenceServerClient) -> None:
    answers: queue.Queue[tuple[int, Any, Any]] = queue.Queue()

    def done(index: int, result: Any, error: Any) -> None:
        answers.put((index, result, error))

    for index in range(32):
        data = np.full((1, 3), index, np.float32)
        client.async_infer(
            "identity_fp32", [infer_input("input", data, "FP32")], callback=partial(done, index)
        )
    for _ in range(32):
        index, result, error = answers.get(timeout=PATIENCE_S)
        assert error is None
        assert result.as_numpy("output").tolist() == [[float(index)] * 3]
