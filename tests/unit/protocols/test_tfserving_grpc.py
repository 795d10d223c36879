"""TF Serving's gRPC services (protocols.md §3) through ``GrpcApp``, on real onnxruntime models.

Requests go in as serialized bytes and answers come back as bytes, exactly as the listener hands
them over; the repository, manager, watcher, dataplane and engine are the real ones, running on an
event loop in a thread of their own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from google.protobuf.message import Message

from modelport._pb.tensorflow.example_pb2 import Example
from modelport._pb.tensorflow.tensor_pb2 import TensorProto
from modelport._pb.tfserving import apis_pb2 as apis
from modelport.core.dataplane import DataPlane
from modelport.core.dispatch import Dispatcher
from modelport.errors import InvalidInput
from modelport.lifecycle.control import RepositoryController
from modelport.lifecycle.manager import ModelManager
from modelport.lifecycle.repository import DirectoryRepository, RepositorySource
from modelport.lifecycle.tfconfig import ConfigFileRepository
from modelport.lifecycle.watcher import RepositoryWatcher
from modelport.protocols.grpc import CallContext, GrpcApp, GrpcStatus, StatusCode
from modelport.protocols.tfserving.grpc import (
    MODEL_SERVICE,
    PREDICTION_SERVICE,
    PROTOCOL,
    TFServingGrpc,
)
from modelport.protocols.tfserving.grpc_codec import example_inputs
from modelport.types import Datatype, Signature, TensorSpec
from tests.models import (
    ONNX_TYPES,
    build_example_repository,
    constant_model,
    identity_model,
    save,
    string_model,
)
from tests.unit.protocols.test_tensor_proto import TF_NUMBERS, TYPED_FIELDS

T = TypeVar("T")
PATIENCE_S = 60

MODEL_METHODS = {"GetModelStatus", "HandleReloadConfigRequest"}
RESPONSES: dict[str, type[Message]] = {
    "Predict": apis.PredictResponse,
    "Classify": apis.ClassificationResponse,
    "Regress": apis.RegressionResponse,
    "MultiInference": apis.MultiInferenceResponse,
    "GetModelMetadata": apis.GetModelMetadataResponse,
    "GetModelStatus": apis.GetModelStatusResponse,
    "HandleReloadConfigRequest": apis.ReloadConfigResponse,
}
_DATATYPES = {number: datatype for datatype, number in TF_NUMBERS.items()}


class Recorder:
    """A RequestObserver keeping every (model, version, protocol, outcome)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, int, str, str]] = []

    def on_request(
        self, model: str, version: int, protocol: str, outcome: str, seconds: float
    ) -> None:
        self.requests.append((model, version, protocol, outcome))


class Stack:
    """Manager, watcher, dataplane and the gRPC surface over ``source``, on a private loop."""

    def __init__(self, source: RepositorySource, *, model_control: bool = False) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.pool = ThreadPoolExecutor(max_workers=2)
        self.metrics = Recorder()
        self.manager = ModelManager()
        self.watcher = RepositoryWatcher(source, self.manager, poll_interval_s=0)
        control = (
            RepositoryController(self.watcher, self.manager, source) if model_control else None
        )
        self.dataplane = DataPlane(self.manager, Dispatcher(self.pool, 0.0), self.metrics, control)
        self.app = GrpcApp(TFServingGrpc(self.dataplane).services(), lambda: False)
        self.run(self._start())

    async def _start(self) -> None:
        await self.watcher.scan(initial=True)
        await self.manager.wait_idle()
        self.manager.finish_startup()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=PATIENCE_S)

    def send(self, method: str, payload: bytes) -> bytes:
        service = MODEL_SERVICE if method in MODEL_METHODS else PREDICTION_SERVICE
        path = f"/{service}/{method}"
        return self.run(self.app.unary(self.app.method(path), payload, CallContext(path)))

    def call(self, method: str, request: Message) -> Any:
        """The response message, or GrpcStatus raised."""
        return RESPONSES[method].FromString(self.send(method, request.SerializeToString()))

    def fails(self, method: str, request: Message, code: StatusCode, *fragments: str) -> str:
        """Call, expect ``code``, and check the message holds every fragment; return it."""
        with pytest.raises(GrpcStatus) as info:
            self.call(method, request)
        status = info.value
        assert status.code is code, status.message
        for fragment in fragments:
            assert fragment in status.message, status.message
        return status.message

    def close(self) -> None:
        self.run(self.manager.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=PATIENCE_S)
        self.loop.close()
        self.pool.shutdown(wait=True)


