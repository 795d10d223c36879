"""Triton's perf_analyzer (built by ``make tools`` into .tools/perf_analyzer) load-testing a real
modelport: KServe V2 over HTTP and gRPC (unary and streaming), TF Serving over gRPC and
TorchServe over HTTP.

Each run measures in request-count windows (time windows proved flaky on a busy machine), must
exit 0, report a throughput above zero, and leave no failed request on the server, whose
counters must show at least the requests perf_analyzer says it sent. Nothing here looks at how
fast anything was.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
PERF_ANALYZER = ROOT / ".tools" / "perf_analyzer" / "perf_analyzer"
MEASUREMENT = (
    "--measurement-mode",
    "count_windows",
    "--measurement-request-count",
    "200",
    "-s",
    "100",
    "--concurrency-range",
    "2:2",
)
RUN_TIMEOUT_S = 240
REQUESTS = re.compile(
    r'^modelport_requests_total\{model="(?P<model>[^"]*)",outcome="(?P<outcome>[^"]*)",'
    r'protocol="(?P<protocol>[^"]*)",version="(?P<version>[^"]*)"\} (?P<value>\S+)$',
    re.MULTILINE,
)


def perf_analyzer(*args: str) -> str:
    """Run perf_analyzer with the common measurement settings; its output, after exit code 0."""
    if not PERF_ANALYZER.exists():
        pytest.fail(
            f"perf_analyzer is missing ({PERF_ANALYZER} does not exist); run `make tools` to "
            "build it, then run these tests again",
            pytrace=False,
        )
    done = subprocess.run(
        [str(PERF_ANALYZER), *args, *MEASUREMENT],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def requests_counted(server: ServerProcess) -> dict[tuple[str, str, str], float]:
    """modelport_requests_total for mnist, by (outcome, protocol, version)."""
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    return {
        (m["outcome"], m["protocol"], m["version"]): float(m["value"])
        for m in REQUESTS.finditer(text)
        if m["model"] == "mnist"
    }


def client_figures(output: str) -> tuple[int, float]:
    """The request count and throughput perf_analyzer reports for its client side."""
    count = re.search(r"^\s*Request count: (\d+)$", output, re.MULTILINE)
    throughput = re.search(r"^\s*Throughput: ([0-9.]+) infer/sec$", output, re.MULTILINE)
    assert count, output
    assert throughput, output
    return int(count[1]), float(throughput[1])


def triton_success_count(server: ServerProcess, version: str) -> int:
    stats = httpx.get(f"{server.url}/v2/models/mnist/versions/{version}/stats", timeout=30)
    assert stats.status_code == 200, stats.text
    count: int = stats.json()["model_stats"][0]["inference_stats"]["success"]["count"]
    return count


@pytest.fixture(scope="module")
def torchserve_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """perf_analyzer's --input-data for TorchServe: a file it sends as the form part ``data``."""
    folder = tmp_path_factory.mktemp("perf")
    body = folder / "images.json"
    body.write_text(json.dumps(np.full((1, 784), 0.5).tolist()))
    data = folder / "input.json"
    data.write_text(json.dumps({"data": [{"TORCHSERVE_INPUT": [str(body)]}]}))
    return data


#: name -> (perf_analyzer arguments after the address, address kind, protocol label, version)
RUNS = {
    # no -x: perf_analyzer finds the version whose queue count grew (2, the newest)
    "v2_http": (["-m", "mnist"], "http", "kserve_v2_rest", "2"),
    "v2_grpc": (["-m", "mnist", "-x", "1", "-i", "grpc"], "grpc", "kserve_v2_grpc", "1"),
    "v2_grpc_streaming": (
        ["-m", "mnist", "-x", "2", "-i", "grpc", "--streaming"],
        "grpc",
        "kserve_v2_grpc",
        "2",
    ),
    # perf_analyzer sends -x as ModelSpec.version_label; the batch dimension needs --shape
    "tfserving_grpc": (
        [
            "-m",
            "mnist",
            "-x",
            "1",
            "--service-kind",
            "tfserving",
            "-i",
            "grpc",
            "--shape",
            "images:1,784",
        ],
        "grpc",
        "tfserving_grpc",
        "1",
    ),
    "torchserve_http": (
        ["-m", "mnist", "--service-kind", "torchserve", "-i", "http"],
        "http",
        "torchserve_rest",
        "2",
    ),
}


@pytest.mark.parametrize("run", list(RUNS))
def test_perf_analyzer_runs_without_errors(
    examples_server: ServerProcess, torchserve_input: Path, run: str
) -> None:
    args, address, protocol, version = RUNS[run]
    http_target = f"127.0.0.1:{examples_server.port}"
    target = examples_server.grpc_target if address == "grpc" else http_target
    extra = ["--input-data", str(torchserve_input)] if run == "torchserve_http" else []
    triton = "--service-kind" not in args
    before = requests_counted(examples_server)
    stats_before = triton_success_count(examples_server, version) if triton else 0

    output = perf_analyzer(*args, *extra, "-u", target)

    sent, throughput = client_figures(output)
    assert sent > 0, output
    assert throughput > 0, output
    after = requests_counted(examples_server)
    served = after.get(("success", protocol, version), 0) - before.get(
        ("success", protocol, version), 0
    )
    assert served >= sent, (served, sent, output)
    failed = {key: value for key, value in after.items() if key[0] != "success"}
    assert failed == {key: before.get(key, 0) for key in failed}, failed
    if triton:
        # perf_analyzer read the server's statistics, and they count what was served
        server_side = re.search(r"^\s*Successful request count: (\d+)$", output, re.MULTILINE)
        assert server_side, output
        assert int(server_side[1]) > 0
        assert triton_success_count(examples_server, version) - stats_before >= sent
    assert "Traceback" not in examples_server.log()
