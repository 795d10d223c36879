"""Benchmark modelport against the raw engine and the reference floor server.

    .venv/bin/python benchmarks/run.py [--duration 5] [--rounds 3] [--output docs/benchmarks.md]

One run on this machine measures, for a batch-1 request to the example ``mnist`` model:

- the raw engine: onnxruntime in-process (one intra-op thread, pinned to CPU 0), the p50/p99 of
  ``session.run`` and its best batch size by rows/s;
- modelport, pinned to CPU 0, over KServe V2 JSON, V2 binary and TF Serving JSON;
- the reference floor server (``floor_server.py``) pinned to CPU 0, in ``echo`` mode (the
  cheapest Python JSON endpoint) and ``ort`` mode (a naive server running onnxruntime per
  request), over V2 JSON and TF Serving JSON.

Load comes from ``wrk`` pinned to CPU 1 at concurrency 1 and 32. Servers run side by side and
are measured round-robin, ``--rounds`` times; each cell reports the median of its rounds. The
table is printed and written, with the machine and the command, to ``--output``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import importlib.metadata
import json
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
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LUA_SCRIPT = Path("benchmarks/post.lua")
MODELS = Path("examples/models")
MNIST_ONNX = MODELS / "mnist" / "2" / "model.onnx"
#: The reference floor server sits in shared/bench/, beside the repository's root folder.
DEFAULT_FLOOR = Path(
    os.environ.get("MODELPORT_FLOOR_SERVER", ROOT.parent / "shared" / "bench" / "floor_server.py")
)

DEFAULT_OUTPUT = Path("docs/benchmarks.md")
SERVER_CPU = "0"
LOAD_CPU = "1"
SEED = 0
FEATURES = 784
CLASSES = 10
CONCURRENCIES = (1, 32)
ENGINE_BATCHES = (1, 8, 32, 64)
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
DEFAULT_WARMUP_S = 1
DEFAULT_CALLS = 20000

CellKey = tuple[str, str, int]  # (server key, protocol key, concurrency)
LoadAverage = tuple[float, float, float]


class BenchError(RuntimeError):
    """A benchmark step failed in a way that makes the table meaningless."""


# --------------------------------------------------------------------------- data model


@dataclass(frozen=True)
class Protocol:
    """One way of sending the same batch-1 mnist request."""

    key: str
    label: str
    path: str
    content_type: str
    body: bytes
    header_length: int | None = None


@dataclass(frozen=True)
class ServerSpec:
    """A server to start: its name, its command (without taskset) and what it speaks."""

    key: str
    label: str
    argv: tuple[str, ...]
    port_flag: str
    protocols: tuple[str, ...]
    runs_model: bool


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
    """The raw engine's figures from one in-process measurement."""

    p50_us: float
    p99_us: float
    mean_us: float
    rows_per_s: dict[int, float]


@dataclass(frozen=True)
class Cell:
    """The median over rounds of one (server, protocol, concurrency) cell."""

    requests_per_s: float
    p50_us: float
    p99_us: float
    rps_min: float
    rps_max: float
    errors: int
    ratio: float | None  # median over rounds of requests/s / floor echo's in the same round


@dataclass(frozen=True)
class Row:
    """One line of the printed table, already formatted."""

    server: str
    protocol: str
    concurrency: str
    requests_per_s: str
    p50: str
    p99: str
    overhead: str
    ratio: str
    spread: str


HEADERS = Row(
    server="server",
    protocol="protocol",
    concurrency="concurrency",
    requests_per_s="requests/s",
    p50="p50",
    p99="p99",
    overhead="serving overhead",
    ratio="ratio to floor echo",
    spread="requests/s range over rounds",
)


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


def ensure_models() -> None:
    """Build the example model repository if the mnist model is missing."""
    if MNIST_ONNX.exists():
        return
    print(f"building example models into {MODELS}", file=sys.stderr)
    subprocess.run([sys.executable, "examples/build_models.py", str(MODELS)], check=True)


