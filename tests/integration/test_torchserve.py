"""TorchServe's inference API as TorchServe users call it: curl -T, -d and -F, requests with
files=, versions, the separate --torchserve-port, /ping, and TorchServe-shaped errors."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import requests

from tests.conftest import StartServer
from tests.models import build_example_repository, save, slow_model
from tests.server import ServerProcess, free_port, with_grpc_port

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl binary")


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(7).random((2, 784), dtype=np.float32)


@pytest.fixture(scope="module")
def body_file(tmp_path_factory: pytest.TempPathFactory, images: np.ndarray) -> Path:
    """A TorchServe-style request file: a JSON list of instances."""
    path = tmp_path_factory.mktemp("bodies") / "body.json"
    path.write_text(json.dumps(images.tolist()))
    return path


def expected(repository: Path, version: int, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(repository / "mnist" / str(version) / "model.onnx"))
    (scores,) = session.run(None, {"images": images})
    return np.asarray(scores)


def curl(*args: str) -> tuple[int, Any]:
    """Run the real curl; return the status and the JSON answer."""
    result = subprocess.run(
        ["curl", "-s", "-w", "\n%{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body, _, status = result.stdout.rpartition("\n")
    return int(status), json.loads(body)


def assert_torchserve_error(response: requests.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"code", "type", "message"}
    assert (body["code"], body["type"]) == (status, kind)
    message: str = body["message"]
    return message


# ---- health --------------------------------------------------------------------------------


def test_ping_is_healthy_when_ready(examples_server: ServerProcess) -> None:
    response = requests.get(f"{examples_server.url}/ping", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "Healthy"}


# ---- curl, as TorchServe's documentation writes it -------------------------------------------


@needs_curl
@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["-T", "{file}"], id="curl -T (PUT)"),
        pytest.param(["-X", "POST", "-d", "@{file}"], id="curl -X POST -d @file"),
        pytest.param(["--data-binary", "@{file}"], id="curl --data-binary @file"),
        pytest.param(["-F", "data=@{file}"], id="curl -F data=@file"),
        pytest.param(["-F", "data=@{file};type=application/json"], id="curl -F with a type"),
        pytest.param(
            ["-X", "POST", "-H", "Content-Type: application/json", "-d", "@{file}"],
            id="curl -H json -d @file",
        ),
    ],
)
def test_curl_predicts_with_the_default_version(
    examples_server: ServerProcess,
    example_repository_template: Path,
    images: np.ndarray,
    body_file: Path,
    args: list[str],
) -> None:
    filled = [arg.replace("{file}", str(body_file)) for arg in args]
    status, answer = curl(f"{examples_server.url}/predictions/mnist", *filled)
    assert status == 200, answer
    np.testing.assert_allclose(answer, expected(example_repository_template, 2, images), rtol=1e-6)


@needs_curl
def test_curl_with_a_version(
    examples_server: ServerProcess,
    example_repository_template: Path,
    images: np.ndarray,
    body_file: Path,
) -> None:
    status, answer = curl(f"{examples_server.url}/predictions/mnist/1.0", "-T", str(body_file))
    assert status == 200, answer
    np.testing.assert_allclose(answer, expected(example_repository_template, 1, images), rtol=1e-6)


@needs_curl
def test_curl_raw_image_bytes_need_a_handler(
    examples_server: ServerProcess, tmp_path: Path
) -> None:
    image = tmp_path / "kitten.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8)
    status, answer = curl(f"{examples_server.url}/predictions/mnist", "-T", str(image))
    assert status == 415
    assert answer["type"] == "UnsupportedMediaTypeException"
    assert "custom handler" in answer["message"]
    status, answer = curl(f"{examples_server.url}/predictions/mnist", "-F", f"data=@{image}")
    assert status == 415
    assert "custom handler" in answer["message"]


# ---- requests ------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["data", "body"])
def test_requests_multipart_files(
    examples_server: ServerProcess,
    example_repository_template: Path,
    images: np.ndarray,
    field: str,
) -> None:
    files = {field: ("images.json", json.dumps(images.tolist()), "application/json")}
    response = requests.post(f"{examples_server.url}/predictions/mnist", files=files, timeout=10)
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(
        response.json(), expected(example_repository_template, 2, images), rtol=1e-6
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(lambda rows: rows, id="list"),
        pytest.param(lambda rows: {"instances": rows}, id="instances"),
        pytest.param(lambda rows: [{"images": row} for row in rows], id="named rows"),
    ],
)
def test_json_bodies_in_row_form(
    examples_server: ServerProcess,
    example_repository_template: Path,
    images: np.ndarray,
    body: Any,
) -> None:
    url = f"{examples_server.url}/predictions/mnist"
    response = requests.post(url, json=body(images.tolist()), timeout=10)
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(
        response.json(), expected(example_repository_template, 2, images), rtol=1e-6
    )


def test_several_outputs_give_an_object_per_instance(examples_server: ServerProcess) -> None:
    rows = [
        {"features": [0.1, 0.2, 0.3, 0.4], "category": [2]},
        {"features": [1] * 4, "category": [0]},
    ]
    response = requests.put(f"{examples_server.url}/predictions/tabular", json=rows, timeout=10)
    assert response.status_code == 200, response.text
    tf = requests.post(
        f"{examples_server.url}/v1/models/tabular:predict", json={"instances": rows}, timeout=10
    )
    assert response.json() == tf.json()["predictions"]
    assert set(response.json()[0]) == {"probabilities", "score"}


def test_columnar_inputs_give_the_outputs(examples_server: ServerProcess) -> None:
    doc = {"inputs": {"features": [[0.1, 0.2, 0.3, 0.4]], "category": [[2]]}}
    response = requests.post(f"{examples_server.url}/predictions/tabular", json=doc, timeout=10)
    assert response.status_code == 200, response.text
    tf = requests.post(f"{examples_server.url}/v1/models/tabular:predict", json=doc, timeout=10)
    assert response.json() == tf.json()["outputs"]


# ---- versions ------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "served"), [("1", 1), ("1.0", 1), ("2", 2), ("2.0", 2)])
def test_versions_as_torchserve_writes_them(
    examples_server: ServerProcess,
    example_repository_template: Path,
    images: np.ndarray,
    version: str,
    served: int,
) -> None:
    url = f"{examples_server.url}/predictions/mnist/{version}"
    response = requests.post(url, json=images.tolist(), timeout=10)
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(
        response.json(), expected(example_repository_template, served, images), rtol=1e-6
    )


@pytest.mark.parametrize("version", ["1.5", "abc", "0", "3", "-1"])
def test_other_versions_are_not_found_and_the_answer_names_the_versions(
    examples_server: ServerProcess, version: str
) -> None:
    url = f"{examples_server.url}/predictions/mnist/{version}"
    response = requests.post(url, json=[[0.0] * 784], timeout=10)
    message = assert_torchserve_error(response, 404, "ModelVersionNotFoundException")
    assert "versions: 1, 2" in message


# ---- errors --------------------------------------------------------------------------------


def test_unknown_model(examples_server: ServerProcess) -> None:
    response = requests.post(f"{examples_server.url}/predictions/nope", json=[[0.0]], timeout=10)
    message = assert_torchserve_error(response, 404, "ModelNotFoundException")
    assert "'nope'" in message
    versioned = requests.post(
        f"{examples_server.url}/predictions/nope/1.5", json=[[0.0]], timeout=10
    )
    assert_torchserve_error(versioned, 404, "ModelNotFoundException")


@pytest.mark.parametrize(
    ("data", "headers", "message"),
    [
        (b'{"instances": [[1, 2', {"content-type": "application/json"}, "malformed JSON"),
        (b"[[0.5, 0.5]]", {}, "images"),
        (b'{"data": [[1]]}', {}, "unknown field 'data'"),
        (b"[]", {}, "non-empty list"),
    ],
)
def test_bad_json_is_a_bad_request(
    examples_server: ServerProcess, data: bytes, headers: dict[str, str], message: str
) -> None:
    url = f"{examples_server.url}/predictions/mnist"
    response = requests.post(url, data=data, headers=headers, timeout=10)
    assert message in assert_torchserve_error(response, 400, "BadRequestException")


def test_a_form_without_a_data_part(examples_server: ServerProcess) -> None:
    files = {"image": ("a.json", "[[0]]")}
    response = requests.post(f"{examples_server.url}/predictions/mnist", files=files, timeout=10)
    message = assert_torchserve_error(response, 400, "BadRequestException")
    assert "no part named 'data'" in message


def test_paths_and_methods(examples_server: ServerProcess) -> None:
    url = examples_server.url
    wrong_method = requests.get(f"{url}/predictions/mnist", timeout=10)
    assert_torchserve_error(wrong_method, 405, "MethodNotAllowedException")
    assert wrong_method.headers["allow"] == "POST, PUT"
    for path in ("/predictions", "/predictions/", "/predictions/mnist/1/extra"):
        missing = requests.post(f"{url}{path}", json=[[0.0]], timeout=10)
        assert_torchserve_error(missing, 404, "ResourceNotFoundException")
    # The other surfaces keep their own shapes on the same port.
    assert requests.get(f"{url}/v2/nothing", timeout=10).json() == {"error": "Not Found"}


def test_requests_are_counted_as_torchserve(examples_server: ServerProcess) -> None:
    requests.post(f"{examples_server.url}/predictions/mnist/1", json=[[0.0] * 784], timeout=10)
    metrics = requests.get(f"{examples_server.url}/metrics", timeout=10).text
    line = 'modelport_requests_total{model="mnist",outcome="success",protocol="torchserve_rest"'
    assert line in metrics


# ---- the separate port ---------------------------------------------------------------------


def test_the_torchserve_port_serves_only_torchserve(
    start_server: StartServer, example_repository: Path, images: np.ndarray
) -> None:
    port = free_port()
    server = start_server(
        "--model-repository", str(example_repository), "--torchserve-port", str(port)
    )
    torchserve = f"http://127.0.0.1:{port}"
    assert f"TorchServe inference API on http://127.0.0.1:{port}" in server.log()
    assert requests.get(f"{torchserve}/ping", timeout=10).json() == {"status": "Healthy"}
    response = requests.post(f"{torchserve}/predictions/mnist", json=images.tolist(), timeout=10)
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json(), expected(example_repository, 2, images), rtol=1e-6)
    for path in ("/v1/models/mnist", "/v2/health/ready", "/metrics", "/"):
        other = requests.get(f"{torchserve}{path}", timeout=10)
        assert_torchserve_error(other, 404, "ResourceNotFoundException")
    # The main port keeps every surface, TorchServe's included.
    assert requests.get(f"{server.url}/ping", timeout=10).status_code == 200
    assert requests.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelport", "serve", *with_grpc_port(args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_torchserve_port_must_differ_from_the_http_port(example_repository: Path) -> None:
    port = str(free_port())
    result = run_cli(
        "--model-repository",
        str(example_repository),
        "--http-port",
        port,
        "--torchserve-port",
        port,
    )
    assert result.returncode == 2
    assert "--torchserve-port" in result.stderr
    assert "the HTTP port serves the TorchServe API too" in result.stderr


def test_the_torchserve_port_in_use(start_server: StartServer, example_repository: Path) -> None:
    first = start_server("--model-repository", str(example_repository))
    result = run_cli(
        "--model-repository",
        str(example_repository),
        "--http-port",
        str(free_port()),
        "--torchserve-port",
        str(first.port),
    )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{first.port}" in result.stderr
    assert "pick another port with --torchserve-port" in result.stderr


# ---- draining ------------------------------------------------------------------------------

ROWS = 8
WIDTH = 256


def slow_request(steps: int) -> dict[str, Any]:
    return {"inputs": {"x": [[0.01] * WIDTH] * ROWS, "steps": [steps]}}


class SlowPrediction(threading.Thread):
    """One long TorchServe request in a thread."""

    def __init__(self, url: str, steps: int) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.steps = steps
        self.started = threading.Event()
        self.result: requests.Response | Exception | None = None

    def run(self) -> None:
        self.started.set()
        try:
            self.result = requests.post(self.url, json=slow_request(self.steps), timeout=120)
        except requests.RequestException as exc:
            self.result = exc


def steps_lasting(url: str, seconds: float) -> int:
    """Loop steps that make one request of the slow model last about ``seconds``."""
    probe = 5_000
    elapsed = 0.0
    for _ in range(2):  # the first call also pays for warming up
        started = time.monotonic()
        response = requests.post(url, json=slow_request(probe), timeout=60)
        assert response.status_code == 200, response.text
        elapsed = time.monotonic() - started
    return max(probe, int(seconds * probe / max(elapsed, 1e-3)))


def poll_ping(url: str, status: int, timeout: float = 10) -> requests.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = requests.get(f"{url}/ping", timeout=5)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.01)


def test_while_draining_ping_is_unhealthy_and_requests_in_flight_finish(
    start_server: StartServer, tmp_path: Path
) -> None:
    repository = build_example_repository(tmp_path / "models")
    save(slow_model(WIDTH), repository / "slow" / "1" / "model.onnx")
    port = free_port()
    server = start_server("--model-repository", str(repository), "--torchserve-port", str(port))
    torchserve = f"http://127.0.0.1:{port}"
    slow_url = f"{torchserve}/predictions/slow"
    request = SlowPrediction(slow_url, steps_lasting(slow_url, 3.0))
    request.start()
    request.started.wait()
    time.sleep(0.5)  # let the request reach the engine
    server.proc.send_signal(signal.SIGTERM)

    for url in (torchserve, server.url):
        unhealthy = poll_ping(url, 500)
        assert unhealthy.status_code == 500
        assert unhealthy.json() == {"status": "Unhealthy"}
    refused = requests.post(f"{torchserve}/predictions/mnist", json=[[0.0] * 784], timeout=10)
    message = assert_torchserve_error(refused, 503, "ServiceUnavailableException")
    assert "shutting down" in message
    assert request.is_alive(), "the slow request should still be running"

    request.join(timeout=120)
    assert isinstance(request.result, requests.Response), request.result
    assert request.result.status_code == 200
    assert np.array(request.result.json()).shape == (ROWS, WIDTH)
    assert server.wait_exit(timeout=60) == 0
