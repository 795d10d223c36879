"""TorchServe ``.mar`` archives served by a real modelport process: an archive built by the real
torch-model-archiver around a TorchScript model and a BaseHandler subclass answers over
TorchServe's API and KServe V2 as the model itself does; a malicious archive fails its version
with the reason while the other models serve."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient

from tests.handler_models import build_mar, write_config, write_zip_slip_mar
from tests.server import ServerProcess
from tests.torch_models import Mlp, rows, run, save_torchscript

pytestmark = pytest.mark.filterwarnings("ignore:`torch\\.jit\\.:DeprecationWarning")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("mar")
    root = work / "models"
    weights = save_torchscript(Mlp(), work / "src" / "model.pt")
    build_mar(work / "src", weights, "tiny", root / "tiny" / "1")
    write_config(
        root / "tiny", {"outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1, 3]}]}
    )
    write_zip_slip_mar(root / "evil" / "1" / "evil.mar")
    process = ServerProcess(
        ["--model-repository", str(root), "--no-exit-on-error"], work / "server.log"
    )
    process.wait_live()
    process.wait_log("ready: serving")
    yield process
    process.stop()


def test_torchserve_api_answers_as_the_model(server: ServerProcess) -> None:
    x = rows(1, seed=3)
    response = requests.post(f"{server.url}/predictions/tiny", json=x[0].tolist(), timeout=10)
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json(), run(Mlp(), x)[0], rtol=0, atol=1e-6)
    raw = requests.post(
        f"{server.url}/predictions/tiny/1.0",
        files={"data": ("row.json", json.dumps(x[0].tolist()).encode())},
        timeout=10,
    )
    assert raw.status_code == 200, raw.text
    np.testing.assert_allclose(raw.json(), run(Mlp(), x)[0], rtol=0, atol=1e-6)


def test_v2_answers_as_the_model(server: ServerProcess) -> None:
    metadata = httpx.get(f"{server.url}/v2/models/tiny", timeout=10).json()
    assert metadata["platform"] == "torchserve"
    x = rows(3, seed=4)
    data = [json.dumps(row.tolist()) for row in x]
    body = {"inputs": [{"name": "data", "datatype": "BYTES", "shape": [3], "data": data}]}
    response = httpx.post(f"{server.url}/v2/models/tiny/infer", json=body, timeout=10)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["shape"] == [3, 3]
    np.testing.assert_allclose(
        np.asarray(output["data"], dtype=np.float32).reshape(3, 3), run(Mlp(), x), atol=1e-6
    )


def test_v2_grpc_answers_as_the_model(server: ServerProcess) -> None:
    x = rows(2, seed=5)
    data = grpcclient.InferInput("data", [2], "BYTES")
    data.set_data_from_numpy(np.array([json.dumps(row.tolist()).encode() for row in x], object))
    client = grpcclient.InferenceServerClient(server.grpc_target)
    try:
        result = client.infer("tiny", [data])
    finally:
        client.close()
    (name,) = [output.name for output in result.get_response().outputs]
    np.testing.assert_allclose(result.as_numpy(name), run(Mlp(), x), atol=1e-6)


def test_a_malicious_archive_fails_its_version_and_says_why(server: ServerProcess) -> None:
    response = requests.post(f"{server.url}/predictions/evil", data=b"x", timeout=10)
    assert response.status_code == 503, response.text
    assert response.json()["type"] == "ServiceUnavailableException"
    assert "entry '../escaped.py' has a '..' component" in response.json()["message"]
    status = httpx.get(f"{server.url}/v1/models/evil", timeout=10).json()
    (version,) = status["model_version_status"]
    assert "../escaped.py" in version["status"]["error_message"]
    assert not (Path(server.log_path.parent) / "models" / "evil" / "escaped.py").exists()
    assert not (Path(server.log_path.parent) / "models" / "escaped.py").exists()
    assert requests.post(f"{server.url}/predictions/tiny", json=[0, 0, 0, 0], timeout=10).ok