def sample_input() -> np.ndarray:
    """The fixed batch-1 mnist input: 784 random float32 in [0, 1)."""
    return np.random.default_rng(SEED).random((1, FEATURES), dtype=np.float32)


def v2_json_body(x: np.ndarray) -> bytes:
    """A KServe V2 JSON infer request for ``x``."""
    request = {
        "inputs": [
            {"name": "images", "shape": list(x.shape), "datatype": "FP32", "data": x[0].tolist()}
        ]
    }
    return json.dumps(request).encode()


def tf_json_body(x: np.ndarray) -> bytes:
    """A TF Serving row-format predict request for ``x``."""
    return json.dumps({"instances": x.tolist()}).encode()


def v2_binary_body(x: np.ndarray) -> tuple[bytes, int]:
    """A V2 binary-extension request for ``x`` and the length of its JSON header."""
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


def make_protocols() -> list[Protocol]:
    """The three request forms, in table order."""
    x = sample_input()
    binary, header_length = v2_binary_body(x)
    v2_path = "/v2/models/mnist/infer"
    return [
        Protocol("v2-json", "V2 JSON", v2_path, "application/json", v2_json_body(x)),
        Protocol(
            "v2-binary",
            "V2 binary",
            v2_path,
            "application/octet-stream",
            binary,
            header_length,
        ),
        Protocol(
            "tf-json",
            "TF JSON",
            "/v1/models/mnist:predict",
            "application/json",
            tf_json_body(x),
        ),
    ]


def write_bodies(protocols: Sequence[Protocol], directory: Path) -> dict[str, Path]:
    """Write each protocol's body to a file for wrk; return the paths by protocol key."""
    paths = {}
    for protocol in protocols:
        path = directory / f"{protocol.key}.body"
        path.write_bytes(protocol.body)
        paths[protocol.key] = path
    return paths


def make_servers(floor: Path) -> list[ServerSpec]:
    """The servers to compare, in table order."""
    modelport = Path(sys.executable).parent / "modelport"
    all_protocols = ("v2-json", "v2-binary", "tf-json")
    json_protocols = ("v2-json", "tf-json")
    return [
        ServerSpec(
            "modelport",
            "modelport",
            (str(modelport), "serve", "--model-repository", str(MODELS), "--log-level", "warning"),
            "--http-port",
            all_protocols,
            runs_model=True,
        ),
        ServerSpec(
            "floor-ort",
            "floor (ort)",
            (sys.executable, str(floor), "--mode", "ort", "--model-path", str(MNIST_ONNX)),
            "--port",
            json_protocols,
            runs_model=True,
        ),
        ServerSpec(
            "floor-echo",
            "floor (echo)",
            (sys.executable, str(floor), "--mode", "echo"),
            "--port",
            json_protocols,
            runs_model=False,
        ),
    ]


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
    """Poll GET /v2/health/ready until it answers 200, or fail with the server's log."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    url = f"{server.base_url}/v2/health/ready"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(
                f"{server.spec.label} exited with {server.process.returncode} while starting:\n"
                + log_tail(server.log_path)
            )
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise BenchError(
        f"{server.spec.label} not ready after {READY_TIMEOUT_S:.0f}s:\n" + log_tail(server.log_path)
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
        wait_ready(server)
        print(f"started {spec.label} on port {port} (pid {process.pid})", file=sys.stderr)
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


def check_response(server: RunningServer, protocol: Protocol) -> None:
    """Send one request and check the answer, so the benchmark measures real work."""
    headers = {"Content-Type": protocol.content_type}
    if protocol.header_length is not None:
        headers["Inference-Header-Content-Length"] = str(protocol.header_length)
    url = server.base_url + protocol.path
    response = httpx.post(url, content=protocol.body, headers=headers, timeout=10.0)
    if response.status_code != 200:
        raise BenchError(
            f"{server.spec.label} {protocol.label}: HTTP {response.status_code}: "
            + response.text[:300]
        )
    if server.spec.runs_model and not answer_is_scores(protocol, response):
        raise BenchError(
            f"{server.spec.label} {protocol.label}: unexpected answer: {response.content[:300]!r}"
        )


def answer_is_scores(protocol: Protocol, response: httpx.Response) -> bool:
    """Whether ``response`` carries one row of 10 mnist scores in ``protocol``'s form."""
    if protocol.key == "tf-json":
        predictions = response.json()["predictions"]
        return len(predictions) == 1 and len(predictions[0]) == CLASSES
    if protocol.key == "v2-json":
        output = response.json()["outputs"][0]
        return bool(output["shape"] == [1, CLASSES] and len(output["data"]) == CLASSES)
    header_length = int(response.headers.get("Inference-Header-Content-Length", "-1"))
    return header_length > 0 and len(response.content) == header_length + 4 * CLASSES


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
    server: RunningServer,
    protocol: Protocol,
    body_path: Path,
    concurrency: int,
    duration_s: int,
) -> WrkResult:
    """Run wrk, pinned to the load CPU, against one server and protocol."""
    argv = [
        "taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{concurrency}", f"-d{duration_s}s",
        "--latency", "-s", str(LUA_SCRIPT), server.base_url + protocol.path,
    ]  # fmt: skip
    env = dict(os.environ, BENCH_BODY=str(body_path), BENCH_CONTENT_TYPE=protocol.content_type)
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
    protocol: Protocol,
    body_path: Path,
    concurrency: int,
    duration_s: int,
) -> WrkResult:
    """Run wrk once, and note how much of CPU 0 went to anything but the measured server."""
    busy_before, total_before = cpu_ticks(SERVER_CPU)
    server_before = process_ticks(server.process.pid)
    result = run_wrk(server, protocol, body_path, concurrency, duration_s)
    busy_after, total_after = cpu_ticks(SERVER_CPU)
    ensure_alive(server)
    server_ticks = process_ticks(server.process.pid) - server_before
    foreign = max(0, busy_after - busy_before - server_ticks) / max(1, total_after - total_before)
    return dataclasses.replace(result, foreign_cpu=foreign)


