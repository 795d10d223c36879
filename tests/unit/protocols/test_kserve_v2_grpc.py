"""``inference.GRPCInferenceService`` driven through ``GrpcApp`` as a transport would drive it.

Requests are built and serialized by tritonclient's own messages (and, for inference, by the
function its client sends them with); answers are parsed by them and read with its
``InferResult``. The dataplane is the real one, over onnxruntime models loaded from a repository
built in a temporary folder; its event loop runs in a thread of its own for the whole module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import ml_dtypes
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.model_config_pb2 as tc_config
import tritonclient.grpc.service_pb2 as tc
from google.protobuf import json_format
from google.protobuf.message import Message
from tritonclient.grpc._utils import _get_inference_request

from modelport import __version__
from modelport._pb.kserve import grpc_service_pb2 as pb
from modelport.core.dataplane import DataPlane
from modelport.core.dispatch import Dispatcher
from modelport.core.scheduling import make_scheduler
from modelport.lifecycle.control import RepositoryController
from modelport.lifecycle.manager import ModelManager, ModelVersion
from modelport.lifecycle.repository import DirectoryRepository
from modelport.lifecycle.watcher import RepositoryWatcher
from modelport.protocols.grpc import CallContext, GrpcApp, GrpcStatus, StatusCode
from modelport.protocols.http import HttpRequest
from modelport.protocols.kserve_v2 import triton as triton_docs
from modelport.protocols.kserve_v2.grpc import PROTOCOL, SERVICE, KServeV2Grpc
from modelport.protocols.kserve_v2.grpc_codec import decode_infer_request, encode_infer_response
from modelport.protocols.kserve_v2.rest import KServeV2Rest
from modelport.types import InferResponse
from tests.models import (
    DATATYPE_SAMPLES,
    ONNX_TYPES,
    constant_model,
    identity_model,
    save,
    string_model,
    tabular_model,
)

T = TypeVar("T")
M = TypeVar("M", bound=Message)

SAMPLES = {
    **DATATYPE_SAMPLES,
    "FP32": np.array([[0.1, -2.5, 3.4e38], [1e-30, np.nan, -np.inf]], np.float32),
    "FP64": np.array([[0.1, -2.5, 1.7e308], [1e-300, np.nan, np.inf]], np.float64),
    "BYTES": np.array([[b"a", b"", "caf\u00e9".encode()], [b"nul\x00", b"0", b"zz"]], object),
}
#: The typed contents field of each datatype that has one.
TYPED_FIELDS = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
BATCHED_CONFIG = "dynamic_batching:\n  max_batch_size: 8\n  max_queue_delay_us: 500\n"


# ---- a real dataplane on an event loop of its own ----------------------------------------------


class RecordingObserver:
    """Records the protocol label of every inference request answered."""

    def __init__(self) -> None:
        self.protocols: list[str] = []

    def on_request(
        self, model: str, version: int, protocol: str, outcome: str, seconds: float
    ) -> None:
        self.protocols.append(protocol)


class Served:
    """A repository served by a real ``DataPlane`` and ``GrpcApp``; calls go through the app."""

    def __init__(self, root: Path, *, control: bool) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._pool = ThreadPoolExecutor(max_workers=2)
        self.observer = RecordingObserver()
        self.dispatcher = Dispatcher(self._pool, 0.0)
        self.manager = ModelManager(prepare=self._prepare)
        self.watcher = RepositoryWatcher(DirectoryRepository(root), self.manager, 0.0)
        control_ = RepositoryController(self.watcher, self.manager) if control else None
        self.dataplane = DataPlane(self.manager, self.dispatcher, self.observer, control_)
        self.app = GrpcApp([KServeV2Grpc(self.dataplane).service()], lambda: self.draining)
        self.rest = KServeV2Rest(self.dataplane)
        self.run(self._start())

    @property
    def draining(self) -> bool:
        return self.dataplane.draining

    def _prepare(self, version: ModelVersion) -> None:
        version.executions = version.stats
        version.scheduler = make_scheduler(
            version.runtime,
            version.signature,
            estimate=version.compute,
            config=version.config,
            dispatcher=self.dispatcher,
            observer=version.executions,
        )

    async def _start(self) -> None:
        await self.watcher.scan(initial=True)
        await self.manager.wait_idle()
        problems = self.manager.finish_startup()
        assert not problems, problems

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def close(self) -> None:
        self.run(self.manager.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()
        self._pool.shutdown()

    # ---- calls ----------------------------------------------------------------------------

    def raw(self, method: str, payload: bytes) -> bytes:
        """Call a unary method with serialized bytes, as the listener does."""
        path = f"/{SERVICE}/{method}"

        async def call() -> bytes:
            found = self.app.method(path)
            self.app.admit(found)
            return await self.app.unary(found, payload, CallContext(path))

        return self.run(call())

    def call(self, method: str, request: Message, response_type: type[M]) -> M:
        return response_type.FromString(self.raw(method, request.SerializeToString()))

    def fails(self, method: str, request: Message | bytes) -> GrpcStatus:
        payload = request if isinstance(request, bytes) else request.SerializeToString()
        with pytest.raises(GrpcStatus) as caught:
            self.raw(method, payload)
        return caught.value

    def infer(self, request: tc.ModelInferRequest) -> tc.ModelInferResponse:
        return self.call("ModelInfer", request, tc.ModelInferResponse)

    def stream(
        self, payloads: Sequence[bytes], before: dict[int, Any] | None = None
    ) -> tuple[list[tc.ModelStreamInferResponse], GrpcStatus | None]:
        """Send ``payloads`` on one ModelStreamInfer call; return the answers and the status.

        ``before[i]`` is called just before the i-th message is handed over.
        """
        path = f"/{SERVICE}/ModelStreamInfer"

        async def messages() -> AsyncIterator[bytes]:
            for index, payload in enumerate(payloads):
                if before and index in before:
                    before[index]()
                yield payload

        async def call() -> tuple[list[tc.ModelStreamInferResponse], GrpcStatus | None]:
            found = self.app.method(path)
            self.app.admit(found)
            answers: list[tc.ModelStreamInferResponse] = []
            try:
                async for data in self.app.stream(found, messages(), CallContext(path)):
                    answers.append(tc.ModelStreamInferResponse.FromString(data))
            except GrpcStatus as status:
                return answers, status
            return answers, None

        return self.run(call())

    def rest_json(self, handler: str, path: str, pattern: str, body: bytes = b"") -> Any:
        """The JSON the REST surface answers for ``path`` (its handler called directly)."""
        match = re.fullmatch(pattern, path)
        assert match is not None
        method = "POST" if body else "GET"
        response = self.run(getattr(self.rest, handler)(HttpRequest(method, path, (), body), match))
        assert response.status == 200, response.body
        return json.loads(response.body)


def build_repository(root: Path) -> Path:
    for datatype in ONNX_TYPES:
        save(identity_model(datatype), root / f"identity_{datatype.lower()}" / "1" / "model.onnx")
    save(string_model(), root / "strings" / "1" / "model.onnx")
    save(tabular_model(), root / "tabular" / "1" / "model.onnx")
    save(constant_model(1.0), root / "versioned" / "1" / "model.onnx")
    save(constant_model(2.0), root / "versioned" / "2" / "model.onnx")
    (root / "versioned" / "config.yaml").write_text("version_policy:\n  latest: 2\n")
    save(identity_model("FP32"), root / "batched" / "1" / "model.onnx")
    (root / "batched" / "config.yaml").write_text(BATCHED_CONFIG)
    return root


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    harness = Served(build_repository(tmp_path_factory.mktemp("grpc") / "models"), control=False)
    yield harness
    harness.close()


@pytest.fixture
def controlled(tmp_path: Path) -> Iterator[Served]:
    """A server that loads and unloads models on request (``--model-control``)."""
    root = tmp_path / "models"
    save(identity_model("FP32"), root / "identity_fp32" / "1" / "model.onnx")
    save(string_model(), root / "strings" / "1" / "model.onnx")
    harness = Served(root, control=True)
    yield harness
    harness.close()


@pytest.fixture
def drained(served: Served) -> Iterator[Served]:
    served.dataplane.draining = True
    yield served
    served.dataplane.draining = False


# ---- building requests the way tritonclient does -----------------------------------------------


def infer_input(name: str, data: np.ndarray[Any, Any], datatype: str) -> triton.InferInput:
    tensor = triton.InferInput(name, list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    return tensor


def client_request(
    model: str,
    inputs: Sequence[triton.InferInput],
    *,
    version: str = "",
    request_id: str = "",
    outputs: Sequence[str] | None = None,
    priority: int = 0,
    timeout: int | None = None,
    parameters: dict[str, Any] | None = None,
) -> tc.ModelInferRequest:
    """The ModelInferRequest ``InferenceServerClient.infer`` sends for these arguments."""
    request: tc.ModelInferRequest = _get_inference_request(
        model_name=model,
        inputs=list(inputs),
        model_version=version,
        request_id=request_id,
        outputs=[triton.InferRequestedOutput(name) for name in outputs]
        if outputs is not None
        else None,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=priority,
        timeout=timeout,
        parameters=parameters,
    )
    return request


def identity_request(datatype: str, data: np.ndarray[Any, Any], **options: Any) -> Any:
    return client_request(
        f"identity_{datatype.lower()}", [infer_input("input", data, datatype)], **options
    )


def typed_request(
    model: str, name: str, datatype: str, shape: Sequence[int], **contents: Any
) -> tc.ModelInferRequest:
    request = tc.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
    for field, values in contents.items():
        getattr(tensor.contents, field).extend(values)
    return request


def fp32_request(data: np.ndarray[Any, Any]) -> tc.ModelInferRequest:
    return identity_request("FP32", data)


def output(response: tc.ModelInferResponse, name: str) -> np.ndarray[Any, Any]:
    """An output as tritonclient's ``InferResult.as_numpy`` reads it."""
    arr: np.ndarray[Any, Any] | None = triton.InferResult(response).as_numpy(name)
    assert arr is not None, f"no output {name!r} in the response"
    return arr