def identity_name(datatype: str) -> str:
    return f"identity_{datatype.lower()}"


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example models, an identity model per datatype, a string model and a broken one."""
    root = build_example_repository(tmp_path_factory.mktemp("grpc") / "models")
    for datatype in ONNX_TYPES:
        save(identity_model(datatype), root / identity_name(datatype) / "1" / "model.onnx")
    save(string_model(), root / "strings" / "1" / "model.onnx")
    broken = root / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "model.onnx").write_bytes(b"not an onnx model")
    return root


@pytest.fixture(scope="module")
def served(repository: Path) -> Iterator[Stack]:
    stack = Stack(DirectoryRepository(repository))
    yield stack
    stack.close()


def reference(repository: Path, model: str, version: int, feeds: dict[str, Any]) -> list[Any]:
    session = ort.InferenceSession(str(repository / model / str(version) / "model.onnx"))
    return session.run(None, feeds)  # type: ignore[no-any-return]


# ---- building requests and reading answers, independently of the code under test ---------------


def content_tensor(arr: np.ndarray[Any, Any], datatype: Datatype | None = None) -> TensorProto:
    """What ``tf.make_tensor_proto`` sends for a numpy array: ``tensor_content``."""
    datatype = datatype or Datatype.from_numpy(arr.dtype)
    out = TensorProto(dtype=TF_NUMBERS[datatype])  # type: ignore[arg-type]
    for size in arr.shape:
        out.tensor_shape.dim.add().size = size
    out.tensor_content = np.ascontiguousarray(arr).tobytes()
    return out


def typed_tensor(arr: np.ndarray[Any, Any], datatype: Datatype | None = None) -> TensorProto:
    """What perf_analyzer and most non-Python clients send: the dtype's typed ``*_val`` field."""
    datatype = datatype or Datatype.from_numpy(arr.dtype)
    out = TensorProto(dtype=TF_NUMBERS[datatype])  # type: ignore[arg-type]
    for size in arr.shape:
        out.tensor_shape.dim.add().size = size
    flat = arr.ravel()
    if datatype is Datatype.FP16:
        flat = flat.view(np.uint16)
    getattr(out, TYPED_FIELDS[datatype]).extend(flat.tolist())
    return out


def read(proto: TensorProto) -> np.ndarray[Any, Any]:
    """An answer's tensor, from its typed field (the only encoding TF Serving answers with)."""
    assert not proto.tensor_content
    datatype = _DATATYPES[proto.dtype]
    values = list(getattr(proto, TYPED_FIELDS[datatype]))
    shape = [d.size for d in proto.tensor_shape.dim]
    if datatype is Datatype.BYTES:
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out.reshape(shape)
    if datatype is Datatype.FP16:
        return np.array(values, np.uint16).view(np.float16).reshape(shape)
    return np.array(values, datatype.numpy_dtype).reshape(shape)


def predict(
    model: str,
    inputs: dict[str, TensorProto],
    *,
    version: int | None = None,
    label: str | None = None,
    signature: str = "",
    output_filter: tuple[str, ...] = (),
) -> apis.PredictRequest:
    request = apis.PredictRequest(output_filter=output_filter)
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    for name, tensor in inputs.items():
        request.inputs[name].CopyFrom(tensor)
    return request


def example(**features: list[float] | list[int] | list[bytes]) -> Example:
    out = Example()
    for name, values in features.items():
        feature = out.features.feature[name]
        if values and isinstance(values[0], bytes):
            feature.bytes_list.value.extend(values)
        elif values and isinstance(values[0], float):
            feature.float_list.value.extend(cast(list[float], values))
        else:
            feature.int64_list.value.extend(cast(list[int], values))
    return out


def example_input(*examples: Example, context: Example | None = None) -> apis.Input:
    out = apis.Input()
    if context is None:
        out.example_list.examples.extend(examples)
    else:
        out.example_list_with_context.examples.extend(examples)
        out.example_list_with_context.context.CopyFrom(context)
    return out


def classify_request(model: str, source: apis.Input, signature: str = "") -> Any:
    request = apis.ClassificationRequest(input=source)
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    return request


def regress_request(model: str, source: apis.Input, signature: str = "") -> Any:
    request = apis.RegressionRequest(input=source)
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    return request


IMAGES = np.random.default_rng(42).random((3, 784), dtype=np.float32)
FEATURES = np.array([[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0]], np.float32)
CATEGORY = np.array([[1], [3]], np.int64)


def tabular_examples() -> list[Example]:
    return [
        example(features=[float(v) for v in f], category=[int(c[0])])
        for f, c in zip(FEATURES, CATEGORY, strict=True)
    ]


def assert_spec(spec: apis.ModelSpec, name: str, version: int) -> None:
    assert spec.name == name
    assert spec.WhichOneof("version_choice") == "version"
    assert spec.version.value == version
    assert spec.signature_name == "serving_default"


# ---- the service table -------------------------------------------------------------------------


