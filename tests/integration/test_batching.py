"""Dynamic batching and metrics through a real server: correct rows under concurrency, padding,
queue limits, timeouts, priorities reaching the batcher, TF Serving's batching flags, and the
Prometheus endpoint."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import StartServer
from tests.models import build_example_repository, save, slow_batched_model, token_sum_model
from tests.server import ServerProcess

WIDTH = 64


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = build_example_repository(tmp_path_factory.mktemp("batching") / "models")
    (root / "mnist" / "config.yaml").write_text(
        "version_policy: {latest: 2}\n"
        "dynamic_batching: {max_batch_size: 16, preferred_batch_sizes: [4, 8, 16]}\n"
    )
    save(slow_batched_model(WIDTH), root / "slow" / "1" / "model.onnx")
    (root / "slow" / "config.yaml").write_text(
        "warmup: {enabled: false}\n"
        "dynamic_batching: {max_batch_size: 8, max_queue_size: 2, max_queue_delay_us: 0,\n"
        "                   priority_levels: 2}\n"
    )
    save(token_sum_model(), root / "tokens" / "1" / "model.onnx")
    (root / "tokens" / "config.yaml").write_text(
        "dynamic_batching: {max_batch_size: 32, pad_variable_length_inputs: true}\n"
    )
    return root


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(["--model-repository", str(repository)], repository / "server.log")
    process.wait_ready()
    yield process
    process.stop()


def slow_body(steps: int, rows: int = 1, **parameters: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "x", "shape": [rows, WIDTH], "datatype": "FP32", "data": [0.1] * rows * WIDTH},
            {"name": "steps", "shape": [rows, 1], "datatype": "INT64", "data": [steps] * rows},
        ],
        "parameters": parameters,
    }


def steps_lasting(server: ServerProcess, seconds: float) -> int:
    probe = 20_000
    elapsed = 0.0
    for _ in range(2):
        started = time.monotonic()
        response = httpx.post(
            f"{server.url}/v2/models/slow/infer", json=slow_body(probe), timeout=60
        )
        assert response.status_code == 200, response.text
        elapsed = time.monotonic() - started
    return max(probe, int(seconds * probe / max(elapsed, 1e-3)))


def metric_values(server: ServerProcess, name: str) -> dict[str, float]:
    text = httpx.get(f"{server.url}/metrics").text
    values = {}
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(\{{[^}}]*\}})? (\S+)", line)
        if match:
            values[match.group(1) or ""] = float(match.group(2))
    return values


class Background(threading.Thread):
    """One request in a thread, so others can be sent while it runs."""

    def __init__(self, url: str, body: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.url, self.body = url, body
        self.response: httpx.Response | None = None

    def run(self) -> None:
        self.response = httpx.post(self.url, json=self.body, timeout=120)


def test_concurrent_callers_each_get_their_own_rows(
    server: ServerProcess, repository: Path
) -> None:
    session = ort.InferenceSession(str(repository / "mnist" / "2" / "model.onnx"))
    rng = np.random.default_rng(5)
    images = [rng.random((int(rng.integers(1, 4)), 784), dtype=np.float32) for _ in range(96)]

    def call(image: np.ndarray) -> np.ndarray:
        body = {"inputs": [{"name": "images", "shape": list(image.shape), "datatype": "FP32",
                            "data": image.ravel().tolist()}]}  # fmt: skip
        response = httpx.post(f"{server.url}/v2/models/mnist/infer", json=body, timeout=60)
        assert response.status_code == 200, response.text
        output = response.json()["outputs"][0]
        return np.array(output["data"], np.float32).reshape(output["shape"])

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, images))
    for image, result in zip(images, results, strict=True):
        np.testing.assert_allclose(result, session.run(None, {"images": image})[0], rtol=1e-5)
    rows = metric_values(server, "modelport_batch_size_sum")
    batches = metric_values(server, "modelport_batch_size_count")
    key = '{model="mnist",version="2"}'
    assert rows[key] == sum(len(image) for image in images)
    assert batches[key] <= len(images)


def test_padded_requests_get_their_own_lengths_back(server: ServerProcess) -> None:
    rng = np.random.default_rng(6)
    sequences = [rng.integers(1, 50, size=int(n)).tolist() for n in rng.integers(1, 20, size=40)]

    def call(ids: list[int]) -> dict[str, Any]:
        body = {"inputs": [{"name": "ids", "shape": [1, len(ids)], "datatype": "INT64",
                            "data": ids}]}  # fmt: skip
        response = httpx.post(f"{server.url}/v2/models/tokens/infer", json=body, timeout=60)
        assert response.status_code == 200, response.text
        return {o["name"]: o for o in response.json()["outputs"]}

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, sequences))
    for ids, outputs in zip(sequences, results, strict=True):
        assert outputs["doubled"]["shape"] == [1, len(ids)]
        assert outputs["doubled"]["data"] == [2 * i for i in ids]
        assert outputs["total"]["data"] == [sum(ids)]


def test_queue_limit_timeouts_and_company_while_a_batch_runs(server: ServerProcess) -> None:
    url = f"{server.url}/v2/models/slow/infer"
    long_steps = steps_lasting(server, 3.0)
    before = metric_values(server, "modelport_batch_size_count").get(
        '{model="slow",version="1"}', 0
    )
    running = Background(url, slow_body(long_steps))
    running.start()
    time.sleep(0.5)  # the long request holds the only instance
    # A request that may wait at most 1 ms in the queue is dropped before it runs.
    late = httpx.post(url, json=slow_body(1, timeout=1000), timeout=60)
    assert late.status_code == 504, late.text
    assert "timeout of 1000 µs" in late.json()["error"]
    waiting = [Background(url, slow_body(1, priority=p)) for p in (2, 1)]
    for thread in waiting:
        thread.start()
    deadline = time.monotonic() + 30
    while metric_values(server, "modelport_queue_depth").get('{model="slow",version="1"}') != 2:
        assert time.monotonic() < deadline, "the two requests never queued"
        time.sleep(0.02)
    refused = httpx.post(url, json=slow_body(1), timeout=60)
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["retry-after"]) >= 1
    assert "max_queue_size" in refused.json()["error"]
    running.join(120)
    for thread in waiting:
        thread.join(60)
        assert thread.response is not None
        assert thread.response.status_code == 200, thread.response.text
    after = metric_values(server, "modelport_batch_size_count")['{model="slow",version="1"}']
    assert after - before == 2, "the long request, then the two queued ones as one batch"


def test_requests_over_the_batch_limit_are_refused(server: ServerProcess) -> None:
    response = httpx.post(f"{server.url}/v2/models/slow/infer", json=slow_body(1, rows=9))
    assert response.status_code == 400
    assert "9 rows, more than" in response.json()["error"]


def test_bad_priority_is_refused(server: ServerProcess) -> None:
    response = httpx.post(f"{server.url}/v2/models/slow/infer", json=slow_body(1, priority=5))
    assert response.status_code == 400
    assert "priority" in response.json()["error"]


def test_metrics_count_requests_by_protocol_and_outcome(server: ServerProcess) -> None:
    image = [0.0] * 784
    httpx.post(f"{server.url}/v1/models/mnist:predict", json={"instances": [image]})
    httpx.post(f"{server.url}/v1/models/mnist:predict", json={"instances": [[0.0]]})
    requests = metric_values(server, "modelport_requests_total")
    assert requests['{model="mnist",outcome="success",protocol="tfserving_rest",version="2"}'] >= 1
    bad = '{model="mnist",outcome="invalid_argument",protocol="tfserving_rest",version="2"}'
    assert requests[bad] >= 1
    text = httpx.get(f"{server.url}/metrics").text
    for name in (
        "modelport_request_duration_seconds_bucket",
        "modelport_queue_duration_seconds_bucket",
        "modelport_compute_duration_seconds_bucket",
        "modelport_batch_size_bucket",
        "modelport_queue_depth",
    ):
        assert name in text
    tf_path = httpx.get(f"{server.url}/monitoring/prometheus/metrics")
    assert tf_path.headers["content-type"].startswith("text/plain")
    assert "modelport_requests_total" in tf_path.text


def test_unbatched_models_report_compute_time_too(server: ServerProcess) -> None:
    body = {"instances": [{"features": [1, 2, 3, 4], "category": [1]}]}
    assert httpx.post(f"{server.url}/v1/models/tabular:predict", json=body).status_code == 200
    computed = metric_values(server, "modelport_compute_duration_seconds_count")
    assert computed['{model="tabular",version="1"}'] >= 1


def test_tf_serving_batching_flags(start_server: StartServer, example_repository: Path) -> None:
    params = example_repository / "batching.txt"
    params.write_text(
        "max_batch_size { value: 4 }\nbatch_timeout_micros { value: 0 }\n"
        "num_batch_threads { value: 1 }\n"
    )
    server = start_server(
        "--model-repository",
        str(example_repository),
        "--enable_batching",
        "--batching_parameters_file",
        str(params),
    )
    too_many = {"instances": [[0.0] * 784] * 5}
    response = httpx.post(f"{server.url}/v1/models/mnist:predict", json=too_many)
    assert response.status_code == 400
    assert "max_batch_size of 4" in response.json()["error"]
    ok = httpx.post(f"{server.url}/v1/models/mnist:predict", json={"instances": [[0.0] * 784]})
    assert ok.status_code == 200


def test_batching_parameters_need_enable_batching(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelport",
            "serve",
            "--model-repository",
            str(tmp_path),
            "--batching_parameters_file",
            str(tmp_path / "b.txt"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "needs --enable_batching" in result.stderr


def test_load_failures_are_counted(start_server: StartServer, tmp_path: Path) -> None:
    root = build_example_repository(tmp_path / "models")
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"nonsense")
    server = start_server("--model-repository", str(root), "--no-exit-on-error", ready=False)
    server.wait_log("ready: serving")
    failures = metric_values(server, "modelport_model_load_failures_total")
    assert failures['{model="broken"}'] == 1