def assert_same(got: np.ndarray[Any, Any], expected: np.ndarray[Any, Any]) -> None:
    assert got.shape == expected.shape
    if expected.dtype == object:
        assert got.tolist() == expected.tolist()
    else:
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


# ---- the service -------------------------------------------------------------------------------


def test_the_service_declares_tritons_methods_with_their_message_types(served: Served) -> None:
    service = served.app.services[0]
    assert service.name == "inference.GRPCInferenceService"
    reference = tc.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    for method in service.methods:
        theirs = reference.methods_by_name[method.name]
        assert method.request_type.DESCRIPTOR.full_name == theirs.input_type.full_name
        assert (method.stream is not None) == theirs.client_streaming == theirs.server_streaming
    assert {m.name for m in service.methods} == {
        "ServerLive",
        "ServerReady",
        "ServerMetadata",
        "ModelReady",
        "ModelMetadata",
        "ModelInfer",
        "ModelStreamInfer",
        "ModelConfig",
        "ModelStatistics",
        "RepositoryIndex",
        "RepositoryModelLoad",
        "RepositoryModelUnload",
    }
    assert {m.name for m in service.methods if m.during_drain} == {
        "ServerLive",
        "ServerReady",
        "ModelReady",
    }


def test_health_and_server_metadata(served: Served) -> None:
    assert served.call("ServerLive", tc.ServerLiveRequest(), tc.ServerLiveResponse).live
    assert served.call("ServerReady", tc.ServerReadyRequest(), tc.ServerReadyResponse).ready
    metadata = served.call("ServerMetadata", tc.ServerMetadataRequest(), tc.ServerMetadataResponse)
    assert metadata.name == "modelport"
    assert metadata.version == __version__
    assert list(metadata.extensions) == list(triton_docs.EXTENSIONS)


