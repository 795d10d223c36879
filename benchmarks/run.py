"""Benchmark modelport against the raw engine and the reference floor server.

    .venv/bin/python benchmarks/run.py [--duration 4] [--rounds 3] [--models mnist,minilm]
                                       [--quick] [--output docs/benchmarks.md]

One run on this machine builds a benchmark model repository in a temporary folder and measures,
for batch-1 requests:

- ``mnist`` (784 float32 in, 10 scores out), served by modelport without dynamic batching
  (``mnist``) and with it (``mnist_batched``), over KServe V2 JSON, V2 binary and TF Serving
  JSON, next to the reference floor server (``floor_server.py``) in ``echo`` mode (the cheapest
  Python JSON endpoint) and ``ort`` mode (a naive server running onnxruntime per request);
- all-MiniLM-L6-v2 (128 token ids in, a 384-wide sentence embedding out), served by modelport
  without dynamic batching (``minilm``) and with it (``minilm_batched``), over V2 JSON;
- the raw engine for both models: onnxruntime in-process, one intra-op thread, pinned to CPU 0:
  the p50/p99 of a batch-1 ``session.run`` and rows/s by batch size.

One modelport process serves the four models. Every server is pinned to CPU 0 and the load
generator, ``wrk``, to CPU 1. Servers run side by side and are measured round-robin,
``--rounds`` times; each cell reports the median of its rounds. The tables, and the targets
computed from them, are printed and written, with the machine and the command, to ``--output``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import yaml

ROOT = Path(__file__).resolve().parent.parent
LUA_SCRIPT = Path("benchmarks/post.lua")
BUILD_MODELS = Path("examples/build_models.py")
BUILD_MINILM = Path("examples/build_minilm.py")
#: The reference floor server sits in shared/bench/, beside the repository's root folder.
DEFAULT_FLOOR = Path(
    os.environ.get("MODELPORT_FLOOR_SERVER", ROOT.parent / "shared" / "bench" / "floor_server.py")
)
DEFAULT_OUTPUT = Path("docs/benchmarks.md")

SERVER_CPU = "0"
LOAD_CPU = "1"
SEED = 0

MNIST = "mnist"
MINILM = "minilm"
FAMILIES = (MNIST, MINILM)
FAMILY_TITLES = {MNIST: "mnist", MINILM: "MiniLM (all-MiniLM-L6-v2)"}  # section headings
FAMILY_NAMES = {MNIST: "mnist", MINILM: "MiniLM"}  # in running text

MNIST_FEATURES = 784
MNIST_CLASSES = 10
#: The mnist weights the benchmark serves: version 2 of examples/build_models.py's output.
MNIST_SOURCE = Path("mnist") / "2" / "model.onnx"
MNIST_BATCHING = {"max_batch_size": 64, "max_queue_delay_us": 2000}

MINILM_SEQ_LEN = 128
MINILM_TOKEN_LOW = 1000
MINILM_TOKEN_HIGH = 30000  # exclusive
MINILM_HIDDEN = 384
MINILM_MAX_BATCH = 4  # the batch size onnxruntime runs fastest per row on one CPU (measured)
MINILM_OUTPUT = "sentence_embedding"

MNIST_CONCURRENCIES = (1, 8, 32, 64)
TF_CONCURRENCIES = (1, 32)
MINILM_CONCURRENCIES = (1, 8, 16, 32)
#: MiniLM cells run this many times --duration: at ~60 requests/s, and with batching answers
#: arriving 16 at a time, a short cell's requests/s would be coarse.
MINILM_DURATION_FACTOR = 2
ENGINE_BATCHES = {MNIST: (1, 8, 32, 64), MINILM: (1, 4, 8, 16)}

READY_TIMEOUT_S = 120.0
IDLE_TIMEOUT_S = 10.0
IDLE_POLL_S = 0.1
STOP_TIMEOUT_S = 15.0
WRK_TIMEOUT = "10s"  # a MiniLM request at concurrency 32 waits ~0.5 s; wrk's default is 2 s

DEFAULT_DURATION_S = 4
DEFAULT_ROUNDS = 3
DEFAULT_WARMUP_S = 1
DEFAULT_CALLS = 20000
QUICK_DURATION_S = 1
QUICK_ROUNDS = 1
QUICK_CALLS = 2000

# The targets the report checks (see benchmarks/README.md).
TARGET_MNIST_RPS = 12000.0
TARGET_MNIST_RATIO = 0.65
TARGET_LATENCY_GAP_US = 100.0
TARGET_MINILM_FRACTION = 0.95
BINARY_GOAL = "binary > JSON (> 1.00x)"

CellKey = tuple[str, str, int]  # (endpoint key, protocol key, concurrency)
LoadAverage = tuple[float, float, float]
Array = npt.NDArray[Any]


class BenchError(RuntimeError):
    """A benchmark step failed in a way that makes the tables meaningless."""


# --------------------------------------------------------------------------- data model


@dataclass(frozen=True)
class Protocol:
    """One way of sending one model family's batch-1 request."""

    family: str
    key: str
    label: str
    path_template: str  # with {model}
    content_type: str
    body: bytes
    answer_shape: tuple[int, ...]  # the shape of the output the answer must carry
    header_length: int | None = None

    def path(self, model: str) -> str:
        """The request path for ``model``."""
        return self.path_template.format(model=model)


@dataclass(frozen=True)
class Endpoint:
    """A model as served by one server: what a table row measures."""

    key: str
    label: str
    server: str  # ServerSpec key
    family: str
    model: str  # the model name in request paths
    runs_model: bool


ENDPOINTS = (
    Endpoint("mp-mnist", "modelport", "modelport", MNIST, "mnist", runs_model=True),
    Endpoint(
        "mp-mnist-batched",
        "modelport + batching",
        "modelport",
        MNIST,
        "mnist_batched",
        runs_model=True,
    ),
    Endpoint("floor-ort", "floor (ort)", "floor-ort", MNIST, "mnist", runs_model=True),
    Endpoint("floor-echo", "floor (echo)", "floor-echo", MNIST, "mnist", runs_model=False),
    Endpoint("mp-minilm", "modelport", "modelport", MINILM, "minilm", runs_model=True),
    Endpoint(
        "mp-minilm-batched",
        "modelport + batching",
        "modelport",
        MINILM,
        "minilm_batched",
        runs_model=True,
    ),
)
ENDPOINT_BY_KEY = {endpoint.key: endpoint for endpoint in ENDPOINTS}


@dataclass(frozen=True)
class Group:
    """Endpoints measured back to back with one protocol at one concurrency."""

    family: str
    protocol: str
    concurrency: int
    endpoints: tuple[str, ...]  # endpoint keys, in table order


@dataclass(frozen=True)
class ServerSpec:
    """A server to start: its name, its command (without taskset) and its readiness checks."""

    key: str
    label: str
    argv: tuple[str, ...]
    port_flag: str
    ready_paths: tuple[str, ...]


@dataclass
class RunningServer:
    """A started server process and where to reach it."""

    spec: ServerSpec
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base_url(self) -> str:
        """The server's root URL."""
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run reported."""

    requests_per_s: float
    p50_us: float
    p99_us: float
    non_2xx: int
    socket_errors: int
    foreign_cpu: float = 0.0  # share of CPU 0's time spent outside the measured server


@dataclass(frozen=True)
class EngineResult:
    """The raw engine's figures for one model, from one in-process measurement."""

    p50_us: float
    p99_us: float
    mean_us: float
    rows_per_s: dict[int, float]

    @property
    def best_batch(self) -> int:
        """The batch size with the most rows/s."""
        return max(self.rows_per_s, key=lambda batch: self.rows_per_s[batch])

    @property
    def best_rows_per_s(self) -> float:
        """Rows/s at the best batch size."""
        return self.rows_per_s[self.best_batch]


