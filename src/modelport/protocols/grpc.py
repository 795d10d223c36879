"""gRPC calls as the protocol surfaces see them: services, methods and the status of an error.

The listener (``listeners.grpc``) speaks HTTP/2 and gRPC's message framing; everything that
does not depend on the transport lives here:

- a surface describes itself as a ``Service`` (its full proto name) of ``Method`` values, each
  with the message class its requests parse into and an ``async`` handler;
- ``GrpcApp`` finds the method a call's path names, answers ``UNAVAILABLE`` to new calls while
  the server drains (except on health methods), parses the request, runs the handler, and turns
  every ``ModelportError`` into its gRPC status (``errors.py`` gives each class its code). Any
  other exception becomes a generic ``INTERNAL``: the traceback goes to the server log, never
  to the client.

A unary handler takes the parsed request and a ``CallContext`` and returns the response message.
A streaming handler takes an async iterator of parsed requests and is an async generator of
response messages (server streaming is a stream whose client sends one message).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from google.protobuf.message import DecodeError, Message

from modelport.errors import ModelportError
from modelport.protocols.inflight import Inflight

__all__ = [
    "CallContext",
    "GrpcApp",
    "GrpcStatus",
    "Method",
    "Service",
    "StatusCode",
    "StreamHandler",
    "UnaryHandler",
]

log = logging.getLogger(__name__)


class StatusCode(enum.IntEnum):
    """gRPC's canonical status codes."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class GrpcStatus(Exception):
    """The status a call ends with, when it is not OK."""

    def __init__(self, code: StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def from_error(cls, exc: ModelportError) -> GrpcStatus:
        """The status of a modelport error: its class's code and its message."""
        return cls(StatusCode[exc.grpc_code], exc.message)


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a handler may know about the call besides its request."""

    #: The full method path, ``/package.Service/Method``.
    path: str
    #: Custom metadata (request headers other than HTTP/2 pseudo-headers and gRPC's own).
    metadata: tuple[tuple[str, str], ...] = ()
    #: The client's address, ``host:port``.
    peer: str = ""

    def get(self, key: str) -> str | None:
        """The first metadata value under ``key`` (lower case), if any."""
        for name, value in self.metadata:
            if name == key:
                return value
        return None


class UnaryHandler(Protocol):
    def __call__(self, request: Any, context: CallContext, /) -> Awaitable[Message]: ...


class StreamHandler(Protocol):
    def __call__(
        self, requests: AsyncIterator[Any], context: CallContext, /
    ) -> AsyncIterator[Message]: ...


@dataclass(frozen=True, slots=True)
class Method:
    """One method of a service: give ``unary`` or ``stream``."""

    name: str
    request_type: type[Message]
    unary: UnaryHandler | None = None
    stream: StreamHandler | None = None
    #: Health methods keep answering while the server drains.
    during_drain: bool = False

    def __post_init__(self) -> None:
        if (self.unary is None) == (self.stream is None):
            raise ValueError(f"method {self.name} needs exactly one of unary or stream")


@dataclass(frozen=True, slots=True)
class Service:
    """A gRPC service: its full proto name (``package.Service``) and its methods."""

    name: str
    methods: Sequence[Method]


class GrpcApp:
    """The method table of every service, and the rules every call goes through."""

    def __init__(self, services: Sequence[Service], draining: Callable[[], bool]) -> None:
        self.services = tuple(services)
        self._draining = draining
        self._inflight = Inflight()
        self._methods: dict[str, Method] = {}
        for service in services:
            for method in service.methods:
                self._methods[f"/{service.name}/{method.name}"] = method

    @property
    def inflight(self) -> int:
        """Calls being answered now (health and reflection streams not counted)."""
        return self._inflight.count

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no call is in flight; False if ``timeout`` passed first."""
        return await self._inflight.wait_idle(timeout)

    def method(self, path: str) -> Method:
        """The method a path names; raises ``GrpcStatus`` UNIMPLEMENTED if there is none."""
        method = self._methods.get(path)
        if method is None:
            raise GrpcStatus(
                StatusCode.UNIMPLEMENTED,
                f"method {path} is not served here; the services are "
                + ", ".join(s.name for s in self.services),
            )
        return method

    def admit(self, method: Method) -> None:
        """Refuse a new call while the server drains (health methods excepted)."""
        if self._draining() and not method.during_drain:
            raise GrpcStatus(
                StatusCode.UNAVAILABLE,
                "the server is shutting down; send the request to another replica",
            )

    async def unary(self, method: Method, payload: bytes, context: CallContext) -> bytes:
        """Run a unary call; return the serialized response or raise ``GrpcStatus``."""
        assert method.unary is not None
        request = parse(method.request_type, payload)
        inflight = self._inflight
        inflight.count += 1
        try:
            response = await method.unary(request, context)
        except ModelportError as exc:
            raise GrpcStatus.from_error(exc) from None
        except GrpcStatus:
            raise
        except Exception:
            log.exception("unexpected error answering %s", context.path)
            raise _INTERNAL from None
        finally:
            inflight.done()
        return response.SerializeToString()

    async def stream(
        self, method: Method, payloads: AsyncIterator[bytes], context: CallContext
    ) -> AsyncGenerator[bytes, None]:
        """Run a streaming call: serialized responses out, ``GrpcStatus`` raised on failure."""
        assert method.stream is not None
        requests = _parsed(method.request_type, payloads)
        counted = not method.during_drain
        if counted:
            self._inflight.count += 1
        try:
            async for response in method.stream(requests, context):
                yield response.SerializeToString()
        except ModelportError as exc:
            raise GrpcStatus.from_error(exc) from None
        except GrpcStatus:
            raise
        except Exception:
            log.exception("unexpected error answering %s", context.path)
            raise _INTERNAL from None
        finally:
            if counted:
                self._inflight.done()


def parse(message_type: type[Message], payload: bytes) -> Any:
    """Parse a request message; a malformed one is INVALID_ARGUMENT."""
    try:
        return message_type.FromString(payload)
    except DecodeError as exc:
        raise GrpcStatus(
            StatusCode.INVALID_ARGUMENT,
            f"the request is not a valid {message_type.DESCRIPTOR.full_name} message: {exc}",
        ) from None


async def _parsed(
    message_type: type[Message], payloads: AsyncIterator[bytes]
) -> AsyncIterator[Any]:
    async for payload in payloads:
        yield parse(message_type, payload)


_INTERNAL = GrpcStatus(StatusCode.INTERNAL, "internal server error; the server log has the details")