def test_readiness_turns_false_while_draining_and_other_calls_are_refused(
    drained: Served,
) -> None:
    assert drained.call("ServerLive", tc.ServerLiveRequest(), tc.ServerLiveResponse).live
    assert not drained.call("ServerReady", tc.ServerReadyRequest(), tc.ServerReadyResponse).ready
    ready = tc.ModelReadyRequest(name="identity_fp32")
    assert not drained.call("ModelReady", ready, tc.ModelReadyResponse).ready
    refused = drained.fails("ModelInfer", fp32_request(np.zeros((1, 3), np.float32)))
    assert refused.code is StatusCode.UNAVAILABLE
    assert "another replica" in refused.message


def model_ready(served: Served, name: str, version: str = "") -> bool:
    request = tc.ModelReadyRequest(name=name, version=version)
    return served.call("ModelReady", request, tc.ModelReadyResponse).ready


def test_model_ready_answers_false_for_what_the_server_does_not_serve(served: Served) -> None:
    assert model_ready(served, "identity_fp32")
    assert model_ready(served, "versioned", "1")
    assert model_ready(served, "versioned", "2")
    assert not model_ready(served, "versioned", "7")
    assert not model_ready(served, "nothing")
    bad = served.fails("ModelReady", tc.ModelReadyRequest(name="versioned", version="one"))
    assert bad.code is StatusCode.INVALID_ARGUMENT
    assert "'one' is not a version number" in bad.message


def test_model_metadata_matches_rest(served: Served) -> None:
    metadata = served.call(
        "ModelMetadata", tc.ModelMetadataRequest(name="tabular"), tc.ModelMetadataResponse
    )
    rest = served.rest_json("model_metadata", "/v2/models/tabular", _MODEL)
    assert rest == {
        "name": metadata.name,
        "versions": list(metadata.versions),
        "platform": metadata.platform,
        "inputs": [tensor_json(t) for t in metadata.inputs],
        "outputs": [tensor_json(t) for t in metadata.outputs],
    }
    assert rest["inputs"][0] == {"name": "features", "datatype": "FP32", "shape": [-1, 4]}


def tensor_json(tensor: tc.ModelMetadataResponse.TensorMetadata) -> dict[str, Any]:
    return {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}


def test_model_metadata_lists_the_versions_served(served: Served) -> None:
    def versions(version: str) -> list[str]:
        request = tc.ModelMetadataRequest(name="versioned", version=version)
        return list(served.call("ModelMetadata", request, tc.ModelMetadataResponse).versions)

    assert versions("") == ["2", "1"]
    assert versions("1") == ["1"]


VIEW_ERRORS = [
    ("nothing", "", StatusCode.NOT_FOUND, "model 'nothing' is not in the repository"),
    ("versioned", "7", StatusCode.NOT_FOUND, "model 'versioned' has no version 7"),
    ("versioned", "v1", StatusCode.INVALID_ARGUMENT, "'v1' is not a version number"),
    ("versioned", "0", StatusCode.INVALID_ARGUMENT, "'0' is not a version number"),
    ("", "", StatusCode.INVALID_ARGUMENT, "names no model"),
]