@dataclass(frozen=True)
class Cell:
    """The median over rounds of one (endpoint, protocol, concurrency) cell."""

    requests_per_s: float
    p50_us: float
    p99_us: float
    rps_min: float
    rps_max: float
    errors: int
    ratio: float | None  # median over rounds of requests/s / the reference in the same round


@dataclass(frozen=True)
class Settings:
    """What the command line asked for."""

    duration_s: int
    rounds: int
    warmup_s: int
    calls: int
    families: tuple[str, ...]
    floor: Path
    output: Path | None
    quick: bool

    def cell_seconds(self, family: str) -> int:
        """How long one cell of ``family`` runs."""
        return self.duration_s * (MINILM_DURATION_FACTOR if family == MINILM else 1)


@dataclass(frozen=True)
class Measurements:
    """Everything one run measured: every wrk run and every engine probe, by round."""

    results: dict[CellKey, list[WrkResult]]
    engines: dict[str, list[EngineResult]]  # by model family


@dataclass(frozen=True)
class TargetResult:
    """One target, checked against this run's figures."""

    name: str
    measured: str
    goal: str
    met: bool | None  # None: not measured in this run


# --------------------------------------------------------------------------- requests


def mnist_input() -> Array:
    """The fixed batch-1 mnist input: 784 random float32 in [0, 1)."""
    return np.random.default_rng(SEED).random((1, MNIST_FEATURES), dtype=np.float32)


def minilm_token_ids() -> Array:
    """The fixed batch-1 MiniLM input: 128 random token ids in [1000, 30000), INT64."""
    rng = np.random.default_rng(SEED)
    return rng.integers(MINILM_TOKEN_LOW, MINILM_TOKEN_HIGH, (1, MINILM_SEQ_LEN), dtype=np.int64)


def v2_tensor(name: str, x: Array, datatype: str) -> dict[str, object]:
    """One V2 JSON input tensor holding the single row of ``x``."""
    return {"name": name, "shape": list(x.shape), "datatype": datatype, "data": x[0].tolist()}


