"""Hot reload under load: new, corrupt, half-copied and removed versions, and models coming and
going, while a client keeps sending requests. No request may fail."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import StartServer
from tests.models import constant_model, mnist_model, save
from tests.server import ServerProcess

POLL = "0.2"


@dataclass
class Answer:
    status: int
    version: str | None
    value: float | None


@dataclass
class LoadClient:
    """Sends requests back to back from a thread; keeps every answer in order."""

    url: str
    model: str = "m"
    answers: list[Answer] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> LoadClient:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)

    def _run(self) -> None:
        body = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [0.0]}]}
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(f"{self.url}/v2/models/{self.model}/infer", json=body)
                except httpx.TransportError as exc:
                    self.errors.append(repr(exc))
                    continue
                if response.status_code != 200:
                    self.answers.append(Answer(response.status_code, None, None))
                    continue
                doc = response.json()
                self.answers.append(Answer(200, doc["model_version"], doc["outputs"][0]["data"][0]))

    def wait_for(self, condition: Callable[[Answer], bool], timeout: float = 60) -> None:
        """Wait (without judging how long it takes) until an answer satisfies ``condition``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(condition(a) for a in self.answers[-20:]):
                return
            time.sleep(0.05)
        raise AssertionError(f"no such answer; last ones: {self.answers[-5:]}")

    def wait_count(self, extra: int) -> None:
        target = len(self.answers) + extra
        deadline = time.monotonic() + 60
        while len(self.answers) < target and time.monotonic() < deadline:
            time.sleep(0.02)

    def failures(self) -> list[str]:
        return self.errors + [f"HTTP {a.status}" for a in self.answers if a.status != 200]


def versions_seen(answers: list[Answer]) -> list[str]:
    """The versions in the order they answered, with repeats collapsed."""
    seen: list[str] = []
    for answer in answers:
        if answer.version is not None and (not seen or seen[-1] != answer.version):
            seen.append(answer.version)
    return seen


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    save(constant_model(1.0), root / "m" / "1" / "model.onnx")
    return root


@pytest.fixture
def server(start_server: StartServer, repository: Path) -> ServerProcess:
    return start_server("--model-repository", str(repository), "--poll-interval-s", POLL)


