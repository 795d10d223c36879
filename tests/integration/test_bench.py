"""``modelport bench`` against a real modelport server, run as ``python -m modelport bench``.

One server serves the example models plus two made for these tests: ``dynamic`` (an input of
shape [-1, -1], so bench needs ``--shape``) and ``broken`` (a corrupt file, so never ready). The
tests check what bench reports and how it exits, never how fast anything was.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from onnx import TensorProto, helper

from tests.models import OPSET, build_models, save
from tests.server import ServerProcess, free_port

SHORT = ("--duration", "1", "--warmup", "0.2")


def bench(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m modelport bench ARGS`` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "modelport", "bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def dynamic_model() -> Any:
    """``x`` FP32 [-1, -1] copied to ``y``: a dimension besides the batch that bench can't guess."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "dynamic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "width"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = build_models.IR_VERSION
    return model


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, example_repository_template: Path
) -> Iterator[ServerProcess]:
    """One server for the module: starting one per test would cost more than the tests."""
    folder = tmp_path_factory.mktemp("bench")
    repository = folder / "models"
    shutil.copytree(example_repository_template, repository)
    save(dynamic_model(), repository / "dynamic" / "1" / "model.onnx")
    (repository / "broken" / "1").mkdir(parents=True)
    (repository / "broken" / "1" / "model.onnx").write_bytes(b"not an onnx model")
    process = ServerProcess(
        [
            "--model-repository",
            str(repository),
            "--no-exit-on-error",
            "--no-strict-readiness",
            "--log-level",
            "warning",
        ],
        folder / "server.log",
    )
    process.wait_ready()
    yield process
    process.stop()


def run_json(server: ServerProcess, tmp_path: Path, *args: str) -> dict[str, Any]:
    """Run bench with ``--json`` and return the report, checking that no request failed."""
    report = tmp_path / "report.json"
    result = bench(*args, "--url", server.url, *SHORT, "--json", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    document: dict[str, Any] = json.loads(report.read_text())
    for step in document["steps"]:
        assert step["requests"] > 0
        assert step["errors"] == 0
    return document


@pytest.mark.parametrize("protocol", ["v2-json", "v2-binary", "tfserving"])
@pytest.mark.parametrize("model", ["mnist", "tabular"])
def test_each_protocol_and_model(
    server: ServerProcess, tmp_path: Path, protocol: str, model: str
) -> None:
    document = run_json(
        server, tmp_path, model, "--protocol", protocol, "--batch-size", "2", "--check", "1"
    )
    assert document["settings"]["protocol"] == protocol
    assert document["model"]["name"] == model
    assert all(entry["shape"][0] == 2 for entry in document["model"]["inputs"])
    assert [step["concurrency"] for step in document["steps"]] == [1]


def test_concurrency_sweep_writes_json_and_csv(server: ServerProcess, tmp_path: Path) -> None:
    report = tmp_path / "sweep.csv"
    document = run_json(
        server, tmp_path, "mnist", "--concurrency-range", "2:8:4", "--csv", str(report)
    )
    steps = document["steps"]
    assert [step["concurrency"] for step in steps] == [2, 8]
    for step in steps:
        assert set(step["latency_us"]) == {"p50", "p90", "p99", "p99.9", "max", "mean", "min"}
        assert step["latency_us"]["p50"] <= step["latency_us"]["p99"] <= step["latency_us"]["max"]
        assert step["requests_per_s"] > 0
    assert document["settings"]["duration_s"] == 1.0
    with report.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["concurrency"] for row in rows] == ["2", "8"]
    for row, step in zip(rows, steps, strict=True):
        assert int(row["requests"]) == step["requests"] > 0
        assert row["errors"] == "0"
        assert row["model"] == "mnist"
        assert row["protocol"] == "v2-json"
        assert float(row["p50_us"]) > 0


def test_request_rate(server: ServerProcess, tmp_path: Path) -> None:
    document = run_json(server, tmp_path, "tabular", "--request-rate", "200")
    (step,) = document["steps"]
    assert step["mode"] == "rate"
    assert step["rate"] == 200.0
    assert step["sent"] > 0
    assert document["settings"]["mode"] == "rate"


def test_processes_share_the_load(server: ServerProcess, tmp_path: Path) -> None:
    document = run_json(server, tmp_path, "mnist", "--concurrency", "4", "--processes", "2")
    assert document["settings"]["processes"] == 2
    assert document["steps"][0]["connections"] == 4


def test_plot(server: ServerProcess, tmp_path: Path) -> None:
    pytest.importorskip(
        "matplotlib", reason="--plot needs matplotlib (pip install 'modelport[bench]')"
    )
    plot = tmp_path / "bench.png"
    result = bench("mnist", "--url", server.url, *SHORT, "-c", "1,2", "--plot", str(plot), "-q")
    assert result.returncode == 0, result.stderr
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_input_from_a_file(server: ServerProcess, tmp_path: Path) -> None:
    data = tmp_path / "inputs.json"
    data.write_text(
        json.dumps({"inputs": {"features": [[0.1, 0.2, 0.3, 0.4]] * 3, "category": [[2]] * 3}})
    )
    document = run_json(server, tmp_path, "tabular", "--input-data", str(data), "--check", "1")
    assert [entry["shape"] for entry in document["model"]["inputs"]] == [[3, 4], [3, 1]]


def test_input_file_missing_an_input(server: ServerProcess, tmp_path: Path) -> None:
    data = tmp_path / "inputs.json"
    data.write_text(json.dumps({"inputs": {"features": [[0.1, 0.2, 0.3, 0.4]]}}))
    result = bench("tabular", "--url", server.url, "--input-data", str(data))
    assert result.returncode == 2
    assert "missing category" in result.stderr


def test_dynamic_dimension_needs_shape(server: ServerProcess, tmp_path: Path) -> None:
    result = bench("dynamic", "--url", server.url, *SHORT)
    assert result.returncode == 2
    assert "--shape x:N" in result.stderr
    document = run_json(server, tmp_path, "dynamic", "--shape", "x:5", "--protocol", "v2-binary")
    assert document["model"]["inputs"][0]["shape"] == [1, 5]


def test_unknown_model_shows_the_servers_message(server: ServerProcess) -> None:
    result = bench("nope", "--url", server.url, *SHORT)
    assert result.returncode == 2
    assert "model 'nope' is not in the repository" in result.stderr  # the server's own words


def test_model_not_ready(server: ServerProcess) -> None:
    result = bench("broken", "--url", server.url, *SHORT)
    assert result.returncode == 1
    assert "not ready" in result.stderr
    assert "failed to load" in result.stderr


def test_unreachable_server() -> None:
    result = bench("mnist", "--url", f"http://127.0.0.1:{free_port()}", *SHORT)
    assert result.returncode == 1
    assert "cannot reach the server" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "0"], "--concurrency: 0 is below 1"),
        (["--concurrency", "2", "--request-rate", "10"], "give only one of"),
        (["--concurrency-range", "8:2"], "end 2 is below start 8"),
        (["--protocol", "grpc"], "--protocol must be one of"),
        (["--duration", "0"], "--duration must be above 0"),
    ],
)
def test_bad_arguments_exit_2(args: list[str], message: str) -> None:
    result = bench("mnist", "--url", "http://127.0.0.1:9", *args)
    assert result.returncode == 2
    assert message in result.stderr