def v2_binary_body(x: Array) -> tuple[bytes, int]:
    """A V2 binary-extension mnist request for ``x`` and the length of its JSON header."""
    raw = x.astype("<f4").tobytes()
    header = {
        "inputs": [
            {
                "name": "images",
                "shape": list(x.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "outputs": [{"name": "scores", "parameters": {"binary_data": True}}],
    }
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    return header_bytes + raw, len(header_bytes)


def mnist_protocols() -> list[Protocol]:
    """The three forms of the mnist request, in table order."""
    x = mnist_input()
    binary, header_length = v2_binary_body(x)
    v2_path = "/v2/models/{model}/infer"
    answer = (1, MNIST_CLASSES)
    v2_json = json.dumps({"inputs": [v2_tensor("images", x, "FP32")]}).encode()
    tf_json = json.dumps({"instances": x.tolist()}).encode()
    return [
        Protocol(MNIST, "v2-json", "V2 JSON", v2_path, "application/json", v2_json, answer),
        Protocol(
            MNIST,
            "v2-binary",
            "V2 binary",
            v2_path,
            "application/octet-stream",
            binary,
            answer,
            header_length,
        ),
        Protocol(
            MNIST,
            "tf-json",
            "TF JSON",
            "/v1/models/{model}:predict",
            "application/json",
            tf_json,
            answer,
        ),
    ]


def minilm_protocols() -> list[Protocol]:
    """The MiniLM request: 128 token ids and an all-ones mask, asking for the embedding."""
    ids = minilm_token_ids()
    request = {
        "inputs": [
            v2_tensor("input_ids", ids, "INT64"),
            v2_tensor("attention_mask", np.ones_like(ids), "INT64"),
        ],
        "outputs": [{"name": MINILM_OUTPUT}],
    }
    body = json.dumps(request).encode()
    return [
        Protocol(
            MINILM,
            "v2-json",
            "V2 JSON",
            "/v2/models/{model}/infer",
            "application/json",
            body,
            (1, MINILM_HIDDEN),
        )
    ]


def make_protocols(families: Sequence[str]) -> dict[tuple[str, str], Protocol]:
    """Every request form of the chosen families, by (family, protocol key)."""
    protocols = [
        *(mnist_protocols() if MNIST in families else []),
        *(minilm_protocols() if MINILM in families else []),
    ]
    return {(p.family, p.key): p for p in protocols}


def write_bodies(protocols: Mapping[tuple[str, str], Protocol], directory: Path) -> dict[str, Path]:
    """Write each request body to a file for wrk; return the paths by ``family-protocol``."""
    paths = {}
    for protocol in protocols.values():
        name = f"{protocol.family}-{protocol.key}"
        path = directory / f"{name}.body"
        path.write_bytes(protocol.body)
        paths[name] = path
    return paths


def body_path(bodies: Mapping[str, Path], protocol: Protocol) -> Path:
    """The body file of ``protocol``."""
    return bodies[f"{protocol.family}-{protocol.key}"]


# --------------------------------------------------------------------------- the plan


def plan(families: Sequence[str]) -> list[Group]:
    """What a round measures, in order: each group's endpoints are measured back to back."""
    groups = []
    if MNIST in families:
        for concurrency in MNIST_CONCURRENCIES:
            groups.append(
                Group(
                    MNIST,
                    "v2-json",
                    concurrency,
                    ("mp-mnist", "mp-mnist-batched", "floor-ort", "floor-echo"),
                )
            )
            groups.append(Group(MNIST, "v2-binary", concurrency, ("mp-mnist", "mp-mnist-batched")))
            if concurrency in TF_CONCURRENCIES:
                groups.append(
                    Group(MNIST, "tf-json", concurrency, ("mp-mnist", "floor-ort", "floor-echo"))
                )
    if MINILM in families:
        for concurrency in MINILM_CONCURRENCIES:
            groups.append(Group(MINILM, "v2-json", concurrency, ("mp-minilm", "mp-minilm-batched")))
    return groups


def cell_count(groups: Sequence[Group]) -> int:
    """How many wrk runs one round makes."""
    return sum(len(group.endpoints) for group in groups)


# --------------------------------------------------------------------------- preparation


def check_tools() -> None:
    """Exit with an install hint if wrk or taskset is missing."""
    missing = []
    if shutil.which("wrk") is None:
        missing.append("wrk (install it with: apt-get install wrk)")
    if shutil.which("taskset") is None:
        missing.append("taskset (install it with: apt-get install util-linux)")
    if missing:
        raise SystemExit("benchmarks/run.py needs " + " and ".join(missing))
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("benchmarks/run.py needs 2 CPUs: servers on CPU 0, wrk on CPU 1")


def run_builder(argv: Sequence[str]) -> None:
    """Run a model build script, failing with its output if it fails."""
    completed = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    if completed.returncode != 0:
        raise BenchError(
            f"{shlex.join(argv)} failed ({completed.returncode}):\n"
            + (completed.stdout + completed.stderr).strip()
        )


def write_config(path: Path, comment: str, settings: Mapping[str, Any] | None) -> None:
    """Write a model's ``config.yaml``: a comment, then ``settings`` (if any) as YAML."""
    text = "".join(f"# {line}\n" for line in comment.splitlines())
    if settings:
        text += yaml.safe_dump(dict(settings), sort_keys=False)
    path.write_text(text)


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (a copy if links are not possible)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def build_mnist(repo: Path, scratch: Path) -> None:
    """``mnist`` (no batching) and ``mnist_batched``: the same weights, version 1 of each."""
    examples = scratch / "examples"
    run_builder([sys.executable, str(BUILD_MODELS), str(examples)])
    for name in ("mnist", "mnist_batched"):
        link_or_copy(examples / MNIST_SOURCE, repo / name / "1" / "model.onnx")
    write_config(
        repo / "mnist" / "config.yaml",
        "The example mnist MLP (examples/build_models.py, version 2's weights); no batching.",
        None,
    )
    write_config(
        repo / "mnist_batched" / "config.yaml",
        "The same model as mnist, with dynamic batching.",
        {"dynamic_batching": MNIST_BATCHING},
    )


def build_minilm(repo: Path) -> None:
    """``minilm`` (build_minilm.py's config without batching) and ``minilm_batched`` (with)."""
    run_builder([sys.executable, str(BUILD_MINILM), str(repo), "--seq-len", str(MINILM_SEQ_LEN)])
    built = repo / "minilm" / "config.yaml"
    config = yaml.safe_load(built.read_text())
    if not isinstance(config, dict) or not isinstance(config.get("dynamic_batching"), dict):
        raise BenchError(f"{BUILD_MINILM} wrote a config.yaml without dynamic_batching")
    batching = {**config["dynamic_batching"], "max_batch_size": MINILM_MAX_BATCH}
    link_or_copy(repo / "minilm" / "1" / "model.onnx", repo / "minilm_batched" / "1" / "model.onnx")
    write_config(
        repo / "minilm_batched" / "config.yaml",
        f"{BUILD_MINILM}'s config.yaml (sequence length {MINILM_SEQ_LEN}), batching as built.",
        {**config, "dynamic_batching": batching},
    )
    unbatched = {key: value for key, value in config.items() if key != "dynamic_batching"}
    write_config(built, f"{BUILD_MINILM}'s config.yaml without dynamic_batching.", unbatched)


def build_repository(families: Sequence[str], work_dir: Path) -> Path:
    """Build the benchmark model repository under ``work_dir``; return its path."""
    repo = work_dir / "models"
    repo.mkdir()
    if MNIST in families:
        build_mnist(repo, work_dir)
    if MINILM in families:
        build_minilm(repo)
    return repo


def model_path(repo: Path, family: str) -> Path:
    """The ONNX file the raw engine and the floor server load for ``family``."""
    return repo / family / "1" / "model.onnx"


def make_servers(settings: Settings, repo: Path) -> list[ServerSpec]:
    """The servers the chosen families need."""
    modelport = Path(sys.executable).parent / "modelport"
    models = sorted(path.name for path in repo.iterdir() if path.is_dir())
    specs = [
        ServerSpec(
            "modelport",
            "modelport",
            (str(modelport), "serve", "--model-repository", str(repo), "--log-level", "warning"),
            "--http-port",
            ("/v2/health/ready", *(f"/v2/models/{model}/ready" for model in models)),
        )
    ]
    if MNIST in settings.families:
        floor = (sys.executable, str(settings.floor))
        mnist_onnx = str(model_path(repo, MNIST))
        specs += [
            ServerSpec(
                "floor-ort",
                "floor (ort)",
                (*floor, "--mode", "ort", "--model-path", mnist_onnx),
                "--port",
                ("/v2/health/ready",),
            ),
            ServerSpec(
                "floor-echo",
                "floor (echo)",
                (*floor, "--mode", "echo"),
                "--port",
                ("/v2/health/ready",),
            ),
        ]
    return specs


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------- servers


def server_argv(spec: ServerSpec, port: int) -> list[str]:
    """The full command for ``spec`` on ``port``, pinned to the server CPU."""
    return ["taskset", "-c", SERVER_CPU, *spec.argv, spec.port_flag, str(port)]


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file."""
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def wait_ready(server: RunningServer) -> None:
    """Poll the server's readiness paths until each answers 200, or fail with its log."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    pending = list(server.spec.ready_paths)
    while pending and time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(
                f"{server.spec.label} exited with {server.process.returncode} while starting:\n"
                + log_tail(server.log_path)
            )
        try:
            if httpx.get(server.base_url + pending[0], timeout=2.0).status_code == 200:
                pending.pop(0)
                continue
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    if pending:
        raise BenchError(
            f"{server.spec.label}: {pending[0]} not ready after {READY_TIMEOUT_S:.0f}s:\n"
            + log_tail(server.log_path)
        )


def stop_server(server: RunningServer) -> None:
    """SIGTERM the server, then SIGKILL it if it has not exited in time."""
    if server.process.poll() is not None:
        return
    server.process.terminate()
    try:
        server.process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@contextmanager
def running_server(spec: ServerSpec, log_dir: Path) -> Iterator[RunningServer]:
    """Start ``spec`` pinned to the server CPU, wait until ready, and always stop it."""
    port = free_port()
    log_path = log_dir / f"{spec.key}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            server_argv(spec, port),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches only the runner, which stops it
        )
    server = RunningServer(spec, port, process, log_path)
    try:
        started = time.monotonic()
        wait_ready(server)
        print(
            f"started {spec.label} on port {port} (pid {process.pid}), ready in "
            f"{time.monotonic() - started:.1f}s",
            file=sys.stderr,
        )
        yield server
    finally:
        stop_server(server)


def ensure_alive(server: RunningServer) -> None:
    """Fail if the server has exited during the benchmark."""
    if server.process.poll() is not None:
        raise BenchError(
            f"{server.spec.label} exited with {server.process.returncode}:\n"
            + log_tail(server.log_path)
        )


def request_headers(protocol: Protocol) -> dict[str, str]:
    """The HTTP headers ``protocol``'s request carries."""
    headers = {"Content-Type": protocol.content_type}
    if protocol.header_length is not None:
        headers["Inference-Header-Content-Length"] = str(protocol.header_length)
    return headers


def check_response(server: RunningServer, endpoint: Endpoint, protocol: Protocol) -> None:
    """Send one request and check the answer, so the benchmark measures real work."""
    url = server.base_url + protocol.path(endpoint.model)
    headers = request_headers(protocol)
    response = httpx.post(url, content=protocol.body, headers=headers, timeout=30.0)
    what = f"{endpoint.label} ({endpoint.model}) {protocol.label}"
    if response.status_code != 200:
        raise BenchError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")
    if endpoint.runs_model and not answer_is_expected(protocol, response):
        raise BenchError(f"{what}: unexpected answer: {response.content[:300]!r}")


def answer_is_expected(protocol: Protocol, response: httpx.Response) -> bool:
    """Whether ``response`` carries one output of ``protocol.answer_shape`` in its form."""
    shape = list(protocol.answer_shape)
    size = math.prod(shape)
    if protocol.key == "tf-json":
        predictions = np.asarray(response.json()["predictions"])
        return list(predictions.shape) == shape
    if protocol.key == "v2-json":
        output = response.json()["outputs"][0]
        return bool(output["shape"] == shape and len(output["data"]) == size)
    header_length = int(response.headers.get("Inference-Header-Content-Length", "-1"))
    return header_length > 0 and len(response.content) == header_length + 4 * size


# --------------------------------------------------------------------------- wrk

_TIME_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}
_PERCENTILE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def parse_wrk(output: str) -> WrkResult:
    """Requests/s, p50, p99 and error counts from ``wrk --latency`` output."""
    percentiles = {
        int(match[1]): float(match[2]) * _TIME_UNITS_US[match[3]]
        for match in _PERCENTILE.finditer(output)
    }
    rps = _RPS.search(output)
    if rps is None or 50 not in percentiles or 99 not in percentiles:
        raise BenchError(f"could not parse wrk output:\n{output}")
    non_2xx = _NON_2XX.search(output)
    socket_errors = _SOCKET_ERRORS.search(output)
    return WrkResult(
        requests_per_s=float(rps[1]),
        p50_us=percentiles[50],
        p99_us=percentiles[99],
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sum(int(n) for n in socket_errors.groups()) if socket_errors else 0,
    )


def run_wrk(
    url: str, protocol: Protocol, body: Path, concurrency: int, duration_s: int
) -> WrkResult:
    """Run wrk, pinned to the load CPU, posting ``body`` to ``url``."""
    argv = [
        "taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{concurrency}", f"-d{duration_s}s",
        "--timeout", WRK_TIMEOUT, "--latency", "-s", str(LUA_SCRIPT), url,
    ]  # fmt: skip
    env = dict(os.environ, BENCH_BODY=str(body), BENCH_CONTENT_TYPE=protocol.content_type)
    if protocol.header_length is not None:
        env["BENCH_HEADER_LENGTH"] = str(protocol.header_length)
    completed = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=duration_s + 60, check=False
    )
    if completed.returncode != 0:
        raise BenchError(f"wrk failed ({completed.returncode}):\n{completed.stderr}")
    return parse_wrk(completed.stdout)


