"""One request, every protocol: the same inputs sent over each of modelport's surfaces give the
same outputs, bit for bit, and those are what onnxruntime computes in this process.

The surfaces: TF Serving REST (row and columnar), TF Serving gRPC (tensorflow-serving-api, in
.venv-tf), KServe V2 REST in JSON and in the binary extension (tritonclient.http), KServe V2
gRPC (tritonclient.grpc, raw contents) and TorchServe's /predictions.

gRPC and the binary extension carry float32 as its four bytes. JSON carries each float32 as the
shortest decimal that reads back to the same float32, so parsing it and rounding to float32
recovers the exact value: the JSON paths are held to bitwise equality too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http

from tests.integration.test_tfserving_grpc import client as tf_client
from tests.server import ServerProcess

Arrays = dict[str, np.ndarray]
#: The version each model answers with when a request names none.
LATEST = {"mnist": 2, "tabular": 1}
DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}


def inputs_for(model: str) -> Arrays:
    """Deterministic random inputs with full-precision float32 values, negatives included."""
    rng = np.random.default_rng(2024)
    if model == "mnist":
        return {"images": rng.random((3, 784), dtype=np.float32)}
    return {
        "features": (rng.standard_normal((3, 4)) * 10).astype(np.float32),
        "category": rng.integers(-3, 10, (3, 1), dtype=np.int64),
    }


def as_float32(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).astype(np.float32)


def rows(inputs: Arrays) -> list[Any]:
    """TF Serving's row format: one entry per instance, named when the model has several inputs."""
    if len(inputs) == 1:
        (only,) = inputs.values()
        return only.tolist()  # type: ignore[no-any-return]
    count = len(next(iter(inputs.values())))
    return [{name: array[i].tolist() for name, array in inputs.items()} for i in range(count)]


def from_rows(answer: list[Any], names: list[str]) -> Arrays:
    if len(names) == 1:
        return {names[0]: as_float32(answer)}
    return {name: as_float32([row[name] for row in answer]) for name in names}


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


# ---- one function per surface: (server, model, inputs, output names) -> outputs ------------


def tf_rest_row(server: ServerProcess, model: str, inputs: Arrays, names: list[str]) -> Arrays:
    body = {"instances": rows(inputs)}
    answer = ok(httpx.post(f"{server.url}/v1/models/{model}:predict", json=body, timeout=30))
    return from_rows(answer["predictions"], names)


def tf_rest_columnar(server: ServerProcess, model: str, inputs: Arrays, names: list[str]) -> Arrays:
    columns: Any = {name: array.tolist() for name, array in inputs.items()}
    if len(inputs) == 1:
        (columns,) = columns.values()
    body = {"inputs": columns}
    answer = ok(httpx.post(f"{server.url}/v1/models/{model}:predict", json=body, timeout=30))
    outputs = answer["outputs"]
    if len(names) == 1:
        return {names[0]: as_float32(outputs)}
    return {name: as_float32(outputs[name]) for name in names}


def v2_rest(binary: bool) -> Callable[[ServerProcess, str, Arrays, list[str]], Arrays]:
    def call(server: ServerProcess, model: str, inputs: Arrays, names: list[str]) -> Arrays:
        client = triton_http.InferenceServerClient(f"127.0.0.1:{server.port}")
        try:
            tensors = []
            for name, array in inputs.items():
                tensor = triton_http.InferInput(name, list(array.shape), DATATYPES[array.dtype])
                tensor.set_data_from_numpy(array, binary_data=binary)
                tensors.append(tensor)
            wanted = [triton_http.InferRequestedOutput(n, binary_data=binary) for n in names]
            result = client.infer(model, tensors, outputs=wanted)
        finally:
            client.close()
        for output in result.get_response()["outputs"]:
            in_binary = "binary_data_size" in output.get("parameters", {})
            assert in_binary == binary, output
            assert ("data" in output) != binary, output
        return {name: result.as_numpy(name) for name in names}

    return call


