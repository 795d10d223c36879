"""Custom Python handlers (``model.py``) served by a real modelport process: TorchServe's API with
raw, JSON, text and multipart bodies, TF Serving REST instances, KServe V2 BYTES, dynamic batching,
and a handler that fails to initialize."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient

from modelport._pb.tfserving import apis_pb2 as apis
from modelport.protocols.tfserving.tensor_proto import fill_tensor_proto
from tests.handler_models import (
    BATCH_SIZE_HANDLER,
    FAILING_INITIALIZE,
    STAGED_CONFIG,
    STAGED_HANDLER,
    TEXT_HANDLER,
    TORCH_HANDLER,
    WORDS_HANDLER,
    WORDS_HELPERS,
    stats,
    write_config,
    write_handler,
)
from tests.server import ServerProcess
from tests.torch_models import Mlp, rows, run, save_torchscript

pytestmark = pytest.mark.filterwarnings("ignore:`torch\\.jit\\.:DeprecationWarning")

BATCH = 4
#: Requests that queue while the first one runs, then reach the handler as one batch.
QUEUED = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("handlers") / "models"
    write_handler(root / "text" / "1", TEXT_HANDLER)
    write_handler(root / "words" / "1", WORDS_HANDLER, extra={"helpers.py": WORDS_HELPERS})
    write_handler(root / "vowels" / "1", STAGED_HANDLER)
    write_config(root / "vowels", STAGED_CONFIG)
    save_torchscript(Mlp(), root / "rows" / "1" / "model.pt")
    write_handler(root / "rows" / "1", TORCH_HANDLER)
    write_config(
        root / "rows", {"outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1, 3]}]}
    )
    write_handler(root / "batched" / "1", BATCH_SIZE_HANDLER)
    # A long delay: queued requests wait for company until the running batch ends.
    write_config(
        root / "batched",
        {"dynamic_batching": {"max_batch_size": BATCH, "max_queue_delay_us": 60_000_000}},
    )
    write_handler(root / "broken" / "1", FAILING_INITIALIZE)
    write_handler(root / "picky" / "1", PICKY_HANDLER)
    process = ServerProcess(
        ["--model-repository", str(root), "--no-exit-on-error"], root.parent / "server.log"
    )
    process.wait_live()
    process.wait_log("ready: serving")
    yield process
    process.stop()


# ---- TorchServe's API ------------------------------------------------------------------------


def test_a_raw_body_reaches_the_handler_as_bytes(server: ServerProcess) -> None:
    response = requests.post(
        f"{server.url}/predictions/text",
        data=b"hello world",
        headers={"Content-Type": "application/octet-stream"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.text == "HELLO WORLD"
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    ("kwargs", "kind"),
    [
        pytest.param({"json": {"text": "one two three"}}, "dict", id="application/json"),
        pytest.param(
            {"data": "one two three", "headers": {"Content-Type": "text/plain"}}, "str", id="text"
        ),
        pytest.param({"data": b"one two three"}, "bytes", id="no Content-Type"),
        pytest.param({"files": {"data": ("t.txt", b"one two three")}}, "bytes", id="multipart"),
    ],
)
def test_the_body_is_decoded_as_torchserve_decodes_it(
    server: ServerProcess, kwargs: dict[str, Any], kind: str
) -> None:
    response = requests.post(f"{server.url}/predictions/words", timeout=10, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"words": 3, "kind": kind}


def test_a_base_handler_subclass_answers_as_its_model(server: ServerProcess) -> None:
    x = rows(1)
    response = requests.post(f"{server.url}/predictions/rows/1.0", json=x[0].tolist(), timeout=10)
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json(), run(Mlp(), x)[0], rtol=0, atol=1e-6)


def test_a_numeric_output_answers_the_request_row(server: ServerProcess) -> None:
    response = requests.post(f"{server.url}/predictions/vowels", data=b"banana", timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == stats("banana")


# ---- TF Serving REST and KServe V2 -----------------------------------------------------------


def test_tf_serving_instances_make_a_batch(server: ServerProcess) -> None:
    response = httpx.post(
        f"{server.url}/v1/models/text:predict", json={"instances": ["a b", "c"]}, timeout=10
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": ["A B", "C"]}


def test_v2_bytes_elements_are_requests(server: ServerProcess) -> None:
    metadata = httpx.get(f"{server.url}/v2/models/vowels", timeout=10).json()
    assert metadata["platform"] == "python"
    assert metadata["inputs"] == [{"name": "data", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["outputs"] == [{"name": "stats", "datatype": "FP32", "shape": [-1, 2]}]
    body = {"inputs": [{"name": "data", "datatype": "BYTES", "shape": [2], "data": ["sky", "io"]}]}
    response = httpx.post(f"{server.url}/v2/models/vowels/infer", json=body, timeout=10)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("stats", "FP32", [2, 2])
    assert output["data"] == [*stats("sky"), *stats("io")]


def test_v2_bytes_answers_of_a_text_handler(server: ServerProcess) -> None:
    body = {"inputs": [{"name": "data", "datatype": "BYTES", "shape": [1], "data": ["ok go"]}]}
    response = httpx.post(f"{server.url}/v2/models/text/infer", json=body, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == ["OK GO"]


def test_grpc_clients_reach_the_handler(server: ServerProcess) -> None:
    """tritonclient.grpc's BYTES tensor and TF Serving's PredictionService (via grpcio stubs)."""
    texts = np.array([b"sky", b"io"], dtype=np.object_)
    data = grpcclient.InferInput("data", [2], "BYTES")
    data.set_data_from_numpy(texts)
    client = grpcclient.InferenceServerClient(server.grpc_target)
    try:
        result = client.infer("vowels", [data]).as_numpy("stats")
        text = client.infer("text", [data]).as_numpy("output")
    finally:
        client.close()
    assert result is not None
    assert text is not None
    np.testing.assert_array_equal(result, [stats("sky"), stats("io")])
    assert list(text) == [b"SKY", b"IO"]

    request = apis.PredictRequest()
    request.model_spec.name = "vowels"
    fill_tensor_proto(request.inputs["data"], texts, "data")
    with grpc.insecure_channel(server.grpc_target) as channel:
        predict = channel.unary_unary(
            "/tensorflow.serving.PredictionService/Predict",
            request_serializer=apis.PredictRequest.SerializeToString,
            response_deserializer=apis.PredictResponse.FromString,
        )
        response = predict(request, timeout=30)
    assert list(response.outputs["stats"].float_val) == [*stats("sky"), *stats("io")]


# ---- batching and failures -------------------------------------------------------------------


def test_batched_requests_reach_the_handler_as_one_list(server: ServerProcess) -> None:
    folder = server_root(server) / "batched" / "1"
    url = f"{server.url}/predictions/batched"

    def call(body: bytes) -> Any:
        return requests.post(url, data=body, timeout=90).json()

    with ThreadPoolExecutor(1 + QUEUED) as pool:
        held = pool.submit(call, b"hold")
        wait_for((folder / "holding").exists, "the held request to start")
        queued = [pool.submit(call, f"request {i}".encode()) for i in range(QUEUED)]
        wait_for(lambda: queue_depth(server) == QUEUED, "the requests to queue")
        (folder / "release").touch()
        assert held.result() == 1
        assert [future.result() for future in queued] == [QUEUED] * QUEUED


def server_root(server: ServerProcess) -> Path:
    return server.log_path.parent / "models"


def queue_depth(server: ServerProcess) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith('modelport_queue_depth{model="batched"'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def test_a_failing_initialize_fails_the_version_and_says_why(server: ServerProcess) -> None:
    response = httpx.get(f"{server.url}/v1/models/broken", timeout=10)
    (status,) = response.json()["model_version_status"]
    message = status["status"]["error_message"]
    assert "Broken.initialize(context) raised FileNotFoundError" in message
    assert "weights.bin is missing" in message
    answer = requests.post(f"{server.url}/predictions/broken", data=b"x", timeout=10)
    assert answer.status_code == 503, answer.text
    assert answer.json()["type"] == "ServiceUnavailableException"
    assert json.loads(requests.get(f"{server.url}/ping", timeout=10).text)["status"]


#: Refuses bodies that are not "ok": TorchServe's PredictionException with 400, or a plain error.
PICKY_HANDLER = """
from ts.utils.util import PredictionException


class Picky:
    def handle(self, data, context):
        if data is None:
            return None
        body = data[0]["body"]
        if body in (b"", "ok"):
            return ["fine"] * len(data)
        if body == "crash":
            raise RuntimeError("the handler broke")
        raise PredictionException("send the text ok", 400)
"""


def test_a_prediction_exception_with_a_4xx_code_blames_the_request(server: ServerProcess) -> None:
    headers = {"Content-Type": "text/plain"}
    fine = requests.post(f"{server.url}/predictions/picky", data="ok", headers=headers, timeout=10)
    assert fine.status_code == 200, fine.text
    refused = requests.post(f"{server.url}/predictions/picky", data="no", headers=headers)
    assert refused.status_code == 400, refused.text
    assert refused.json()["message"] == "the handler refused the request: send the text ok"
    crashed = requests.post(f"{server.url}/predictions/picky", data="crash", headers=headers)
    assert crashed.status_code == 500, crashed.text
    assert "the handler raised RuntimeError: the handler broke" in crashed.json()["message"]