@pytest.mark.parametrize(
    ("method", "case"),
    [
        (method, case)
        for method in ("ModelMetadata", "ModelConfig", "ModelStatistics")
        for case in VIEW_ERRORS
        if case[0] or method != "ModelStatistics"  # an empty name asks for every model's
    ],
)
def test_model_views_refuse_unknown_models_and_bad_versions(
    served: Served, method: str, case: tuple[str, str, StatusCode, str]
) -> None:
    name, version, code, message = case
    request_type = getattr(tc, f"{method}Request")
    failure = served.fails(method, request_type(name=name, version=version))
    assert failure.code is code
    assert message in failure.message


# ---- inference ---------------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", sorted(SAMPLES))
def test_every_datatype_round_trips_in_raw_contents(served: Served, datatype: str) -> None:
    data = SAMPLES[datatype]
    request = identity_request(datatype, data)
    assert len(request.raw_input_contents) == 1
    response = served.infer(request)
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("output", datatype, [2, 3])
    ]
    assert len(response.raw_output_contents) == 1
    assert not response.outputs[0].HasField("contents")
    assert_same(output(response, "output"), data)


@pytest.mark.parametrize("datatype", sorted(TYPED_FIELDS))
def test_every_datatype_round_trips_in_typed_contents(served: Served, datatype: str) -> None:
    data = SAMPLES[datatype]
    values = data.ravel().tolist()
    request = typed_request(
        f"identity_{datatype.lower()}",
        "input",
        datatype,
        data.shape,
        **{TYPED_FIELDS[datatype]: values},
    )
    response = served.infer(request)
    assert len(response.raw_output_contents) == 1
    assert_same(output(response, "output"), data)


def test_bytes_model_answers_bytes_and_numbers(served: Served) -> None:
    text = np.array([b"hello", "w\u00f6rld".encode(), b""], dtype=object)
    for request in (
        client_request("strings", [infer_input("text", text, "BYTES")]),
        typed_request("strings", "text", "BYTES", [3], bytes_contents=text.tolist()),
    ):
        response = served.infer(request)
        assert {o.name: o.datatype for o in response.outputs} == {
            "text_bytes": "BYTES",
            "length": "INT64",
        }
        assert_same(output(response, "text_bytes"), text)
        assert_same(output(response, "length"), np.array([3], np.int64))


def test_requested_outputs_are_the_only_ones_answered_in_their_order(served: Served) -> None:
    features = infer_input("features", np.ones((2, 4), np.float32), "FP32")
    category = infer_input("category", np.array([[1], [2]], np.int64), "INT64")
    both = served.infer(client_request("tabular", [features, category]))
    assert [o.name for o in both.outputs] == ["probabilities", "score"]
    one = served.infer(client_request("tabular", [features, category], outputs=["score"]))
    assert [o.name for o in one.outputs] == ["score"]
    assert len(one.raw_output_contents) == 1
    assert_same(output(one, "score"), output(both, "score"))
    reversed_ = client_request("tabular", [features, category], outputs=["score", "probabilities"])
    assert [o.name for o in served.infer(reversed_).outputs] == ["score", "probabilities"]


def test_the_id_is_echoed_and_the_version_that_served_is_named(served: Served) -> None:
    x = infer_input("x", np.zeros((1, 1), np.float32), "FP32")
    newest = served.infer(client_request("versioned", [x], request_id="req-7"))
    assert (newest.model_name, newest.model_version, newest.id) == ("versioned", "2", "req-7")
    assert output(newest, "y").tolist() == [[2.0]]
    first = served.infer(client_request("versioned", [x], version="1"))
    assert (first.model_version, first.id) == ("1", "")
    assert output(first, "y").tolist() == [[1.0]]


def test_reserved_and_custom_parameters_do_not_break_a_request(served: Served) -> None:
    data = np.arange(3, dtype=np.float32).reshape(1, 3)
    request = fp32_request(data)
    request.parameters["triton_enable_empty_final_response"].bool_param = True
    request.parameters["sequence_id"].uint64_param = 5
    request.parameters["sequence_start"].bool_param = True
    request.parameters["sequence_end"].bool_param = False
    request.parameters["timeout"].int64_param = 10_000_000
    request.parameters["binary_data_output"].bool_param = True
    request.parameters["custom"].double_param = 0.5
    request.parameters["unset"].CopyFrom(tc.InferParameter())
    request.inputs[0].parameters["binary_data_size"].int64_param = 12
    request.outputs.add(name="output").parameters["binary_data"].bool_param = True
    assert_same(output(served.infer(request), "output"), data)

    batched = client_request(
        "batched", [infer_input("input", data, "FP32")], priority=1, parameters={"k": "v"}
    )
    assert_same(output(served.infer(batched), "output"), data)


def test_parameters_reach_the_scheduler_as_plain_values() -> None:
    request = pb.ModelInferRequest.FromString(
        client_request(
            "m",
            [infer_input("x", np.zeros((1, 1), np.float32), "FP32")],
            priority=2,
            timeout=30,
            parameters={"s": "v", "b": True, "i": 3, "f": 0.25},
        ).SerializeToString()
    )
    assert decode_infer_request(request).parameters == {
        "priority": 2,
        "timeout": 30,
        "s": "v",
        "b": True,
        "i": 3,
        "f": 0.25,
    }