def test_services_are_tf_servings_with_their_request_messages(served: Stack) -> None:
    table = {
        (service.name, method.name): method.request_type.DESCRIPTOR.full_name
        for service in served.app.services
        for method in service.methods
    }
    prefix = "tensorflow.serving."
    assert table == {
        (PREDICTION_SERVICE, "Predict"): prefix + "PredictRequest",
        (PREDICTION_SERVICE, "Classify"): prefix + "ClassificationRequest",
        (PREDICTION_SERVICE, "Regress"): prefix + "RegressionRequest",
        (PREDICTION_SERVICE, "MultiInference"): prefix + "MultiInferenceRequest",
        (PREDICTION_SERVICE, "GetModelMetadata"): prefix + "GetModelMetadataRequest",
        (MODEL_SERVICE, "GetModelStatus"): prefix + "GetModelStatusRequest",
        (MODEL_SERVICE, "HandleReloadConfigRequest"): prefix + "ReloadConfigRequest",
    }
    assert PREDICTION_SERVICE == "tensorflow.serving.PredictionService"
    assert MODEL_SERVICE == "tensorflow.serving.ModelService"


def test_a_request_that_is_not_the_message_is_invalid_argument(served: Stack) -> None:
    with pytest.raises(GrpcStatus) as info:
        served.send("Predict", b"\x0a\x05\x0a")
    assert info.value.code is StatusCode.INVALID_ARGUMENT
    assert "not a valid tensorflow.serving.PredictRequest message" in info.value.message


# ---- Predict -----------------------------------------------------------------------------------


@pytest.mark.parametrize("encode", [content_tensor, typed_tensor])
def test_predict_runs_the_newest_version_and_answers_typed_values(
    served: Stack, repository: Path, encode: Any
) -> None:
    response = served.call("Predict", predict("mnist", {"images": encode(IMAGES)}))
    assert_spec(response.model_spec, "mnist", 2)
    assert list(response.outputs) == ["scores"]
    scores = response.outputs["scores"]
    assert scores.dtype == TF_NUMBERS[Datatype.FP32]
    assert [d.size for d in scores.tensor_shape.dim] == [3, 10]
    assert not scores.tensor_content
    assert len(scores.float_val) == 30
    (expected,) = reference(repository, "mnist", 2, {"images": IMAGES})
    np.testing.assert_allclose(read(scores), expected, rtol=1e-6)


def test_versions_and_labels_choose_what_answers(served: Stack, repository: Path) -> None:
    inputs = {"images": content_tensor(IMAGES[:1])}
    for kwargs, version in (
        ({"version": 1}, 1),
        ({"version": 2}, 2),
        ({"label": "stable"}, 1),
        ({"label": "canary"}, 2),
        ({"label": "1"}, 1),  # perf_analyzer sends -x 1 as a label: digits name a version
    ):
        response = served.call("Predict", predict("mnist", inputs, **kwargs))
        assert_spec(response.model_spec, "mnist", version)
        (expected,) = reference(repository, "mnist", version, {"images": IMAGES[:1]})
        np.testing.assert_allclose(read(response.outputs["scores"]), expected, rtol=1e-6)


def test_version_zero_is_a_version_not_unset(served: Stack) -> None:
    request = predict("mnist", {"images": content_tensor(IMAGES[:1])}, version=0)
    assert request.model_spec.WhichOneof("version_choice") == "version"
    served.fails("Predict", request, StatusCode.NOT_FOUND, "model 'mnist' has no version 0")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"version": 7}, "model 'mnist' has no version 7; versions: 1, 2"),
        ({"label": "beta"}, "no version label 'beta'; its labels: canary, stable"),
        ({"label": "7"}, "model 'mnist' has no version 7"),
    ],
)
def test_unknown_versions_and_labels_are_not_found(
    served: Stack, kwargs: dict[str, Any], fragment: str
) -> None:
    request = predict("mnist", {"images": content_tensor(IMAGES[:1])}, **kwargs)
    served.fails("Predict", request, StatusCode.NOT_FOUND, fragment)


@pytest.mark.parametrize("datatype", list(ONNX_TYPES))
@pytest.mark.parametrize("encode", [content_tensor, typed_tensor])
def test_every_datatype_in_both_encodings(served: Stack, datatype: str, encode: Any) -> None:
    dt = Datatype(datatype)
    rng = np.random.default_rng(1)
    if dt is Datatype.BYTES:
        # onnxruntime's string tensors hold UTF-8 text
        arr = np.array([[b"a", b"tab\t", b""], [b"xyz", "é".encode(), b"z"]], dtype=object)
        if encode is content_tensor:
            request = predict(identity_name(datatype), {"input": content_tensor(arr, dt)})
            served.fails(
                "Predict", request, StatusCode.INVALID_ARGUMENT, "send its strings in string_val"
            )
            return
    elif dt is Datatype.BOOL:
        arr = rng.random((2, 3)) > 0.5
    else:
        arr = (rng.random((2, 3)) * 100).astype(dt.numpy_dtype)
    response = served.call("Predict", predict(identity_name(datatype), {"input": encode(arr, dt)}))
    out = response.outputs["output"]
    assert out.dtype == TF_NUMBERS[dt]
    assert [f.name for f, _ in out.ListFields() if f.name.endswith("_val")] == [TYPED_FIELDS[dt]]
    result = read(out)
    assert result.dtype == dt.numpy_dtype
    assert result.tolist() == arr.tolist()


