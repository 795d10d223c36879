"""TorchServe inference bodies: raw and multipart payloads, JSON instances, predictions, errors."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from urllib3 import encode_multipart_formdata

from modelport.errors import (
    Conflict,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidInput,
    LabelNotFound,
    MethodNotAllowed,
    ModelNotFound,
    ModelNotReady,
    ModelportError,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    RuntimeFailure,
    ShuttingDown,
    Unimplemented,
    UnsupportedMediaType,
    VersionNotFound,
)
from modelport.protocols.tfserving.codec import encode_predict
from modelport.protocols.torchserve.codec import (
    MAX_PARTS,
    Payload,
    decode_instances,
    encode_predictions,
    error_response,
    error_type,
    read_payload,
)
from modelport.types import Datatype, Signature, TensorSpec

FP32 = Datatype.FP32
SINGLE = Signature((TensorSpec("x", FP32, (-1, 2)),), (TensorSpec("y", FP32, (-1, 2)),))
TWO_INPUTS = Signature(
    (TensorSpec("a", FP32, (-1, 2)), TensorSpec("b", Datatype.INT64, (-1, 1))),
    (TensorSpec("y", FP32, (-1, 2)),),
)


def multipart(fields: dict[str, Any], boundary: str = "xYzZy") -> tuple[bytes, bytes]:
    body, content_type = encode_multipart_formdata(fields, boundary=boundary)
    return body, content_type.encode()


# ---- payloads ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        (None, ""),
        (b"application/json", "application/json"),
        (b"Application/JSON; charset=utf-8", "application/json"),
        (b"image/jpeg", "image/jpeg"),
        (b"application/x-www-form-urlencoded", "application/x-www-form-urlencoded"),
    ],
)
def test_a_plain_body_is_the_payload(header: bytes | None, kind: str) -> None:
    assert read_payload(b"[[1, 2]]", header) == Payload(b"[[1, 2]]", kind)


def test_the_data_part_of_a_form_is_the_payload() -> None:
    body, content_type = multipart(
        {
            "other": "ignored",
            "data": ("input.json", b"[[1, 2]]", "application/json"),
        }
    )
    assert read_payload(body, content_type) == Payload(b"[[1, 2]]", "application/json")


def test_a_body_part_is_the_payload_when_there_is_no_data_part() -> None:
    body, content_type = multipart({"body": "[[3, 4]]"})
    assert read_payload(body, content_type) == Payload(b"[[3, 4]]", "")


def test_data_wins_over_body_whatever_the_order() -> None:
    body, content_type = multipart({"body": "[[3, 4]]", "data": "[[1, 2]]"})
    assert read_payload(body, content_type).data == b"[[1, 2]]"


def test_the_first_data_part_is_kept() -> None:
    body, content_type = multipart({"data": "[[1, 2]]"}, boundary="b1")
    second, _ = multipart({"data": "[[9, 9]]"}, boundary="b1")
    joined = body.removesuffix(b"--b1--\r\n") + second
    assert read_payload(joined, content_type).data == b"[[1, 2]]"


def test_binary_part_bytes_are_kept_exactly() -> None:
    raw = bytes(range(256)) * 4 + b"\r\n--xYzZ"
    body, content_type = multipart({"data": ("image.jpg", raw, "image/jpeg")})
    assert read_payload(body, content_type) == Payload(raw, "image/jpeg")


def test_a_form_without_a_payload_part_names_the_parts_it_has() -> None:
    body, content_type = multipart({"image": "x", "meta": "y"})
    with pytest.raises(InvalidInput, match="no part named 'data'") as caught:
        read_payload(body, content_type)
    assert "'image', 'meta'" in caught.value.message
    assert "curl -F data=@file" in caught.value.message


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"[[1]]", b"multipart/form-data", "no boundary"),
        (b"", b"multipart/form-data; boundary=xYzZy", "empty or truncated"),
        (b"not a form at all", b"multipart/form-data; boundary=xYzZy", "malformed multipart"),
        (
            multipart({"data": "[[1, 2]]"})[0][:-10],
            b"multipart/form-data; boundary=xYzZy",
            "empty or truncated",
        ),
        (
            b"--xYzZy\r\nContent-Disposition: form-data\r\n\r\n[[1]]\r\n--xYzZy--\r\n",
            b"multipart/form-data; boundary=xYzZy",
            "no name",
        ),
    ],
)
def test_malformed_forms_are_bad_requests(body: bytes, content_type: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        read_payload(body, content_type)


def test_the_number_of_parts_is_bounded() -> None:
    fields = {f"f{i}": "x" for i in range(MAX_PARTS)}
    body, content_type = multipart({**fields, "data": "[[1, 2]]"})
    with pytest.raises(InvalidInput, match=f"more than {MAX_PARTS} parts"):
        read_payload(body, content_type)
    body, content_type = multipart({**dict(list(fields.items())[1:]), "data": "[[1, 2]]"})
    assert read_payload(body, content_type).data == b"[[1, 2]]"


# ---- instances ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "row_format"),
    [
        (b"[[1, 2], [3, 4]]", True),
        (b'[{"x": [1, 2]}, {"x": [3, 4]}]', True),
        (b'{"instances": [[1, 2], [3, 4]]}', True),
        (b'{"inputs": [[1, 2], [3, 4]]}', False),
        (b'{"inputs": {"x": [[1, 2], [3, 4]]}, "signature_name": "serving_default"}', False),
        (b"\n  \t[[1, 2], [3, 4]]", True),
    ],
)
@pytest.mark.parametrize("kind", ["", "application/json", "application/octet-stream", "text/plain"])
def test_json_instances_are_read_as_tf_serving_predict(
    data: bytes, row_format: bool, kind: str
) -> None:
    inputs, rows = decode_instances(Payload(data, kind), SINGLE, "m")
    assert rows is row_format
    np.testing.assert_array_equal(inputs["x"], np.array([[1, 2], [3, 4]], np.float32))
    assert inputs["x"].dtype == np.float32


def test_several_inputs_by_name() -> None:
    data = b'[{"a": [1, 2], "b": [7]}]'
    inputs, _ = decode_instances(Payload(data, ""), TWO_INPUTS, "m")
    assert inputs["b"].dtype == np.int64
    assert inputs["b"].tolist() == [[7]]


def test_nan_tokens_are_accepted_as_in_tf_serving() -> None:
    inputs, _ = decode_instances(Payload(b"[[NaN, Infinity]]", ""), SINGLE, "m")
    assert np.isnan(inputs["x"][0, 0])
    assert np.isinf(inputs["x"][0, 1])


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (Payload(b"[[1, 2]", "application/json"), "malformed JSON"),
        (Payload(b"{bad", ""), "malformed JSON"),
        (Payload(b'"text"', "application/json"), "not a string"),
        (Payload(b"7", "application/problem+json"), "list of instances"),
        (Payload(b"[]", ""), "non-empty list"),
        (Payload(b'{"data": [[1, 2]]}', ""), "unknown field 'data'"),
        (Payload(b'[{"a": [1, 2]}]', ""), "exactly the inputs"),
    ],
)
def test_bad_json_is_a_bad_request(payload: Payload, message: str) -> None:
    signature = TWO_INPUTS if b'"a"' in payload.data else SINGLE
    with pytest.raises(InvalidInput, match=message):
        decode_instances(payload, signature, "m")


@pytest.mark.parametrize(
    "payload",
    [
        Payload(b"\xff\xd8\xff\xe0 JFIF", "image/jpeg"),
        Payload(b"\xff\xd8\xff\xe0 JFIF", ""),
        Payload(b"\x00\x01\x02", "application/octet-stream"),
        Payload(b"a cat sat on the mat", "text/plain"),
    ],
)
def test_raw_bytes_need_a_handler(payload: Payload) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        decode_instances(payload, SINGLE, "mnist")
    message = caught.value.message
    assert "'mnist' is a plain ONNX model" in message
    assert "custom handler" in message
    assert '{"instances": [...]}' in message
    assert (payload.content_type or "sent without a Content-Type") in message


# ---- predictions -------------------------------------------------------------------------------


def test_one_output_is_a_list_per_instance() -> None:
    outputs = {"y": np.array([[1, 2], [3, 4]], np.float32)}
    assert json.loads(encode_predictions(outputs, True)) == [[1, 2], [3, 4]]


def test_several_outputs_are_an_object_per_instance() -> None:
    outputs = {"y": np.array([[1], [2]], np.float32), "z": np.array([5, 6], np.int64)}
    assert json.loads(encode_predictions(outputs, True)) == [
        {"y": [1], "z": 5},
        {"y": [2], "z": 6},
    ]


def test_columnar_requests_get_the_outputs_themselves() -> None:
    one = {"y": np.array([[1, 2]], np.float32)}
    assert json.loads(encode_predictions(one, False)) == [[1, 2]]
    two = {"y": np.array([[1, 2]], np.float32), "z": np.array([5], np.int64)}
    assert json.loads(encode_predictions(two, False)) == {"y": [[1, 2]], "z": [5]}


@pytest.mark.parametrize("row_format", [True, False])
def test_predictions_are_tf_servings_without_the_wrapper(row_format: bool) -> None:
    outputs = {
        "y": np.array([[np.nan, 1.5], [np.inf, 2]], np.float32),
        "s_bytes": np.array([b"a", b"\xff"], dtype=object),
    }
    wrapped = json.loads(encode_predict(outputs, row_format))
    assert json.loads(encode_predictions(outputs, row_format)) == next(iter(wrapped.values()))
    assert b"NaN" in encode_predictions(outputs, row_format)


def test_outputs_the_rows_cannot_split_are_a_failed_precondition() -> None:
    outputs = {"y": np.array([1, 2], np.float32), "z": np.array([1], np.float32)}
    with pytest.raises(FailedPrecondition, match="columnar"):
        encode_predictions(outputs, True)


# ---- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ModelNotFound("m"), "ModelNotFoundException"),
        (VersionNotFound("m"), "ModelVersionNotFoundException"),
        (LabelNotFound("m"), "ResourceNotFoundException"),
        (NotFound("m"), "ResourceNotFoundException"),
        (InvalidInput("m"), "BadRequestException"),
        (FailedPrecondition("m"), "BadRequestException"),
        (MethodNotAllowed("m"), "MethodNotAllowedException"),
        (Conflict("m"), "ConflictStatusException"),
        (ModelNotReady("m"), "ServiceUnavailableException"),
        (ShuttingDown("m"), "ServiceUnavailableException"),
        (DeadlineExceeded("m"), "RequestTimeoutException"),
        (RuntimeFailure("m"), "InternalServerException"),
        (ModelportError("m"), "InternalServerException"),
        (PayloadTooLarge("m"), "PayloadTooLargeException"),
        (UnsupportedMediaType("m"), "UnsupportedMediaTypeException"),
        (Overloaded("m"), "OverloadedException"),
        (Unimplemented("m"), "UnimplementedException"),
    ],
)
def test_error_types(error: ModelportError, kind: str) -> None:
    assert error_type(error) == kind
    response = error_response(error)
    assert response.status == error.http_status
    assert json.loads(response.body) == {"code": error.http_status, "type": kind, "message": "m"}
    assert response.content_type == b"application/json"


@pytest.mark.parametrize(
    ("error", "header"),
    [
        (Overloaded("full", retry_after_s=2.5), (b"retry-after", b"3")),
        (MethodNotAllowed("no", ("POST", "PUT")), (b"allow", b"POST, PUT")),
        (PayloadTooLarge("big"), (b"connection", b"close")),
    ],
)
def test_errors_keep_their_headers(error: ModelportError, header: tuple[bytes, bytes]) -> None:
    assert error_response(error).headers == (header,)