@pytest.mark.parametrize(
    ("where", "key", "message"),
    [
        ("request", "shared_memory_region", "shared memory is not supported"),
        ("input", "shared_memory_region", "shared memory is not supported"),
        ("output", "classification", "classification extension is not supported"),
    ],
)
def test_shared_memory_and_classification_are_unimplemented(
    served: Served, where: str, key: str, message: str
) -> None:
    request = fp32_request(np.zeros((1, 3), np.float32))
    holder = {
        "request": request,
        "input": request.inputs[0],
        "output": request.outputs.add(name="output"),
    }[where]
    holder.parameters[key].string_param = "region"
    failure = served.fails("ModelInfer", request)
    assert failure.code is StatusCode.UNIMPLEMENTED
    assert message in failure.message


def test_bf16_travels_raw_both_ways() -> None:
    data = np.array([[1.5, -2.0, 3.0]], ml_dtypes.bfloat16)
    request = tc.ModelInferRequest(model_name="m", raw_input_contents=[data.tobytes()])
    request.inputs.add(name="x", datatype="BF16", shape=[1, 3])
    decoded = decode_infer_request(pb.ModelInferRequest.FromString(request.SerializeToString()))
    assert_same(decoded.inputs["x"], data)

    encoded = encode_infer_response(InferResponse("m", 1, {"y": data}))
    response = tc.ModelInferResponse.FromString(encoded.SerializeToString())
    assert (response.outputs[0].datatype, list(response.outputs[0].shape)) == ("BF16", [1, 3])
    assert response.raw_output_contents[0] == data.tobytes()


def with_raw(request: tc.ModelInferRequest, *raw: bytes) -> tc.ModelInferRequest:
    del request.raw_input_contents[:]
    request.raw_input_contents.extend(raw)
    return request


def two_inputs_one_raw_entry() -> tc.ModelInferRequest:
    features = infer_input("features", np.ones((1, 4), np.float32), "FP32")
    category = infer_input("category", np.ones((1, 1), np.int64), "INT64")
    request = client_request("tabular", [features, category])
    return with_raw(request, request.raw_input_contents[0])


def raw_and_typed() -> tc.ModelInferRequest:
    request = fp32_request(np.zeros((1, 3), np.float32))
    request.inputs[0].contents.fp32_contents.extend([1, 2, 3])
    return request


def renamed(name: str) -> tc.ModelInferRequest:
    request = fp32_request(np.zeros((1, 3), np.float32))
    request.inputs[0].name = name
    return request


def reshaped(shape: list[int], raw: bytes = bytes(12)) -> tc.ModelInferRequest:
    request = fp32_request(np.zeros((1, 3), np.float32))
    del request.inputs[0].shape[:]
    request.inputs[0].shape.extend(shape)
    return with_raw(request, raw)


def duplicated() -> tc.ModelInferRequest:
    request = fp32_request(np.zeros((1, 3), np.float32))
    request.inputs.append(request.inputs[0])
    return with_raw(request, *request.raw_input_contents, *request.raw_input_contents)


def retyped(datatype: str) -> tc.ModelInferRequest:
    request = fp32_request(np.zeros((1, 3), np.float32))
    request.inputs[0].datatype = datatype
    return request