@pytest.mark.parametrize(("datatype", "value"), [("FP32", 0.5), ("INT8", -3), ("BYTES", b"s")])
def test_a_single_typed_value_is_broadcast_to_the_shape(
    served: Stack, datatype: str, value: Any
) -> None:
    dt = Datatype(datatype)
    tensor = TensorProto(dtype=TF_NUMBERS[dt])  # type: ignore[arg-type]
    tensor.tensor_shape.dim.add().size = 2
    tensor.tensor_shape.dim.add().size = 3
    getattr(tensor, TYPED_FIELDS[dt]).append(value)
    response = served.call("Predict", predict(identity_name(datatype), {"input": tensor}))
    assert read(response.outputs["output"]).tolist() == [[value] * 3] * 2


def test_strings_go_out_as_string_val_bytes(served: Stack) -> None:
    text = np.array([b"hello", "wörld".encode()], dtype=object)
    response = served.call("Predict", predict("strings", {"text": typed_tensor(text)}))
    assert list(response.outputs["text_bytes"].string_val) == [b"hello", "wörld".encode()]
    assert read(response.outputs["length"]).tolist() == [2]


def test_output_filter_selects_outputs(served: Stack, repository: Path) -> None:
    inputs = {"features": content_tensor(FEATURES), "category": typed_tensor(CATEGORY)}
    response = served.call("Predict", predict("tabular", inputs, output_filter=("score",)))
    assert list(response.outputs) == ["score"]
    _, score = reference(repository, "tabular", 1, {"features": FEATURES, "category": CATEGORY})
    np.testing.assert_allclose(read(response.outputs["score"]), score, rtol=1e-6)
    both = served.call("Predict", predict("tabular", inputs))
    assert sorted(both.outputs) == ["probabilities", "score"]


@pytest.mark.parametrize(
    ("output_filter", "fragment"),
    [
        (
            ("scores",),
            "output tensor alias not found in signature: scores Outputs expected to be "
            "in the set {probabilities,score}.",
        ),
        (("score", "score"), "duplicate output tensor alias: score; name each output once"),
    ],
)
def test_output_filter_errors(served: Stack, output_filter: tuple[str, ...], fragment: str) -> None:
    inputs = {"features": content_tensor(FEATURES), "category": content_tensor(CATEGORY)}
    request = predict("tabular", inputs, output_filter=output_filter)
    served.fails("Predict", request, StatusCode.INVALID_ARGUMENT, fragment)


def test_the_default_signature_may_be_named(served: Stack) -> None:
    request = predict("mnist", {"images": content_tensor(IMAGES[:1])}, signature="serving_default")
    assert_spec(served.call("Predict", request).model_spec, "mnist", 2)


def _with_model_spec_missing() -> apis.PredictRequest:
    request = apis.PredictRequest()
    request.inputs["images"].CopyFrom(content_tensor(IMAGES[:1]))
    return request


@pytest.mark.parametrize(
    ("request_", "code", "fragments"),
    [
        (
            _with_model_spec_missing(),
            StatusCode.INVALID_ARGUMENT,
            ["Missing ModelSpec; set model_spec.name"],
        ),
        (
            predict("", {"images": content_tensor(IMAGES[:1])}),
            StatusCode.INVALID_ARGUMENT,
            ["model_spec.name is empty; set it to the model to use"],
        ),
        (
            predict("nope", {"images": content_tensor(IMAGES[:1])}),
            StatusCode.NOT_FOUND,
            ["model 'nope' is not in the repository; models served: broken,", "mnist"],
        ),
        (
            predict("mnist", {"images": content_tensor(IMAGES[:1])}, signature="predict"),
            StatusCode.FAILED_PRECONDITION,
            ['Serving signature key "predict" not found.', 'has only "serving_default"'],
        ),
        (
            predict("mnist", {"images": content_tensor(IMAGES[:1].astype(np.float64))}),
            StatusCode.INVALID_ARGUMENT,
            ["input 'images' is DT_DOUBLE, but model 'mnist' version 2 expects DT_FLOAT;", "send"],
        ),
        (
            predict("mnist", {"images": content_tensor(IMAGES[:, :783])}),
            StatusCode.INVALID_ARGUMENT,
            ["input 'images'", "has shape [3, 783], but the model expects [-1, 784]"],
        ),
        (
            predict("mnist", {}),
            StatusCode.INVALID_ARGUMENT,
            ["input size does not match signature: 0!=1", "Missing but required: {images}."],
        ),
        (
            predict("mnist", {"pixels": content_tensor(IMAGES)}),
            StatusCode.INVALID_ARGUMENT,
            ["input tensor alias not found in signature: pixels.", "in the set {images}."],
        ),
        (
            predict("tabular", {"features": content_tensor(FEATURES)}),
            StatusCode.INVALID_ARGUMENT,
            [
                "1!=2 len({features}) != len({category,features}). Sent extra: {}. Missing but "
                "required: {category}."
            ],
        ),
    ],
)
def test_predict_errors_say_what_to_send(
    served: Stack, request_: apis.PredictRequest, code: StatusCode, fragments: list[str]
) -> None:
    served.fails("Predict", request_, code, *fragments)


