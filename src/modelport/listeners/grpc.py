"""The gRPC listener: HTTP/2 connections on the event loop's transports, gRPC calls on them.

modelport answers gRPC itself, as it answers HTTP/1.1, because a call's overhead is its
product: grpcio's Python server spends several times a small model's engine time on each
call, while a call here costs about what an HTTP/1.1 request does (one parse of the frames,
one ``write`` for the answer's headers, message and trailers together). What it implements:

- HTTP/2 over cleartext TCP with prior knowledge (how gRPC clients connect without TLS);
  a client speaking HTTP/1.1 to this port gets a plain-text 400 saying what the port is;
- flow control both ways: the client's windows are honoured for answers of any size, and
  windows are granted back as requests arrive (unary calls) or as a stream's messages are
  taken (streaming calls, so a fast sender cannot queue without bound);
- gRPC's message framing with the size limits (``max_receive_message_bytes`` is checked on
  the length prefix, before the message is read), gzip and deflate request compression,
  ``grpc-timeout`` deadlines, and statuses in trailers (trailers-only when nothing was sent);
- keep-alive: a PING after ``keepalive_time_s`` without traffic, and the connection closed if
  it is not answered within ``keepalive_timeout_s``; a client pinging more often than
  ``min_ping_interval_s`` while nothing is sent gets GOAWAY ``too_many_pings``, as from gRPC's
  own servers;
- graceful stop: GOAWAY, then calls in flight finish before connections close.

Calls are handed to a ``protocols.grpc.GrpcApp``, which finds the method, parses the request,
runs the handler and maps errors to statuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

from modelport.listeners.grpc_messages import (
    ACCEPT_ENCODING,
    MessageReader,
    check_encoding,
    frame_message,
    parse_timeout,
    percent_encode,
    too_large,
)
from modelport.listeners.http2 import (
    DEFAULT_MAX_FRAME,
    DEFAULT_WINDOW,
    FRAME_HEADER,
    MAX_WINDOW,
    PREFACE,
    ErrorCode,
    Flag,
    FrameType,
    HeaderDecoder,
    ProtocolViolation,
    Setting,
    encode_headers,
    frame,
)
from modelport.protocols.grpc import CallContext, GrpcApp, GrpcStatus, Method, StatusCode

__all__ = ["GrpcLimits", "GrpcListener"]

log = logging.getLogger(__name__)

_MIB = 1024 * 1024


_DEADLINE_PASSED = (
    "the call's deadline (grpc-timeout) passed before it finished; give it a longer timeout"
)


@dataclass(frozen=True, slots=True)
class GrpcLimits:
    """Bounds and timers of the gRPC listener."""

    max_receive_message_bytes: int = 64 * _MIB
    max_send_message_bytes: int = 64 * _MIB
    max_concurrent_streams: int = 1000
    max_header_list_bytes: int = 16 * 1024
    keepalive_time_s: float = 7200.0
    keepalive_timeout_s: float = 20.0
    min_ping_interval_s: float = 300.0
    max_ping_strikes: int = 2
    #: Receive windows granted to each stream and to the whole connection.
    stream_window: int = _MIB
    connection_window: int = 16 * _MIB
    #: The largest frame a client may send.
    max_frame_size: int = _MIB


_DATA = FrameType.DATA
_HEADERS = FrameType.HEADERS
# Plain ints: ``int & IntFlag`` goes through enum's Python-level operators on every frame.
_END_STREAM = int(Flag.END_STREAM)
_END_HEADERS = int(Flag.END_HEADERS)
_PADDED = int(Flag.PADDED)
_PRIORITY = int(Flag.PRIORITY)
_ACK = int(Flag.ACK)
#: ``:status: 200`` (static table entry 8), the content type, and the encodings accepted.
_RESPONSE_HEADERS = b"\x88" + encode_headers(
    [(b"content-type", b"application/grpc"), (b"grpc-accept-encoding", ACCEPT_ENCODING.encode())]
)
_OK_TRAILERS = encode_headers([(b"grpc-status", b"0")])
_NOT_GRPC = (
    b"This port serves gRPC (HTTP/2). Send REST requests (TF Serving /v1, KServe V2 /v2, "
    b"TorchServe /predictions) to the HTTP port instead.\n"
)
_HTTP1_ANSWER = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(_NOT_GRPC)
) + _NOT_GRPC


class _Stream:
    """One call: what has arrived, and what is waiting for the client's window."""

    __slots__ = (
        "context",
        "deadline",
        "headers_sent",
        "id",
        "method",
        "pending",
        "pending_trailers",
        "queue",
        "reader",
        "recv_unacked",
        "remote_closed",
        "send_window",
        "task",
        "unary_payload",
        "writable",
    )

    def __init__(self, stream_id: int, send_window: int) -> None:
        self.id = stream_id
        self.send_window = send_window
        self.recv_unacked = 0
        self.reader: MessageReader | None = None
        self.method: Method | None = None
        self.context: CallContext | None = None
        self.deadline: float | None = None
        self.unary_payload: bytes | None = None
        self.queue: asyncio.Queue[bytes | None] | None = None
        self.remote_closed = False
        self.headers_sent = False
        self.pending = bytearray()
        self.pending_trailers: bytes | None = None
        self.task: asyncio.Task[None] | None = None
        self.writable: asyncio.Event | None = None