FP32 = "identity_fp32"
INFER_ERRORS = [
    (
        "unknown model",
        lambda: client_request("nothing", [infer_input("x", np.zeros(1, np.float32), "FP32")]),
        StatusCode.NOT_FOUND,
        "model 'nothing' is not in the repository; models served:",
    ),
    (
        "unknown version",
        lambda: identity_request("FP32", np.zeros((1, 3), np.float32), version="3"),
        StatusCode.NOT_FOUND,
        "model 'identity_fp32' has no version 3; versions: 1",
    ),
    (
        "non-numeric version",
        lambda: identity_request("FP32", np.zeros((1, 3), np.float32), version="latest"),
        StatusCode.INVALID_ARGUMENT,
        "version 'latest' is not a version number (a positive integer)",
    ),
    (
        "no model name",
        lambda: client_request("", [infer_input("x", np.zeros(1, np.float32), "FP32")]),
        StatusCode.INVALID_ARGUMENT,
        "the request names no model",
    ),
    (
        "wrong datatype",
        lambda: client_request(FP32, [infer_input("input", np.zeros((1, 3), np.int32), "INT32")]),
        StatusCode.INVALID_ARGUMENT,
        "input 'input' of model 'identity_fp32' version 1 has datatype INT32, but the model "
        "expects FP32",
    ),
    (
        "wrong shape",
        lambda: fp32_request(np.zeros((1, 4), np.float32)),
        StatusCode.INVALID_ARGUMENT,
        "has shape [1, 4], but the model expects [-1, 3]",
    ),
    (
        "raw size mismatch",
        lambda: with_raw(fp32_request(np.zeros((1, 3), np.float32)), bytes(10)),
        StatusCode.INVALID_ARGUMENT,
        "input 'input': 10 bytes of data, but shape [1, 3] of FP32 needs 12 bytes",
    ),
    (
        "BYTES raw data cut short",
        lambda: with_raw(
            client_request("strings", [infer_input("text", np.array([b"ab"], object), "BYTES")]),
            b"\x05\x00\x00\x00ab",
        ),
        StatusCode.INVALID_ARGUMENT,
        "input 'text': BYTES element 0 runs past the data",
    ),
    (
        "BYTES that onnxruntime cannot take",
        lambda: client_request(
            "strings", [infer_input("text", np.array([b"\xff"], object), "BYTES")]
        ),
        StatusCode.INVALID_ARGUMENT,
        "input 'text' holds bytes that are not UTF-8 text",
    ),
    (
        "raw and typed contents",
        raw_and_typed,
        StatusCode.INVALID_ARGUMENT,
        "input 'input' has typed contents, but the request also has raw_input_contents",
    ),
    (
        "too few raw entries",
        two_inputs_one_raw_entry,
        StatusCode.INVALID_ARGUMENT,
        "the request has 1 raw_input_contents entries for 2 inputs; send one entry per input",
    ),
    (
        "unknown input",
        lambda: renamed("nope"),
        StatusCode.INVALID_ARGUMENT,
        "unknown input 'nope' for model 'identity_fp32' version 1; it takes: input FP32 [-1, 3]",
    ),
    (
        "duplicate input",
        duplicated,
        StatusCode.INVALID_ARGUMENT,
        "input 'input' appears twice in the request",
    ),
    (
        "unknown output",
        lambda: identity_request("FP32", np.zeros((1, 3), np.float32), outputs=["scores"]),
        StatusCode.INVALID_ARGUMENT,
        "unknown output 'scores' requested from model 'identity_fp32' version 1; it has: output",
    ),
    (
        "unknown datatype",
        lambda: retyped("FLOAT"),
        StatusCode.INVALID_ARGUMENT,
        "input 'input' has datatype 'FLOAT'; use one of BOOL, UINT8",
    ),
    (
        "negative dimension",
        lambda: reshaped([-1, 3]),
        StatusCode.INVALID_ARGUMENT,
        "input 'input' has shape [-1, 3]; dimensions must not be negative",
    ),
    (
        "huge dimension",
        lambda: reshaped([2**41, 3]),
        StatusCode.INVALID_ARGUMENT,
        f"input 'input': dimension {2**41} of shape [{2**41}, 3] is too large",
    ),
    (
        "huge element count",
        lambda: reshaped([2**31, 2**31, 2**31]),
        StatusCode.INVALID_ARGUMENT,
        f"needs {4 * 2**93} bytes",
    ),
    (
        "typed count mismatch",
        lambda: typed_request(FP32, "input", "FP32", [2, 3], fp32_contents=[1, 2, 3, 4, 5]),
        StatusCode.INVALID_ARGUMENT,
        "input 'input': shape [2, 3] holds 6 elements, but contents.fp32_contents has 5",
    ),
    (
        "typed contents in the wrong field",
        lambda: typed_request(FP32, "input", "FP32", [1, 3], int_contents=[1, 2, 3]),
        StatusCode.INVALID_ARGUMENT,
        "input 'input' is FP32: its data goes in contents.fp32_contents, but the request filled "
        "contents.int_contents",
    ),
    (
        "no data at all",
        lambda: typed_request(FP32, "input", "FP32", [1, 3]),
        StatusCode.INVALID_ARGUMENT,
        "input 'input' has no data: send it in raw_input_contents (one entry per input) or in "
        "contents.fp32_contents",
    ),
    (
        "typed value out of range",
        lambda: typed_request(
            "identity_uint8", "input", "UINT8", [1, 3], uint_contents=[1, 300, 2]
        ),
        StatusCode.INVALID_ARGUMENT,
        "input 'input' is UINT8; the value 300 is out of its range [0, 255]",
    ),
    (
        "typed FP16",
        lambda: typed_request("identity_fp16", "input", "FP16", [1, 3], fp32_contents=[1, 2, 3]),
        StatusCode.INVALID_ARGUMENT,
        "input 'input' is FP16, which has no typed contents field; send its data in "
        "raw_input_contents",
    ),
    (
        "no inputs",
        lambda: tc.ModelInferRequest(model_name=FP32),
        StatusCode.INVALID_ARGUMENT,
        "the inference request needs at least one entry in 'inputs'",
    ),
]


@pytest.mark.parametrize(
    ("build", "code", "message"),
    [case[1:] for case in INFER_ERRORS],
    ids=[case[0] for case in INFER_ERRORS],
)
def test_inference_errors_say_what_is_wrong(
    served: Served, build: Any, code: StatusCode, message: str
) -> None:
    failure = served.fails("ModelInfer", build())
    assert failure.code is code
    assert message in failure.message


def test_a_malformed_message_is_invalid_argument(served: Served) -> None:
    failure = served.fails("ModelInfer", b"\x0a\xff\xff\xff")
    assert failure.code is StatusCode.INVALID_ARGUMENT
    assert "not a valid inference.ModelInferRequest message" in failure.message


def test_inference_is_counted_under_the_grpc_protocol_label(served: Served) -> None:
    served.observer.protocols.clear()
    served.infer(fp32_request(np.zeros((1, 3), np.float32)))
    served.fails("ModelInfer", fp32_request(np.zeros((1, 4), np.float32)))
    assert served.observer.protocols == [PROTOCOL, PROTOCOL]
    assert PROTOCOL == "kserve_v2_grpc"


