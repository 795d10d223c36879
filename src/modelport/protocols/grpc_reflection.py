"""gRPC server reflection (``grpc.reflection.v1`` and ``v1alpha``), for grpcurl and friends.

Tools ask which services the server has and fetch the descriptors of their messages, so a
user can call any method without the ``.proto`` files. Files are answered with the
dependencies this stream has not been sent yet, so a client needs one round trip per symbol.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from types import ModuleType
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.descriptor_pool import DescriptorPool

from modelport._pb._pool import POOL
from modelport._pb.grpc import reflection_v1_pb2, reflection_v1alpha_pb2
from modelport.protocols.grpc import CallContext, Method, Service, StatusCode

__all__ = ["SERVICES", "ReflectionService"]

SERVICES = tuple(f"grpc.reflection.{v}.ServerReflection" for v in ("v1", "v1alpha"))


class ReflectionService:
    """Reflection over the descriptors of the services the server answers."""

    def __init__(self, services: Callable[[], Sequence[str]], pool: DescriptorPool = POOL) -> None:
        self._services = services
        self._pool = pool

    def services(self) -> list[Service]:
        """Both versions of the reflection service."""
        return [
            Service(
                name,
                (
                    Method(
                        "ServerReflectionInfo",
                        module.ServerReflectionRequest,
                        stream=self._info(module),
                    ),
                ),
            )
            for name, module in zip(
                SERVICES, (reflection_v1_pb2, reflection_v1alpha_pb2), strict=True
            )
        ]

    def _info(self, pb: ModuleType) -> Any:
        async def info(requests: AsyncIterator[Any], context: CallContext) -> AsyncIterator[Any]:
            sent: set[str] = set()
            async for request in requests:
                response = pb.ServerReflectionResponse(valid_host=request.host)
                response.original_request.CopyFrom(request)
                self._answer(pb, request, response, sent)
                yield response

        return info

    def _answer(self, pb: ModuleType, request: Any, response: Any, sent: set[str]) -> None:
        kind = request.WhichOneof("message_request")
        try:
            if kind == "list_services":
                for name in sorted(self._services()):
                    response.list_services_response.service.add(name=name)
            elif kind == "file_by_filename":
                files = [self._pool.FindFileByName(request.file_by_filename)]
                self._files(response, files, sent)
            elif kind == "file_containing_symbol":
                symbol = request.file_containing_symbol
                self._files(response, [self._pool.FindFileContainingSymbol(symbol)], sent)
            elif kind == "all_extension_numbers_of_type":
                name = request.all_extension_numbers_of_type
                self._pool.FindMessageTypeByName(name)
                response.all_extension_numbers_response.base_type_name = name
            elif kind == "file_containing_extension":
                raise KeyError("modelport's messages declare no extensions")
            else:
                _error(
                    response, StatusCode.INVALID_ARGUMENT, "the request names nothing to look up"
                )
        except KeyError as exc:
            _error(
                response, StatusCode.NOT_FOUND, f"not found: {exc.args[0] if exc.args else kind}"
            )

    @staticmethod
    def _files(response: Any, files: list[FileDescriptor], sent: set[str]) -> None:
        """The files and their dependencies, each at most once per stream."""
        out = response.file_descriptor_response.file_descriptor_proto
        todo = list(files)
        first = True
        while todo:
            descriptor = todo.pop()
            if descriptor.name in sent and not first:
                continue
            first = False
            sent.add(descriptor.name)
            proto = descriptor_pb2.FileDescriptorProto()
            descriptor.CopyToProto(proto)
            out.append(proto.SerializeToString())
            todo.extend(d for d in descriptor.dependencies if d.name not in sent)


def _error(response: Any, code: StatusCode, message: str) -> None:
    response.error_response.error_code = code
    response.error_response.error_message = message
