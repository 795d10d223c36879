"""Bad input over gRPC against a real server: KServe V2 (tritonclient.grpc, and its generated
stubs for what tritonclient never sends) and TF Serving (tensorflow-serving-api, in .venv-tf).

Every refusal carries the status code of architecture.md's error table and a message naming what
was wrong; after it the server still answers a valid request, and its log holds no traceback.
Cases tests/integration/test_kserve_v2_grpc.py and test_tfserving_grpc.py already check (TF
Serving's unknown model, version, alias, signature and double input) are not repeated here.
"""

from __future__ import annotations

import json
import queue
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.integration.test_tfserving_grpc import client as tf_client
from tests.models import build_example_repository
from tests.server import ServerProcess

#: --grpc-max-receive-message-bytes of the server: a few dozen mnist rows go over it.
LIMIT = 100_000
OVERSIZED_ROWS = LIMIT // (784 * 4) + 8
PATIENCE_S = 30


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = build_example_repository(tmp_path_factory.mktemp("grpcbad") / "models")
    broken = root / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "model.onnx").write_bytes(b"this is not an onnx file")
    process = ServerProcess(
        [
            "--model-repository",
            str(root),
            "--grpc-max-receive-message-bytes",
            str(LIMIT),
            "--no-exit-on-error",
            "--no-strict-readiness",
        ],
        root.parent / "server.log",
    )
    process.wait_ready()
    yield process
    assert "Traceback" not in process.log()
    process.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(server.grpc_target)
    yield c
    c.close()


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def tensor(name: str, data: np.ndarray, datatype: str) -> triton.InferInput:
    t = triton.InferInput(name, list(data.shape), datatype)
    t.set_data_from_numpy(data)
    return t


def image(rows: int = 1, dtype: Any = np.float32, width: int = 784) -> np.ndarray:
    return np.full((rows, width), 0.5, dtype)


def assert_still_serving(server: ServerProcess, client: triton.InferenceServerClient) -> None:
    result = client.infer("mnist", [tensor("images", image(), "FP32")])
    assert result.as_numpy("scores").shape == (1, 10)
    assert "Traceback" not in server.log()


# ---- KServe V2 gRPC through tritonclient ------------------------------------------------------


def tabular(rows: int = 1, category: Any = np.int64, datatype: str = "INT64") -> list[Any]:
    return [
        tensor("features", np.zeros((rows, 4), np.float32), "FP32"),
        tensor("category", np.ones((rows, 1), category), datatype),
    ]


TRITON_CASES: dict[str, tuple[Callable[[triton.InferenceServerClient], Any], str, list[str]]] = {
    "wrong_dtype": (
        lambda c: c.infer("mnist", [tensor("images", image(dtype=np.float64), "FP64")]),
        "INVALID_ARGUMENT",
        ["'images'", "datatype FP64", "expects FP32"],
    ),
    "int32_for_int64": (
        lambda c: c.infer("tabular", tabular(category=np.int32, datatype="INT32")),
        "INVALID_ARGUMENT",
        ["'category'", "datatype INT32", "expects INT64"],
    ),
    "wrong_shape": (
        lambda c: c.infer("mnist", [tensor("images", image(width=783), "FP32")]),
        "INVALID_ARGUMENT",
        ["'images'", "[1, 783]", "[-1, 784]"],
    ),
    "batch_over_max_batch_size": (
        lambda c: c.infer("tabular", tabular(rows=65)),
        "INVALID_ARGUMENT",
        ["batch of 65", "max_batch_size of 64"],
    ),
    "unknown_input": (
        lambda c: c.infer("mnist", [tensor("pixels", image(), "FP32")]),
        "INVALID_ARGUMENT",
        ["unknown input 'pixels'", "images FP32 [-1, 784]"],
    ),
    "missing_input": (
        lambda c: c.infer("tabular", tabular()[:1]),
        "INVALID_ARGUMENT",
        ["missing input 'category'"],
    ),
    "unknown_output": (
        lambda c: c.infer(
            "mnist",
            [tensor("images", image(), "FP32")],
            outputs=[triton.InferRequestedOutput("logits")],
        ),
        "INVALID_ARGUMENT",
        ["unknown output 'logits'", "scores"],
    ),
    "oversized": (
        lambda c: c.infer("mnist", [tensor("images", image(OVERSIZED_ROWS), "FP32")]),
        "RESOURCE_EXHAUSTED",
        [f"vs. {LIMIT}", "--grpc-max-receive-message-bytes"],
    ),
    "unknown_model": (
        lambda c: c.infer("nope", [tensor("images", image(), "FP32")]),
        "NOT_FOUND",
        ["model 'nope'", "mnist"],
    ),
    "unknown_version": (
        lambda c: c.infer("mnist", [tensor("images", image(), "FP32")], model_version="9"),
        "NOT_FOUND",
        ["'mnist' has no version 9", "1, 2"],
    ),
    "version_not_a_number": (
        lambda c: c.infer("mnist", [tensor("images", image(), "FP32")], model_version="x"),
        "INVALID_ARGUMENT",
        ["version 'x'"],
    ),
    "model_that_failed_to_load": (
        lambda c: c.infer("broken", [tensor("images", image(), "FP32")]),
        "UNAVAILABLE",
        ["'broken'", "failed to load"],
    ),
}