# --------------------------------------------------------------------------- raw engine


def engine_probe(model_path: str, calls: int) -> dict[str, object]:
    """Measure onnxruntime in this process (run pinned, in a subprocess, by the runner)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    feeds = {"images": sample_input()}
    for _ in range(min(calls, 1000)):
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
        "rows_per_s": {str(b): batch_rows_per_s(session, b) for b in ENGINE_BATCHES},
    }


def batch_rows_per_s(session: Any, batch: int, seconds: float = 0.5) -> float:
    """Rows per second of ``session.run`` on a random batch of ``batch`` rows."""
    run = session.run
    feeds = {"images": np.random.default_rng(SEED).random((batch, FEATURES), dtype=np.float32)}
    for _ in range(20):
        run(None, feeds)
    calls = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        run(None, feeds)
        calls += 1
    return batch * calls / elapsed


def measure_engine(calls: int) -> EngineResult:
    """Run the engine probe pinned to the server CPU and read its figures."""
    argv = [
        "taskset", "-c", SERVER_CPU, sys.executable, str(Path(__file__).resolve()),
        "--engine-probe", str(MNIST_ONNX), "--calls", str(calls),
    ]  # fmt: skip
    completed = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    if completed.returncode != 0:
        raise BenchError(f"engine probe failed:\n{completed.stderr}")
    data = json.loads(completed.stdout)
    return EngineResult(
        p50_us=data["p50_us"],
        p99_us=data["p99_us"],
        mean_us=data["mean_us"],
        rows_per_s={int(b): v for b, v in data["rows_per_s"].items()},
    )


def median_engine(results: Sequence[EngineResult]) -> EngineResult:
    """The per-figure median of several engine measurements."""
    return EngineResult(
        p50_us=statistics.median(r.p50_us for r in results),
        p99_us=statistics.median(r.p99_us for r in results),
        mean_us=statistics.median(r.mean_us for r in results),
        rows_per_s={b: statistics.median(r.rows_per_s[b] for r in results) for b in ENGINE_BATCHES},
    )


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class Settings:
    """What the command line asked for."""

    duration_s: int
    rounds: int
    warmup_s: int
    calls: int
    floor: Path
    output: Path


def warm_up(
    servers: Sequence[RunningServer],
    protocols: Sequence[Protocol],
    bodies: dict[str, Path],
    seconds: int,
) -> None:
    """Check every server's answers, then load each protocol briefly before measuring."""
    for server in servers:
        for protocol in protocols:
            if protocol.key in server.spec.protocols:
                check_response(server, protocol)
                if seconds > 0:
                    run_wrk(server, protocol, bodies[protocol.key], max(CONCURRENCIES), seconds)