def cpu_ticks(cpu: str) -> tuple[int, int]:
    """Busy and total clock ticks of one CPU so far, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        fields = line.split()
        if fields[0] == f"cpu{cpu}":
            user, nice, system, idle, iowait, irq, softirq, steal = map(int, fields[1:9])
            busy = user + nice + system + irq + softirq + steal
            return busy, busy + idle + iowait
    raise BenchError(f"CPU {cpu} not found in /proc/stat")


def process_ticks(pid: int) -> int:
    """User plus system clock ticks used by a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def measure_cell(
    server: RunningServer,
    endpoint: Endpoint,
    protocol: Protocol,
    body: Path,
    *,
    concurrency: int,
    duration_s: int,
) -> WrkResult:
    """Run wrk once, and note how much of CPU 0 went to anything but the measured server."""
    busy_before, total_before = cpu_ticks(SERVER_CPU)
    server_before = process_ticks(server.process.pid)
    url = server.base_url + protocol.path(endpoint.model)
    result = run_wrk(url, protocol, body, concurrency, duration_s)
    busy_after, total_after = cpu_ticks(SERVER_CPU)
    ensure_alive(server)
    server_ticks = process_ticks(server.process.pid) - server_before
    foreign = max(0, busy_after - busy_before - server_ticks) / max(1, total_after - total_before)
    wait_idle(server)
    return dataclasses.replace(result, foreign_cpu=foreign)


def wait_idle(server: RunningServer) -> None:
    """Wait until the server has finished the work wrk left in flight.

    wrk stops with up to one request per connection in flight; the server may still compute
    them after wrk has gone (half a second for MiniLM at concurrency 32), and that must not
    eat into the next cell. Idle: at most one clock tick of CPU time in ``IDLE_POLL_S``.
    """
    deadline = time.monotonic() + IDLE_TIMEOUT_S
    before = process_ticks(server.process.pid)
    while time.monotonic() < deadline:
        time.sleep(IDLE_POLL_S)
        now = process_ticks(server.process.pid)
        if now - before <= 1:
            return
        before = now


# --------------------------------------------------------------------------- raw engine


def engine_feeds(family: str, batch: int) -> dict[str, Array]:
    """The engine's input for ``batch`` rows: the request's row at batch 1."""
    if family == MNIST:
        if batch == 1:
            return {"images": mnist_input()}
        rng = np.random.default_rng(SEED)
        return {"images": rng.random((batch, MNIST_FEATURES), dtype=np.float32)}
    ids = np.repeat(minilm_token_ids(), batch, axis=0)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def engine_probe(family: str, path: str, calls: int, batch_seconds: float) -> dict[str, object]:
    """Measure onnxruntime in this process (run pinned, in a subprocess, by the runner)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feeds = engine_feeds(family, 1)
    for _ in range(min(1000, max(3, calls // 20))):
        session.run(None, feeds)
    timings = np.empty(calls, dtype=np.float64)
    for i in range(calls):
        start = time.perf_counter_ns()
        session.run(None, feeds)
        timings[i] = time.perf_counter_ns() - start
    timings /= 1e3
    return {
        "p50_us": float(np.percentile(timings, 50)),
        "p99_us": float(np.percentile(timings, 99)),
        "mean_us": float(timings.mean()),
        "rows_per_s": {
            str(batch): batch_rows_per_s(session, engine_feeds(family, batch), batch_seconds)
            for batch in ENGINE_BATCHES[family]
        },
    }


def batch_rows_per_s(session: Any, feeds: dict[str, Array], seconds: float) -> float:
    """Rows per second of ``session.run`` on ``feeds``: at least 3 calls and ``seconds``."""
    run = session.run
    batch = len(next(iter(feeds.values())))
    warm_until = time.perf_counter() + seconds / 5
    run(None, feeds)
    while time.perf_counter() < warm_until:
        run(None, feeds)
    calls = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or calls < 3:
        run(None, feeds)
        calls += 1
    return batch * calls / elapsed


def engine_budget(family: str, settings: Settings) -> tuple[int, float]:
    """Timed batch-1 calls and seconds per batch size for ``family``'s engine probe."""
    if family == MNIST:
        return settings.calls, 0.2 if settings.quick else 0.5
    # MiniLM takes ~15 ms a row on this CPU: a hundred batch-1 calls are plenty for a p50.
    return (20, 0.3) if settings.quick else (100, 1.0)


def measure_engine(family: str, repo: Path, settings: Settings) -> EngineResult:
    """Run the engine probe for ``family`` pinned to the server CPU and read its figures."""
    calls, batch_seconds = engine_budget(family, settings)
    argv = [
        "taskset", "-c", SERVER_CPU, sys.executable, str(Path(__file__).resolve()),
        "--engine-probe", str(model_path(repo, family)), "--engine-family", family,
        "--calls", str(calls), "--batch-seconds", str(batch_seconds),
    ]  # fmt: skip
    completed = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    if completed.returncode != 0:
        raise BenchError(f"engine probe for {family} failed:\n{completed.stderr}")
    data = json.loads(completed.stdout)
    return EngineResult(
        p50_us=data["p50_us"],
        p99_us=data["p99_us"],
        mean_us=data["mean_us"],
        rows_per_s={int(b): v for b, v in data["rows_per_s"].items()},
    )


def median_engine(results: Sequence[EngineResult]) -> EngineResult:
    """The per-figure median of several engine measurements."""
    batches = results[0].rows_per_s
    return EngineResult(
        p50_us=statistics.median(r.p50_us for r in results),
        p99_us=statistics.median(r.p99_us for r in results),
        mean_us=statistics.median(r.mean_us for r in results),
        rows_per_s={b: statistics.median(r.rows_per_s[b] for r in results) for b in batches},
    )


# --------------------------------------------------------------------------- the run


def warm_up(
    servers: Mapping[str, RunningServer],
    groups: Sequence[Group],
    protocols: Mapping[tuple[str, str], Protocol],
    bodies: Mapping[str, Path],
    seconds: int,
) -> None:
    """Check every endpoint's answers, then load each protocol briefly before measuring."""
    highest: dict[tuple[str, str], int] = {}
    for group in groups:
        for key in group.endpoints:
            pair = (key, group.protocol)
            highest[pair] = max(highest.get(pair, 0), group.concurrency)
    for (key, protocol_key), concurrency in highest.items():
        endpoint = ENDPOINT_BY_KEY[key]
        server = servers[endpoint.server]
        protocol = protocols[(endpoint.family, protocol_key)]
        check_response(server, endpoint, protocol)
        if seconds > 0:
            url = server.base_url + protocol.path(endpoint.model)
            run_wrk(url, protocol, body_path(bodies, protocol), concurrency, seconds)
            wait_idle(server)


