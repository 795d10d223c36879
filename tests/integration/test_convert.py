"""``modelport convert``, ``optimize`` and ``quantize`` end to end, as a user runs them: real
exporters and quantizers in a child process, the parity gate, report.json, and a result written
straight into a repository version folder that a real server then serves."""

from __future__ import annotations

import importlib.util
import json
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import StartServer
from tests.convert_models import NET_SOURCE, mlp_onnx, modelport, overflow_onnx

pytestmark = pytest.mark.slow

LATENCY = ("--latency-runs", "3", "--quiet")


def run_onnx(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)  # type: ignore[no-any-return]


def report_of(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "report.json").read_text())  # type: ignore[no-any-return]


def leftovers(parent: Path) -> list[str]:
    """Build folders left beside the output (there must never be any)."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def torchscript_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from torch import nn

    class Scorer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("torchscript") / "net.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated
        torch.jit.script(Scorer().eval()).save(str(path))
    return path


def torchscript_answer(path: Path, x: np.ndarray) -> np.ndarray:
    """What the TorchScript file answers for ``x``."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path))
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def net_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``net.py`` (classes Net and Tiny) and a state dict for ``Net(width=8)``."""
    import torch

    folder = tmp_path_factory.mktemp("module")
    source = folder / "net.py"
    source.write_text(NET_SOURCE)
    spec = importlib.util.spec_from_file_location("net_for_weights", source)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(1)
    weights = folder / "net_state.pt"
    torch.save(module.Net(width=8).state_dict(), weights)
    return source, weights


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mlp_onnx(tmp_path_factory.mktemp("mlp") / "mlp.onnx")


def test_torchscript_converts_with_a_dynamic_batch_and_a_full_report(
    torchscript_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = modelport(
        "convert",
        torchscript_file,
        "--output",
        out,
        "--input-shape",
        "3,16",
        "--opset",
        "17",
        *LATENCY,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "report.json"]
    assert leftovers(tmp_path) == []
    assert "PASSED" in done.stdout

    # The batch dimension is dynamic: a batch of 7 runs, and matches TorchScript.
    x = np.random.default_rng(5).standard_normal((7, 16)).astype(np.float32)
    (scores,) = run_onnx(out / "model.onnx", {"x": x})
    expected = torchscript_answer(torchscript_file, x)
    np.testing.assert_allclose(scores, expected, atol=1e-5, rtol=1e-4)

    report = report_of(out)
    assert report["step"] == "convert"
    assert report["passed"] is True
    assert report["failures"] == []
    assert report["command"][:2] == ["modelport", "convert"]
    assert "--opset" in report["command"]
    assert report["details"]["opset"] == 17
    assert report["details"]["exporter"] == "torch.onnx.export (TorchScript)"
    assert report["source"]["label"] == "TorchScript net.pt"
    assert report["source"]["size_bytes"] == torchscript_file.stat().st_size
    assert report["result"]["size_bytes"] == (out / "model.onnx").stat().st_size
    assert report["result"]["path"] == str(out / "model.onnx")
    assert report["result"]["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}]
    assert report["result"]["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 4]}]
    assert report["source"]["latency_ms"] > 0
    assert report["result"]["latency_ms"] > 0
    assert report["latency_runs"] == 3
    assert report["tolerance"] == {
        "atol": 1e-4,
        "rtol": 1e-3,
        "min_agreement": 1.0,
        "min_cosine": None,
    }
    assert report["samples"]["inputs"] == {"x": {"shape": [3, 16], "dtype": "float32"}}
    (output,) = report["outputs"]
    assert output["name"] == "output"
    assert output["passed"] is True
    assert 0 <= output["max_abs_error"] <= 1e-4
    assert output["tolerance_used"] <= 1
    assert output["agreement"] == 1.0  # 2-D scores: top-class agreement
    assert {"modelport", "python", "torch", "onnx", "onnxruntime", "numpy"} <= set(
        report["versions"]
    )


def test_a_python_class_with_weights_converts_with_its_inputs_and_outputs_named(
    net_file: tuple[Path, Path], tmp_path: Path
) -> None:
    source, weights = net_file
    rng = np.random.default_rng(2)
    sample = tmp_path / "sample.npz"
    x = rng.standard_normal((5, 8)).astype(np.float32)
    mask = (rng.random((5, 8)) > 0.2).astype(np.float32)
    np.savez(sample, x=x, mask=mask)
    out = tmp_path / "out"
    done = modelport(
        "convert",
        f"{source}:Net",
        "--weights",
        weights,
        "--init-args",
        '{"width": 8}',
        "--sample",
        sample,
        "--output",
        out,
        *LATENCY,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = report_of(out)
    assert report["details"]["exporter"] == "torch.onnx.export (torch.export)"
    assert report["source"]["label"] == "PyTorch net.py:Net"
    assert report["source"]["size_bytes"] == weights.stat().st_size
    assert report["samples"]["origin"] == str(sample)
    assert [o["name"] for o in report["outputs"]] == ["scores", "norm"]
    assert [i["name"] for i in report["result"]["inputs"]] == ["x", "mask"]
    assert all(i["shape"][0] == -1 for i in report["result"]["inputs"])
    assert all(o["shape"][0] == -1 for o in report["result"]["outputs"])

    # The weights were loaded: the ONNX model answers what Net with those weights answers.
    import torch

    spec = importlib.util.spec_from_file_location("net_check", source)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.Net(width=8)
    net.load_state_dict(torch.load(weights, weights_only=True))
    with torch.no_grad():
        expected = net.eval()(torch.from_numpy(x[:2]), torch.from_numpy(mask[:2]))
    scores, norm = run_onnx(out / "model.onnx", {"x": x[:2], "mask": mask[:2]})
    np.testing.assert_allclose(scores, expected["scores"].numpy(), atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(norm, expected["norm"].numpy(), atol=1e-5, rtol=1e-4)


def test_a_class_can_give_its_own_example_inputs(
    net_file: tuple[Path, Path], tmp_path: Path
) -> None:
    source, _ = net_file
    out = tmp_path / "out"
    done = modelport("convert", f"{source}:Tiny", "--output", out, *LATENCY)
    assert done.returncode == 0, done.stdout + done.stderr
    assert report_of(out)["samples"]["origin"] == "example_inputs"


def test_weights_that_do_not_fit_the_class_are_refused(
    net_file: tuple[Path, Path], tmp_path: Path
) -> None:
    source, weights = net_file
    out = tmp_path / "out"
    done = modelport(
        "convert", f"{source}:Net", "--weights", weights, "--input-shape", "2,16",
        "--input-shape", "2,16", "--output", out, *LATENCY,
    )  # fmt: skip
    assert done.returncode == 2
    assert "do not fit the class" in done.stderr
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_pytorch_without_an_example_input_says_how_to_give_one(
    torchscript_file: Path, tmp_path: Path
) -> None:
    done = modelport("convert", torchscript_file, "--output", tmp_path / "out", *LATENCY)
    assert done.returncode == 2
    assert "--input-shape" in done.stderr
    assert "--sample" in done.stderr
    assert not (tmp_path / "out").exists()


def test_optimize_saves_the_optimized_graph(mlp: Path, tmp_path: Path) -> None:
    out = tmp_path / "optimized"
    done = modelport("optimize", mlp, "--output", out, *LATENCY)
    assert done.returncode == 0, done.stdout + done.stderr
    report = report_of(out)
    assert report["step"] == "optimize"
    assert report["details"] == {"optimization_level": "extended"}
    x = np.random.default_rng(3).standard_normal((6, 16)).astype(np.float32)
    np.testing.assert_allclose(
        run_onnx(out / "model.onnx", {"x": x})[0], run_onnx(mlp, {"x": x})[0], atol=1e-5
    )


@pytest.mark.parametrize(
    ("mode", "extra"),
    [("dynamic-int8", ()), ("static-int8", ("--calibration", "CALIBRATION")), ("fp16", ())],
)
def test_each_quantize_mode_passes_its_default_gate(
    mlp: Path, tmp_path: Path, mode: str, extra: tuple[str, ...]
) -> None:
    calibration = tmp_path / "calibration.npy"
    np.save(calibration, np.random.default_rng(4).standard_normal((64, 16)).astype(np.float32))
    args = [calibration if a == "CALIBRATION" else a for a in extra]
    out = tmp_path / "out"
    done = modelport("quantize", mlp, "--mode", mode, "--output", out, *args, *LATENCY)
    assert done.returncode == 0, done.stdout + done.stderr
    report = report_of(out)
    assert report["step"] == f"quantize {mode}"
    assert report["details"]["mode"] == mode
    assert report["outputs"][0]["agreement"] >= report["tolerance"]["min_agreement"]
    if mode == "static-int8":
        assert report["details"]["calibration"] == {"origin": str(calibration), "rows": 64}
    # The served signature is unchanged: FP32 in, FP32 out, dynamic batch.
    assert report["result"]["inputs"] == report["source"]["inputs"]
    assert report["result"]["outputs"] == report["source"]["outputs"]
    if mode != "fp16":
        assert report["result"]["size_bytes"] < report["source"]["size_bytes"]


def test_fp16_io_makes_inputs_and_outputs_fp16(mlp: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = modelport("quantize", mlp, "--mode", "fp16", "--fp16-io", "--output", out, *LATENCY)
    assert done.returncode == 0, done.stdout + done.stderr
    report = report_of(out)
    assert report["result"]["inputs"][0]["datatype"] == "FP16"
    assert report["result"]["outputs"][0]["datatype"] == "FP16"


def test_gate_refuses_an_fp16_copy_that_overflows_and_leaves_nothing(tmp_path: Path) -> None:
    model = overflow_onnx(tmp_path / "overflow.onnx")
    repository = tmp_path / "models" / "overflow"
    out = repository / "2"
    log = tmp_path / "fp16-report.json"
    done = modelport(
        "quantize", model, "--mode", "fp16", "--output", out, "--report-file", log, *LATENCY
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL" in done.stdout
    assert "errors exceed" in done.stdout
    assert "nothing was written" in done.stdout
    assert "16 weights exceed FP16's largest value" in done.stdout
    assert not out.exists()
    assert leftovers(repository) == []
    # --report-file keeps the facts of a refusal for the CI log.
    report = json.loads(log.read_text())
    assert report["passed"] is False
    (output,) = report["outputs"]
    assert output["name"] == "y"
    assert output["passed"] is False
    assert output["tolerance_used"] > 1
    assert output["max_rel_error"] == pytest.approx(1 - 65504 / 1e5, rel=0.01)
    assert report["failures"] == [f"y: {output['reason']}"]
    assert report["notes"] == [
        "fp16: 16 weights exceed FP16's largest value (65504) and were clipped to it"
    ]


def test_gate_refuses_a_tolerance_no_int8_result_meets(mlp: Path, tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()  # an existing empty folder stays as it was
    done = modelport(
        "quantize", mlp, "--mode", "dynamic-int8", "--atol", "0", "--rtol", "0",
        "--output", out, *LATENCY,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "atol 0 + rtol 0" in done.stdout
    assert list(out.iterdir()) == []
    assert leftovers(tmp_path) == []


def test_a_non_empty_output_is_refused_unless_forced(mlp: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"old")
    done = modelport("optimize", mlp, "--output", out, *LATENCY)
    assert done.returncode == 2
    assert "--force" in done.stderr
    assert (out / "model.onnx").read_bytes() == b"old"

    done = modelport("optimize", mlp, "--output", out, "--force", *LATENCY)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "report.json"]
    assert (out / "model.onnx").read_bytes() != b"old"
    assert leftovers(tmp_path) == []


def wait_ready(url: str, model: str, version: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/v2/models/{model}/versions/{version}/ready").status_code == 200:
            return
        time.sleep(0.1)
    raise AssertionError(f"{model} version {version} never became ready")


def infer(url: str, model: str, version: int, x: np.ndarray) -> np.ndarray:
    body = {
        "inputs": [
            {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }
    answer = httpx.post(f"{url}/v2/models/{model}/versions/{version}/infer", json=body)
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    return np.array(output["data"], np.float32).reshape(output["shape"])


def test_results_written_into_a_repository_are_served_with_the_same_answers(
    torchscript_file: Path, tmp_path: Path, start_server: StartServer
) -> None:
    repository = tmp_path / "models"
    first = repository / "net" / "1"
    done = modelport("convert", torchscript_file, "--input-shape", "4,16", "--output", first)
    assert done.returncode == 0, done.stdout + done.stderr
    server = start_server("--model-repository", str(repository), "--poll-interval-s", "0.2")

    x = np.random.default_rng(9).standard_normal((3, 16)).astype(np.float32)
    served = infer(server.url, "net", 1, x)
    np.testing.assert_array_equal(served, run_onnx(first / "model.onnx", {"x": x})[0])
    native = torchscript_answer(torchscript_file, x)
    np.testing.assert_allclose(served, native, atol=1e-4, rtol=1e-3)

    # A new version written while the server runs is picked up whole and serves at once.
    second = repository / "net" / "2"
    done = modelport(
        "quantize", first / "model.onnx", "--mode", "fp16", "--output", second, *LATENCY
    )
    assert done.returncode == 0, done.stdout + done.stderr
    wait_ready(server.url, "net", 2)
    served = infer(server.url, "net", 2, x)
    np.testing.assert_array_equal(served, run_onnx(second / "model.onnx", {"x": x})[0])
    np.testing.assert_allclose(served, native, atol=1e-2, rtol=1e-2)
    assert "failed" not in server.log()