def test_tensor_content_of_the_wrong_size_is_invalid(served: Stack) -> None:
    tensor = content_tensor(IMAGES)
    tensor.tensor_content = tensor.tensor_content[:-4]
    served.fails(
        "Predict",
        predict("mnist", {"images": tensor}),
        StatusCode.INVALID_ARGUMENT,
        "input 'images': 9404 bytes of data, but shape [3, 784] of FP32 needs 9408 bytes",
    )


def test_inference_calls_are_counted_under_the_grpc_protocol(served: Stack) -> None:
    before = len(served.metrics.requests)
    served.call("Predict", predict("mnist", {"images": content_tensor(IMAGES[:1])}, version=1))
    bad = predict("mnist", {"images": content_tensor(IMAGES[:1].astype(np.float64))}, version=1)
    served.fails("Predict", bad, StatusCode.INVALID_ARGUMENT)
    assert served.metrics.requests[before:] == [
        ("mnist", 1, PROTOCOL, "success"),
        ("mnist", 1, PROTOCOL, "invalid_argument"),
    ]
    assert PROTOCOL == "tfserving_grpc"


# ---- Classify, Regress, MultiInference ---------------------------------------------------------


def test_classify_answers_labels_and_scores(served: Stack, repository: Path) -> None:
    response = served.call(
        "Classify", classify_request("tabular", example_input(*tabular_examples()))
    )
    assert_spec(response.model_spec, "tabular", 1)
    probabilities, _ = reference(
        repository, "tabular", 1, {"features": FEATURES, "category": CATEGORY}
    )
    rows = response.result.classifications
    assert len(rows) == 2
    for row, expected in zip(rows, probabilities, strict=True):
        assert [c.label for c in row.classes] == ["low", "medium", "high"]
        np.testing.assert_allclose([c.score for c in row.classes], expected, rtol=1e-6)


def test_classify_without_configured_labels_numbers_the_classes(served: Stack) -> None:
    pixels = example(images=[float(v) for v in IMAGES[0]])
    response = served.call("Classify", classify_request("mnist", example_input(pixels)))
    (row,) = response.result.classifications
    assert [c.label for c in row.classes] == [str(k) for k in range(10)]


def test_context_features_fill_every_example_and_examples_override_them(
    served: Stack, repository: Path
) -> None:
    features = [example(features=[float(v) for v in f]) for f in FEATURES]
    features[1].features.feature["category"].int64_list.value.append(3)
    source = example_input(*features, context=example(category=[1]))
    response = served.call("Regress", regress_request("tabular", source))
    _, score = reference(repository, "tabular", 1, {"features": FEATURES, "category": CATEGORY})
    assert_spec(response.model_spec, "tabular", 1)
    values = [r.value for r in response.result.regressions]
    np.testing.assert_allclose(values, score[:, 0], rtol=1e-6)


def test_regress_answers_one_value_per_example(served: Stack, repository: Path) -> None:
    response = served.call(
        "Regress", regress_request("tabular", example_input(*tabular_examples()))
    )
    _, score = reference(repository, "tabular", 1, {"features": FEATURES, "category": CATEGORY})
    np.testing.assert_allclose(
        [r.value for r in response.result.regressions], score[:, 0], rtol=1e-6
    )


def test_integer_features_feed_float_inputs(served: Stack) -> None:
    examples = [example(features=[1, 2, 3, 4], category=[2])]
    response = served.call("Regress", regress_request("tabular", example_input(*examples)))
    assert len(response.result.regressions) == 1


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        (apis.Input(), "Input is empty; send the examples in input.example_list"),
        (example_input(), "the input holds no examples; send at least one tensorflow.Example"),
        (
            example_input(
                example(features=[0.1, 0.2, 0.3, 0.4], category=[1]), example(features=[0.5] * 4)
            ),
            "example 1 has no feature 'category' (nor does the context); the model reads category",
        ),
        (
            example_input(
                example(features=[0.1, 0.2, 0.3, 0.4], category=[1]),
                example(features=[0.1, 0.2, 0.3], category=[1]),
            ),
            "feature 'features' has a different length in different examples",
        ),
        (
            example_input(example(features=[0.1, 0.2], category=[1])),
            "feature 'features' has 2 values per example, which does not fit the input shape",
        ),
        (
            example_input(example(features=[b"a", b"b", b"c", b"d"], category=[1])),
            "input 'features' is FP32 and takes numbers; the request sent strings",
        ),
        (
            example_input(example(features=[0.1, 0.2, 0.3, 0.4], category=[1.5])),
            "input 'category' is INT64; it takes whole numbers only",
        ),
    ],
)
def test_example_errors_say_what_to_send(served: Stack, source: apis.Input, fragment: str) -> None:
    served.fails(
        "Classify", classify_request("tabular", source), StatusCode.INVALID_ARGUMENT, fragment
    )
    served.fails(
        "Regress", regress_request("tabular", source), StatusCode.INVALID_ARGUMENT, fragment
    )