def status(server: ServerProcess, model: str = "m") -> dict[str, dict[str, object]]:
    response = httpx.get(f"{server.url}/v1/models/{model}")
    if response.status_code == 404:
        return {}
    return {s["version"]: s for s in response.json()["model_version_status"]}


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def copy_slowly(source: bytes, target: Path, pieces: int = 8, pause: float = 0.05) -> None:
    """Write ``source`` to ``target`` a piece at a time, as a slow copy would."""
    target.parent.mkdir(parents=True, exist_ok=True)
    step = max(1, len(source) // pieces)
    with target.open("wb") as out:
        for start in range(0, len(source), step):
            out.write(source[start : start + step])
            out.flush()
            time.sleep(pause)


def test_new_version_takes_over_without_a_failed_request(
    server: ServerProcess, repository: Path
) -> None:
    with LoadClient(server.url) as client:
        client.wait_count(50)
        copy_slowly(constant_model(2.0).SerializeToString(), repository / "m" / "2" / "model.onnx")
        client.wait_for(lambda a: a.version == "2")
        client.wait_count(50)
    assert client.failures() == []
    assert versions_seen(client.answers) == ["1", "2"]
    assert {a.value for a in client.answers if a.version == "1"} == {1.0}
    assert {a.value for a in client.answers if a.version == "2"} == {2.0}
    wait_until(lambda: list(status(server)) == ["2"], "version 1 to unload")
    server.wait_log("model m version 1: unloaded")


def test_corrupt_version_never_takes_the_working_one_down(
    server: ServerProcess, repository: Path
) -> None:
    with LoadClient(server.url) as client:
        client.wait_count(50)
        corrupt = repository / "m" / "2" / "model.onnx"
        copy_slowly(b"\x08\x07 definitely not a model " * 200, corrupt)
        wait_until(lambda: status(server).get("2", {}).get("state") == "END", "version 2 to fail")
        client.wait_count(100)
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
        # A few more polls: the failure is reported once, not on every poll.
        time.sleep(4 * float(POLL))
        # Fixing the files retries the load.
        save(constant_model(2.0), corrupt)
        client.wait_for(lambda a: a.version == "2")
        client.wait_count(20)
    assert client.failures() == []
    assert versions_seen(client.answers) == ["1", "2"]
    assert server.log().count("model m version 2: failed to load") == 1


def test_failed_version_error_is_in_every_status_api(
    server: ServerProcess, repository: Path
) -> None:
    bad = repository / "m" / "2"
    bad.mkdir()
    (bad / "model.onnx").write_bytes(b"garbage")
    wait_until(lambda: "2" in status(server), "version 2 to be reported")
    report = status(server)["2"]
    assert report["state"] == "END"
    error = report["status"]
    assert isinstance(error, dict)
    assert error["error_code"] == "UNKNOWN"
    assert "could not load model.onnx" in str(error["error_message"])
    assert status(server)["1"]["state"] == "AVAILABLE"
    v2 = httpx.get(f"{server.url}/v2/models/m/versions/2/ready")
    assert v2.status_code == 503
    answer = httpx.post(f"{server.url}/v2/models/m/versions/2/infer", json={"inputs": []})
    assert answer.status_code == 503
    assert "failed to load" in answer.json()["error"]


def test_half_copied_version_is_not_loaded_until_complete(
    start_server: StartServer, repository: Path
) -> None:
    # A version loads once two polls in a row see its files unchanged. The copy writes a piece
    # every 50 ms for 2 s, and the server polls every second: only a stall of the writing
    # thread of a second or more, not just a busy machine, could look like a finished copy.
    server = start_server("--model-repository", str(repository), "--poll-interval-s", "1")
    data = constant_model(2.0).SerializeToString()
    target = repository / "m" / "2" / "model.onnx"
    writer = threading.Thread(target=copy_slowly, args=(data, target, 40, 0.05))
    with LoadClient(server.url) as client:
        writer.start()
        while writer.is_alive():
            # While the file keeps changing, version 2 is neither loaded nor failed.
            assert "2" not in status(server)
            time.sleep(0.05)
        client.wait_for(lambda a: a.version == "2")
    assert client.failures() == []
    assert "failed to load" not in server.log()


def test_atomic_rename_of_a_staging_folder(server: ServerProcess, repository: Path) -> None:
    staging = repository / "m" / ".incoming-2"
    save(constant_model(2.0), staging / "model.onnx")
    server.wait_log("ignoring folder '.incoming-2'")
    with LoadClient(server.url) as client:
        client.wait_count(20)
        staging.rename(repository / "m" / "2")
        client.wait_for(lambda a: a.version == "2")
    assert client.failures() == []


def test_version_policy_labels_and_removal(start_server: StartServer, repository: Path) -> None:
    save(constant_model(2.0), repository / "m" / "2" / "model.onnx")
    config = repository / "m" / "config.yaml"
    config.write_text("version_policy: all\nlabels: {stable: 1}\n")
    server = start_server("--model-repository", str(repository), "--poll-interval-s", POLL)
    assert sorted(status(server)) == ["1", "2"]

    def label_value(label: str) -> float:
        response = httpx.post(
            f"{server.url}/v1/models/m/labels/{label}:predict", json={"instances": [[0.0]]}
        )
        assert response.status_code == 200, response.text
        return float(response.json()["predictions"][0][0])

    assert label_value("stable") == 1.0
    config.write_text("version_policy: all\nlabels: {stable: 2, old: 1}\n")
    wait_until(lambda: label_value("stable") == 2.0, "the label to move")
    assert label_value("old") == 1.0

    with LoadClient(server.url) as client:
        shutil.rmtree(repository / "m" / "1")
        wait_until(lambda: list(status(server)) == ["2"], "version 1 to unload")
        client.wait_count(20)
    assert client.failures() == []
    gone = httpx.post(f"{server.url}/v2/models/m/versions/1/infer", json={"inputs": []})
    assert gone.status_code == 404

    config.write_text("version_policy: {specific: [2]}\n")
    save(constant_model(3.0), repository / "m" / "3" / "model.onnx")
    time.sleep(5 * float(POLL))
    assert list(status(server)) == ["2"], "the specific policy ignores version 3"


def test_models_come_and_go_with_their_folders(server: ServerProcess, repository: Path) -> None:
    save(constant_model(5.0), repository / "other" / "4" / "model.onnx")
    wait_until(lambda: status(server, "other").get("4", {}).get("state") == "AVAILABLE", "load")
    with LoadClient(server.url, model="other") as client:
        client.wait_count(10)
    assert client.failures() == []
    assert {a.value for a in client.answers} == {5.0}
    shutil.rmtree(repository / "other")
    wait_until(lambda: status(server, "other") == {}, "the model to go")
    assert httpx.get(f"{server.url}/v2/models/other").status_code == 404
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200


def test_invalid_config_is_reported_and_the_loaded_versions_keep_serving(
    server: ServerProcess, repository: Path
) -> None:
    with LoadClient(server.url) as client:
        client.wait_count(10)
        (repository / "m" / "config.yaml").write_text("version_policy: {latest: 0}\nbogus: 1\n")
        server.wait_log("invalid config.yaml")
        save(constant_model(2.0), repository / "m" / "2" / "model.onnx")
        wait_until(lambda: status(server).get("2", {}).get("state") == "END", "version 2 to fail")
        client.wait_count(20)
    assert client.failures() == []
    assert {a.version for a in client.answers} == {"1"}
    message = str(status(server)["2"]["status"])
    assert "version_policy" in message
    assert "latest needs a positive number" in message
    assert "bogus" in message
    (repository / "m" / "config.yaml").write_text("version_policy: {latest: 1}\n")
    wait_until(lambda: list(status(server)) == ["2"], "version 2 to load once the config is fixed")


def test_serving_continues_while_another_model_loads(
    server: ServerProcess, repository: Path
) -> None:
    # A long warm-up keeps the new model LOADING for a while, in a loading thread.
    heavy = repository / "heavy"
    (heavy / "config.yaml").parent.mkdir(parents=True)
    (heavy / "config.yaml").write_text("warmup: {iterations: 3000, batch_size: 256}\n")
    save(mnist_model(seed=3), heavy / "1" / "model.onnx")
    with LoadClient(server.url) as client:
        wait_until(
            lambda: status(server, "heavy").get("1", {}).get("state") == "LOADING",
            "the heavy model to start loading",
        )
        served_while_loading = len(client.answers)
        client.wait_count(20)
        assert status(server, "heavy").get("1", {}).get("state") == "LOADING"
        wait_until(
            lambda: status(server, "heavy").get("1", {}).get("state") == "AVAILABLE",
            "the heavy model to load",
        )
    assert client.failures() == []
    assert len(client.answers) > served_while_loading
