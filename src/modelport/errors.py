"""The one error tree of modelport.

Every failure a client can see is one of these. Each class carries its gRPC canonical code and its
HTTP status, so protocol adapters translate without a lookup table of their own::

    ModelportError                    INTERNAL            500
    ├── InvalidInput                  INVALID_ARGUMENT    400
    ├── FailedPrecondition            FAILED_PRECONDITION 400
    ├── NotFound                      NOT_FOUND           404
    │   ├── ModelNotFound
    │   ├── VersionNotFound
    │   └── LabelNotFound
    ├── MethodNotAllowed              UNIMPLEMENTED       405
    ├── PermissionDenied              PERMISSION_DENIED   403
    ├── Conflict                      ALREADY_EXISTS      409
    ├── PayloadTooLarge               RESOURCE_EXHAUSTED  413
    ├── UnsupportedMediaType          INVALID_ARGUMENT    415
    ├── Overloaded                    RESOURCE_EXHAUSTED  429
    ├── Unimplemented                 UNIMPLEMENTED       501
    ├── Unavailable                   UNAVAILABLE         503
    │   ├── ModelNotReady
    │   └── ShuttingDown
    ├── DeadlineExceeded              DEADLINE_EXCEEDED   504
    └── RuntimeFailure                INTERNAL            500

``ModelLoadError`` is not in the tree: it never reaches a client directly; the lifecycle records
it on the version that failed and the status APIs report it.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "Conflict",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidInput",
    "LabelNotFound",
    "MethodNotAllowed",
    "ModelLoadError",
    "ModelNotFound",
    "ModelNotReady",
    "ModelportError",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "PermissionDenied",
    "RuntimeFailure",
    "ShuttingDown",
    "Unavailable",
    "Unimplemented",
    "UnsupportedMediaType",
    "VersionNotFound",
]


class ModelportError(Exception):
    """Base of every error a client may receive; the message is safe to show to the client."""

    grpc_code: ClassVar[str] = "INTERNAL"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ModelportError):
    """The request is malformed or does not fit the model's signature."""

    grpc_code = "INVALID_ARGUMENT"
    http_status = 400


class FailedPrecondition(ModelportError):
    """The request is well-formed but the model cannot do what it asks (e.g. classify)."""

    grpc_code = "FAILED_PRECONDITION"
    http_status = 400


class NotFound(ModelportError):
    """Something the request names does not exist."""

    grpc_code = "NOT_FOUND"
    http_status = 404


class ModelNotFound(NotFound):
    """No model of that name is in the repository."""


class VersionNotFound(NotFound):
    """The model exists but not in that version."""


class LabelNotFound(NotFound):
    """The model has no such version label."""


class MethodNotAllowed(ModelportError):
    """The path exists but not for this HTTP method; ``allowed`` lists the methods it takes."""

    grpc_code = "UNIMPLEMENTED"
    http_status = 405

    def __init__(self, message: str, allowed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.allowed = allowed


class PermissionDenied(ModelportError):
    """The request is understood but this server is set up not to allow it."""

    grpc_code = "PERMISSION_DENIED"
    http_status = 403


class Conflict(ModelportError):
    """The operation conflicts with the current state."""

    grpc_code = "ALREADY_EXISTS"
    http_status = 409


class PayloadTooLarge(ModelportError):
    """The request body (or its decompressed form) is over the configured limit."""

    grpc_code = "RESOURCE_EXHAUSTED"
    http_status = 413


class UnsupportedMediaType(ModelportError):
    """The body's Content-Type or Content-Encoding is not one modelport reads."""

    grpc_code = "INVALID_ARGUMENT"
    http_status = 415


class Overloaded(ModelportError):
    """A queue is full; the client should retry after ``retry_after_s`` seconds."""

    grpc_code = "RESOURCE_EXHAUSTED"
    http_status = 429

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unimplemented(ModelportError):
    """The operation is not implemented by modelport."""

    grpc_code = "UNIMPLEMENTED"
    http_status = 501


class Unavailable(ModelportError):
    """The server or model cannot take the request now; retrying later may succeed."""

    grpc_code = "UNAVAILABLE"
    http_status = 503


class ModelNotReady(Unavailable):
    """The model (version) exists but is not AVAILABLE."""


class ShuttingDown(Unavailable):
    """The server is draining before exit and takes no new requests."""


class DeadlineExceeded(ModelportError):
    """The request ran out of time."""

    grpc_code = "DEADLINE_EXCEEDED"
    http_status = 504


class RuntimeFailure(ModelportError):
    """The engine failed while running a valid request."""


class ModelLoadError(Exception):
    """A model version could not be loaded; the message says why and what to do."""