@pytest.mark.parametrize("case", list(TRITON_CASES))
def test_v2_grpc_refusals_through_tritonclient(
    server: ServerProcess, client: triton.InferenceServerClient, case: str
) -> None:
    call, code, fragments = TRITON_CASES[case]
    with pytest.raises(InferenceServerException) as refused:
        call(client)
    assert refused.value.status() == f"StatusCode.{code}", refused.value.message()
    message = str(refused.value.message())
    for fragment in fragments:
        assert fragment in message, message
    assert_still_serving(server, client)


# ---- KServe V2 gRPC messages tritonclient never builds ----------------------------------------


def request(
    raw: list[bytes] | None = None, datatype: str = "FP32", shape: tuple[int, ...] = (1, 784)
) -> tuple[service_pb2.ModelInferRequest, Any]:
    message = service_pb2.ModelInferRequest(model_name="mnist")
    tensor = message.inputs.add(name="images", datatype=datatype, shape=list(shape))
    message.raw_input_contents.extend(raw or [])
    return message, tensor


def raw_and_typed() -> service_pb2.ModelInferRequest:
    message, tensor = request([image().tobytes()])
    tensor.contents.fp32_contents.extend([0.5] * 784)
    return message


def typed(field: str, count: int) -> service_pb2.ModelInferRequest:
    message, tensor = request()
    getattr(tensor.contents, field).extend([0] * count)
    return message


STUB_CASES: dict[str, tuple[Callable[[], Any], list[str]]] = {
    "raw_contents_too_short": (
        lambda: request([b"\0" * 100])[0],
        ["'images'", "100 bytes", "needs 3136 bytes"],
    ),
    "more_raw_contents_than_inputs": (
        lambda: request([image().tobytes()] * 2)[0],
        ["2 raw_input_contents entries for 1 inputs"],
    ),
    "raw_and_typed_contents": (raw_and_typed, ["'images'", "typed contents", "raw_input_contents"]),
    "typed_count": (lambda: typed("fp32_contents", 10), ["784 elements", "fp32_contents has 10"]),
    "typed_field_of_another_type": (
        lambda: typed("int_contents", 784),
        ["fp32_contents", "int_contents"],
    ),
    "no_data": (lambda: request()[0], ["'images' has no data"]),
    "unknown_datatype": (lambda: request([image().tobytes()], "FLOAT")[0], ["'FLOAT'", "FP32"]),
    "negative_dimension": (
        lambda: request([image().tobytes()], shape=(-1, 784))[0],
        ["[-1, 784]", "negative"],
    ),
}


