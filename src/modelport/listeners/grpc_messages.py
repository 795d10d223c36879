"""gRPC's length-prefixed messages on an HTTP/2 stream, and the call headers that shape them.

Each message is a one-byte compressed flag, a four-byte big-endian length, and the payload.
The declared length is checked against the limit before any of the payload is kept, and a
compressed payload is inflated only up to the limit (a small message cannot inflate into a
large allocation).
"""

from __future__ import annotations

import zlib

from modelport.protocols.grpc import GrpcStatus, StatusCode

__all__ = [
    "ACCEPT_ENCODING",
    "MessageReader",
    "check_encoding",
    "frame_message",
    "parse_timeout",
    "percent_encode",
    "too_large",
]

#: The encodings a request message may be compressed with.
_WBITS = {"gzip": 31, "deflate": 15}
ACCEPT_ENCODING = "identity,deflate,gzip"

_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def frame_message(payload: bytes) -> bytes:
    """An uncompressed message with its prefix."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def too_large(size: int, limit: int, direction: str) -> GrpcStatus:
    """The status of a message over the size limit (the wording gRPC's own servers use)."""
    if direction.startswith("sent"):
        advice = (
            "ask for fewer outputs or rows per request, or raise the server's "
            "--grpc-max-send-message-bytes"
        )
    else:
        advice = (
            "send fewer rows per request, or raise the server's --grpc-max-receive-message-bytes"
        )
    return GrpcStatus(
        StatusCode.RESOURCE_EXHAUSTED,
        f"{direction} message larger than max ({size} vs. {limit}); {advice}",
    )


class MessageReader:
    """Cuts a stream's bytes into messages, within the size limit."""

    __slots__ = ("_buffer", "_encoding", "_limit")

    def __init__(self, limit: int, encoding: str | None) -> None:
        self._limit = limit
        self._encoding = encoding
        self._buffer = bytearray()

    @property
    def partial(self) -> bool:
        """Whether part of a message is still awaited."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """The messages ``data`` completes; raises ``GrpcStatus`` for a bad one."""
        buffer = self._buffer
        if not buffer and len(data) >= 5:
            size = int.from_bytes(data[1:5], "big")
            if len(data) == size + 5:  # the usual case: one whole message in one frame
                self._check(size)
                return [self._payload(data[0], data[5:])]
        buffer += data
        messages: list[bytes] = []
        while len(buffer) >= 5:
            size = int.from_bytes(buffer[1:5], "big")
            self._check(size)
            if len(buffer) < size + 5:
                break
            messages.append(self._payload(buffer[0], bytes(buffer[5 : size + 5])))
            del buffer[: size + 5]
        return messages

    def _check(self, size: int) -> None:
        if size > self._limit:
            raise too_large(size, self._limit, "received")

    def _payload(self, flag: int, payload: bytes) -> bytes:
        if flag == 0:
            return payload
        if flag != 1:
            raise GrpcStatus(StatusCode.INTERNAL, f"invalid message flag {flag}; expected 0 or 1")
        wbits = _WBITS.get(self._encoding or "")
        if wbits is None:
            raise GrpcStatus(
                StatusCode.INTERNAL,
                f"a compressed message arrived with grpc-encoding {self._encoding or 'identity'!r}"
                f"; compress with one of {ACCEPT_ENCODING}",
            )
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(payload, self._limit + 1)
        except zlib.error as exc:
            raise GrpcStatus(
                StatusCode.INTERNAL, f"cannot decompress the {self._encoding} message: {exc}"
            ) from None
        if len(out) > self._limit or inflater.unconsumed_tail:
            raise too_large(len(out), self._limit, "received decompressed")
        return out


def check_encoding(encoding: str | None) -> None:
    """Refuse a ``grpc-encoding`` the server cannot inflate."""
    if encoding in (None, "identity") or encoding in _WBITS:
        return
    raise GrpcStatus(
        StatusCode.UNIMPLEMENTED,
        f"compression {encoding!r} is not supported; use one of {ACCEPT_ENCODING}",
    )


def parse_timeout(value: str) -> float | None:
    """Seconds from a ``grpc-timeout`` header (``100m``, ``5S``); None if malformed."""
    if not 2 <= len(value) <= 9 or not value[:-1].isdigit():
        return None
    unit = _TIMEOUT_UNITS.get(value[-1])
    return None if unit is None else int(value[:-1]) * unit


def percent_encode(message: str) -> bytes:
    """``grpc-message``: UTF-8, with bytes outside printable ASCII and '%' percent-encoded."""
    out = bytearray()
    for byte in message.encode("utf-8"):
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return bytes(out)
