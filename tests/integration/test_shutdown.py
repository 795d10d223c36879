"""Graceful shutdown: readiness drops at once, new requests get 503, in-flight requests
finish, and the process exits 0."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import StartServer
from tests.models import build_example_repository, save, slow_model
from tests.server import ServerProcess

WIDTH = 256
ROWS = 32


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    root = build_example_repository(tmp_path / "models")
    save(slow_model(WIDTH), root / "slow" / "1" / "model.onnx")
    return root


def slow_body(steps: int) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "x",
                "shape": [ROWS, WIDTH],
                "datatype": "FP32",
                "data": [0.01] * ROWS * WIDTH,
            },
            {"name": "steps", "shape": [1], "datatype": "INT64", "data": [steps]},
        ]
    }


def steps_lasting(server: ServerProcess, seconds: float) -> int:
    """How many loop steps make one request of the slow model last about ``seconds``."""
    probe = 20_000
    elapsed = 0.0
    for _ in range(2):  # the first call also pays for warming up
        started = time.monotonic()
        response = httpx.post(
            f"{server.url}/v2/models/slow/infer", json=slow_body(probe), timeout=60
        )
        assert response.status_code == 200, response.text
        elapsed = time.monotonic() - started
    return max(probe, int(seconds * probe / max(elapsed, 1e-3)))


class SlowRequest(threading.Thread):
    """One long request in a thread; ``started`` is set just before it is sent."""

    def __init__(self, server: ServerProcess, steps: int) -> None:
        super().__init__(daemon=True)
        self.url = f"{server.url}/v2/models/slow/infer"
        self.body = slow_body(steps)
        self.started = threading.Event()
        self.result: httpx.Response | Exception | None = None

    def run(self) -> None:
        self.started.set()
        try:
            self.result = httpx.post(self.url, json=self.body, timeout=120)
        except httpx.HTTPError as exc:
            self.result = exc


def wait_for_status(url: str, status: int, timeout: float = 10) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(url, timeout=5)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_in_flight_requests_finish_and_new_ones_get_503(
    start_server: StartServer, repository: Path, sig: int
) -> None:
    server = start_server("--model-repository", str(repository))
    request = SlowRequest(server, steps_lasting(server, 3.0))
    request.start()
    request.started.wait()
    time.sleep(0.5)  # let the request reach the engine
    server.proc.send_signal(sig)

    ready = wait_for_status(f"{server.url}/v2/health/ready", 503)
    assert ready.status_code == 503
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
    refused = httpx.post(f"{server.url}/v1/models/mnist:predict", json={"instances": [[0.0] * 784]})
    assert refused.status_code == 503
    assert "shutting down" in refused.json()["error"]
    assert request.is_alive(), "the slow request should still be running"

    request.join(timeout=120)
    assert isinstance(request.result, httpx.Response), request.result
    assert request.result.status_code == 200
    assert server.wait_exit(timeout=60) == 0
    log = server.log()
    assert "draining, then exiting" in log
    assert "stopped" in log


def test_drain_timeout_bounds_the_wait(start_server: StartServer, repository: Path) -> None:
    server = start_server("--model-repository", str(repository), "--drain-timeout-s", "0.5")
    request = SlowRequest(server, steps_lasting(server, 20.0))
    request.start()
    request.started.wait()
    time.sleep(0.5)
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait_exit(timeout=60) == 0
    assert "still in flight" in server.log()
    assert "model slow version 1 (1 requests)" in server.log()
    request.join(timeout=60)
    assert not isinstance(request.result, httpx.Response) or request.result.status_code != 200


def test_idle_server_exits_at_once(start_server: StartServer, repository: Path) -> None:
    server = start_server("--model-repository", str(repository))
    assert server.stop(signal.SIGTERM) == 0
    assert "unloaded" in server.log()