def test_bytes_features_feed_string_inputs_and_only_they_do() -> None:
    signature = Signature(
        (TensorSpec("text", Datatype.BYTES, (-1, 2)),), (TensorSpec("y", Datatype.FP32, (-1, 2)),)
    )
    source = example_input(example(text=[b"a", b"\xff"]), example(text=[b"", b"cd"]))
    (text,) = example_inputs(source, signature).values()
    assert text.dtype == object
    assert text.tolist() == [[b"a", b"\xff"], [b"", b"cd"]]
    with pytest.raises(InvalidInput, match="is DT_STRING; send feature 'text' as a bytes_list"):
        example_inputs(example_input(example(text=[1.0, 2.0])), signature)


def test_classify_and_regress_name_unknown_signatures_as_tf_serving_does(served: Stack) -> None:
    source = example_input(*tabular_examples())
    for method, request in (
        ("Classify", classify_request("tabular", source, signature="classify_x")),
        ("Regress", regress_request("tabular", source, signature="classify_x")),
    ):
        served.fails(
            method,
            request,
            StatusCode.INVALID_ARGUMENT,
            "No signature was found with the name: classify_x.",
            "leave the signature name empty for serving_default",
        )


def test_a_model_without_a_regression_output_is_a_failed_precondition(served: Stack) -> None:
    pixels = example(images=[0.5] * 784)
    served.fails(
        "Regress",
        regress_request("mnist", example_input(pixels)),
        StatusCode.FAILED_PRECONDITION,
        "it needs exactly one suitable output",
        "name it in config.yaml under regression.output",
    )


def multi(*tasks: tuple[str, str], source: apis.Input | None = None) -> apis.MultiInferenceRequest:
    request = apis.MultiInferenceRequest()
    for model, method in tasks:
        task = request.tasks.add(method_name=method)
        task.model_spec.name = model
    request.input.CopyFrom(source or example_input(*tabular_examples()))
    return request


CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"


def test_multi_inference_classifies_and_regresses_at_once(served: Stack, repository: Path) -> None:
    response = served.call("MultiInference", multi(("tabular", REGRESS), ("tabular", CLASSIFY)))
    probabilities, score = reference(
        repository, "tabular", 1, {"features": FEATURES, "category": CATEGORY}
    )
    regression, classification = response.results
    assert regression.WhichOneof("result") == "regression_result"
    values = [r.value for r in regression.regression_result.regressions]
    np.testing.assert_allclose(values, score[:, 0], rtol=1e-6)
    assert classification.WhichOneof("result") == "classification_result"
    rows = classification.classification_result.classifications
    np.testing.assert_allclose(
        [[c.score for c in row.classes] for row in rows], probabilities, rtol=1e-6
    )
    for result in response.results:
        assert_spec(result.model_spec, "tabular", 1)


@pytest.mark.parametrize(
    ("request_", "code", "fragment"),
    [
        (multi(), StatusCode.INVALID_ARGUMENT, "MultiInferenceRequest has no tasks"),
        (
            multi(("tabular", CLASSIFY), ("mnist", REGRESS)),
            StatusCode.INVALID_ARGUMENT,
            "must access the same model name; the tasks name mnist, tabular",
        ),
        (multi(("", CLASSIFY)), StatusCode.INVALID_ARGUMENT, "Found ModelSpec with an empty model"),
        (
            multi(("tabular", "tensorflow/serving/predict")),
            StatusCode.UNIMPLEMENTED,
            "Unsupported signature method_name: tensorflow/serving/predict;",
        ),
        (
            multi(("tabular", CLASSIFY), ("tabular", CLASSIFY)),
            StatusCode.INVALID_ARGUMENT,
            "Duplicate evaluation of signature: serving_default",
        ),
    ],
)
def test_multi_inference_errors(
    served: Stack, request_: apis.MultiInferenceRequest, code: StatusCode, fragment: str
) -> None:
    served.fails("MultiInference", request_, code, fragment)


def test_multi_inference_refuses_other_signatures(served: Stack) -> None:
    request = multi(("tabular", CLASSIFY))
    request.tasks[0].model_spec.signature_name = "other"
    served.fails(
        "MultiInference",
        request,
        StatusCode.INVALID_ARGUMENT,
        "Requested signature not found in model graph: other",
    )


# ---- GetModelMetadata --------------------------------------------------------------------------


def metadata_request(model: str, *fields: str, version: int | None = None) -> Any:
    request = apis.GetModelMetadataRequest(metadata_field=fields)
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    return request