def run_round(
    index: int,
    groups: Sequence[Group],
    *,
    servers: Mapping[str, RunningServer],
    protocols: Mapping[tuple[str, str], Protocol],
    bodies: Mapping[str, Path],
    settings: Settings,
    results: dict[CellKey, list[WrkResult]],
) -> None:
    """Measure every cell once; within a group the endpoints' order rotates between rounds."""
    for group in groups:
        shift = index % len(group.endpoints)
        order = [*group.endpoints[shift:], *group.endpoints[:shift]]
        protocol = protocols[(group.family, group.protocol)]
        for key in order:
            endpoint = ENDPOINT_BY_KEY[key]
            server = servers[endpoint.server]
            result = measure_cell(
                server,
                endpoint,
                protocol,
                body_path(bodies, protocol),
                concurrency=group.concurrency,
                duration_s=settings.cell_seconds(group.family),
            )
            results.setdefault((key, protocol.key, group.concurrency), []).append(result)
            print(
                f"  {endpoint.model:<14} {endpoint.label:<20} {protocol.label:<9}"
                f" c={group.concurrency:<3} {result.requests_per_s:>9.1f} req/s"
                f"  p50 {format_us(result.p50_us):>9}  p99 {format_us(result.p99_us):>9}"
                f"  (others on CPU {SERVER_CPU}: {result.foreign_cpu:.0%})",
                file=sys.stderr,
            )


def benchmark(settings: Settings, work_dir: Path) -> Measurements:
    """Build the models, start the servers, warm them up, and measure every cell and engine."""
    started = time.monotonic()
    repo = build_repository(settings.families, work_dir)
    print(f"built the benchmark models in {time.monotonic() - started:.1f}s", file=sys.stderr)
    protocols = make_protocols(settings.families)
    bodies = write_bodies(protocols, work_dir)
    groups = plan(settings.families)
    results: dict[CellKey, list[WrkResult]] = {}
    engines: dict[str, list[EngineResult]] = {family: [] for family in settings.families}
    with ExitStack() as stack:
        servers = {
            spec.key: stack.enter_context(running_server(spec, work_dir))
            for spec in make_servers(settings, repo)
        }
        print("checking answers and warming up", file=sys.stderr)
        warm_up(servers, groups, protocols, bodies, settings.warmup_s)
        for index in range(settings.rounds):
            print(f"round {index + 1}/{settings.rounds}", file=sys.stderr)
            for family in settings.families:
                engines[family].append(measure_engine(family, repo, settings))
            run_round(
                index,
                groups,
                servers=servers,
                protocols=protocols,
                bodies=bodies,
                settings=settings,
                results=results,
            )
    return Measurements(results, engines)


# --------------------------------------------------------------------------- aggregation


def floor_protocol(protocol_key: str) -> str:
    """The floor echo protocol a mnist protocol's ratio compares with (same family)."""
    return "tf-json" if protocol_key == "tf-json" else "v2-json"


def paired_median(
    values: Sequence[float], references: Sequence[float], combine: Callable[[float, float], float]
) -> float | None:
    """The median over rounds of ``combine(value, reference)``, rounds paired in order."""
    if not values or len(values) != len(references):
        return None
    return statistics.median(combine(v, r) for v, r in zip(values, references, strict=True))


def ratio(value: float, reference: float) -> float:
    """``value / reference``."""
    return value / reference


def difference(value: float, reference: float) -> float:
    """``value - reference``."""
    return value - reference


def reference_rps(measurements: Measurements, key: CellKey) -> list[float]:
    """Per round, what a cell's requests/s are compared with.

    mnist cells: floor echo's requests/s at the same concurrency and protocol family. MiniLM
    cells: the raw engine's best rows/s.
    """
    endpoint = ENDPOINT_BY_KEY[key[0]]
    if endpoint.family == MINILM:
        return [engine.best_rows_per_s for engine in measurements.engines[MINILM]]
    floor_runs = measurements.results.get(("floor-echo", floor_protocol(key[1]), key[2]), [])
    return [r.requests_per_s for r in floor_runs]


def aggregate(measurements: Measurements) -> dict[CellKey, Cell]:
    """The median over rounds of every cell."""
    cells = {}
    for key, runs in measurements.results.items():
        rps = [r.requests_per_s for r in runs]
        cells[key] = Cell(
            requests_per_s=statistics.median(rps),
            p50_us=statistics.median(r.p50_us for r in runs),
            p99_us=statistics.median(r.p99_us for r in runs),
            rps_min=min(rps),
            rps_max=max(rps),
            errors=sum(r.non_2xx + r.socket_errors for r in runs),
            ratio=paired_median(rps, reference_rps(measurements, key), ratio),
        )
    return cells


# --------------------------------------------------------------------------- formatting


def format_us(value: float) -> str:
    """A duration in microseconds, as us below 1 ms and ms above."""
    if abs(value) < 100:
        return f"{value:.1f} us"
    if abs(value) < 1000:
        return f"{value:.0f} us"
    return f"{value / 1000:.2f} ms"


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, with an s unless ``count`` is 1."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def format_rps(value: float) -> str:
    """Requests or rows per second: whole numbers, one decimal below 100."""
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


TableRow = list[str]


def table_headers(family: str) -> TableRow:
    """A family's table columns."""
    reference = "ratio to floor echo" if family == MNIST else "ratio to raw best rows/s"
    return [
        "server",
        "protocol",
        "concurrency",
        "requests/s",
        "p50",
        "p99",
        "serving overhead",
        reference,
        "requests/s range over rounds",
    ]


def engine_row(family: str, engine: EngineResult) -> TableRow:
    """The raw engine's batch-1 line of a family's table."""
    rps = 1e6 / engine.mean_us
    reference = "-" if family == MNIST else f"{rps / engine.best_rows_per_s:.2f}x"
    return [
        "onnxruntime (in-process)",
        "session.run, batch 1",
        "1",
        format_rps(rps),
        format_us(engine.p50_us),
        format_us(engine.p99_us),
        "0 (reference)",
        reference,
        "-",
    ]


def cell_row(
    endpoint: Endpoint, protocol: Protocol, concurrency: int, cell: Cell, engine: EngineResult
) -> TableRow:
    """One endpoint's line for one protocol and concurrency."""
    overhead = format_us(cell.p50_us - engine.p50_us) if endpoint.runs_model else "- (no model)"
    errors = f" ({cell.errors} errors!)" if cell.errors else ""
    return [
        endpoint.label,
        protocol.label,
        str(concurrency),
        f"{format_rps(cell.requests_per_s)}{errors}",
        format_us(cell.p50_us),
        format_us(cell.p99_us),
        overhead,
        "n/a" if cell.ratio is None else f"{cell.ratio:.2f}x",
        f"{format_rps(cell.rps_min)}-{format_rps(cell.rps_max)}",
    ]


def family_rows(
    family: str,
    groups: Sequence[Group],
    protocols: Mapping[tuple[str, str], Protocol],
    cells: Mapping[CellKey, Cell],
    engine: EngineResult,
) -> list[TableRow]:
    """A family's table: the engine first, then each group's endpoints in plan order."""
    rows = [engine_row(family, engine)]
    for group in groups:
        if group.family != family:
            continue
        protocol = protocols[(family, group.protocol)]
        for key in group.endpoints:
            cell = cells[(key, group.protocol, group.concurrency)]
            rows.append(cell_row(ENDPOINT_BY_KEY[key], protocol, group.concurrency, cell, engine))
    return rows


def text_table(headers: TableRow, rows: Sequence[TableRow]) -> str:
    """A table as aligned plain text, for the terminal."""
    lines = [headers, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    rendered = ["  ".join(f.ljust(w) for f, w in zip(line, widths, strict=True)) for line in lines]
    rendered.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in rendered)