@pytest.mark.parametrize("case", list(STUB_CASES))
def test_v2_grpc_malformed_requests_through_the_generated_stub(
    server: ServerProcess,
    client: triton.InferenceServerClient,
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
    case: str,
) -> None:
    build, fragments = STUB_CASES[case]
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(build(), timeout=PATIENCE_S)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
    details = str(refused.value.details())
    for fragment in fragments:
        assert fragment in details, details
    assert_still_serving(server, client)


def test_v2_grpc_bytes_that_are_not_a_message(
    server: ServerProcess, client: triton.InferenceServerClient
) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as refused:
            call(b"\xff\xff\xff", timeout=PATIENCE_S)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "inference.ModelInferRequest" in str(refused.value.details())
    assert_still_serving(server, client)


def test_an_oversized_message_ends_its_stream_and_the_next_stream_works(
    server: ServerProcess, client: triton.InferenceServerClient
) -> None:
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer(
            "mnist", [tensor("images", image(OVERSIZED_ROWS), "FP32")], request_id="big"
        )
        result, error = answers.get(timeout=PATIENCE_S)
    finally:
        client.stop_stream()
    assert result is None
    assert error.status() == "StatusCode.RESOURCE_EXHAUSTED", error.message()
    assert "--grpc-max-receive-message-bytes" in error.message()

    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer("mnist", [tensor("images", image(), "FP32")], request_id="ok")
        result, error = answers.get(timeout=PATIENCE_S)
    finally:
        client.stop_stream()
    assert error is None
    assert result.get_response().id == "ok"
    assert result.as_numpy("scores").shape == (1, 10)
    assert_still_serving(server, client)


# ---- TF Serving gRPC through tensorflow-serving-api ---------------------------------------------


TF_CASES = {
    "oversized": ("RESOURCE_EXHAUSTED", [f"vs. {LIMIT}", "--grpc-max-receive-message-bytes"]),
    "content_size": ("INVALID_ARGUMENT", ["'images'", "100 bytes", "needs 3136 bytes"]),
    "value_count": ("INVALID_ARGUMENT", ["'images'", "3 values in float_val", "holds 784"]),
    "wrong_field": ("INVALID_ARGUMENT", ["DT_FLOAT", "float_val", "the request set int_val"]),
    "unknown_rank": ("INVALID_ARGUMENT", ["'images'", "unknown rank"]),
    "string_dtype": ("INVALID_ARGUMENT", ["'images' is DT_STRING", "expects DT_FLOAT"]),
    "int32_for_int64": ("INVALID_ARGUMENT", ["'category' is DT_INT32", "expects DT_INT64"]),
    "missing_input": ("INVALID_ARGUMENT", ["Missing but required: {category}"]),
    # TF Serving itself answers INVALID_ARGUMENT ("Unrecognized servable version label"); modelport
    # treats an unknown label like an unknown version (architecture.md: LabelNotFound, NOT_FOUND).
    "unknown_label": ("NOT_FOUND", ["'beta'", "canary, stable"]),
    "unavailable": ("UNAVAILABLE", ["'broken'", "failed to load"]),
}


@pytest.fixture(scope="module")
def tf_answers(server: ServerProcess) -> dict[str, Any]:
    answers: dict[str, Any] = tf_client(
        server, "bad_input", json.dumps({"oversized_rows": OVERSIZED_ROWS})
    )
    return answers


@pytest.mark.parametrize("case", list(TF_CASES))
def test_tf_serving_grpc_refusals(
    server: ServerProcess, tf_answers: dict[str, Any], case: str
) -> None:
    code, fragments = TF_CASES[case]
    answer = tf_answers[case]
    assert answer != "OK", f"{case} was accepted"
    assert answer["code"] == code, answer
    for fragment in fragments:
        assert fragment in answer["details"], answer
    assert answer["then"] == 10, f"the valid Predict after {case} failed: {answer['then']}"
    assert "Traceback" not in server.log()


def test_tf_serving_cases_are_all_checked(tf_answers: dict[str, Any]) -> None:
    assert set(tf_answers) == set(TF_CASES)