def test_metadata_packs_the_signature_def_map_in_an_any(served: Stack) -> None:
    response = served.call("GetModelMetadata", metadata_request("tabular", "signature_def"))
    assert response.model_spec.name == "tabular"
    assert response.model_spec.version.value == 1
    assert list(response.metadata) == ["signature_def"]
    packed = response.metadata["signature_def"]
    assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    signature_map = apis.SignatureDefMap.FromString(packed.value)
    assert list(signature_map.signature_def) == ["serving_default"]
    signature = signature_map.signature_def["serving_default"]
    assert signature.method_name == "tensorflow/serving/predict"

    def info(tensors: Any) -> dict[str, tuple[str, int, list[int]]]:
        return {
            key: (t.name, t.dtype, [d.size for d in t.tensor_shape.dim])
            for key, t in tensors.items()
        }

    assert info(signature.inputs) == {
        "features": ("features", TF_NUMBERS[Datatype.FP32], [-1, 4]),
        "category": ("category", TF_NUMBERS[Datatype.INT64], [-1, 1]),
    }
    assert info(signature.outputs) == {
        "probabilities": ("probabilities", TF_NUMBERS[Datatype.FP32], [-1, 3]),
        "score": ("score", TF_NUMBERS[Datatype.FP32], [-1, 1]),
    }


def test_metadata_of_a_version(served: Stack) -> None:
    response = served.call(
        "GetModelMetadata", metadata_request("mnist", "signature_def", version=1)
    )
    assert response.model_spec.version.value == 1


@pytest.mark.parametrize(
    ("request_", "code", "fragment"),
    [
        (
            metadata_request("mnist"),
            StatusCode.INVALID_ARGUMENT,
            'must specify at least one metadata_field; ask for "signature_def"',
        ),
        (
            metadata_request("mnist", "signature_def", "graph"),
            StatusCode.INVALID_ARGUMENT,
            'Metadata field graph is not supported; the only one is "signature_def"',
        ),
        (
            metadata_request("nope", "signature_def"),
            StatusCode.NOT_FOUND,
            "model 'nope' is not in the repository",
        ),
        (apis.GetModelMetadataRequest(), StatusCode.INVALID_ARGUMENT, "Missing ModelSpec"),
    ],
)
def test_metadata_errors(served: Stack, request_: Any, code: StatusCode, fragment: str) -> None:
    served.fails("GetModelMetadata", request_, code, fragment)


# ---- GetModelStatus ----------------------------------------------------------------------------


def status_request(model: str, *, version: int | None = None, label: str | None = None) -> Any:
    request = apis.GetModelStatusRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    return request


def statuses(response: Any) -> list[tuple[int, int, int, str]]:
    return [
        (s.version, s.state, s.status.error_code, s.status.error_message)
        for s in response.model_version_status
    ]


def test_status_lists_every_version_newest_first(served: Stack) -> None:
    response = served.call("GetModelStatus", status_request("mnist"))
    assert statuses(response) == [(2, 30, 0, ""), (1, 30, 0, "")]  # AVAILABLE, OK


def test_status_of_one_version_or_label(served: Stack) -> None:
    assert statuses(served.call("GetModelStatus", status_request("mnist", version=1))) == [
        (1, 30, 0, "")
    ]
    assert [
        s[0]
        for s in statuses(served.call("GetModelStatus", status_request("mnist", label="canary")))
    ] == [2]
    assert [
        s[0] for s in statuses(served.call("GetModelStatus", status_request("mnist", label="1")))
    ] == [1]


def test_a_version_that_failed_to_load_is_end_with_its_error(served: Stack) -> None:
    ((version, state, code, message),) = statuses(
        served.call("GetModelStatus", status_request("broken"))
    )
    assert (version, state, code) == (1, 50, 2)  # END, UNKNOWN
    assert message


@pytest.mark.parametrize(
    ("request_", "code", "fragment"),
    [
        (status_request("nope"), StatusCode.NOT_FOUND, "model 'nope' is not in the repository"),
        (status_request("mnist", version=9), StatusCode.NOT_FOUND, "has no version 9"),
        (apis.GetModelStatusRequest(), StatusCode.INVALID_ARGUMENT, "Missing ModelSpec"),
    ],
)
def test_status_errors(served: Stack, request_: Any, code: StatusCode, fragment: str) -> None:
    served.fails("GetModelStatus", request_, code, fragment)


# ---- HandleReloadConfigRequest -----------------------------------------------------------------


def config_text(**models: Path) -> str:
    entries = "".join(
        f'config {{ name: "{name}" base_path: "{path}" model_platform: "onnx" }} '
        for name, path in models.items()
    )
    return f"model_config_list {{ {entries} }}"


def reload_request(text: str) -> apis.ReloadConfigRequest:
    request = apis.ReloadConfigRequest()
    text_format.Parse(text, request.config)
    return request


@pytest.fixture
def constants(tmp_path: Path) -> Path:
    """Models ``one`` (answers 1.0, versions 1 and 2) and ``two`` (answers 2.0) in tmp_path."""
    save(constant_model(1.0), tmp_path / "one" / "1" / "model.onnx")
    save(constant_model(1.5), tmp_path / "one" / "2" / "model.onnx")
    save(constant_model(2.0), tmp_path / "two" / "1" / "model.onnx")
    return tmp_path