def markdown_table(headers: TableRow, rows: Sequence[TableRow], align: Sequence[str]) -> str:
    """A table as GitHub markdown with the given column alignments."""
    lines = [headers, list(align), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def family_markdown(headers: TableRow, rows: Sequence[TableRow]) -> str:
    """A family's results table as markdown; numeric columns right-aligned."""
    return markdown_table(headers, rows, ["---", "---", *["---:"] * (len(headers) - 2)])


def engine_batch_table(engine: EngineResult) -> str:
    """The raw engine's rows/s by batch size, as markdown, best marked."""
    lines = ["| batch | rows/s | time per call |", "| ---: | ---: | ---: |"]
    for batch, rows_per_s in engine.rows_per_s.items():
        mark = " (best)" if batch == engine.best_batch else ""
        per_call = format_us(1e6 * batch / rows_per_s)
        lines.append(f"| {batch}{mark} | {format_rps(rows_per_s)} | {per_call} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- targets


def not_measured(name: str, goal: str, family: str) -> TargetResult:
    """A target this run did not measure, because ``family`` was left out."""
    return TargetResult(name, f"not measured ({family} not in --models)", goal, None)


def runs_of(measurements: Measurements, key: CellKey) -> list[WrkResult]:
    """A cell's runs, or fail if the plan never measured it."""
    runs = measurements.results.get(key)
    if not runs:
        raise BenchError(f"no measurements for {key}")
    return runs


def target_mnist_throughput(cells: Mapping[CellKey, Cell]) -> TargetResult:
    """(a) mnist batch-1 V2 JSON at concurrency 32 with batching: requests/s and floor ratio."""
    name = "(a) mnist V2 JSON, batching, concurrency 32: requests/s and ratio to floor echo"
    goal = f">= {TARGET_MNIST_RPS:.0f} req/s and >= {TARGET_MNIST_RATIO:.2f}x"
    cell = cells[("mp-mnist-batched", "v2-json", 32)]
    if cell.ratio is None:
        return TargetResult(name, "no floor echo figures to compare with", goal, None)
    measured = f"{format_rps(cell.requests_per_s)} req/s, {cell.ratio:.2f}x floor echo"
    met = cell.requests_per_s >= TARGET_MNIST_RPS and cell.ratio >= TARGET_MNIST_RATIO
    return TargetResult(name, measured, goal, met)


def target_mnist_latency(measurements: Measurements) -> TargetResult:
    """(b) mnist at concurrency 1 with batching: p50 minus floor echo's p50 (V2 JSON)."""
    name = "(b) mnist V2 JSON, batching, concurrency 1: p50 minus floor echo's p50"
    goal = f"<= {TARGET_LATENCY_GAP_US:.0f} us"
    runs = runs_of(measurements, ("mp-mnist-batched", "v2-json", 1))
    floor = runs_of(measurements, ("floor-echo", "v2-json", 1))
    gap = paired_median([r.p50_us for r in runs], [r.p50_us for r in floor], difference)
    if gap is None:
        return TargetResult(name, "rounds do not pair up", goal, None)
    modelport_p50 = statistics.median(r.p50_us for r in runs)
    floor_p50 = statistics.median(r.p50_us for r in floor)
    measured = (
        f"+{format_us(gap)} (p50 {format_us(modelport_p50)} vs floor echo {format_us(floor_p50)})"
    )
    return TargetResult(name, measured, goal, gap <= TARGET_LATENCY_GAP_US)


def target_minilm(cells: Mapping[CellKey, Cell], engine: EngineResult) -> TargetResult:
    """(c) MiniLM at concurrency 16: modelport's best as a share of the raw engine's best."""
    name = "(c) MiniLM V2 JSON, concurrency 16: modelport's best requests/s vs raw best rows/s"
    goal = f">= {TARGET_MINILM_FRACTION:.0%}"
    candidates: list[tuple[float, str, Cell]] = []
    for key in ("mp-minilm", "mp-minilm-batched"):
        cell = cells[(key, "v2-json", 16)]
        if cell.ratio is not None:
            candidates.append((cell.ratio, ENDPOINT_BY_KEY[key].label, cell))
    if not candidates:
        return TargetResult(name, "no engine figures to compare with", goal, None)
    share, label, cell = max(candidates, key=lambda candidate: candidate[0])
    measured = (
        f"{share:.0%}: {label} {format_rps(cell.requests_per_s)} req/s vs "
        f"{format_rps(engine.best_rows_per_s)} rows/s (batch {engine.best_batch})"
    )
    return TargetResult(name, measured, goal, share >= TARGET_MINILM_FRACTION)


def target_binary(measurements: Measurements, endpoint: Endpoint, concurrency: int) -> TargetResult:
    """(d) mnist V2 binary vs V2 JSON for one endpoint and concurrency: binary should win."""
    name = f"(d) mnist V2 binary vs V2 JSON, {endpoint.label}, concurrency {concurrency}"
    binary = runs_of(measurements, (endpoint.key, "v2-binary", concurrency))
    v2_json = runs_of(measurements, (endpoint.key, "v2-json", concurrency))
    binary_rps = [r.requests_per_s for r in binary]
    json_rps = [r.requests_per_s for r in v2_json]
    speedup = paired_median(binary_rps, json_rps, ratio)
    goal = BINARY_GOAL
    if speedup is None:
        return TargetResult(name, "rounds do not pair up", goal, None)
    measured = (
        f"{speedup:.2f}x: {format_rps(statistics.median(binary_rps))} vs "
        f"{format_rps(statistics.median(json_rps))} req/s, p50 "
        f"{format_us(statistics.median(r.p50_us for r in binary))} vs "
        f"{format_us(statistics.median(r.p50_us for r in v2_json))}"
    )
    return TargetResult(name, measured, goal, speedup > 1.0)


def targets(
    measurements: Measurements, cells: Mapping[CellKey, Cell], engines: Mapping[str, EngineResult]
) -> list[TargetResult]:
    """Every target, checked against this run (or marked not measured)."""
    results = []
    if MNIST in engines:
        results += [target_mnist_throughput(cells), target_mnist_latency(measurements)]
    else:
        results += [
            not_measured(
                "(a) mnist V2 JSON, batching, concurrency 32",
                f">= {TARGET_MNIST_RPS:.0f} req/s and >= {TARGET_MNIST_RATIO:.2f}x",
                MNIST,
            ),
            not_measured(
                "(b) mnist V2 JSON, batching, concurrency 1",
                f"<= {TARGET_LATENCY_GAP_US:.0f} us",
                MNIST,
            ),
        ]
    if MINILM in engines:
        results.append(target_minilm(cells, engines[MINILM]))
    else:
        results.append(
            not_measured(
                "(c) MiniLM V2 JSON, concurrency 16", f">= {TARGET_MINILM_FRACTION:.0%}", MINILM
            )
        )
    if MNIST in engines:
        results += [
            target_binary(measurements, ENDPOINT_BY_KEY[key], concurrency)
            for key in ("mp-mnist", "mp-mnist-batched")
            for concurrency in TF_CONCURRENCIES
        ]
    else:
        results.append(not_measured("(d) mnist V2 binary vs V2 JSON", BINARY_GOAL, MNIST))
    return results


def verdict(target: TargetResult) -> str:
    """A target's result in words."""
    if target.met is None:
        return "not measured"
    return "met" if target.met else "NOT MET"


def target_rows(results: Sequence[TargetResult]) -> list[TableRow]:
    """The targets as table rows."""
    return [[t.name, t.measured, t.goal, verdict(t)] for t in results]


TARGET_HEADERS = ["target", "measured", "goal", "result"]


def target_summary(results: Sequence[TargetResult]) -> str:
    """How many of the measured targets were met."""
    measured = [t for t in results if t.met is not None]
    met = sum(1 for t in measured if t.met)
    return f"{met} of {len(measured)} measured targets met."


# --------------------------------------------------------------------------- the report


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def git_revision() -> str:
    """The checked-out commit, marked dirty if the working tree has changes."""

    def git(*args: str) -> str:
        completed = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
        return completed.stdout.strip()

    revision = git("rev-parse", "--short", "HEAD") or "unknown"
    return revision + (" (with uncommitted changes)" if git("status", "--porcelain") else "")


def package_version(name: str) -> str:
    """An installed package's version, or "not installed"."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def wrk_version() -> str:
    """wrk's version line."""
    completed = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    first = (completed.stdout or completed.stderr).splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "unknown"


def machine_lines(load: tuple[LoadAverage, LoadAverage]) -> list[str]:
    """The machine and software the numbers were measured on, as markdown bullets."""
    before, after = (", ".join(f"{v:.2f}" for v in sample) for sample in load)
    return [
        f"- CPUs: {os.cpu_count()} ({cpu_model()}); servers and the engine pinned to CPU "
        f"{SERVER_CPU}, wrk to CPU {LOAD_CPU}",
        f"- Load average (1, 5, 15 min) before the run: {before}; after: {after}. Other "
        "processes on this machine share the two CPUs, so expect noise",
        f"- {platform.platform()}",
        f"- Python {platform.python_version()}, onnxruntime {package_version('onnxruntime')}, "
        f"numpy {package_version('numpy')}, uvicorn {package_version('uvicorn')}",
        f"- modelport {package_version('modelport')}, commit {git_revision()}",
        f"- wrk: {wrk_version()}",
    ]


def noise_line(measurements: Measurements) -> str:
    """How much of the server CPU other processes took, and how steady the CPU's speed was."""
    shares = [r.foreign_cpu for runs in measurements.results.values() for r in runs]
    text = (
        f"While cells were measured, CPU {SERVER_CPU} spent a median of "
        f"{statistics.median(shares):.0%} (at most {max(shares):.0%}) of its time outside the "
        "server under test: other processes, interrupts and kernel work not charged to it."
    )
    speeds = []
    for family, runs in measurements.engines.items():
        p50s = [engine.p50_us for engine in runs]
        speeds.append(f"{FAMILY_NAMES[family]} {format_us(min(p50s))} to {format_us(max(p50s))}")
    return (
        f"{text} The raw engine's batch-1 p50, measured at the start of each round, ranged "
        f"{'; '.join(speeds)}: a gauge of the CPU's speed over the run, which a virtual "
        "machine's neighbours can change without showing up in the figure above."
    )


FAMILY_INTROS = {
    MNIST: """\
One mnist image (784 random float32, fixed seed) in, ten class scores out. `modelport` serves
the model without dynamic batching (`mnist`), `modelport + batching` the same model with
`dynamic_batching: {max_batch_size: 64, max_queue_delay_us: 2000}` (`mnist_batched`). *Ratio
to floor echo* compares requests/s with the floor's echo endpoint at the same concurrency (V2
rows with echo V2 JSON, TF rows with echo TF JSON).""",
    MINILM: f"""\
all-MiniLM-L6-v2 built by `examples/build_minilm.py`: one request of {MINILM_SEQ_LEN} token ids
(random, fixed seed, in [{MINILM_TOKEN_LOW}, {MINILM_TOKEN_HIGH})) and an all-ones attention
mask, asking for the `{MINILM_OUTPUT}` output ({MINILM_HIDDEN} floats). `modelport` serves
it without dynamic batching (`minilm`), `modelport + batching` with `config.yaml` as built
(padding on, `max_batch_size: {MINILM_MAX_BATCH}`; `minilm_batched`). *Ratio to raw best rows/s*
compares requests/s with the raw engine's rows/s at its best batch size (table below): the most
this CPU can compute, with or without batching.""",
}


HOW_TO_READ = """\
Every row sends the same batch-1 request over keep-alive connections, from `wrk` on CPU 1 to a
server confined to CPU 0. *requests/s*, *p50* and *p99* are each the median of the rounds; the
last column shows how far requests/s spread between rounds, the noise to allow for on this
shared machine. *Serving overhead* is the row's p50 minus the raw engine's batch-1 p50 for the
same model: time spent on HTTP, parsing, validation, scheduling and encoding rather than in the
model (at higher concurrency it is mostly queueing). Ratios are medians of per-round ratios
(the two figures of a pair are measured minutes apart at most, within one round), so they need
not equal the quotient of the two medians.

The floor's echo endpoint parses the JSON body and answers a fixed response without running the
model: roughly the most a Python JSON endpoint does on this CPU, so 1.00x would mean the model
and everything else cost nothing. V2 binary rows are compared with echo V2 JSON too; binary
skips parsing 16 KB of JSON, so it can pass 1.00x. *floor (ort)* runs onnxruntime inline on
every request: the bar for a naive server doing the same work. The floor has no binary tensor
support and does not serve MiniLM. The raw engine rows are `session.run` in a loop in one
process (1/mean call time as requests/s), one intra-op thread, with no HTTP at all; modelport
also runs one intra-op thread when pinned to one CPU.

With one CPU, batching can only help as far as the engine's rows/s grow with the batch size
(the raw engine tables): a lot for mnist, little or nothing for MiniLM. p99 is the figure most
disturbed by other processes taking CPU 0 (see the noise line); compare p99s only within one
run.
"""


def cell_duration_text(settings: Settings) -> str:
    """How long cells ran, in words."""
    text = f"{settings.duration_s} s per cell"
    if MINILM in settings.families:
        text += f" ({settings.cell_seconds(MINILM)} s for MiniLM)"
    return text


def render_report(
    settings: Settings,
    *,
    command: str,
    started: dt.datetime,
    elapsed_s: float,
    sections: Sequence[tuple[str, str, EngineResult]],
    target_table: str,
    summary: str,
    load: tuple[LoadAverage, LoadAverage],
    noise: str,
) -> str:
    """The whole of docs/benchmarks.md; ``sections`` hold (family, markdown table, engine)."""
    parts = [
        "<!-- Generated by benchmarks/run.py; do not edit by hand. Re-run the command below "
        "to regenerate it. -->",
        "",
        "# Benchmarks",
        "",
        "modelport, with and without dynamic batching, against the raw engine (onnxruntime",
        "in-process) and the reference floor server (`floor_server.py`: the cheapest Python JSON",
        "endpoint, and a naive onnxruntime server), on batch-1 requests to a small MLP (mnist) and",
        "a transformer (all-MiniLM-L6-v2). See [benchmarks/README.md](../benchmarks/README.md) "
        "for the method.",
        "",
        "Reproduce (from the repository root; needs `wrk` and `taskset`):",
        "",
        "```",
        command,
        "```",
        "",
        f"Measured {started:%Y-%m-%d %H:%M %Z}, {plural(settings.rounds, 'round')}, "
        f"{cell_duration_text(settings)}, run time {elapsed_s / 60:.1f} min.",
        "",
        "## Machine",
        "",
        *machine_lines(load),
        "",
    ]
    for family, table, engine in sections:
        parts += [
            f"## {FAMILY_TITLES[family]}",
            "",
            FAMILY_INTROS[family],
            "",
            table,
            "",
            f"Raw engine throughput by batch size ({FAMILY_NAMES[family]}; onnxruntime, one "
            f"intra-op thread, CPU {SERVER_CPU}):",
            "",
            engine_batch_table(engine),
            "",
        ]
    parts += [
        noise,
        "",
        "## Targets",
        "",
        "Computed from this run's measurements. Ratios and differences between two cells are "
        "medians of per-round pairs, so they need not match the quotient or difference of the "
        "medians shown.",
        "",
        target_table,
        "",
        summary,
        "",
        "## How to read it",
        "",
        HOW_TO_READ.rstrip(),
        "",
    ]
    return "\n".join(parts)


# --------------------------------------------------------------------------- entry point


def parse_models(text: str) -> tuple[str, ...]:
    """``--models``: a comma-separated subset of mnist and minilm, in canonical order."""
    wanted = {name.strip().lower() for name in text.split(",") if name.strip()}
    unknown = wanted - set(FAMILIES)
    if unknown or not wanted:
        raise argparse.ArgumentTypeError(
            f"choose from {', '.join(FAMILIES)} (comma-separated), not {text!r}"
        )
    return tuple(family for family in FAMILIES if family in wanted)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="Benchmark modelport against raw onnxruntime and the floor server."
    )
    parser.add_argument(
        "--duration",
        type=int,
        default=None,
        help=f"seconds per cell (default {DEFAULT_DURATION_S}; {QUICK_DURATION_S} with --quick)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help=f"rounds, median taken (default {DEFAULT_ROUNDS}; {QUICK_ROUNDS} with --quick)",
    )
    parser.add_argument(
        "--models",
        type=parse_models,
        default=FAMILIES,
        help="models to benchmark, comma-separated (default mnist,minilm)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a 1-2 minute smoke run: 1 round of 1 s cells, a shorter engine probe; writes no "
        "report unless --output is given",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"markdown report (default {DEFAULT_OUTPUT}; none with --quick)",
    )
    parser.add_argument(
        "--warmup", type=int, default=DEFAULT_WARMUP_S, help="warm-up seconds per endpoint"
    )
    parser.add_argument(
        "--calls",
        type=int,
        default=None,
        help=f"timed mnist session.run calls (default {DEFAULT_CALLS}; {QUICK_CALLS} with --quick)",
    )
    parser.add_argument(
        "--floor-server",
        type=Path,
        default=DEFAULT_FLOOR,
        help=f"floor_server.py (default {DEFAULT_FLOOR}, or $MODELPORT_FLOOR_SERVER)",
    )
    parser.add_argument("--engine-probe", metavar="MODEL", help=argparse.SUPPRESS)
    parser.add_argument("--engine-family", choices=FAMILIES, help=argparse.SUPPRESS)
    parser.add_argument("--batch-seconds", type=float, default=0.5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = QUICK_DURATION_S if args.quick else DEFAULT_DURATION_S
    if args.rounds is None:
        args.rounds = QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS
    if args.calls is None:
        args.calls = QUICK_CALLS if args.quick else DEFAULT_CALLS
    if args.duration < 1 or args.rounds < 1 or args.warmup < 0 or args.calls < 10:
        parser.error("--duration and --rounds must be >= 1, --warmup >= 0, --calls >= 10")
    return args


def display_path(path: Path) -> str:
    """``path`` relative to the repository root when it is inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def reproduce_command(settings: Settings) -> str:
    """The command line that reproduces this run."""
    parts = [".venv/bin/python", "benchmarks/run.py"]
    if settings.quick:
        parts.append("--quick")
    default_duration = QUICK_DURATION_S if settings.quick else DEFAULT_DURATION_S
    default_rounds = QUICK_ROUNDS if settings.quick else DEFAULT_ROUNDS
    default_calls = QUICK_CALLS if settings.quick else DEFAULT_CALLS
    if not settings.quick or settings.duration_s != default_duration:
        parts += ["--duration", str(settings.duration_s)]
    if not settings.quick or settings.rounds != default_rounds:
        parts += ["--rounds", str(settings.rounds)]
    if settings.families != FAMILIES:
        parts += ["--models", ",".join(settings.families)]
    if settings.output is not None:
        parts += ["--output", display_path(settings.output)]
    if settings.warmup_s != DEFAULT_WARMUP_S:
        parts += ["--warmup", str(settings.warmup_s)]
    if settings.calls != default_calls:
        parts += ["--calls", str(settings.calls)]
    if settings.floor != DEFAULT_FLOOR:
        parts += ["--floor-server", str(settings.floor)]
    return shlex.join(parts)


def raise_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so the servers are stopped by the finally blocks."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def estimate_minutes(settings: Settings) -> float:
    """A rough run time: the cells, the warm-ups and the engine probes."""
    groups = plan(settings.families)
    cells = settings.rounds * sum(
        len(g.endpoints) * (settings.cell_seconds(g.family) + 0.25) for g in groups
    )
    warmups = len({(key, g.protocol) for g in groups for key in g.endpoints})
    engine_s = {MNIST: 4.0, MINILM: 8.0}
    engines = settings.rounds * sum(engine_s[family] for family in settings.families)
    return (cells + warmups * (settings.warmup_s + 0.3) + engines + 15) / 60


def run(settings: Settings) -> None:
    """Benchmark, print the tables and targets, and write the report."""
    check_tools()
    if MNIST in settings.families and not settings.floor.is_file():
        raise SystemExit(
            f"floor server not found at {settings.floor}; "
            "pass --floor-server PATH or set MODELPORT_FLOOR_SERVER"
        )
    if not (Path(sys.executable).parent / "modelport").is_file():
        raise SystemExit("modelport is not installed next to this Python; run `make test` first")
    groups = plan(settings.families)
    print(
        f"{cell_count(groups)} cells x {plural(settings.rounds, 'round')}, "
        f"{cell_duration_text(settings)}: "
        f"about {estimate_minutes(settings):.0f} min",
        file=sys.stderr,
    )
    started = dt.datetime.now().astimezone()
    load_before = os.getloadavg()
    begin = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="modelport-bench-") as tmp:
        measurements = benchmark(settings, Path(tmp))
    elapsed_s = time.monotonic() - begin
    protocols = make_protocols(settings.families)
    cells = aggregate(measurements)
    engines = {family: median_engine(runs) for family, runs in measurements.engines.items()}
    sections = []
    for family in settings.families:
        headers = table_headers(family)
        rows = family_rows(family, groups, protocols, cells, engines[family])
        print(f"\n{FAMILY_TITLES[family]}\n\n{text_table(headers, rows)}")
        sections.append((family, family_markdown(headers, rows), engines[family]))
    noise = noise_line(measurements)
    print(f"\n{noise}")
    checked = targets(measurements, cells, engines)
    summary = target_summary(checked)
    print(f"\nTargets\n\n{text_table(TARGET_HEADERS, target_rows(checked))}\n\n{summary}")
    command = reproduce_command(settings)
    message = f"\nfinished in {elapsed_s:.0f}s ({elapsed_s / 60:.1f} min)"
    if settings.output is not None:
        report = render_report(
            settings,
            command=command,
            started=started,
            elapsed_s=elapsed_s,
            sections=sections,
            target_table=markdown_table(
                TARGET_HEADERS, target_rows(checked), ["---"] * len(TARGET_HEADERS)
            ),
            summary=summary,
            load=(load_before, os.getloadavg()),
            noise=noise,
        )
        settings.output.parent.mkdir(parents=True, exist_ok=True)
        settings.output.write_text(report)
        message += f"; wrote {display_path(settings.output)}"
    print(f"{message}; reproduce with: {command}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; also serves the hidden ``--engine-probe`` mode used for the engine rows."""
    args = parse_args(argv)
    if args.output is not None:
        output: Path | None = args.output.resolve()
    else:
        output = None if args.quick else ROOT / DEFAULT_OUTPUT
    floor = args.floor_server.resolve()
    os.chdir(ROOT)  # the build scripts and wrk's script are addressed relative to the root
    if args.engine_probe:
        family = args.engine_family or MNIST
        probe = engine_probe(family, args.engine_probe, args.calls, args.batch_seconds)
        print(json.dumps(probe))
        return 0
    raise_on_sigterm()
    settings = Settings(
        duration_s=args.duration,
        rounds=args.rounds,
        warmup_s=args.warmup,
        calls=args.calls,
        families=args.models,
        floor=floor,
        output=output,
        quick=args.quick,
    )
    try:
        run(settings)
    except BenchError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