def run_round(
    index: int,
    servers: Sequence[RunningServer],
    *,
    protocols: Sequence[Protocol],
    bodies: dict[str, Path],
    duration_s: int,
    results: dict[CellKey, list[WrkResult]],
) -> None:
    """Measure every cell once, servers interleaved (their order rotates between rounds)."""
    shift = index % len(servers)
    order = [*servers[shift:], *servers[:shift]]
    for concurrency in CONCURRENCIES:
        for protocol in protocols:
            for server in order:
                if protocol.key not in server.spec.protocols:
                    continue
                body = bodies[protocol.key]
                result = measure_cell(server, protocol, body, concurrency, duration_s)
                results.setdefault((server.spec.key, protocol.key, concurrency), []).append(result)
                print(
                    f"  {server.spec.label:<13} {protocol.label:<9} c={concurrency:<3}"
                    f" {result.requests_per_s:>9.1f} req/s  p50 {format_us(result.p50_us):>9}"
                    f"  p99 {format_us(result.p99_us):>9}"
                    f"  (others on CPU {SERVER_CPU}: {result.foreign_cpu:.0%})",
                    file=sys.stderr,
                )


def benchmark(
    settings: Settings, protocols: Sequence[Protocol], work_dir: Path
) -> tuple[dict[CellKey, list[WrkResult]], list[EngineResult]]:
    """Start the servers, warm them up, and measure every cell ``settings.rounds`` times."""
    bodies = write_bodies(protocols, work_dir)
    results: dict[CellKey, list[WrkResult]] = {}
    engines: list[EngineResult] = []
    with ExitStack() as stack:
        servers = [
            stack.enter_context(running_server(spec, work_dir))
            for spec in make_servers(settings.floor)
        ]
        print("warming up", file=sys.stderr)
        warm_up(servers, protocols, bodies, settings.warmup_s)
        for index in range(settings.rounds):
            print(f"round {index + 1}/{settings.rounds}", file=sys.stderr)
            engines.append(measure_engine(settings.calls))
            run_round(
                index,
                servers,
                protocols=protocols,
                bodies=bodies,
                duration_s=settings.duration_s,
                results=results,
            )
    return results, engines


# --------------------------------------------------------------------------- the table


def floor_key(protocol_key: str) -> str:
    """The floor echo protocol a protocol's ratio compares with (same family)."""
    return "tf-json" if protocol_key == "tf-json" else "v2-json"


def paired_ratio(runs: Sequence[WrkResult], floor_runs: Sequence[WrkResult]) -> float | None:
    """The median over rounds of requests/s relative to floor echo's in the same round."""
    if len(runs) != len(floor_runs):
        return None
    ratios = [r.requests_per_s / f.requests_per_s for r, f in zip(runs, floor_runs, strict=True)]
    return statistics.median(ratios)


def aggregate(results: dict[CellKey, list[WrkResult]]) -> dict[CellKey, Cell]:
    """The median over rounds of every cell."""
    cells = {}
    for key, runs in results.items():
        rps = [r.requests_per_s for r in runs]
        floor_runs = results.get(("floor-echo", floor_key(key[1]), key[2]), [])
        cells[key] = Cell(
            requests_per_s=statistics.median(rps),
            p50_us=statistics.median(r.p50_us for r in runs),
            p99_us=statistics.median(r.p99_us for r in runs),
            rps_min=min(rps),
            rps_max=max(rps),
            errors=sum(r.non_2xx + r.socket_errors for r in runs),
            ratio=paired_ratio(runs, floor_runs),
        )
    return cells