def v2_grpc(server: ServerProcess, model: str, inputs: Arrays, names: list[str]) -> Arrays:
    client = triton_grpc.InferenceServerClient(server.grpc_target)
    try:
        tensors = []
        for name, array in inputs.items():
            tensor = triton_grpc.InferInput(name, list(array.shape), DATATYPES[array.dtype])
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        result = client.infer(model, tensors)
    finally:
        client.close()
    response = result.get_response()
    assert len(response.raw_output_contents) == len(response.outputs) == len(names)
    return {name: result.as_numpy(name) for name in names}


def torchserve(server: ServerProcess, model: str, inputs: Arrays, names: list[str]) -> Arrays:
    body = {"instances": rows(inputs)}
    answer = ok(httpx.post(f"{server.url}/predictions/{model}", json=body, timeout=30))
    return from_rows(answer, names)


SURFACES: dict[str, Callable[[ServerProcess, str, Arrays, list[str]], Arrays]] = {
    "tf_rest_row": tf_rest_row,
    "tf_rest_columnar": tf_rest_columnar,
    "v2_rest_json": v2_rest(binary=False),
    "v2_rest_binary": v2_rest(binary=True),
    "v2_grpc": v2_grpc,
    "torchserve": torchserve,
}


# ---- the reference and TF Serving's gRPC client ---------------------------------------------


def reference(repository: Path, model: str) -> Arrays:
    path = repository / model / str(LATEST[model]) / "model.onnx"
    session = ort.InferenceSession(str(path))
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, inputs_for(model)), strict=True))


@pytest.fixture(scope="module")
def tf_grpc_answers(
    examples_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Both models through tensorflow-serving-api in one run of the client (TensorFlow is slow
    to import)."""
    folder = tmp_path_factory.mktemp("parity")
    paths = {}
    for model in LATEST:
        paths[model] = str(folder / f"{model}.npz")
        np.savez(paths[model], **inputs_for(model))  # type: ignore[arg-type]
    answers: dict[str, Any] = tf_client(examples_server, "parity", json.dumps(paths))
    return answers


def assert_bitwise_equal(got: Arrays, expected: Arrays, surface: str) -> None:
    assert set(got) == set(expected), surface
    for name, want in expected.items():
        value = np.asarray(got[name])
        assert value.dtype == np.float32, (surface, name, value.dtype)
        assert value.shape == want.shape, (surface, name, value.shape)
        np.testing.assert_array_equal(
            value.view(np.uint32), want.view(np.uint32), err_msg=f"{surface}: output {name!r}"
        )


@pytest.mark.parametrize("model", sorted(LATEST))
@pytest.mark.parametrize("surface", sorted(SURFACES))
def test_every_surface_gives_onnxruntime_bit_for_bit(
    examples_server: ServerProcess, example_repository_template: Path, model: str, surface: str
) -> None:
    expected = reference(example_repository_template, model)
    got = SURFACES[surface](examples_server, model, inputs_for(model), list(expected))
    assert_bitwise_equal(got, expected, surface)


@pytest.mark.parametrize("model", sorted(LATEST))
def test_tf_serving_grpc_gives_onnxruntime_bit_for_bit(
    tf_grpc_answers: dict[str, Any], example_repository_template: Path, model: str
) -> None:
    expected = reference(example_repository_template, model)
    answer = tf_grpc_answers[model]
    got = {}
    for name, tensor in answer.items():
        # typed float_val is a repeated float: four exact bytes per value on the wire
        assert (tensor["dtype"], tensor["fields"]) == ("float32", ["float_val"]), tensor
        array = np.frombuffer(bytes.fromhex(tensor["hex"]), np.float32)
        got[name] = array.reshape(tensor["shape"])
    assert_bitwise_equal(got, expected, "tf_grpc")


def test_the_inputs_are_worth_comparing(example_repository_template: Path) -> None:
    """Outputs that differ from row to row and use the whole float32 mantissa, so that equal
    answers mean equal computations rather than equal constants."""
    for model in LATEST:
        for name, output in reference(example_repository_template, model).items():
            assert len(np.unique(output.round(3), axis=0)) == len(output), (model, name)
            mantissas = output.view(np.uint32) & 0x7FFFFF
            assert np.count_nonzero(mantissas & 0xFF), (model, name)
