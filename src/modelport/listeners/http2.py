"""The HTTP/2 pieces the gRPC listener is built from (RFC 9113, RFC 7541).

Only what a gRPC server needs: frame headers, the connection preface, settings, error codes,
and header blocks. Header blocks are decoded with ``hpack`` (the dynamic table included); the
decoded headers of a block made only of one-byte indexed fields (what a gRPC client sends
from its second call on: every header already in the table) are remembered, because such a
block leaves the table unchanged and decodes the same way until the table changes. Answers
are encoded without the dynamic table (literal fields, never indexed), so the encoder keeps
no state and the usual headers are constant bytes.
"""

from __future__ import annotations

import enum
import struct

import hpack

__all__ = [
    "FRAME_HEADER",
    "PREFACE",
    "ErrorCode",
    "Flag",
    "FrameType",
    "HeaderDecoder",
    "ProtocolViolation",
    "Setting",
    "encode_headers",
    "frame",
]

#: What a client sends first on a connection (prior knowledge: gRPC without TLS).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

#: A frame header: 24-bit length (as a byte and a short), type, flags, 31-bit stream id.
FRAME_HEADER = struct.Struct(">BHBBI")

#: The largest flow-control window (2^31 - 1).
MAX_WINDOW = 0x7FFFFFFF
DEFAULT_WINDOW = 65_535
DEFAULT_MAX_FRAME = 16_384
MAX_FRAME_LIMIT = 0xFFFFFF


class FrameType(enum.IntEnum):
    DATA = 0
    HEADERS = 1
    PRIORITY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PUSH_PROMISE = 5
    PING = 6
    GOAWAY = 7
    WINDOW_UPDATE = 8
    CONTINUATION = 9


class Flag(enum.IntFlag):
    END_STREAM = 0x1
    ACK = 0x1
    END_HEADERS = 0x4
    PADDED = 0x8
    PRIORITY = 0x20


class ErrorCode(enum.IntEnum):
    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class Setting(enum.IntEnum):
    HEADER_TABLE_SIZE = 0x1
    ENABLE_PUSH = 0x2
    MAX_CONCURRENT_STREAMS = 0x3
    INITIAL_WINDOW_SIZE = 0x4
    MAX_FRAME_SIZE = 0x5
    MAX_HEADER_LIST_SIZE = 0x6


class ProtocolViolation(Exception):
    """The peer broke HTTP/2: the connection ends with GOAWAY carrying ``code``."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_pack_header = FRAME_HEADER.pack


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One frame, header and payload."""
    size = len(payload)
    return _pack_header(size >> 16, size & 0xFFFF, kind, flags, stream_id) + payload


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    """An HPACK integer with an N-bit prefix; ``first`` holds the bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(data: bytes) -> bytes:
    return _integer(len(data), 7, 0) + data


def encode_headers(headers: list[tuple[bytes, bytes]]) -> bytes:
    """A header block of literal fields never indexed: no dynamic table, no encoder state."""
    out = bytearray()
    for name, value in headers:
        out += b"\x10"  # literal never indexed, new name
        out += _string(name)
        out += _string(value)
    return bytes(out)


#: Bytes with the high bit set; a block made only of them is one-byte indexed fields.
_INDEXED = bytes(range(0x80, 0x100))


class HeaderDecoder:
    """Decodes a connection's header blocks, remembering blocks that leave the table as is."""

    __slots__ = ("_decoder", "_known")

    _KNOWN_LIMIT = 256

    def __init__(self, max_header_list_size: int) -> None:
        self._decoder = hpack.Decoder(max_header_list_size=max_header_list_size)
        self._known: dict[bytes, list[tuple[str, str]]] = {}

    def decode(self, block: bytes) -> list[tuple[str, str]]:
        """The block's headers; raises ``ProtocolViolation`` if it cannot be decoded."""
        known = self._known.get(block)
        if known is not None:
            return known
        try:
            headers = [(str(name), str(value)) for name, value in self._decoder.decode(block)]
        except hpack.OversizedHeaderListError as exc:
            raise ProtocolViolation(
                ErrorCode.ENHANCE_YOUR_CALM, f"header list too large: {exc}"
            ) from None
        except hpack.HPACKError as exc:
            raise ProtocolViolation(
                ErrorCode.COMPRESSION_ERROR, f"undecodable header block: {exc}"
            ) from None
        if block.translate(None, _INDEXED):
            self._known.clear()  # the table may have changed: what was known may decode anew
        else:
            if len(self._known) >= self._KNOWN_LIMIT:
                self._known.clear()
            self._known[block] = headers
        return headers