def format_us(value: float) -> str:
    """A duration in microseconds, as us below 1 ms and ms above."""
    if abs(value) < 100:
        return f"{value:.1f} us"
    if abs(value) < 1000:
        return f"{value:.0f} us"
    return f"{value / 1000:.2f} ms"


def engine_row(engine: EngineResult) -> Row:
    """The raw engine's line of the table."""
    return Row(
        server="onnxruntime (in-process)",
        protocol="session.run, batch 1",
        concurrency="1",
        requests_per_s=f"{1e6 / engine.mean_us:.0f}",
        p50=format_us(engine.p50_us),
        p99=format_us(engine.p99_us),
        overhead="0 (reference)",
        ratio="-",
        spread="-",
    )


def server_row(
    spec: ServerSpec,
    protocol: Protocol,
    concurrency: int,
    cells: dict[CellKey, Cell],
    engine: EngineResult,
) -> Row:
    """One server's line for one protocol and concurrency ("n/a" if it cannot speak it)."""
    cell = cells.get((spec.key, protocol.key, concurrency))
    if cell is None:
        na = "n/a"
        return Row(spec.label, protocol.label, str(concurrency), na, na, na, na, na, na)
    ratio = "n/a" if cell.ratio is None else f"{cell.ratio:.2f}x"
    overhead = format_us(cell.p50_us - engine.p50_us) if spec.runs_model else "- (no model)"
    errors = f" ({cell.errors} errors!)" if cell.errors else ""
    return Row(
        server=spec.label,
        protocol=protocol.label,
        concurrency=str(concurrency),
        requests_per_s=f"{cell.requests_per_s:.0f}{errors}",
        p50=format_us(cell.p50_us),
        p99=format_us(cell.p99_us),
        overhead=overhead,
        ratio=ratio,
        spread=f"{cell.rps_min:.0f}-{cell.rps_max:.0f}",
    )


def build_rows(
    specs: Sequence[ServerSpec],
    protocols: Sequence[Protocol],
    cells: dict[CellKey, Cell],
    engine: EngineResult,
) -> list[Row]:
    """The table: the engine first, then each concurrency, protocol and server."""
    rows = [engine_row(engine)]
    for concurrency in CONCURRENCIES:
        for protocol in protocols:
            rows.extend(server_row(s, protocol, concurrency, cells, engine) for s in specs)
    return rows


def row_cells(row: Row) -> list[str]:
    """A row's fields in column order."""
    return [
        row.server,
        row.protocol,
        row.concurrency,
        row.requests_per_s,
        row.p50,
        row.p99,
        row.overhead,
        row.ratio,
        row.spread,
    ]