# ---- streaming ---------------------------------------------------------------------------------


def stream_request(model: str, value: float, request_id: str) -> bytes:
    data = np.full((1, 3), value, np.float32)
    request = client_request(model, [infer_input("input", data, "FP32")], request_id=request_id)
    return bytes(request.SerializeToString())


def test_a_stream_answers_every_request_and_a_failure_does_not_end_it(served: Served) -> None:
    bad = identity_request("FP32", np.zeros((1, 4), np.float32), request_id="bad")
    payloads = [
        stream_request("identity_fp32", 1.0, "a"),
        bad.SerializeToString(),
        stream_request("identity_fp32", 2.0, "b"),
        stream_request("batched", 3.0, "c"),
    ]
    answers, status = served.stream(payloads)
    assert status is None
    by_id = {a.infer_response.id: a for a in answers}
    assert sorted(by_id) == ["a", "b", "bad", "c"]
    assert "has shape [1, 4], but the model expects [-1, 3]" in by_id["bad"].error_message
    for request_id, value in (("a", 1.0), ("b", 2.0), ("c", 3.0)):
        answer = by_id[request_id]
        assert answer.error_message == ""
        assert output(answer.infer_response, "output").tolist() == [[value] * 3]
        assert "triton_final_response" not in answer.infer_response.parameters


def test_a_stream_runs_more_requests_than_its_window_and_batches_them(served: Served) -> None:
    count = 150
    payloads = [stream_request("batched", float(i), str(i)) for i in range(count)]
    answers, status = served.stream(payloads)
    assert status is None
    assert len(answers) == count
    for answer in answers:
        assert answer.error_message == ""
        value = float(answer.infer_response.id)
        assert output(answer.infer_response, "output").tolist() == [[value] * 3]


def test_a_stream_marks_answers_final_when_the_client_waits_for_the_flag(served: Served) -> None:
    request = tc.ModelInferRequest.FromString(stream_request("identity_fp32", 1.0, "x"))
    request.parameters["triton_enable_empty_final_response"].bool_param = True
    answers, status = served.stream([request.SerializeToString()])
    assert status is None
    assert [a.infer_response.parameters["triton_final_response"].bool_param for a in answers] == [
        True
    ]


def test_a_malformed_message_ends_the_stream_after_the_others_are_answered(
    served: Served,
) -> None:
    answers, status = served.stream([stream_request("identity_fp32", 1.0, "a"), b"\xff"])
    assert [a.infer_response.id for a in answers] == ["a"]
    assert status is not None
    assert status.code is StatusCode.INVALID_ARGUMENT


def test_a_stream_ends_unavailable_when_the_server_starts_draining(served: Served) -> None:
    def drain() -> None:
        served.dataplane.draining = True

    try:
        answers, status = served.stream(
            [stream_request("identity_fp32", 1.0, "a"), stream_request("identity_fp32", 2.0, "b")],
            before={1: drain},
        )
    finally:
        served.dataplane.draining = False
    assert [a.infer_response.id for a in answers] == ["a"]
    assert status is not None
    assert status.code is StatusCode.UNAVAILABLE


def test_closing_a_stream_stops_reading_and_cancels_what_runs(served: Served) -> None:
    path = f"/{SERVICE}/ModelStreamInfer"

    async def scenario() -> tuple[str, bool]:
        stopped = asyncio.Event()

        async def messages() -> AsyncIterator[bytes]:
            try:
                yield stream_request("identity_fp32", 1.0, "a")
                await asyncio.Event().wait()  # the client goes quiet
            finally:
                stopped.set()

        calls = served.app.stream(served.app.method(path), messages(), CallContext(path))
        async with contextlib.aclosing(calls):
            first = tc.ModelStreamInferResponse.FromString(await anext(calls))
        await asyncio.wait_for(stopped.wait(), timeout=30)
        return first.infer_response.id, stopped.is_set()

    assert served.run(scenario()) == ("a", True)


# ---- Triton's extensions, compared with what REST answers --------------------------------------

_MODEL = r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?"


@pytest.mark.parametrize("model", ["identity_fp32", "batched", "strings", "versioned"])
def test_model_config_is_the_rest_document(served: Served, model: str) -> None:
    response = served.call("ModelConfig", tc.ModelConfigRequest(name=model), tc.ModelConfigResponse)
    rest = served.rest_json("config", f"/v2/models/{model}/config", _MODEL + "/config")
    assert response == json_format.ParseDict({"config": rest}, tc.ModelConfigResponse())
    # What perf_analyzer reads, after printing the message as JSON with proto field names.
    printed = json.loads(json_format.MessageToJson(response, preserving_proto_field_name=True))
    assert printed["config"]["name"] == model
    assert printed["config"]["input"][0]["name"] == rest["input"][0]["name"]


def test_model_config_of_a_batched_model(served: Served) -> None:
    request = tc.ModelConfigRequest(name="batched", version="1")
    config = served.call("ModelConfig", request, tc.ModelConfigResponse).config
    assert config.max_batch_size == 8
    assert config.WhichOneof("scheduling_choice") == "dynamic_batching"
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("input", tc_config.TYPE_FP32, [3])
    ]
    assert config.platform == "onnxruntime_onnx"
    assert not config.model_transaction_policy.decoupled


