"""gRPC's standard health service (``grpc.health.v1.Health``), for probes and load balancers.

The server as a whole (service ``""``) and each served gRPC service report SERVING while the
server is ready (every model it must serve is available, and it is not draining) and
NOT_SERVING otherwise, so a Kubernetes gRPC probe or ``grpc_health_probe`` gives the same
answer as ``/v2/health/ready``. ``Watch`` sends the status, then every change of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

from modelport._pb.grpc import health_pb2 as pb
from modelport.errors import InvalidInput, NotFound
from modelport.protocols.grpc import CallContext, Method, Service

__all__ = ["SERVICE", "HealthService"]

SERVICE = "grpc.health.v1.Health"

_SERVING = pb.HealthCheckResponse.SERVING
_NOT_SERVING = pb.HealthCheckResponse.NOT_SERVING
_UNKNOWN = pb.HealthCheckResponse.SERVICE_UNKNOWN


class HealthService:
    """Health of the server, by readiness; ``services`` names what may be asked about."""

    def __init__(
        self,
        ready: Callable[[], bool],
        services: Sequence[str],
        watch_interval_s: float = 0.5,
    ) -> None:
        self._ready = ready
        self._services = frozenset(("", SERVICE, *services))
        self._interval = watch_interval_s

    def service(self) -> Service:
        return Service(
            SERVICE,
            (
                Method("Check", pb.HealthCheckRequest, unary=self.check, during_drain=True),
                Method("List", pb.HealthListRequest, unary=self.list, during_drain=True),
                Method("Watch", pb.HealthCheckRequest, stream=self.watch, during_drain=True),
            ),
        )

    def _status(self, service: str) -> pb.HealthCheckResponse.ServingStatus:
        if service not in self._services:
            return _UNKNOWN
        return _SERVING if self._ready() else _NOT_SERVING

    async def check(
        self, request: pb.HealthCheckRequest, context: CallContext
    ) -> pb.HealthCheckResponse:
        """The status now; an unknown service is NOT_FOUND."""
        if request.service not in self._services:
            raise NotFound(
                f"unknown service {request.service!r}; ask about '' (the whole server) or one "
                f"of {', '.join(sorted(s for s in self._services if s))}"
            )
        return pb.HealthCheckResponse(status=self._status(request.service))

    async def list(
        self, request: pb.HealthListRequest, context: CallContext
    ) -> pb.HealthListResponse:
        """Every service's status."""
        response = pb.HealthListResponse()
        for name in self._services:
            response.statuses[name].status = self._status(name)
        return response

    async def watch(
        self, requests: AsyncIterator[pb.HealthCheckRequest], context: CallContext
    ) -> AsyncIterator[pb.HealthCheckResponse]:
        """The status, then each change, until the client cancels."""
        request = await anext(requests, None)
        if request is None:
            raise InvalidInput("Watch needs a HealthCheckRequest")
        last = None
        while True:
            status = self._status(request.service)
            if status != last:
                last = status
                yield pb.HealthCheckResponse(status=status)
            await asyncio.sleep(self._interval)
