"""The gRPC listener with real clients: grpcio for what gRPC clients do, and raw HTTP/2 frames
for what they never do (floods, protocol violations, tiny windows).

The listener runs in this process, on its own event loop in a thread, with test services on
google.protobuf.BytesValue messages, so each transport feature is shown on its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import grpc
import hpack
import pytest
import uvloop
from google.protobuf import wrappers_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelport._pb.grpc import health_pb2 as own_health
from modelport.errors import InvalidInput
from modelport.listeners.grpc import GrpcLimits, GrpcListener
from modelport.listeners.http2 import PREFACE, ErrorCode, Flag, FrameType, frame
from modelport.protocols.grpc import CallContext, GrpcApp, Method, Service
from modelport.protocols.grpc_health import HealthService

Bytes = wrappers_pb2.BytesValue
KiB = 1024
MiB = 1024 * 1024


@dataclass
class Calls:
    """What the test services saw, shared with the test thread."""

    metadata: list[tuple[tuple[str, str], ...]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)


def echo_services(calls: Calls) -> list[Service]:
    async def unary(request: Bytes, context: CallContext) -> Bytes:
        calls.metadata.append(context.metadata)
        return Bytes(value=request.value)

    async def big(request: Bytes, context: CallContext) -> Bytes:
        return Bytes(value=b"x" * int(request.value))

    async def slow(request: Bytes, context: CallContext) -> Bytes:
        name = request.value.decode()
        try:
            await asyncio.sleep(float(name.split(":")[0]))
        except asyncio.CancelledError:
            calls.cancelled.append(name)
            raise
        calls.finished.append(name)
        return Bytes(value=request.value)

    async def invalid(request: Bytes, context: CallContext) -> Bytes:
        raise InvalidInput("the value is wrong; send another")

    async def crash(request: Bytes, context: CallContext) -> Bytes:
        raise RuntimeError("secret internals")

    async def echo(requests: AsyncIterator[Bytes], context: CallContext) -> AsyncIterator[Bytes]:
        async for request in requests:
            yield Bytes(value=request.value)

    async def count(requests: AsyncIterator[Bytes], context: CallContext) -> AsyncIterator[Bytes]:
        async for request in requests:
            for n in range(int(request.value)):
                yield Bytes(value=b"%d" % n)

    return [
        Service(
            "test.Echo",
            (
                Method("Unary", Bytes, unary=unary),
                Method("Big", Bytes, unary=big),
                Method("Slow", Bytes, unary=slow),
                Method("Invalid", Bytes, unary=invalid),
                Method("Crash", Bytes, unary=crash),
                Method("Echo", Bytes, stream=echo),
                Method("Count", Bytes, stream=count),
            ),
        )
    ]


class ListenerThread:
    """A ``GrpcListener`` serving the test services on its own loop, in a thread."""

    def __init__(self, limits: GrpcLimits) -> None:
        self.calls = Calls()
        self.draining = False
        self.ready = True
        health = HealthService(lambda: self.ready and not self.draining, ["test.Echo"], 0.05)
        self.app = GrpcApp(
            [*echo_services(self.calls), health.service()], draining=lambda: self.draining
        )
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.target = f"127.0.0.1:{self.port}"
        self.listener: GrpcListener = self.run(self._start(sock, limits))

    async def _start(self, sock: socket.socket, limits: GrpcLimits) -> GrpcListener:
        listener = GrpcListener(self.app, limits)
        await listener.start(sock)
        return listener

    def run(self, coroutine: object) -> GrpcListener:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)  # type: ignore[arg-type]

    def close(self, timeout: float = 1.0) -> concurrent.futures.Future[None]:
        return asyncio.run_coroutine_threadsafe(self.listener.close(timeout), self.loop)

    def stop(self) -> None:
        self.close(0.0).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def make_listener() -> Iterator[Callable[..., ListenerThread]]:
    started: list[ListenerThread] = []

    def make(**limits: float) -> ListenerThread:
        listener = ListenerThread(GrpcLimits(**limits))  # type: ignore[arg-type]
        started.append(listener)
        return listener

    yield make
    for listener in started:
        listener.stop()


@pytest.fixture
def server(make_listener: Callable[..., ListenerThread]) -> ListenerThread:
    return make_listener(max_receive_message_bytes=4 * MiB, max_send_message_bytes=4 * MiB)


@pytest.fixture
def channel(server: ListenerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as channel:
        yield channel


def method(channel: grpc.Channel, name: str) -> grpc.UnaryUnaryMultiCallable:
    return channel.unary_unary(
        f"/test.Echo/{name}",
        request_serializer=Bytes.SerializeToString,
        response_deserializer=Bytes.FromString,
    )


def stream(channel: grpc.Channel, name: str) -> grpc.StreamStreamMultiCallable:
    return channel.stream_stream(
        f"/test.Echo/{name}",
        request_serializer=Bytes.SerializeToString,
        response_deserializer=Bytes.FromString,
    )


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)


# ---- what gRPC clients do -------------------------------------------------------------------


def test_unary_calls_with_metadata(server: ListenerThread, channel: grpc.Channel) -> None:
    call = method(channel, "Unary")
    assert call(Bytes(value=b"hello"), metadata=[("x-request-id", "r1")]).value == b"hello"
    assert call(Bytes(value=b"")).value == b""
    assert ("x-request-id", "r1") in server.calls.metadata[0]
    assert all(not name.startswith((":", "grpc-")) for name, _ in server.calls.metadata[0])


def test_many_concurrent_calls_on_one_connection(channel: grpc.Channel) -> None:
    call = method(channel, "Unary")
    futures = [call.future(Bytes(value=b"%d" % i)) for i in range(200)]
    assert [f.result(30).value for f in futures] == [b"%d" % i for i in range(200)]


@pytest.mark.parametrize("size", [64 * KiB - 5, 64 * KiB, 3 * MiB])
def test_messages_bigger_than_the_flow_control_windows(channel: grpc.Channel, size: int) -> None:
    payload = os.urandom(size)
    assert method(channel, "Unary")(Bytes(value=payload), timeout=60).value == payload
    assert len(method(channel, "Big")(Bytes(value=b"%d" % size), timeout=60).value) == size


def test_message_size_limits(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as too_big:
        method(channel, "Unary")(Bytes(value=b"x" * (5 * MiB)), timeout=60)
    assert too_big.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in str(too_big.value.details())
    assert "--grpc-max-receive-message-bytes" in str(too_big.value.details())
    with pytest.raises(grpc.RpcError) as answer_too_big:
        method(channel, "Big")(Bytes(value=b"%d" % (5 * MiB)), timeout=60)
    assert answer_too_big.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "sent message larger than max" in str(answer_too_big.value.details())
    assert "--grpc-max-send-message-bytes" in str(answer_too_big.value.details())
    assert method(channel, "Unary")(Bytes(value=b"still fine")).value == b"still fine"


@pytest.mark.parametrize("compression", [grpc.Compression.Gzip, grpc.Compression.Deflate])
def test_compressed_requests(channel: grpc.Channel, compression: grpc.Compression) -> None:
    payload = b"compressible " * 10_000
    answer = method(channel, "Unary")(Bytes(value=payload), compression=compression)
    assert answer.value == payload


def test_errors_become_statuses(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as invalid:
        method(channel, "Invalid")(Bytes())
    assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert invalid.value.details() == "the value is wrong; send another"
    with pytest.raises(grpc.RpcError) as crash:
        method(channel, "Crash")(Bytes())
    assert crash.value.code() is grpc.StatusCode.INTERNAL
    assert "secret" not in str(crash.value.details())
    assert "server log" in str(crash.value.details())
    with pytest.raises(grpc.RpcError) as unknown:
        method(channel, "Nope")(Bytes())
    assert unknown.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert "test.Echo" in str(unknown.value.details())
    with pytest.raises(grpc.RpcError) as garbage:
        channel.unary_unary("/test.Echo/Unary")(b"\xff\xff\xff")
    assert garbage.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_deadlines_cancel_the_handler(server: ListenerThread, channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as late:
        method(channel, "Slow")(Bytes(value=b"30:deadline"), timeout=0.3)
    assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    wait_for(lambda: "30:deadline" in server.calls.cancelled)


def test_a_cancelled_call_cancels_the_handler(
    server: ListenerThread, channel: grpc.Channel
) -> None:
    future = method(channel, "Slow").future(Bytes(value=b"30:cancel"))
    wait_for(lambda: server.app.inflight == 1)
    future.cancel()
    wait_for(lambda: "30:cancel" in server.calls.cancelled)
    assert server.app.inflight == 0


def test_bidirectional_and_server_streaming(channel: grpc.Channel) -> None:
    values = [b"%d" % i * 100 for i in range(300)]
    answers = stream(channel, "Echo")(Bytes(value=v) for v in values)
    assert [a.value for a in answers] == values
    counted = stream(channel, "Count")(iter([Bytes(value=b"20000")]))
    assert [a.value for a in counted] == [b"%d" % n for n in range(20000)]


def test_draining_refuses_new_calls_but_health_answers(
    server: ListenerThread, channel: grpc.Channel
) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    assert (
        health.Check(health_pb2.HealthCheckRequest()).status
        == health_pb2.HealthCheckResponse.SERVING
    )
    server.draining = True
    with pytest.raises(grpc.RpcError) as refused:
        method(channel, "Unary")(Bytes(value=b"x"))
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in str(refused.value.details())
    status = health.Check(health_pb2.HealthCheckRequest(service="test.Echo")).status
    assert status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_health_watch_follows_readiness(server: ListenerThread, channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    server.ready = False
    updates = health.Watch(health_pb2.HealthCheckRequest())
    assert next(updates).status == health_pb2.HealthCheckResponse.NOT_SERVING
    server.ready = True
    assert next(updates).status == health_pb2.HealthCheckResponse.SERVING
    updates.cancel()
    # grpcio-health-checking's stub predates List: call it with modelport's own messages.
    list_call = channel.unary_unary(
        "/grpc.health.v1.Health/List",
        request_serializer=own_health.HealthListRequest.SerializeToString,
        response_deserializer=own_health.HealthListResponse.FromString,
    )
    listed = list_call(own_health.HealthListRequest()).statuses
    assert set(listed) == {"", "test.Echo", "grpc.health.v1.Health"}
    with pytest.raises(grpc.RpcError) as unknown:
        health.Check(health_pb2.HealthCheckRequest(service="nope"))
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND


def test_graceful_close_lets_calls_in_flight_finish(server: ListenerThread) -> None:
    with grpc.insecure_channel(server.target) as channel:
        future = method(channel, "Slow").future(Bytes(value=b"0.5:graceful"))
        wait_for(lambda: server.app.inflight == 1)
        closing = server.close(timeout=20.0)
        assert future.result(30).value == b"0.5:graceful"
        closing.result(30)
    assert "0.5:graceful" in server.calls.finished
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5)


# ---- what only a raw client does ------------------------------------------------------------


class RawClient:
    """HTTP/2 frames by hand: the preface, then whatever a test needs."""

    def __init__(self, port: int, settings: bytes = b"") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.sock.sendall(PREFACE + frame(FrameType.SETTINGS, 0, 0, settings))

    def send(self, *frames: bytes) -> None:
        self.sock.sendall(b"".join(frames))

    def headers(self, stream_id: int, path: str, flags: int = Flag.END_HEADERS) -> bytes:
        block = self.encoder.encode(
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", "test"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ]
        )
        return frame(FrameType.HEADERS, flags, stream_id, block)

    def read_frame(self) -> tuple[int, int, int, bytes] | None:
        """The next frame (type, flags, stream, payload), or None once the server closed."""
        while True:
            if len(self.buffer) >= 9:
                size = int.from_bytes(self.buffer[:3], "big")
                if len(self.buffer) >= 9 + size:
                    kind, flags = self.buffer[3], self.buffer[4]
                    stream_id = int.from_bytes(self.buffer[5:9], "big") & 0x7FFFFFFF
                    payload = self.buffer[9 : 9 + size]
                    self.buffer = self.buffer[9 + size :]
                    return kind, flags, stream_id, payload
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                return None
            if not data:
                return None
            self.buffer += data

    def until(self, kind: int, stream_id: int | None = None) -> tuple[int, bytes]:
        """Read (answering SETTINGS) until a frame of ``kind``; its flags and payload."""
        while (got := self.read_frame()) is not None:
            got_kind, flags, got_stream, payload = got
            if got_kind == FrameType.SETTINGS and not flags & Flag.ACK:
                self.send(frame(FrameType.SETTINGS, Flag.ACK, 0))
            if got_kind == kind and (stream_id is None or got_stream == stream_id):
                return flags, payload
        raise AssertionError(f"the connection closed before a frame of type {kind}")

    def response(self, stream_id: int) -> tuple[bytes, dict[str, str]]:
        """The body and trailers of a stream, granting window as data arrives."""
        body = b""
        while (got := self.read_frame()) is not None:
            kind, flags, got_stream, payload = got
            if kind == FrameType.SETTINGS and not flags & Flag.ACK:
                self.send(frame(FrameType.SETTINGS, Flag.ACK, 0))
            if got_stream != stream_id:
                continue
            if kind == FrameType.DATA:
                body += payload
                if payload:
                    grant = len(payload).to_bytes(4, "big")
                    self.send(
                        frame(FrameType.WINDOW_UPDATE, 0, 0, grant),
                        frame(FrameType.WINDOW_UPDATE, 0, stream_id, grant),
                    )
            elif kind == FrameType.HEADERS:
                fields = {str(k): str(v) for k, v in self.decoder.decode(payload)}
                if flags & Flag.END_STREAM:
                    return body, fields
        raise AssertionError("the connection closed before the stream ended")

    def goaway(self) -> tuple[int, bytes]:
        """The error code and debug data of the GOAWAY the server sends."""
        _, payload = self.until(FrameType.GOAWAY)
        return int.from_bytes(payload[4:8], "big"), payload[8:]

    def close(self) -> None:
        self.sock.close()


def message(payload: bytes) -> bytes:
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


@pytest.fixture
def raw(server: ListenerThread) -> Iterator[RawClient]:
    client = RawClient(server.port)
    yield client
    client.close()


def test_http1_clients_are_told_what_the_port_is(server: ListenerThread) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"This port serves gRPC (HTTP/2)" in answer


def test_ping_is_answered(raw: RawClient) -> None:
    raw.send(frame(FrameType.PING, 0, 0, b"12345678"))
    flags, payload = raw.until(FrameType.PING)
    assert flags & Flag.ACK
    assert payload == b"12345678"


def test_a_ping_flood_gets_goaway(raw: RawClient) -> None:
    raw.send(*(frame(FrameType.PING, 0, 0, b"%08d" % i) for i in range(10)))
    code, debug = raw.goaway()
    assert code == ErrorCode.ENHANCE_YOUR_CALM
    assert debug == b"too_many_pings"


def test_protocol_violations_get_goaway(server: ListenerThread) -> None:
    client = RawClient(server.port)
    client.send(frame(FrameType.DATA, 0, 99, b"data on a stream never opened"))
    assert client.goaway()[0] == ErrorCode.PROTOCOL_ERROR
    client.close()
    oversized = RawClient(server.port)
    oversized.send(frame(FrameType.DATA, 0, 1, b"x" * (MiB + 1))[:9])  # the header says it all
    assert oversized.goaway()[0] == ErrorCode.FRAME_SIZE_ERROR
    oversized.close()
    # the listener is unharmed
    with grpc.insecure_channel(server.target) as channel:
        assert method(channel, "Unary")(Bytes(value=b"ok")).value == b"ok"


def test_padding_priority_and_continuation_frames(raw: RawClient) -> None:
    headers = raw.headers(1, "/test.Echo/Unary", flags=0)
    block = headers[9:]
    padded_priority = (
        bytes([3]) + b"\x00\x00\x00\x00\x10" + block[:4] + b"\x00\x00\x00"  # pad 3, priority
    )
    raw.send(
        frame(FrameType.HEADERS, Flag.PADDED | Flag.PRIORITY, 1, padded_priority),
        frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, block[4:]),
        frame(
            FrameType.DATA,
            Flag.PADDED | Flag.END_STREAM,
            1,
            bytes([2]) + message(Bytes(value=b"padded").SerializeToString()) + b"\x00\x00",
        ),
    )
    body, trailers = raw.response(1)
    assert trailers["grpc-status"] == "0"
    assert Bytes.FromString(body[5:]).value == b"padded"


def test_answers_wait_for_the_clients_window(server: ListenerThread) -> None:
    # INITIAL_WINDOW_SIZE of 100 bytes: a 100 KiB answer needs a thousand window updates.
    client = RawClient(server.port, settings=struct.pack(">HI", 0x4, 100))
    client.send(
        client.headers(1, "/test.Echo/Big"),
        frame(
            FrameType.DATA, Flag.END_STREAM, 1, message(Bytes(value=b"102400").SerializeToString())
        ),
    )
    body, trailers = client.response(1)
    assert trailers["grpc-status"] == "0"
    assert Bytes.FromString(body[5:]).value == b"x" * 102400
    client.close()


def test_a_reset_stream_cancels_its_call(server: ListenerThread, raw: RawClient) -> None:
    raw.send(
        raw.headers(1, "/test.Echo/Slow"),
        frame(
            FrameType.DATA,
            Flag.END_STREAM,
            1,
            message(Bytes(value=b"30:reset").SerializeToString()),
        ),
    )
    wait_for(lambda: server.app.inflight == 1)
    raw.send(frame(FrameType.RST_STREAM, 0, 1, int(ErrorCode.CANCEL).to_bytes(4, "big")))
    wait_for(lambda: "30:reset" in server.calls.cancelled)


def test_streams_over_the_limit_are_refused(make_listener: Callable[..., ListenerThread]) -> None:
    server = make_listener(max_concurrent_streams=2)
    client = RawClient(server.port)
    for stream_id in (1, 3, 5):
        client.send(
            client.headers(stream_id, "/test.Echo/Slow"),
            frame(
                FrameType.DATA,
                Flag.END_STREAM,
                stream_id,
                message(Bytes(value=b"30:%d" % stream_id).SerializeToString()),
            ),
        )
    _, payload = client.until(FrameType.RST_STREAM, 5)
    assert int.from_bytes(payload, "big") == ErrorCode.REFUSED_STREAM
    client.close()


def test_keepalive_drops_a_client_that_does_not_answer_pings(
    make_listener: Callable[..., ListenerThread],
) -> None:
    server = make_listener(keepalive_time_s=0.5, keepalive_timeout_s=0.5)
    silent = RawClient(server.port)
    silent.until(FrameType.PING)  # never answered
    while silent.read_frame() is not None:
        pass  # read until the server closes the connection
    silent.close()
    wait_for(lambda: not server.listener.connections)


def test_keepalive_keeps_a_client_that_answers(
    make_listener: Callable[..., ListenerThread],
) -> None:
    server = make_listener(keepalive_time_s=0.3, keepalive_timeout_s=5)
    polite = RawClient(server.port)
    for _ in range(3):
        _, payload = polite.until(FrameType.PING)
        polite.send(frame(FrameType.PING, Flag.ACK, 0, payload))
    polite.send(
        polite.headers(1, "/test.Echo/Unary"),
        frame(
            FrameType.DATA, Flag.END_STREAM, 1, message(Bytes(value=b"alive").SerializeToString())
        ),
    )
    _, trailers = polite.response(1)
    assert trailers["grpc-status"] == "0"
    polite.close()


def test_non_grpc_requests_get_http_errors(raw: RawClient) -> None:
    block = raw.encoder.encode(
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/x"),
            (":authority", "t"),
            ("content-type", "application/json"),
        ]
    )
    raw.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, block))
    _, payload = raw.until(FrameType.HEADERS, 1)
    assert {str(k): str(v) for k, v in raw.decoder.decode(payload)}[":status"] == "415"
