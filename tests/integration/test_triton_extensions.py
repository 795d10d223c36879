"""Triton's HTTP extensions with tritonclient.http: model configuration, statistics, and the
model repository (index, load, unload) against real modelport processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import StartServer
from tests.models import identity_model, save
from tests.server import ServerProcess

BATCHING = "dynamic_batching:\n  max_batch_size: 16\n  max_queue_delay_us: 500\n"


@pytest.fixture
def repository(example_repository: Path) -> Path:
    (example_repository / "mnist" / "config.yaml").write_text(BATCHING)
    save(identity_model("FP32"), example_repository / "identity" / "1" / "model.onnx")
    return example_repository


@pytest.fixture
def server(start_server: StartServer, repository: Path) -> ServerProcess:
    return start_server("--model-repository", str(repository), "--model-control")


@pytest.fixture
def client(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    yield c
    c.close()


def infer_mnist(client: triton.InferenceServerClient, rows: int = 1) -> np.ndarray:
    images = triton.InferInput("images", [rows, 784], "FP32")
    images.set_data_from_numpy(np.random.default_rng(0).random((rows, 784), np.float32))
    result = client.infer("mnist", [images])
    scores = result.as_numpy("scores")
    assert scores is not None
    return scores


def test_model_configuration(client: triton.InferenceServerClient) -> None:
    config = client.get_model_config("mnist")
    assert config["name"] == "mnist"
    assert config["platform"] == "onnxruntime_onnx"
    assert config["backend"] == "onnxruntime"
    assert config["max_batch_size"] == 16  # batched: dims leave the batch dimension out
    assert config["input"] == [
        {
            "name": "images",
            "data_type": "TYPE_FP32",
            "format": "FORMAT_NONE",
            "dims": [784],
            "is_shape_tensor": False,
            "allow_ragged_batch": False,
            "optional": False,
        }
    ]
    assert [(o["name"], o["data_type"], o["dims"]) for o in config["output"]] == [
        ("scores", "TYPE_FP32", [10])
    ]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 500
    assert config["model_transaction_policy"] == {"decoupled": False}
    assert config["version_policy"] == {"latest": {"num_versions": 1}}
    # metadata keeps the -1 batch dimension: perf_analyzer relies on both conventions at once
    assert client.get_model_metadata("mnist")["inputs"][0]["shape"] == [-1, 784]
    identity = client.get_model_config("identity")
    assert identity["max_batch_size"] == 2**31 - 1  # batched, without a configured limit
    assert "dynamic_batching" not in identity


def test_configuration_errors(client: triton.InferenceServerClient, server: ServerProcess) -> None:
    with pytest.raises(InferenceServerException) as unknown:
        client.get_model_config("nope")
    assert unknown.value.status() == "404"
    assert httpx.get(f"{server.url}/v2/models/mnist/versions/x/config").status_code == 400


def test_statistics_count_every_request(client: triton.InferenceServerClient) -> None:
    before = client.get_inference_statistics("mnist")["model_stats"]
    assert [(s["name"], s["version"]) for s in before] == [("mnist", "2")]
    for _ in range(3):
        infer_mnist(client)
    infer_mnist(client, rows=4)
    stats = client.get_inference_statistics("mnist", "2")["model_stats"][0]
    assert stats["inference_count"] == 7  # rows
    assert stats["inference_stats"]["success"]["count"] == 4  # requests
    assert stats["inference_stats"]["queue"]["count"] == 4  # perf_analyzer finds its version so
    assert stats["execution_count"] >= 1
    assert stats["last_inference"] > 0
    counters = [stats["inference_count"], stats["execution_count"], stats["last_inference"]]
    durations = [d for kind in stats["inference_stats"].values() for d in kind.values()]
    assert all(isinstance(value, int) for value in counters + durations)
    assert (
        sum(b["compute_infer"]["count"] for b in stats["batch_stats"]) == stats["execution_count"]
    )
    everything = client.get_inference_statistics()["model_stats"]
    assert {(s["name"], s["version"]) for s in everything} == {
        ("identity", "1"),
        ("mnist", "2"),
        ("tabular", "1"),
    }


def test_statistics_errors(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as unknown:
        client.get_inference_statistics("nope")
    assert unknown.value.status() == "404"
    with pytest.raises(InferenceServerException) as version:
        client.get_inference_statistics("mnist", "7")
    assert version.value.status() == "404"


def test_repository_index(client: triton.InferenceServerClient, server: ServerProcess) -> None:
    index = client.get_model_repository_index()
    assert {"name": "mnist", "version": "2", "state": "READY", "reason": ""} in index
    assert {"name": "tabular", "version": "1", "state": "READY", "reason": ""} in index
    assert all(entry["state"] == "READY" for entry in index)
    ready_only = httpx.post(f"{server.url}/v2/repository/index", json={"ready": True})
    assert ready_only.json() == [e for e in index if e["state"] == "READY"]
    assert httpx.post(f"{server.url}/v2/repository/index", json={"ready": 1}).status_code == 400


def test_unload_and_load(client: triton.InferenceServerClient) -> None:
    client.unload_model("tabular")
    assert not client.is_model_ready("tabular")
    assert client.is_model_ready("mnist")  # the other models are untouched
    entry = next(e for e in client.get_model_repository_index() if e["name"] == "tabular")
    assert entry == {"name": "tabular", "state": "UNAVAILABLE", "reason": "unloaded on request"}
    with pytest.raises(InferenceServerException):
        client.get_model_metadata("tabular")
    client.load_model("tabular")
    assert client.is_model_ready("tabular")
    assert client.get_model_metadata("tabular")["versions"] == ["1"]
    client.load_model("mnist")  # loading a loaded model reloads it and keeps it serving
    infer_mnist(client)


def test_load_errors(client: triton.InferenceServerClient, server: ServerProcess) -> None:
    with pytest.raises(InferenceServerException) as unknown:
        client.load_model("nope")
    assert unknown.value.status() == "404"
    assert "not in the repository" in str(unknown.value.message())
    with pytest.raises(InferenceServerException) as with_config:
        client.load_model("mnist", config='{"max_batch_size": 4}')
    assert with_config.value.status() == "501"
    assert "change the model's folder" in str(with_config.value.message())


def test_model_control_is_off_by_default(start_server: StartServer, repository: Path) -> None:
    server = start_server("--model-repository", str(repository))
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    for call in (client.load_model, client.unload_model):
        with pytest.raises(InferenceServerException) as refused:
            call("mnist")
        assert refused.value.status() == "403"
        assert "--model-control" in str(refused.value.message())
    assert client.is_model_ready("mnist")
    assert client.get_model_repository_index()  # reading the index is always allowed
    client.close()