def test_statistics_are_the_rest_document(served: Served) -> None:
    served.infer(fp32_request(np.zeros((2, 3), np.float32)))
    request = tc.ModelStatisticsRequest(name="identity_fp32")
    response = served.call("ModelStatistics", request, tc.ModelStatisticsResponse)
    rest = served.rest_json("statistics", "/v2/models/identity_fp32/stats", _MODEL + "/stats")
    assert response == json_format.ParseDict(rest, tc.ModelStatisticsResponse())
    (stats,) = response.model_stats
    assert (stats.name, stats.version) == ("identity_fp32", "1")
    assert stats.inference_stats.success.count >= 1
    assert stats.inference_count >= 2


def test_statistics_of_every_model_and_of_one_version(served: Served) -> None:
    everything = served.call(
        "ModelStatistics", tc.ModelStatisticsRequest(), tc.ModelStatisticsResponse
    )
    rest = served.rest_json("statistics", "/v2/models/stats", "/v2/models/stats")
    assert everything == json_format.ParseDict(rest, tc.ModelStatisticsResponse())
    assert {(s.name, s.version) for s in everything.model_stats} >= {
        ("versioned", "1"),
        ("versioned", "2"),
        ("strings", "1"),
    }
    one = served.call(
        "ModelStatistics",
        tc.ModelStatisticsRequest(name="versioned", version="1"),
        tc.ModelStatisticsResponse,
    )
    assert [(s.name, s.version) for s in one.model_stats] == [("versioned", "1")]


@pytest.mark.parametrize("ready", [False, True])
def test_repository_index_is_the_rest_document(served: Served, ready: bool) -> None:
    request = tc.RepositoryIndexRequest(ready=ready)
    response = served.call("RepositoryIndex", request, tc.RepositoryIndexResponse)
    body = json.dumps({"ready": ready}).encode()
    rest = served.rest_json("index", "/v2/repository/index", "/v2/repository/index", body)
    assert response == json_format.ParseDict({"models": rest}, tc.RepositoryIndexResponse())
    rows = {(m.name, m.version, m.state) for m in response.models}
    assert ("versioned", "2", "READY") in rows
    assert len(response.models) == len(ONNX_TYPES) + 4 + 1  # 2 versions of "versioned"


def test_loading_and_unloading_is_refused_without_model_control(served: Served) -> None:
    for method, request in (
        ("RepositoryModelLoad", tc.RepositoryModelLoadRequest(model_name="strings")),
        ("RepositoryModelUnload", tc.RepositoryModelUnloadRequest(model_name="strings")),
    ):
        failure = served.fails(method, request)
        assert failure.code is StatusCode.PERMISSION_DENIED
        assert "--model-control" in failure.message
    assert model_ready(served, "strings")


def test_unload_and_load_on_request(controlled: Served) -> None:
    unload = tc.RepositoryModelUnloadRequest(model_name="strings")
    response = controlled.call("RepositoryModelUnload", unload, tc.RepositoryModelUnloadResponse)
    assert response == tc.RepositoryModelUnloadResponse()
    assert not model_ready(controlled, "strings")
    assert model_ready(controlled, "identity_fp32")
    index = controlled.call(
        "RepositoryIndex", tc.RepositoryIndexRequest(), tc.RepositoryIndexResponse
    )
    rows = {m.name: (m.version, m.state, m.reason) for m in index.models}
    assert rows["strings"] == ("", "UNAVAILABLE", "unloaded on request")
    gone = controlled.fails("ModelInfer", client_request("strings", [text_input()]))
    assert gone.code is StatusCode.NOT_FOUND

    load = tc.RepositoryModelLoadRequest(model_name="strings")
    response_ = controlled.call("RepositoryModelLoad", load, tc.RepositoryModelLoadResponse)
    assert response_ == tc.RepositoryModelLoadResponse()
    assert model_ready(controlled, "strings")
    answer = controlled.infer(client_request("strings", [text_input()]))
    assert output(answer, "length").tolist() == [1]


def text_input() -> triton.InferInput:
    return infer_input("text", np.array([b"x"], dtype=object), "BYTES")


def test_load_refuses_parameters_and_unknown_models(controlled: Served) -> None:
    with_config = tc.RepositoryModelLoadRequest(model_name="strings")
    with_config.parameters["config"].string_param = "{}"
    failure = controlled.fails("RepositoryModelLoad", with_config)
    assert failure.code is StatusCode.UNIMPLEMENTED
    assert "change the model's folder in the repository" in failure.message

    unknown = controlled.fails(
        "RepositoryModelLoad", tc.RepositoryModelLoadRequest(model_name="nothing")
    )
    assert unknown.code is StatusCode.NOT_FOUND
    assert "model 'nothing' is not in the repository" in unknown.message
    nameless = controlled.fails("RepositoryModelUnload", tc.RepositoryModelUnloadRequest())
    assert nameless.code is StatusCode.INVALID_ARGUMENT
