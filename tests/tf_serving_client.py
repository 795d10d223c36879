"""TF Serving's own Python client (tensorflow-serving-api) driving a modelport gRPC port.

Runs under .venv-tf's interpreter (``make tools``), not the test interpreter: TensorFlow pins
its own protobuf and numpy. tests/integration/test_tfserving_grpc.py starts it as

    .venv-tf/bin/python -m tests.tf_serving_client SCENARIO HOST:PORT [ARGUMENT]

and reads one JSON document from its last line of output (test_parity.py and
test_grpc_bad_input.py run it the same way). Every call goes through the generated stubs,
exactly as a TF Serving user writes it; a failed call is reported as
``{"code": "NOT_FOUND", "details": "..."}`` so the test can check codes and messages.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

TIMEOUT_S = 30


def attempt(call: Callable[[], Any]) -> Any:
    """The call's result, or its gRPC status as a dict."""
    try:
        return call()
    except grpc.RpcError as exc:
        return {"code": exc.code().name, "details": exc.details()}


def spec(message: Any, model: str, version: int | None = None, label: str | None = None) -> None:
    message.name = model
    if version is not None:
        message.version.value = version
    if label is not None:
        message.version_label = label


def describe_spec(message: Any) -> dict[str, Any]:
    return {
        "name": message.name,
        "version": message.version.value if message.HasField("version") else None,
        "signature_name": message.signature_name,
    }


def typed_fields(proto: Any) -> list[str]:
    return [field.name for field, _ in proto.ListFields() if field.name.endswith("_val")]


# ---- scenarios ---------------------------------------------------------------------------------


def predict(stub: Any, images_path: str) -> dict[str, Any]:
    """mnist and tabular through tensor_content, typed values, versions, labels, output_filter."""
    images = np.load(images_path)

    def run(tensor: Any, **choice: Any) -> dict[str, Any]:
        request = predict_pb2.PredictRequest()
        spec(request.model_spec, "mnist", **choice)
        request.inputs["images"].CopyFrom(tensor)
        response = stub.Predict(request, timeout=TIMEOUT_S)
        scores = response.outputs["scores"]
        return {
            "model_spec": describe_spec(response.model_spec),
            "dtype": tf.dtypes.as_dtype(scores.dtype).name,
            "fields": typed_fields(scores),
            "has_tensor_content": bool(scores.tensor_content),
            "scores": tf.make_ndarray(scores).tolist(),
        }

    content = tf.make_tensor_proto(images)
    typed = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        tensor_shape=tf.TensorShape(images.shape).as_proto(),
        float_val=images.ravel().tolist(),
    )
    result = {
        "content_encoding": bool(content.tensor_content),
        "latest": run(content),
        "version_1": run(content, version=1),
        "stable": run(content, label="stable"),
        "typed": run(typed),
        "broadcast": run(tf.make_tensor_proto(0.5, dtype=tf.float32, shape=[2, 784])),
    }
    request = predict_pb2.PredictRequest(output_filter=["score"])
    spec(request.model_spec, "tabular")
    request.inputs["features"].CopyFrom(tf.make_tensor_proto(np.full((2, 4), 0.25, np.float32)))
    category = tf.make_tensor_proto([[1], [3]], dtype=tf.int64)
    request.inputs["category"].CopyFrom(category)
    response = stub.Predict(request, timeout=TIMEOUT_S)
    result["tabular"] = {name: tf.make_ndarray(t).tolist() for name, t in response.outputs.items()}
    return result


def metadata(stub: Any, model: str) -> dict[str, Any]:
    """GetModelMetadata, with the Any unpacked into SignatureDefMap."""
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    spec(request.model_spec, model)
    response = stub.GetModelMetadata(request, timeout=TIMEOUT_S)
    packed = response.metadata["signature_def"]
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    unpacked = packed.Unpack(signature_map)

    def tensors(infos: Any) -> dict[str, Any]:
        return {
            alias: {
                "name": info.name,
                "dtype": tf.dtypes.as_dtype(info.dtype).name,
                "shape": [dim.size for dim in info.tensor_shape.dim],
            }
            for alias, info in infos.items()
        }

    return {
        "model_spec": describe_spec(response.model_spec),
        "type_url": packed.type_url,
        "unpacked": unpacked,
        "signatures": {
            key: {
                "method_name": sig.method_name,
                "inputs": tensors(sig.inputs),
                "outputs": tensors(sig.outputs),
            }
            for key, sig in signature_map.signature_def.items()
        },
    }


def status(channel: Any, model: str) -> Any:
    """GetModelStatus of every version of ``model``."""
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    spec(request.model_spec, model)

    def call() -> Any:
        response = stub.GetModelStatus(request, timeout=TIMEOUT_S)
        return [
            {
                "version": s.version,
                "state": get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
                "error_code": s.status.error_code,
                "error_message": s.status.error_message,
            }
            for s in response.model_version_status
        ]

    return attempt(call)


