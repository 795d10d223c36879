"""PyTorch models served by a real modelport process, called over TF Serving REST, KServe V2 REST
and KServe V2 gRPC: a TorchScript and a torch.export MLP with a dynamic batch dimension, and a
two-input model of each kind (tuple outputs for TorchScript, dict outputs for torch.export)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import torch
import tritonclient.grpc as triton

from tests.server import ServerProcess
from tests.torch_models import (
    MLP_CONFIG,
    PAIR_CONFIG,
    Mlp,
    Pair,
    PairDict,
    rows,
    run,
    save_exported,
    save_torchscript,
    write_config,
)

#: Each model: its output names, and what its own torch module computes for (inputs...).
A, B, X = rows(3), rows(3, seed=1), rows(5, seed=2)
MODELS: dict[str, tuple[dict[str, np.ndarray[Any, Any]], dict[str, np.ndarray[Any, Any]]]] = {
    "mlp_ts": ({"x": X}, {"y": run(Mlp(), X)}),
    "mlp_export": ({"x": X}, {"output_0": run(Mlp(), X)}),
    "pair_ts": ({"a": A, "b": B}, dict(zip(("sum", "product"), run(Pair(), A, B), strict=True))),
    "pair_export": ({"a": A, "b": B}, run(PairDict(), A, B)),
}

#: A GPU configuration; this machine has no GPU, so the model serves from the CPU.
GPU_RUNTIME = {
    "execution_providers": [
        {"name": "CUDAExecutionProvider", "options": {"device_id": 0}},
        "CPUExecutionProvider",
    ]
}

#: PyTorch 2.13 deprecates TorchScript (torch.jit) in favour of torch.export; modelport serves both.
pytestmark = pytest.mark.filterwarnings("ignore:`torch\\.jit\\.:DeprecationWarning")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("torch") / "models"
    example = (torch.from_numpy(rows(3)), torch.from_numpy(rows(3, seed=1)))
    save_torchscript(Mlp(), root / "mlp_ts" / "1" / "model.pt")
    write_config(root / "mlp_ts", {**MLP_CONFIG, "runtime": GPU_RUNTIME})
    save_exported(Mlp(), example[:1], root / "mlp_export" / "1" / "model.pt2")
    save_torchscript(Pair(), root / "pair_ts" / "1" / "model.pt")
    write_config(root / "pair_ts", PAIR_CONFIG)
    save_exported(PairDict(), example, root / "pair_export" / "1" / "model.pt2")
    process = ServerProcess(["--model-repository", str(root)], root.parent / "server.log")
    process.wait_ready()
    yield process
    process.stop()


def assert_outputs(got: dict[str, Any], expected: dict[str, np.ndarray[Any, Any]]) -> None:
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(
            np.asarray(got[name], dtype=np.float32), value, rtol=0, atol=1e-6, err_msg=name
        )


def test_v2_metadata_reports_the_platform_and_signature(server: ServerProcess) -> None:
    scripted = httpx.get(f"{server.url}/v2/models/mlp_ts").json()
    assert scripted["platform"] == "pytorch_libtorch"
    assert scripted["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert scripted["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}]
    exported = httpx.get(f"{server.url}/v2/models/pair_export").json()
    assert exported["platform"] == "pytorch_export"
    assert exported["inputs"] == [
        {"name": "a", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "b", "datatype": "FP32", "shape": [-1, 4]},
    ]
    assert [o["name"] for o in exported["outputs"]] == ["product", "sum"]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_tf_serving_rest_row_and_columnar_predict(server: ServerProcess, model: str) -> None:
    inputs, expected = MODELS[model]
    url = f"{server.url}/v1/models/{model}:predict"
    columnar = httpx.post(url, json={"inputs": {k: v.tolist() for k, v in inputs.items()}})
    assert columnar.status_code == 200, columnar.text
    outputs = columnar.json()["outputs"]
    assert_outputs(
        outputs if isinstance(outputs, dict) else {next(iter(expected)): outputs}, expected
    )
    count = len(next(iter(inputs.values())))
    instances = [{k: v[i].tolist() for k, v in inputs.items()} for i in range(count)]
    row = httpx.post(url, json={"instances": instances})
    assert row.status_code == 200, row.text
    predictions = row.json()["predictions"]
    if len(expected) == 1:
        assert_outputs({next(iter(expected)): predictions}, expected)
    else:
        assert_outputs({k: [p[k] for p in predictions] for k in expected}, expected)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_v2_rest_infer(server: ServerProcess, model: str) -> None:
    inputs, expected = MODELS[model]
    body = {
        "inputs": [
            {"name": k, "datatype": "FP32", "shape": list(v.shape), "data": v.ravel().tolist()}
            for k, v in inputs.items()
        ]
    }
    response = httpx.post(f"{server.url}/v2/models/{model}/infer", json=body)
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    assert {o["name"]: o["shape"] for o in outputs} == {
        k: list(v.shape) for k, v in expected.items()
    }
    got = {o["name"]: np.reshape(o["data"], o["shape"]) for o in outputs}
    assert_outputs(got, expected)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_v2_grpc_infer(server: ServerProcess, model: str) -> None:
    inputs, expected = MODELS[model]
    client = triton.InferenceServerClient(server.grpc_target)
    try:
        assert client.is_model_ready(model)
        tensors = []
        for name, value in inputs.items():
            tensor = triton.InferInput(name, list(value.shape), "FP32")
            tensor.set_data_from_numpy(value)
            tensors.append(tensor)
        result = client.infer(model, tensors)
        got = {name: result.as_numpy(name) for name in expected}
    finally:
        client.close()
    for name, value in got.items():
        assert value.dtype == np.float32
        assert value.shape == expected[name].shape
    assert_outputs(got, expected)


def test_a_batch_of_another_size_and_a_bad_width(server: ServerProcess) -> None:
    x = rows(17, seed=3)
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [17, 4], "data": x.tolist()}]}
    response = httpx.post(f"{server.url}/v2/models/mlp_export/infer", json=body)
    assert response.status_code == 200, response.text
    got = np.reshape(response.json()["outputs"][0]["data"], (17, 3))
    assert_outputs({"output_0": got}, {"output_0": run(Mlp(), x)})
    wide = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 5], "data": [0] * 5}]}
    response = httpx.post(f"{server.url}/v2/models/mlp_ts/infer", json=wide)
    assert response.status_code == 400
    assert "x" in response.json()["error"]


def test_a_gpu_configuration_serves_from_the_cpu_and_says_so(server: ServerProcess) -> None:
    log = server.log()
    assert (
        "model mlp_ts version 1: CUDAExecutionProvider is configured but PyTorch "
        f"{torch.__version__} sees no such CUDA device (torch.cuda.is_available() is False); "
        "running on CPU"
    ) in log
    assert log.count("running on CPU") == 1