@pytest.fixture
def config_stack(constants: Path) -> Iterator[Stack]:
    """A server started with --model_config_file (serving ``one``) and --model-control."""
    path = constants / "models.config"
    path.write_text(config_text(one=Path("one")))
    stack = Stack(ConfigFileRepository(path), model_control=True)
    yield stack
    stack.close()


def answer(stack: Stack, model: str, **kwargs: Any) -> float:
    x = np.zeros((1, 1), np.float32)
    response = stack.call("Predict", predict(model, {"x": content_tensor(x)}, **kwargs))
    return float(read(response.outputs["y"])[0, 0])


def test_reload_serves_exactly_the_new_model_list(config_stack: Stack, constants: Path) -> None:
    assert answer(config_stack, "one") == 1.5
    response = config_stack.call(
        "HandleReloadConfigRequest",
        reload_request(config_text(one=constants / "one", two=constants / "two")),
    )
    assert response.status.error_code == 0
    assert response.status.error_message == ""
    assert answer(config_stack, "two") == 2.0
    config_stack.call(
        "HandleReloadConfigRequest", reload_request(config_text(two=constants / "two"))
    )
    assert answer(config_stack, "two") == 2.0
    config_stack.fails(
        "GetModelStatus", status_request("one"), StatusCode.NOT_FOUND, "model 'one' is not in"
    )


def test_reload_applies_policies_and_labels_with_relative_paths(config_stack: Stack) -> None:
    text = """model_config_list { config {
        name: "one" base_path: "one"
        model_version_policy { all {} }
        version_labels { key: "stable" value: 1 }
    } }"""
    config_stack.call("HandleReloadConfigRequest", reload_request(text))
    assert answer(config_stack, "one", label="stable") == 1.0
    assert answer(config_stack, "one", version=2) == 1.5


def test_reload_serves_a_model_that_was_unloaded_on_request(
    config_stack: Stack, constants: Path
) -> None:
    config_stack.run(config_stack.dataplane.unload("one"))
    config_stack.fails("GetModelStatus", status_request("one"), StatusCode.NOT_FOUND)
    config_stack.call("HandleReloadConfigRequest", reload_request(config_text(one=Path("one"))))
    assert answer(config_stack, "one") == 1.5


def test_a_model_that_cannot_load_is_unavailable_and_the_rest_serve(
    config_stack: Stack, constants: Path
) -> None:
    text = config_text(two=constants / "two", ghost=constants / "ghost")
    config_stack.fails(
        "HandleReloadConfigRequest",
        reload_request(text),
        StatusCode.UNAVAILABLE,
        "1 of its 2 models have nothing to serve",
        f"model 'ghost': its base_path {constants / 'ghost'} is not a folder",
    )
    assert answer(config_stack, "two") == 2.0


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            'model_config_list { config { name: "a b" base_path: "/x" } }',
            "is not a valid model name",
        ),
        ('model_config_list { config { name: "a" } }', "base_path is required"),
        (
            'model_config_list { config { name: "a" base_path: "a" } '
            'config { name: "a" base_path: "b" } }',
            "model 'a' appears twice in model_config_list",
        ),
    ],
)
def test_an_invalid_model_config_list_is_invalid_argument(
    config_stack: Stack, text: str, fragment: str
) -> None:
    config_stack.fails(
        "HandleReloadConfigRequest", reload_request(text), StatusCode.INVALID_ARGUMENT, fragment
    )
    assert answer(config_stack, "one") == 1.5, "a refused config changes nothing"


def test_a_config_that_is_not_a_model_config_list_is_invalid_argument(config_stack: Stack) -> None:
    config_stack.fails(
        "HandleReloadConfigRequest",
        apis.ReloadConfigRequest(),
        StatusCode.INVALID_ARGUMENT,
        "ReloadConfigRequest.config is empty; list the models to serve in config.model_config_list",
    )
    custom = apis.ReloadConfigRequest()
    custom.config.custom_model_config.type_url = "type.googleapis.com/some.Config"
    config_stack.fails(
        "HandleReloadConfigRequest",
        custom,
        StatusCode.INVALID_ARGUMENT,
        "custom_model_config is not supported; list the models to serve in "
        "config.model_config_list",
    )


def test_reload_needs_model_control(constants: Path) -> None:
    path = constants / "models.config"
    path.write_text(config_text(one=Path("one")))
    stack = Stack(ConfigFileRepository(path))
    try:
        stack.fails(
            "HandleReloadConfigRequest",
            reload_request(config_text(two=constants / "two")),
            StatusCode.PERMISSION_DENIED,
            "start it with --model-control",
        )
        assert answer(stack, "one") == 1.5
    finally:
        stack.close()


def test_reload_needs_a_model_config_file(constants: Path) -> None:
    stack = Stack(DirectoryRepository(constants), model_control=True)
    try:
        stack.fails(
            "HandleReloadConfigRequest",
            reload_request(config_text(two=constants / "two")),
            StatusCode.FAILED_PRECONDITION,
            "needs a server started with --model_config_file; this one serves the model "
            f"repository {constants}",
        )
    finally:
        stack.close()