def _examples(rows: list[dict[str, Any]]) -> list[tf.train.Example]:
    examples = []
    for row in rows:
        feature = {}
        if "features" in row:
            feature["features"] = tf.train.Feature(
                float_list=tf.train.FloatList(value=row["features"])
            )
        if "category" in row:
            feature["category"] = tf.train.Feature(
                int64_list=tf.train.Int64List(value=[row["category"]])
            )
        examples.append(tf.train.Example(features=tf.train.Features(feature=feature)))
    return examples


def examples(stub: Any, rows_json: str) -> dict[str, Any]:
    """Classify (example_list), Regress (example_list_with_context) and MultiInference."""
    rows = json.loads(rows_json)
    classify = classification_pb2.ClassificationRequest()
    spec(classify.model_spec, "tabular")
    classify.input.example_list.examples.extend(_examples(rows))
    classified = stub.Classify(classify, timeout=TIMEOUT_S)

    regress = regression_pb2.RegressionRequest()
    spec(regress.model_spec, "tabular")
    with_context = regress.input.example_list_with_context
    with_context.examples.extend(_examples([{"features": row["features"]} for row in rows]))
    with_context.context.CopyFrom(_examples([{"category": rows[0]["category"]}])[0])
    regressed = stub.Regress(regress, timeout=TIMEOUT_S)

    multi = inference_pb2.MultiInferenceRequest()
    for method in ("tensorflow/serving/classify", "tensorflow/serving/regress"):
        task = multi.tasks.add(method_name=method)
        spec(task.model_spec, "tabular")
    multi.input.CopyFrom(classify.input)
    both = stub.MultiInference(multi, timeout=TIMEOUT_S)
    return {
        "classify": {
            "model_spec": describe_spec(classified.model_spec),
            "classes": [
                [[c.label, c.score] for c in row.classes]
                for row in classified.result.classifications
            ],
        },
        "regress": {
            "model_spec": describe_spec(regressed.model_spec),
            "values": [r.value for r in regressed.result.regressions],
        },
        "multi": [result.WhichOneof("result") for result in both.results],
    }


def reload(channel: Any, config_text: str) -> Any:
    """HandleReloadConfigRequest with a text-format ModelServerConfig."""
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(config_text, request.config)

    def call() -> Any:
        response = stub.HandleReloadConfigRequest(request, timeout=120)
        return {"error_code": response.status.error_code, "message": response.status.error_message}

    return attempt(call)


def errors(stub: Any) -> dict[str, Any]:
    """Requests TF Serving refuses too, with the status modelport answers."""

    def predict_call(model: str, tensor: Any, name: str = "images", **extra: Any) -> Any:
        request = predict_pb2.PredictRequest(**extra)
        spec(request.model_spec, model)
        request.inputs[name].CopyFrom(tensor)
        return lambda: stub.Predict(request, timeout=TIMEOUT_S)

    images = np.zeros((1, 784), np.float32)
    metadata_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["graph"])
    spec(metadata_request.model_spec, "mnist")
    classify = classification_pb2.ClassificationRequest()
    spec(classify.model_spec, "tabular")
    calls = {
        "unknown_model": predict_call("nope", tf.make_tensor_proto(images)),
        "wrong_dtype": predict_call("mnist", tf.make_tensor_proto(images.astype(np.float64))),
        "wrong_shape": predict_call("mnist", tf.make_tensor_proto(np.zeros((1, 783), np.float32))),
        "wrong_alias": predict_call("mnist", tf.make_tensor_proto(images), name="pixels"),
        "unknown_output": predict_call(
            "mnist", tf.make_tensor_proto(images), output_filter=["logits"]
        ),
        "metadata_field": lambda: stub.GetModelMetadata(metadata_request, timeout=TIMEOUT_S),
        "empty_input": lambda: stub.Classify(classify, timeout=TIMEOUT_S),
    }
    version = predict_pb2.PredictRequest()
    spec(version.model_spec, "mnist", version=9)
    version.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    calls["unknown_version"] = lambda: stub.Predict(version, timeout=TIMEOUT_S)
    signature = predict_pb2.PredictRequest()
    spec(signature.model_spec, "mnist")
    signature.model_spec.signature_name = "other"
    signature.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    calls["unknown_signature"] = lambda: stub.Predict(signature, timeout=TIMEOUT_S)
    return {name: attempt(call) for name, call in calls.items()}