class _Connection(asyncio.Protocol):
    """One client connection: frames in, calls started, answers out."""

    def __init__(self, listener: GrpcListener) -> None:
        self._listener = listener
        self._app = listener.app
        self._limits = limits = listener.limits
        self._loop = listener.loop
        self._transport: asyncio.Transport | None = None
        self._peer = ""
        self._buffer = bytearray()
        self._preface = False
        self._closed = False
        self._decoder = HeaderDecoder(limits.max_header_list_bytes)
        self._streams: dict[int, _Stream] = {}
        self._last_stream_id = 0
        self._continuation: tuple[int, int, list[bytes], int] | None = None
        self._out: list[bytes] = []
        # Flow control: what the client lets us send, and what we owe it back.
        self._send_window = DEFAULT_WINDOW
        self._peer_initial_window = DEFAULT_WINDOW
        self._peer_max_frame = DEFAULT_MAX_FRAME
        self._recv_unacked = 0
        self._blocked: dict[int, _Stream] = {}
        self._write_ready: asyncio.Event | None = None
        # Shutdown and keep-alive.
        self._goaway_sent = False
        self._read_since_sweep = False
        self._last_read = self._loop.time()
        self._ping_sent_at: float | None = None
        self._last_ping_received = float("-inf")
        self._sent_since_ping = True
        self._ping_strikes = 0
        self._handlers = {
            FrameType.DATA: self._on_data,
            FrameType.HEADERS: self._on_headers,
            FrameType.PRIORITY: self._on_priority,
            FrameType.RST_STREAM: self._on_rst_stream,
            FrameType.SETTINGS: self._on_settings,
            FrameType.PUSH_PROMISE: self._on_push_promise,
            FrameType.PING: self._on_ping,
            FrameType.GOAWAY: self._on_goaway,
            FrameType.WINDOW_UPDATE: self._on_window_update,
            FrameType.CONTINUATION: self._on_continuation,
        }

    # ---- connection events ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "")
        self._listener.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._listener.connections.discard(self)
        for stream in self._streams.values():
            if stream.task is not None:
                stream.task.cancel()
            if stream.writable is not None:
                stream.writable.set()
        self._streams.clear()
        self._blocked.clear()
        if self._write_ready is not None:
            self._write_ready.set()

    def pause_writing(self) -> None:
        self._write_ready = asyncio.Event()

    def resume_writing(self) -> None:
        if self._write_ready is not None:
            self._write_ready.set()
            self._write_ready = None

    def data_received(self, data: bytes) -> None:
        self._read_since_sweep = True
        try:
            if not self._preface:
                self._buffer += data
                if not self._read_preface():
                    return
                data = b""
            self._read_frames(data)
        except ProtocolViolation as exc:
            self._fail(exc)
            return
        self._flush_control()

    def _read_preface(self) -> bool:
        """Check the client's first bytes; True once the whole preface has arrived."""
        buffer = self._buffer
        seen = min(len(buffer), len(PREFACE))
        if buffer[:seen] != PREFACE[:seen]:
            log.debug("closing a non-HTTP/2 connection to the gRPC port from %s", self._peer)
            self._write(_HTTP1_ANSWER)
            self._close()
            return False
        if len(buffer) < len(PREFACE):
            return False
        del buffer[: len(PREFACE)]
        self._preface = True
        self._send_settings()
        return True

    def _send_settings(self) -> None:
        """The server's preface: its settings, and the connection window it grants."""
        limits = self._limits
        settings = struct.pack(
            ">HIHIHIHI",
            Setting.MAX_CONCURRENT_STREAMS,
            limits.max_concurrent_streams,
            Setting.INITIAL_WINDOW_SIZE,
            limits.stream_window,
            Setting.MAX_FRAME_SIZE,
            limits.max_frame_size,
            Setting.MAX_HEADER_LIST_SIZE,
            limits.max_header_list_bytes,
        )
        grant = limits.connection_window - DEFAULT_WINDOW
        self._write(
            frame(FrameType.SETTINGS, 0, 0, settings)
            + frame(FrameType.WINDOW_UPDATE, 0, 0, grant.to_bytes(4, "big"))
        )

    def _read_frames(self, data: bytes) -> None:
        buffer = self._buffer
        if buffer:
            buffer += data
            del buffer[: self._parse(buffer)]
        else:
            used = self._parse(data)
            if used < len(data):
                buffer += memoryview(data)[used:]

    def _parse(self, data: bytes | bytearray) -> int:
        """Handle every whole frame in ``data``; return how many bytes they took."""
        pos, end = 0, len(data)
        unpack = FRAME_HEADER.unpack_from
        limit = self._limits.max_frame_size
        handlers = self._handlers
        while end - pos >= 9 and not self._closed:
            high, low, kind, flags, stream_id = unpack(data, pos)
            size = (high << 16) | low
            if size > limit:
                raise ProtocolViolation(
                    ErrorCode.FRAME_SIZE_ERROR, f"a {size}-byte frame is over the {limit} limit"
                )
            if end - pos - 9 < size:
                break
            payload = bytes(data[pos + 9 : pos + 9 + size])
            pos += 9 + size
            if self._continuation is not None and kind != FrameType.CONTINUATION:
                raise ProtocolViolation(
                    ErrorCode.PROTOCOL_ERROR, "a header block was interrupted by another frame"
                )
            handler = handlers.get(kind)
            if handler is not None:
                handler(flags, stream_id & MAX_WINDOW, payload)
        return pos

    # ---- frames -------------------------------------------------------------------------

    def _on_data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0")
        self._grant_connection(len(payload))
        if flags & _PADDED:
            payload = _unpad(payload)
        stream = self._streams.get(stream_id)
        if stream is None:
            if stream_id > self._last_stream_id:
                raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "DATA on an idle stream")
            return  # a stream already answered and reset: its late data is dropped
        if stream.remote_closed:
            self._reset(stream, ErrorCode.STREAM_CLOSED)
            return
        self._on_body(stream, payload, bool(flags & _END_STREAM))

    def _on_headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0 or stream_id % 2 == 0:
            raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, f"HEADERS on stream {stream_id}")
        if flags & _PADDED:
            payload = _unpad(payload)
        if flags & _PRIORITY:
            payload = payload[5:]
        if flags & _END_HEADERS:
            self._header_block(stream_id, flags, payload)
        else:
            self._continuation = (stream_id, flags, [payload], len(payload))

    def _on_continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        pending = self._continuation
        if pending is None or pending[0] != stream_id:
            raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "CONTINUATION without HEADERS")
        first, first_flags, parts, size = pending
        parts.append(payload)
        size += len(payload)
        if size > 4 * self._limits.max_header_list_bytes:
            raise ProtocolViolation(ErrorCode.ENHANCE_YOUR_CALM, "header block too large")
        if flags & _END_HEADERS:
            self._continuation = None
            self._header_block(stream_id, first_flags, b"".join(parts))
        else:
            self._continuation = (first, first_flags, parts, size)

    def _on_priority(self, flags: int, stream_id: int, payload: bytes) -> None:
        if len(payload) != 5:
            raise ProtocolViolation(ErrorCode.FRAME_SIZE_ERROR, "PRIORITY of the wrong size")

    def _on_rst_stream(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0 or len(payload) != 4:
            raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "malformed RST_STREAM")
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return
        self._blocked.pop(stream_id, None)
        stream.remote_closed = True
        if stream.task is not None:
            stream.task.cancel()
        if stream.writable is not None:
            stream.writable.set()
        self._maybe_finish_goaway()

    def _on_settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id != 0:
            raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & _ACK:
            if payload:
                raise ProtocolViolation(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise ProtocolViolation(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS of the wrong size")
        for offset in range(0, len(payload), 6):
            ident, value = struct.unpack_from(">HI", payload, offset)
            self._apply_setting(ident, value)
        self._out.append(frame(FrameType.SETTINGS, Flag.ACK, 0))
        self._flush_blocked()

    def _apply_setting(self, ident: int, value: int) -> None:
        if ident == Setting.INITIAL_WINDOW_SIZE:
            if value > MAX_WINDOW:
                raise ProtocolViolation(ErrorCode.FLOW_CONTROL_ERROR, "window over 2^31-1")
            delta = value - self._peer_initial_window
            self._peer_initial_window = value
            for stream in self._streams.values():
                stream.send_window += delta
        elif ident == Setting.MAX_FRAME_SIZE:
            if not DEFAULT_MAX_FRAME <= value <= 0xFFFFFF:
                raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "invalid SETTINGS_MAX_FRAME_SIZE")
            self._peer_max_frame = value
        elif ident == Setting.ENABLE_PUSH and value > 1:
            raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "invalid SETTINGS_ENABLE_PUSH")

    def _on_push_promise(self, flags: int, stream_id: int, payload: bytes) -> None:
        raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "clients cannot push")

    def _on_ping(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id != 0:
            raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "PING on a stream")
        if len(payload) != 8:
            raise ProtocolViolation(ErrorCode.FRAME_SIZE_ERROR, "PING of the wrong size")
        if flags & _ACK:
            self._ping_sent_at = None
            return
        now = self._loop.time()
        if not self._sent_since_ping and now - self._last_ping_received < (
            self._limits.min_ping_interval_s
        ):
            self._ping_strikes += 1
            if self._ping_strikes > self._limits.max_ping_strikes:
                raise ProtocolViolation(ErrorCode.ENHANCE_YOUR_CALM, "too_many_pings")
        self._last_ping_received = now
        self._sent_since_ping = False
        self._out.append(frame(FrameType.PING, Flag.ACK, 0, payload))

    def _on_goaway(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id != 0:
            raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream")

    def _on_window_update(self, flags: int, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ProtocolViolation(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE of the wrong size")
        increment = int.from_bytes(payload, "big") & MAX_WINDOW
        if stream_id == 0:
            if increment == 0:
                raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                raise ProtocolViolation(ErrorCode.FLOW_CONTROL_ERROR, "window over 2^31-1")
        else:
            stream = self._streams.get(stream_id)
            if stream is None:
                return
            stream.send_window += increment
            if increment == 0 or stream.send_window > MAX_WINDOW:
                self._reset(stream, ErrorCode.FLOW_CONTROL_ERROR)
                return
        self._flush_blocked()

    # ---- calls --------------------------------------------------------------------------

    def _header_block(self, stream_id: int, flags: int, block: bytes) -> None:
        headers = self._decoder.decode(block)  # always: the table must stay in step
        end_stream = bool(flags & _END_STREAM)
        stream = self._streams.get(stream_id)
        if stream is not None:  # trailers from the client end its side of the stream
            self._on_body(stream, b"", True)
            return
        if stream_id <= self._last_stream_id:
            return  # a stream already answered and reset
        self._last_stream_id = stream_id
        stream = _Stream(stream_id, self._peer_initial_window)
        if self._goaway_sent or len(self._streams) >= self._limits.max_concurrent_streams:
            self._out.append(_rst(stream_id, ErrorCode.REFUSED_STREAM))
            return
        self._streams[stream_id] = stream
        self._begin(stream, headers)
        if end_stream and stream_id in self._streams:
            self._on_body(stream, b"", True)

    def _begin(self, stream: _Stream, headers: list[tuple[str, str]]) -> None:
        path = http_method = content_type = encoding = timeout = None
        metadata: list[tuple[str, str]] = []
        for name, value in headers:
            if name[0] == ":":
                if name == ":path":
                    path = value
                elif name == ":method":
                    http_method = value
            elif name == "content-type":
                content_type = value
            elif name == "grpc-encoding":
                encoding = value
            elif name == "grpc-timeout":
                timeout = value
            elif not name.startswith("grpc-") and name not in ("te", "content-length"):
                metadata.append((name, value))
        if (
            http_method != "POST"
            or content_type is None
            or not content_type.startswith("application/grpc")
        ):
            self._answer_not_grpc(stream, http_method)
            return
        app = self._app
        try:
            method = app.method(path or "")
            app.admit(method)
            check_encoding(encoding)
        except GrpcStatus as status:
            self._finish(stream, status.code, status.message)
            return
        stream.method = method
        stream.context = CallContext(path or "", tuple(metadata), self._peer)
        stream.reader = MessageReader(self._limits.max_receive_message_bytes, encoding)
        seconds = parse_timeout(timeout) if timeout is not None else None
        if seconds is not None:
            stream.deadline = self._loop.time() + seconds
        if method.stream is not None:
            stream.queue = asyncio.Queue()
            stream.task = self._loop.create_task(self._run_stream(stream))

    def _on_body(self, stream: _Stream, payload: bytes, end: bool) -> None:
        reader = stream.reader
        if reader is None:
            return
        try:
            messages = reader.feed(payload) if payload else []
            if stream.queue is not None:
                for message in messages:
                    stream.queue.put_nowait(message)
            else:
                if not end:
                    self._grant_stream(stream, len(payload))
                if messages:
                    if stream.unary_payload is not None or len(messages) > 1:
                        raise _one_message()
                    stream.unary_payload = messages[0]
            if end:
                self._on_remote_end(stream, reader)
        except GrpcStatus as status:
            self._finish(stream, status.code, status.message)

    def _on_remote_end(self, stream: _Stream, reader: MessageReader) -> None:
        stream.remote_closed = True
        if reader.partial:
            raise GrpcStatus(StatusCode.INTERNAL, "the request ended in the middle of a message")
        if stream.queue is not None:
            stream.queue.put_nowait(None)
            return
        payload = stream.unary_payload
        if payload is None:
            raise _one_message()
        stream.unary_payload = None
        stream.task = self._loop.create_task(self._run_unary(stream, payload))

    async def _run_unary(self, stream: _Stream, payload: bytes) -> None:
        method, context = stream.method, stream.context
        assert method is not None
        assert context is not None
        try:
            if stream.deadline is None:
                response = await self._app.unary(method, payload, context)
            else:
                async with asyncio.timeout_at(stream.deadline):
                    response = await self._app.unary(method, payload, context)
        except GrpcStatus as status:
            self._finish(stream, status.code, status.message)
            return
        except TimeoutError:
            self._finish(
                stream,
                StatusCode.DEADLINE_EXCEEDED,
                _DEADLINE_PASSED,
            )
            return
        except asyncio.CancelledError:
            return  # the client reset the stream or went away: nobody to answer
        limit = self._limits.max_send_message_bytes
        if len(response) > limit:
            exceeded = too_large(len(response), limit, "sent")
            self._finish(stream, exceeded.code, exceeded.message)
            return
        self._answer(stream, frame_message(response))

    async def _run_stream(self, stream: _Stream) -> None:
        method, context = stream.method, stream.context
        assert method is not None
        assert context is not None
        try:
            if stream.deadline is None:
                await self._relay(stream, method, context)
            else:
                async with asyncio.timeout_at(stream.deadline):
                    await self._relay(stream, method, context)
        except GrpcStatus as status:
            self._finish(stream, status.code, status.message)
        except TimeoutError:
            self._finish(
                stream,
                StatusCode.DEADLINE_EXCEEDED,
                _DEADLINE_PASSED,
            )
        except asyncio.CancelledError:
            return
        else:
            self._finish(stream, StatusCode.OK, "")

    async def _relay(self, stream: _Stream, method: Method, context: CallContext) -> None:
        limit = self._limits.max_send_message_bytes
        responses = self._app.stream(method, self._incoming(stream), context)
        async with contextlib.aclosing(responses):
            async for response in responses:
                await self._send_response(stream, response, limit)

    async def _send_response(self, stream: _Stream, response: bytes, limit: int) -> None:
        if len(response) > limit:
            raise too_large(len(response), limit, "sent")
        if not stream.headers_sent:
            stream.headers_sent = True
            self._write(frame(_HEADERS, _END_HEADERS, stream.id, _RESPONSE_HEADERS))
        await self._send(stream, frame_message(response))

    async def _incoming(self, stream: _Stream) -> AsyncIterator[bytes]:
        queue = stream.queue
        assert queue is not None
        while (message := await queue.get()) is not None:
            self._grant_stream(stream, len(message) + 5)
            self._flush_control()
            yield message

    # ---- answers ------------------------------------------------------------------------

    def _answer(self, stream: _Stream, data: bytes) -> None:
        """Headers, one message and OK trailers; in one write when the windows allow."""
        size = len(data)
        if stream.id not in self._streams:
            return
        self._sent_since_ping = True
        if (
            size <= self._send_window
            and size <= stream.send_window
            and size <= (self._peer_max_frame)
        ):
            self._send_window -= size
            stream.send_window -= size
            sid = stream.id
            self._write(
                frame(_HEADERS, _END_HEADERS, sid, _RESPONSE_HEADERS)
                + frame(_DATA, 0, sid, data)
                + frame(_HEADERS, _END_HEADERS | _END_STREAM, sid, _OK_TRAILERS)
            )
            self._close_stream(stream)
            return
        stream.headers_sent = True
        self._write(frame(_HEADERS, _END_HEADERS, stream.id, _RESPONSE_HEADERS))
        stream.pending += data
        stream.pending_trailers = _OK_TRAILERS
        self._flush_stream(stream)

    async def _send(self, stream: _Stream, data: bytes) -> None:
        """Send a message of a streaming call, waiting while the client's window is shut."""
        self._sent_since_ping = True
        stream.pending += data
        self._flush_stream(stream)
        while stream.pending and not self._closed and stream.id in self._streams:
            stream.writable = asyncio.Event()
            await stream.writable.wait()
        if self._write_ready is not None:
            await self._write_ready.wait()

    def _finish(self, stream: _Stream, code: StatusCode, message: str) -> None:
        """End the call with a status (trailers-only if nothing was sent yet)."""
        if stream.id not in self._streams:
            return
        fields = [(b"grpc-status", b"%d" % code)]
        if message:
            fields.append((b"grpc-message", percent_encode(message)))
        trailers = encode_headers(fields)
        self._sent_since_ping = True
        if not stream.headers_sent:
            stream.headers_sent = True
            self._write(
                frame(_HEADERS, _END_HEADERS | _END_STREAM, stream.id, _RESPONSE_HEADERS + trailers)
            )
            self._close_stream(stream)
        elif stream.pending:
            stream.pending_trailers = trailers
        else:
            self._write(frame(_HEADERS, _END_HEADERS | _END_STREAM, stream.id, trailers))
            self._close_stream(stream)

    def _answer_not_grpc(self, stream: _Stream, http_method: str | None) -> None:
        status = b"405" if http_method != "POST" else b"415"
        block = encode_headers([(b":status", status), (b"content-type", b"text/plain")])
        stream.headers_sent = True
        self._write(frame(_HEADERS, _END_HEADERS | _END_STREAM, stream.id, block))
        self._close_stream(stream)

    def _close_stream(self, stream: _Stream) -> None:
        """Our side is done: forget the stream, stopping the client's upload if unfinished."""
        if self._streams.pop(stream.id, None) is None:
            return
        self._blocked.pop(stream.id, None)
        if not stream.remote_closed:
            self._write(_rst(stream.id, ErrorCode.NO_ERROR))
        if stream.task is not None and stream.task is not asyncio.current_task():
            stream.task.cancel()
        self._maybe_finish_goaway()

    def _flush_stream(self, stream: _Stream) -> None:
        """Send as much of a stream's pending data as the windows allow."""
        data = stream.pending
        chunks: list[bytes] = []
        while data and self._send_window > 0 and stream.send_window > 0:
            size = min(len(data), self._send_window, stream.send_window, self._peer_max_frame)
            chunks.append(frame(_DATA, 0, stream.id, bytes(data[:size])))
            del data[:size]
            self._send_window -= size
            stream.send_window -= size
        if data:
            self._blocked[stream.id] = stream
        else:
            self._blocked.pop(stream.id, None)
            if stream.pending_trailers is not None:
                trailers, stream.pending_trailers = stream.pending_trailers, None
                chunks.append(frame(_HEADERS, _END_HEADERS | _END_STREAM, stream.id, trailers))
                self._write(b"".join(chunks))
                self._close_stream(stream)
                chunks = []
            if stream.writable is not None:
                stream.writable.set()
        if chunks:
            self._write(b"".join(chunks))

    def _flush_blocked(self) -> None:
        for stream in list(self._blocked.values()):
            if self._send_window <= 0:
                return
            self._flush_stream(stream)

    # ---- flow control, keep-alive, shutdown ---------------------------------------------

    def _grant_connection(self, size: int) -> None:
        self._recv_unacked += size
        if self._recv_unacked >= self._limits.connection_window // 2:
            self._out.append(frame(FrameType.WINDOW_UPDATE, 0, 0, _increment(self._recv_unacked)))
            self._recv_unacked = 0

    def _grant_stream(self, stream: _Stream, size: int) -> None:
        stream.recv_unacked += size
        if stream.recv_unacked >= self._limits.stream_window // 2 and not stream.remote_closed:
            self._out.append(
                frame(FrameType.WINDOW_UPDATE, 0, stream.id, _increment(stream.recv_unacked))
            )
            stream.recv_unacked = 0

    def _reset(self, stream: _Stream, code: ErrorCode) -> None:
        self._streams.pop(stream.id, None)
        self._blocked.pop(stream.id, None)
        self._out.append(_rst(stream.id, code))
        if stream.task is not None:
            stream.task.cancel()

    def keepalive(self, now: float) -> None:
        """Called about once a second: ping an idle client, drop one that stopped answering."""
        if self._read_since_sweep:
            self._read_since_sweep = False
            self._last_read = now
        limits = self._limits
        if self._ping_sent_at is not None:
            if now - self._ping_sent_at > limits.keepalive_timeout_s:
                log.info("closing gRPC connection from %s: keep-alive ping unanswered", self._peer)
                self._abort()
        elif now - self._last_read >= limits.keepalive_time_s:
            self._ping_sent_at = now
            self._write(frame(FrameType.PING, 0, 0, os.urandom(8)))

    def goaway(self) -> None:
        """Refuse new calls; close once the calls in flight are answered."""
        if self._goaway_sent or self._closed:
            return
        self._goaway_sent = True
        self._write(_goaway(self._last_stream_id, ErrorCode.NO_ERROR, b"server shutting down"))
        self._maybe_finish_goaway()

    def _maybe_finish_goaway(self) -> None:
        if self._goaway_sent and not self._streams:
            self._close()

    def _fail(self, exc: ProtocolViolation) -> None:
        log.info("closing gRPC connection from %s: %s", self._peer, exc.message)
        self._flush_control()
        self._write(_goaway(self._last_stream_id, exc.code, exc.message.encode()))
        self._close()

    def _flush_control(self) -> None:
        if self._out:
            out, self._out = self._out, []
            self._write(b"".join(out))

    def _write(self, data: bytes) -> None:
        if not self._closed and self._transport is not None:
            self._transport.write(data)

    def _close(self) -> None:
        if not self._closed and self._transport is not None:
            self._closed = True
            self._transport.close()

    def _abort(self) -> None:
        if self._transport is not None:
            self._closed = True
            self._transport.abort()


def _one_message() -> GrpcStatus:
    return GrpcStatus(StatusCode.INTERNAL, "a unary call carries exactly one request message")


def _unpad(payload: bytes) -> bytes:
    if not payload or payload[0] >= len(payload):
        raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "padding longer than the frame")
    return payload[1 : len(payload) - payload[0]]


def _increment(size: int) -> bytes:
    return min(size, MAX_WINDOW).to_bytes(4, "big")


def _rst(stream_id: int, code: ErrorCode) -> bytes:
    return frame(FrameType.RST_STREAM, 0, stream_id, int(code).to_bytes(4, "big"))


def _goaway(last_stream_id: int, code: ErrorCode, debug: bytes) -> bytes:
    payload = struct.pack(">II", last_stream_id, code) + debug[:256]
    return frame(FrameType.GOAWAY, 0, 0, payload)


class GrpcListener:
    """Accepts gRPC connections on a socket and serves them until ``close``."""

    def __init__(self, app: GrpcApp, limits: GrpcLimits) -> None:
        self.app = app
        self.limits = limits
        self.loop = asyncio.get_running_loop()
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, sock: socket.socket) -> None:
        """Start accepting on ``sock`` (bound, not yet listening)."""
        self._server = await self.loop.create_server(
            lambda: _Connection(self), sock=sock, backlog=2048
        )
        self._sweeper = self.loop.create_task(self._sweep(), name="grpc-keepalive")

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = self.loop.time()
            for connection in list(self.connections):
                connection.keepalive(now)

    async def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, send GOAWAY, and give calls in flight ``timeout`` to finish."""
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.goaway()
        deadline = self.loop.time() + timeout
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            connection._abort()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._server is not None:
            await self._server.wait_closed()
