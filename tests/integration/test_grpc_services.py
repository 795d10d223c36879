"""The gRPC port of a real server beside inference: server reflection (grpcio-reflection's
descriptor database, as grpcurl and Postman use it), the standard health service, and start-up
when the gRPC port is taken."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import tritonclient.grpc as triton
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from tritonclient.grpc import service_pb2

from tests.conftest import StartServer
from tests.server import ServerProcess, free_port

SERVICES = {
    "inference.GRPCInferenceService": {
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
        "ModelStreamInfer",
        "ModelConfig",
        "ModelStatistics",
        "RepositoryIndex",
        "RepositoryModelLoad",
        "RepositoryModelUnload",
    },
    "tensorflow.serving.PredictionService": {
        "Classify",
        "Regress",
        "Predict",
        "MultiInference",
        "GetModelMetadata",
    },
    "tensorflow.serving.ModelService": {"GetModelStatus", "HandleReloadConfigRequest"},
    "grpc.health.v1.Health": {"Check", "Watch"},
}
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def channel(examples_server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(examples_server.grpc_target) as c:
        yield c


@pytest.fixture(scope="module")
def reflected(channel: grpc.Channel) -> tuple[ProtoReflectionDescriptorDatabase, Any]:
    database = ProtoReflectionDescriptorDatabase(channel)
    return database, descriptor_pool.DescriptorPool(database)


# ---- reflection -------------------------------------------------------------------------------


def test_reflection_lists_every_service(
    reflected: tuple[ProtoReflectionDescriptorDatabase, Any],
) -> None:
    database, _ = reflected
    services = set(database.get_services())
    assert set(SERVICES) <= services
    assert "grpc.reflection.v1alpha.ServerReflection" in services


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_reflection_describes_each_service_with_its_methods(
    reflected: tuple[ProtoReflectionDescriptorDatabase, Any], service: str
) -> None:
    _, pool = reflected
    found = pool.FindServiceByName(service)
    assert SERVICES[service] <= {method.name for method in found.methods}


def _fields(message: descriptor.Descriptor) -> dict[str, tuple[int, int]]:
    return {field.name: (field.number, field.type) for field in message.fields}


def _assert_wire_compatible(
    served: descriptor.Descriptor, client: descriptor.Descriptor, seen: set[str]
) -> None:
    """Every field the server declares is in the client's message, with its number and type."""
    if served.full_name in seen:
        return
    seen.add(served.full_name)
    assert served.full_name == client.full_name
    theirs = _fields(client)
    for name, number_and_type in _fields(served).items():
        assert theirs.get(name) == number_and_type, (served.full_name, name)
    for field in served.fields:
        if field.message_type is not None and not field.message_type.GetOptions().map_entry:
            theirs_nested = client.fields_by_name[field.name].message_type
            assert theirs_nested is not None, (served.full_name, field.name)
            _assert_wire_compatible(field.message_type, theirs_nested, seen)


def test_reflected_v2_messages_match_tritonclients_own(
    reflected: tuple[ProtoReflectionDescriptorDatabase, Any],
) -> None:
    """What reflection hands a generic client is what tritonclient puts on the wire."""
    _, pool = reflected
    theirs = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    ours = pool.FindServiceByName("inference.GRPCInferenceService")
    seen: set[str] = set()
    for method in ours.methods:
        their_method = theirs.methods_by_name[method.name]
        _assert_wire_compatible(method.input_type, their_method.input_type, seen)
        _assert_wire_compatible(method.output_type, their_method.output_type, seen)
    assert {"inference.ModelInferRequest", "inference.ModelInferResponse"} <= seen


