"""Bad input gets a clear 4xx naming what was wrong: never a 500, never a stack trace."""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.models import build_example_repository
from tests.server import ServerProcess

LIMIT = 200_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = build_example_repository(tmp_path_factory.mktemp("bad") / "models")
    broken = root / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "model.onnx").write_bytes(b"this is not an onnx file")
    process = ServerProcess(
        [
            "--model-repository",
            str(root),
            "--max-body-bytes",
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


def v2(url: str, body: Any, model: str = "mnist") -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{url}/v2/models/{model}/infer", content=content)


def tf(url: str, body: Any, model: str = "mnist", verb: str = "predict") -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{url}/v1/models/{model}:{verb}", content=content)


def image_input(**changes: Any) -> dict[str, Any]:
    tensor = {"name": "images", "shape": [1, 784], "datatype": "FP32", "data": [0.5] * 784}
    tensor.update(changes)
    return tensor


def assert_error(response: httpx.Response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    for fragment in fragments:
        assert fragment in message, message


# ---- malformed bodies ----------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2", b'{"inputs": [}'])
def test_malformed_json(server: ServerProcess, body: bytes) -> None:
    assert_error(v2(server.url, body), 400, "malformed JSON")
    assert_error(tf(server.url, body), 400, "malformed JSON")


def test_body_that_is_not_an_object(server: ServerProcess) -> None:
    assert_error(v2(server.url, [1, 2]), 400, "must be a JSON object")
    assert_error(tf(server.url, "text"), 400, "must be a JSON object")


def test_deeply_nested_json(server: ServerProcess) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    assert_error(v2(server.url, body), 400)


def test_unknown_fields(server: ServerProcess) -> None:
    assert_error(v2(server.url, {"inputs": [image_input()], "extra": 1}), 400, "'extra'")
    assert_error(v2(server.url, {"inputs": [image_input(colour="red")]}), 400, "'colour'")
    assert_error(tf(server.url, {"instances": [[0] * 784], "typo": 1}), 400, "'typo'")


# ---- inputs that do not fit the model ------------------------------------------------------


def test_missing_input(server: ServerProcess) -> None:
    features = {"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
    assert_error(v2(server.url, {"inputs": [features]}, "tabular"), 400, "missing input 'category'")
    assert_error(
        tf(server.url, {"inputs": {"features": [[1, 2, 3, 4]]}}, "tabular"),
        400,
        "Missing named input: category",
    )
    assert_error(
        tf(server.url, {"instances": [{"features": [1, 2, 3, 4]}]}, "tabular"), 400, "category"
    )
    assert_error(v2(server.url, {"inputs": []}), 400, "non-empty 'inputs'")
    assert_error(tf(server.url, {"signature_name": "serving_default"}), 400, "Missing 'inputs'")


def test_unknown_input(server: ServerProcess) -> None:
    wrong = image_input(name="pixels")
    assert_error(v2(server.url, {"inputs": [wrong]}), 400, "unknown input 'pixels'", "images")


def test_wrong_dtype(server: ServerProcess) -> None:
    assert_error(
        v2(server.url, {"inputs": [image_input(datatype="FP64")]}),
        400,
        "'images'",
        "FP64",
        "expects FP32",
    )
    assert_error(v2(server.url, {"inputs": [image_input(datatype="FLOAT")]}), 400, "'FLOAT'")
    assert_error(
        v2(server.url, {"inputs": [image_input(data=["a"] * 784)]}), 400, "'images'", "strings"
    )
    assert_error(tf(server.url, {"instances": [["x"] * 784]}), 400, "'images'", "strings")
    category = {"name": "category", "shape": [1, 1], "datatype": "INT64", "data": [1.5]}
    features = {"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
    assert_error(v2(server.url, {"inputs": [features, category]}, "tabular"), 400, "whole numbers")


def test_wrong_shape(server: ServerProcess) -> None:
    assert_error(
        v2(server.url, {"inputs": [image_input(shape=[1, 783], data=[0.0] * 783)]}),
        400,
        "'images'",
        "[1, 783]",
        "[-1, 784]",
    )
    assert_error(tf(server.url, {"instances": [[0.0] * 10]}), 400, "[1, 10]", "[-1, 784]")
    assert_error(tf(server.url, {"instances": [[0.0] * 784, [0.0] * 3]}), 400, "same length")


@pytest.mark.parametrize(
    ("shape", "expected"),
    [([1, 785], "785 elements"), ([2, 784], "1568 elements"), ([2**31, 2**31], "elements")],
)
def test_element_count_must_match_shape(
    server: ServerProcess, shape: list[int], expected: str
) -> None:
    assert_error(v2(server.url, {"inputs": [image_input(shape=shape)]}), 400, expected, "784")


@pytest.mark.parametrize("shape", [[-1, 784], [1.5, 784], "1x784", [True, 784]])
def test_invalid_shape_values(server: ServerProcess, shape: Any) -> None:
    assert_error(v2(server.url, {"inputs": [image_input(shape=shape)]}), 400, "shape")


def test_batch_larger_than_the_model_allows(server: ServerProcess) -> None:
    rows = 65  # tabular's config.yaml sets max_batch_size: 64
    body = {
        "inputs": [
            {"name": "features", "shape": [rows, 4], "datatype": "FP32", "data": [0.0] * rows * 4},
            {"name": "category", "shape": [rows, 1], "datatype": "INT64", "data": [1] * rows},
        ]
    }
    assert_error(v2(server.url, body, "tabular"), 400, "batch of 65", "max_batch_size of 64")


def test_binary_extension_errors(server: ServerProcess) -> None:
    header = (
        json.dumps({"inputs": [image_input(data=None, parameters={"binary_data_size": 784 * 4})]})
        .replace(', "data": null', "")
        .encode()
    )
    url = f"{server.url}/v2/models/mnist/infer"
    short = httpx.post(
        url,
        content=header + b"\0" * 100,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert_error(short, 400, "binary_data_size is 3136", "100 bytes")
    too_long = httpx.post(
        url, content=header, headers={"Inference-Header-Content-Length": str(len(header) + 5)}
    )
    assert_error(too_long, 400, "Inference-Header-Content-Length")
    trailing = httpx.post(
        url,
        content=header + b"\0" * (784 * 4 + 8),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert_error(trailing, 400, "8 bytes")


def test_unknown_requested_output(server: ServerProcess) -> None:
    body = {"inputs": [image_input()], "outputs": [{"name": "logits"}]}
    assert_error(v2(server.url, body), 400, "unknown output 'logits'", "scores")


def test_shared_memory_parameters_are_refused(server: ServerProcess) -> None:
    tensor = image_input(parameters={"shared_memory_region": "r0"})
    response = v2(server.url, {"inputs": [tensor]})
    assert_error(response, 501, "shared memory")


def test_unknown_signature_name(server: ServerProcess) -> None:
    body = {"signature_name": "classify_x", "instances": [[0.0] * 784]}
    assert_error(tf(server.url, body), 400, "classify_x", "serving_default")


# ---- unknown names and unavailable models --------------------------------------------------


def test_unknown_model_version_and_label(server: ServerProcess) -> None:
    assert_error(v2(server.url, {"inputs": [image_input()]}, "nope"), 404, "'nope'", "mnist")
    assert_error(
        httpx.post(f"{server.url}/v2/models/mnist/versions/9/infer", json={}), 404, "version 9"
    )
    assert_error(
        httpx.post(f"{server.url}/v1/models/mnist/labels/beta:predict", json={}),
        404,
        "'beta'",
        "canary, stable",
    )
    assert_error(httpx.get(f"{server.url}/v1/models/nope"), 404, "'nope'")
    assert_error(httpx.get(f"{server.url}/v2/models/nope"), 404)
    assert_error(httpx.get(f"{server.url}/v2/models/mnist/versions/abc"), 400, "'abc'")


def test_model_that_failed_to_load_is_503_and_shows_its_error(server: ServerProcess) -> None:
    assert_error(v2(server.url, {"inputs": []}, "broken"), 503, "'broken'", "failed to load")
    status = httpx.get(f"{server.url}/v1/models/broken").json()["model_version_status"]
    assert status[0]["state"] == "END"
    assert status[0]["status"]["error_code"] == "UNKNOWN"
    assert "onnxruntime could not load model.onnx" in status[0]["status"]["error_message"]
    assert httpx.get(f"{server.url}/v2/models/broken/ready").status_code == 503


# ---- sizes, types and encodings of the body ------------------------------------------------


def test_body_over_the_limit_is_refused_before_it_is_read(server: ServerProcess) -> None:
    # Announce a body far over the limit but send none of it: the answer must not wait for it.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v2/models/mnist/infer HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
        )
        reply = b""
        while chunk := sock.recv(65536):  # the server closes after answering
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b"larger than the limit of 200000 bytes" in reply


def test_body_over_the_limit_when_sent(server: ServerProcess) -> None:
    response = httpx.post(f"{server.url}/v2/models/mnist/infer", content=b" " * (LIMIT + 1))
    assert_error(response, 413, "--max-body-bytes")


def test_chunked_body_over_the_limit(server: ServerProcess) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(50):
            yield b" " * 10_000

    response = httpx.post(f"{server.url}/v1/models/mnist:predict", content=chunks())
    assert_error(response, 413)


def test_decompression_bomb(server: ServerProcess) -> None:
    bomb = gzip.compress(b"0" * (LIMIT * 50))
    assert len(bomb) < LIMIT
    response = httpx.post(
        f"{server.url}/v2/models/mnist/infer", content=bomb, headers={"Content-Encoding": "gzip"}
    )
    assert_error(response, 413)


def test_corrupt_compressed_body(server: ServerProcess) -> None:
    response = httpx.post(
        f"{server.url}/v2/models/mnist/infer",
        content=b"definitely not gzip",
        headers={"Content-Encoding": "gzip"},
    )
    assert_error(response, 400, "gzip")


@pytest.mark.parametrize("content_type", ["application/python-pickle", "multipart/form-data"])
def test_unsupported_content_type(server: ServerProcess, content_type: str) -> None:
    response = httpx.post(
        f"{server.url}/v2/models/mnist/infer", content=b"x", headers={"Content-Type": content_type}
    )
    assert_error(response, 415, content_type)


def test_unsupported_content_encoding(server: ServerProcess) -> None:
    response = httpx.post(
        f"{server.url}/v2/models/mnist/infer", content=b"x", headers={"Content-Encoding": "br"}
    )
    assert_error(response, 415, "'br'")


def test_curl_default_form_content_type_is_read_as_json(server: ServerProcess) -> None:
    response = httpx.post(
        f"{server.url}/v1/models/mnist:predict",
        content=json.dumps({"instances": [[0.0] * 784]}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text


def test_non_finite_inputs_are_accepted_as_tf_serving_does(server: ServerProcess) -> None:
    body = b'{"instances": [[NaN, Infinity, -Infinity' + b", 0.0" * 781 + b"]]}"
    response = tf(server.url, body)
    assert response.status_code == 200, response.text


def test_server_is_still_healthy_afterwards(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
    assert v2(server.url, {"inputs": [image_input()]}).status_code == 200