def parity(stub: Any, requests_json: str) -> dict[str, Any]:
    """Predict each model on the arrays of its .npz file; every output as dtype, shape, bytes."""
    answers: dict[str, Any] = {}
    for model, path in json.loads(requests_json).items():
        request = predict_pb2.PredictRequest()
        spec(request.model_spec, model)
        with np.load(path) as arrays:
            for name in arrays.files:
                request.inputs[name].CopyFrom(tf.make_tensor_proto(arrays[name]))
        response = stub.Predict(request, timeout=TIMEOUT_S)
        answers[model] = {
            name: {
                "dtype": tf.dtypes.as_dtype(tensor.dtype).name,
                "fields": typed_fields(tensor),
                "shape": [dim.size for dim in tensor.tensor_shape.dim],
                "hex": tf.make_ndarray(tensor).tobytes().hex(),
            }
            for name, tensor in response.outputs.items()
        }
    return answers


def bad_input(stub: Any, limits_json: str) -> dict[str, Any]:
    """Malformed Predict requests, each followed by a valid one: its status, then the next's."""
    oversized_rows = json.loads(limits_json)["oversized_rows"]

    def tensor(dtype: Any, shape: list[int] | None, **values: Any) -> Any:
        dims = tf.TensorShape(shape).as_proto()
        return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=dims, **values)

    def predict_call(model: str, inputs: dict[str, Any], label: str | None = None) -> Any:
        request = predict_pb2.PredictRequest()
        spec(request.model_spec, model, label=label)
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(value)
        return lambda: stub.Predict(request, timeout=TIMEOUT_S)

    image = tf.make_tensor_proto(np.zeros((1, 784), np.float32))
    features = tf.make_tensor_proto(np.zeros((1, 4), np.float32))
    calls = {
        "oversized": predict_call(
            "mnist", {"images": tf.make_tensor_proto(np.ones((oversized_rows, 784), np.float32))}
        ),
        "content_size": predict_call(
            "mnist", {"images": tensor(types_pb2.DT_FLOAT, [1, 784], tensor_content=b"\0" * 100)}
        ),
        "value_count": predict_call(
            "mnist", {"images": tensor(types_pb2.DT_FLOAT, [1, 784], float_val=[1.0, 2.0, 3.0])}
        ),
        "wrong_field": predict_call(
            "mnist", {"images": tensor(types_pb2.DT_FLOAT, [1, 784], int_val=[1] * 784)}
        ),
        "unknown_rank": predict_call(
            "mnist", {"images": tensor(types_pb2.DT_FLOAT, None, float_val=[1.0])}
        ),
        "string_dtype": predict_call(
            "mnist", {"images": tf.make_tensor_proto(np.array([[b"a"] * 784]))}
        ),
        "int32_for_int64": predict_call(
            "tabular",
            {"features": features, "category": tf.make_tensor_proto(np.zeros((1, 1), np.int32))},
        ),
        "missing_input": predict_call("tabular", {"features": features}),
        "unknown_label": predict_call("mnist", {"images": image}, label="beta"),
        "unavailable": predict_call("broken", {"images": image}),
    }
    valid = predict_call("mnist", {"images": image})

    def then() -> Any:
        response = valid()
        return tf.make_ndarray(response.outputs["scores"]).shape[1]

    results = {}
    for name, call in calls.items():
        failed = attempt(call)
        results[name] = {**failed, "then": attempt(then)} if isinstance(failed, dict) else "OK"
    return results


def signatures(stub: Any, request_json: str) -> dict[str, Any]:
    """Predict with each ``signature_name`` of a JSON document {model, inputs, signatures}."""
    doc = json.loads(request_json)
    answers: dict[str, Any] = {}
    for name in doc["signatures"]:
        request = predict_pb2.PredictRequest()
        spec(request.model_spec, doc["model"])
        request.model_spec.signature_name = name
        for alias, values in doc["inputs"].items():
            request.inputs[alias].CopyFrom(tf.make_tensor_proto(np.asarray(values, np.float32)))

        def call(request: Any = request) -> dict[str, Any]:
            response = stub.Predict(request, timeout=TIMEOUT_S)
            outputs = {key: tf.make_ndarray(t).tolist() for key, t in response.outputs.items()}
            return {"outputs": outputs, "model_spec": describe_spec(response.model_spec)}

        answers[name] = attempt(call)
    answers["metadata"] = metadata(stub, doc["model"])["signatures"]
    return answers


def main(argv: list[str]) -> int:
    scenario, target = argv[1], argv[2]
    argument = argv[3] if len(argv) > 3 else ""
    channel = grpc.insecure_channel(target)
    grpc.channel_ready_future(channel).result(timeout=TIMEOUT_S)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    runs: dict[str, Callable[[], Any]] = {
        "predict": lambda: predict(stub, argument),
        "metadata": lambda: metadata(stub, argument),
        "status": lambda: status(channel, argument),
        "examples": lambda: examples(stub, argument),
        "reload": lambda: reload(channel, argument),
        "errors": lambda: errors(stub),
        "parity": lambda: parity(stub, argument),
        "bad_input": lambda: bad_input(stub, argument),
        "signatures": lambda: signatures(stub, argument),
    }
    print(json.dumps(runs[scenario]()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