def text_table(rows: Sequence[Row]) -> str:
    """The table as aligned plain text, for the terminal."""
    lines = [row_cells(HEADERS), *(row_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    rendered = ["  ".join(f.ljust(w) for f, w in zip(line, widths, strict=True)) for line in lines]
    rendered.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in rendered)


def markdown_table(rows: Sequence[Row]) -> str:
    """The table as GitHub markdown; numeric columns right-aligned."""
    header = row_cells(HEADERS)
    align = ["---", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:"]
    lines = [header, align, *(row_cells(r) for r in rows)]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def engine_batch_table(engine: EngineResult) -> str:
    """The raw engine's rows/s by batch size, as markdown, best marked."""
    best = max(ENGINE_BATCHES, key=lambda b: engine.rows_per_s[b])
    lines = ["| batch | rows/s | time per call |", "| ---: | ---: | ---: |"]
    for batch in ENGINE_BATCHES:
        rows_per_s = engine.rows_per_s[batch]
        mark = " (best)" if batch == best else ""
        per_call = format_us(1e6 * batch / rows_per_s)
        lines.append(f"| {batch}{mark} | {rows_per_s:.0f} | {per_call} |")
    return "\n".join(lines)


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


def wrk_version() -> str:
    """wrk's version line."""
    completed = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    first = (completed.stdout or completed.stderr).splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "unknown"


HOW_TO_READ = """\
Every row answers the same request: one mnist image (784 random float32, fixed seed) in, ten
class scores out, sent by `wrk` over keep-alive connections from CPU 1 to a server confined to
CPU 0. *requests/s*, *p50* and *p99* are each the median of the rounds; the last column shows
how far requests/s spread between rounds, the noise to allow for on this shared machine.
*Serving overhead* is the row's p50 minus the raw engine's batch-1 p50: time spent on HTTP,
parsing, validation, scheduling and encoding rather than in the model (at concurrency 32 it is
mostly queueing). *Ratio to floor echo* compares requests/s with the floor's echo endpoint at
the same concurrency and protocol family (V2 rows with echo V2 JSON, TF rows with echo TF
JSON), as the median of per-round ratios between runs seconds apart, so it need not equal the
quotient of the two medians. The echo endpoint parses the JSON body and answers a fixed
response without running the model: roughly the most a Python JSON endpoint does on this CPU,
so 1.00x would mean the model and everything else cost nothing. V2 binary rows are compared
with echo V2 JSON too; binary skips parsing 16 KB of JSON, so it can pass 1.00x. *floor (ort)*
runs onnxruntime inline on every request: the bar for a naive server doing the same work. The
raw engine row is `session.run` in a loop in one process (1/mean call time as requests/s), with
no HTTP at all. The floor has no binary tensor support, hence "n/a" on its V2 binary rows. p99
is the figure most disturbed by other processes taking CPU 0 (see the line under the table);
compare p99s only within one run.
"""


def noise_line(results: dict[CellKey, list[WrkResult]]) -> str:
    """How much of the server CPU other processes took while cells were measured."""
    shares = [r.foreign_cpu for runs in results.values() for r in runs]
    return (
        f"While cells were measured, CPU {SERVER_CPU} spent a median of "
        f"{statistics.median(shares):.0%} (at most {max(shares):.0%}) of its time outside the "
        "server under test: other processes, interrupts and kernel work not charged to it."
    )


def render_report(
    settings: Settings,
    *,
    command: str,
    started: dt.datetime,
    elapsed_s: float,
    rows: Sequence[Row],
    engine: EngineResult,
    load: tuple[LoadAverage, LoadAverage],
    noise: str,
) -> str:
    """The whole of docs/benchmarks.md."""
    parts = [
        "<!-- Generated by benchmarks/run.py; do not edit by hand. Re-run the command below "
        "to regenerate it. -->",
        "",
        "# Benchmarks",
        "",
        "modelport against the raw engine (onnxruntime in-process) and the reference floor server",
        "(`floor_server.py`: the cheapest Python JSON endpoint, and a naive onnxruntime server),",
        "on one batch-1 mnist request. See [benchmarks/README.md](../benchmarks/README.md) for "
        "the method.",
        "",
        "Reproduce (from the repository root; needs `wrk` and `taskset`):",
        "",
        "```",
        command,
        "```",
        "",
        f"Measured {started:%Y-%m-%d %H:%M %Z}, {settings.rounds} rounds of "
        f"{settings.duration_s} s per cell, run time {elapsed_s / 60:.1f} min.",
        "",
        "## Machine",
        "",
        *machine_lines(load),
        "",
        "## Results",
        "",
        markdown_table(rows),
        "",
        noise,
        "",
        "Raw engine throughput by batch size (onnxruntime, one intra-op thread, CPU "
        f"{SERVER_CPU}):",
        "",
        engine_batch_table(engine),
        "",
        "## How to read it",
        "",
        HOW_TO_READ.rstrip(),
        "",
    ]
    return "\n".join(parts)


# --------------------------------------------------------------------------- entry point


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="Benchmark modelport against raw onnxruntime and the floor server."
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per cell (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, median taken (default 3)")
    parser.add_argument(
        "--output", type=Path, default=None, help=f"markdown report (default {DEFAULT_OUTPUT})"
    )
    parser.add_argument(
        "--warmup", type=int, default=DEFAULT_WARMUP_S, help="warm-up seconds per protocol"
    )
    parser.add_argument("--calls", type=int, default=DEFAULT_CALLS, help="engine session.run calls")
    parser.add_argument(
        "--floor-server",
        type=Path,
        default=DEFAULT_FLOOR,
        help=f"floor_server.py (default {DEFAULT_FLOOR}, or $MODELPORT_FLOOR_SERVER)",
    )
    parser.add_argument("--engine-probe", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.duration < 1 or args.rounds < 1 or args.warmup < 0 or args.calls < 100:
        parser.error("--duration and --rounds must be >= 1, --warmup >= 0, --calls >= 100")
    return args


def display_path(path: Path) -> str:
    """``path`` relative to the repository root when it is inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def reproduce_command(settings: Settings) -> str:
    """The command line that reproduces this run."""
    parts = [
        ".venv/bin/python", "benchmarks/run.py",
        "--duration", str(settings.duration_s), "--rounds", str(settings.rounds),
        "--output", display_path(settings.output),
    ]  # fmt: skip
    if settings.warmup_s != DEFAULT_WARMUP_S:
        parts += ["--warmup", str(settings.warmup_s)]
    if settings.calls != DEFAULT_CALLS:
        parts += ["--calls", str(settings.calls)]
    if settings.floor != DEFAULT_FLOOR:
        parts += ["--floor-server", str(settings.floor)]
    return shlex.join(parts)


def raise_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so the servers are stopped by the finally blocks."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def run(settings: Settings) -> None:
    """Benchmark, print the table, and write the report."""
    check_tools()
    if not settings.floor.is_file():
        raise SystemExit(
            f"floor server not found at {settings.floor}; "
            "pass --floor-server PATH or set MODELPORT_FLOOR_SERVER"
        )
    if not (Path(sys.executable).parent / "modelport").is_file():
        raise SystemExit("modelport is not installed next to this Python; run `make test` first")
    ensure_models()
    started = dt.datetime.now().astimezone()
    load_before = os.getloadavg()
    begin = time.monotonic()
    protocols = make_protocols()
    with tempfile.TemporaryDirectory(prefix="modelport-bench-") as tmp:
        results, engines = benchmark(settings, protocols, Path(tmp))
    elapsed_s = time.monotonic() - begin
    engine = median_engine(engines)
    rows = build_rows(make_servers(settings.floor), protocols, aggregate(results), engine)
    print(text_table(rows))
    command = reproduce_command(settings)
    report = render_report(
        settings,
        command=command,
        started=started,
        elapsed_s=elapsed_s,
        rows=rows,
        engine=engine,
        load=(load_before, os.getloadavg()),
        noise=noise_line(results),
    )
    settings.output.parent.mkdir(parents=True, exist_ok=True)
    settings.output.write_text(report)
    print(f"\nwrote {display_path(settings.output)} in {elapsed_s:.0f}s; reproduce with: {command}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; also serves the hidden ``--engine-probe`` mode used for the engine row."""
    args = parse_args(argv)
    output = ROOT / DEFAULT_OUTPUT if args.output is None else args.output.resolve()
    floor = args.floor_server.resolve()
    os.chdir(ROOT)  # the servers, wrk and the models are addressed relative to the root
    if args.engine_probe:
        print(json.dumps(engine_probe(args.engine_probe, args.calls)))
        return 0
    raise_on_sigterm()
    settings = Settings(
        duration_s=args.duration,
        rounds=args.rounds,
        warmup_s=args.warmup,
        calls=args.calls,
        floor=floor,
        output=output,
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