def test_a_call_built_only_from_reflection(
    channel: grpc.Channel, reflected: tuple[ProtoReflectionDescriptorDatabase, Any]
) -> None:
    """What grpcurl does: no generated code, message classes made from the reflected types."""
    _, pool = reflected
    method = pool.FindMethodByName("inference.GRPCInferenceService.ModelMetadata")
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    call = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelMetadata",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    answer = call(request_class(name="tabular"), timeout=30)
    assert answer.name == "tabular"
    assert [(t.name, t.datatype, list(t.shape)) for t in answer.inputs] == [
        ("features", "FP32", [-1, 4]),
        ("category", "INT64", [-1, 1]),
    ]


@pytest.mark.parametrize(
    "path",
    [
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    ],
)
def test_both_reflection_versions_answer_and_report_unknown_symbols(
    channel: grpc.Channel, path: str
) -> None:
    # v1 and v1alpha share their messages; grpcio-reflection ships only v1alpha's classes.
    call = channel.stream_stream(
        path,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    listed, missing = call(
        iter(
            [
                reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="nope.Nothing"),
            ]
        ),
        timeout=30,
    )
    assert set(SERVICES) <= {s.name for s in listed.list_services_response.service}
    assert missing.WhichOneof("message_response") == "error_response"
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert "nope.Nothing" in missing.error_response.error_message


def test_reflection_serves_tf_serving_types_to_generic_clients(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    (answer,) = stub.ServerReflectionInfo(
        iter(
            [
                reflection_pb2.ServerReflectionRequest(
                    file_containing_symbol="tensorflow.serving.PredictionService"
                )
            ]
        ),
        timeout=30,
    )
    pool = descriptor_pool.DescriptorPool()
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in answer.file_descriptor_response.file_descriptor_proto
    ]
    # the answer carries the file and every file it imports: they load into an empty pool
    pending = {f.name: f for f in files}
    while pending:
        loadable = [f for f in pending.values() if all(d not in pending for d in f.dependency)]
        assert loadable, f"imports missing from the answer: {sorted(pending)}"
        for f in loadable:
            pool.Add(f)
            del pending[f.name]
    predict = pool.FindMessageTypeByName("tensorflow.serving.PredictRequest")
    assert {f.name: f.number for f in predict.fields} == {
        "model_spec": 1,
        "inputs": 2,
        "output_filter": 3,
    }
    tensor = pool.FindMessageTypeByName("tensorflow.TensorProto")
    assert tensor.fields_by_name["tensor_content"].number == 4
    assert tensor.fields_by_name["float_val"].number == 5


# ---- health -----------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["", *sorted(SERVICES)])
def test_health_check_says_serving(channel: grpc.Channel, service: str) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
    assert answer.status == SERVING


def test_health_check_of_an_unknown_service(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.RpcError) as unknown:
        health.Check(health_pb2.HealthCheckRequest(service="nope.Service"), timeout=30)
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
    assert "nope.Service" in str(unknown.value.details())


def test_health_follows_readiness_of_a_server_with_a_broken_model(
    start_server: StartServer, example_repository: Path
) -> None:
    broken = example_repository / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "model.onnx").write_bytes(b"not a model")
    server = start_server(
        "--model-repository", str(example_repository), "--no-exit-on-error", ready=False
    )
    server.wait_live()
    server.wait_log("ready: serving")
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 503
    with grpc.insecure_channel(server.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in (
            "",
            "inference.GRPCInferenceService",
            "tensorflow.serving.PredictionService",
        ):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
            assert answer.status == NOT_SERVING, service
        watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=30)
        assert next(watch).status == NOT_SERVING
        watch.cancel()
    client = triton.InferenceServerClient(server.grpc_target)
    try:
        assert client.is_server_live()
        assert not client.is_server_ready()
        assert client.is_model_ready("mnist")
    finally:
        client.close()


# ---- the gRPC port in use ---------------------------------------------------------------------


def test_start_up_fails_when_the_grpc_port_is_taken(example_repository: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "modelport",
                "serve",
                "--model-repository",
                str(example_repository),
                "--http-port",
                str(free_port()),
                "--grpc-port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode != 0, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "--grpc-port" in result.stderr
