"""HTTP/2 building blocks: frames, the stateless header encoder, the caching header decoder."""

from __future__ import annotations

import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelport.listeners.http2 import (
    FRAME_HEADER,
    ErrorCode,
    HeaderDecoder,
    ProtocolViolation,
    encode_headers,
    frame,
)

HEADER_NAMES = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=40)
HEADER_VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300)


def test_frame_layout() -> None:
    data = frame(0x1, 0x5, 7, b"abc")
    assert data[:9] == b"\x00\x00\x03\x01\x05\x00\x00\x00\x07"
    assert data[9:] == b"abc"
    high, low, kind, flags, stream = FRAME_HEADER.unpack_from(frame(0, 0, 2**31 - 1, b"x" * 70000))
    assert ((high << 16) | low, kind, flags, stream) == (70000, 0, 0, 2**31 - 1)


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=12))
def test_encoded_headers_decode_with_any_hpack_decoder(headers: list[tuple[str, str]]) -> None:
    block = encode_headers([(n.encode(), v.encode()) for n, v in headers])
    decoder = hpack.Decoder()
    assert [(str(n), str(v)) for n, v in decoder.decode(block)] == headers
    assert not decoder.header_table.dynamic_entries  # never indexed: the table stays empty


def test_decoder_remembers_fully_indexed_blocks_and_forgets_them_when_the_table_changes() -> None:
    encoder = hpack.Encoder()
    decoder = HeaderDecoder(16 * 1024)
    first = [(":method", "POST"), (":path", "/a.B/C"), ("x-user", "alice")]
    assert decoder.decode(encoder.encode(first)) == first
    repeated = encoder.encode(first)  # everything is in the table now: one byte per header
    assert all(byte & 0x80 for byte in repeated)
    assert decoder.decode(repeated) == first
    assert decoder.decode(repeated) is decoder.decode(repeated)  # answered from memory
    # A new literal with indexing changes the table; the remembered block must decode anew,
    # here to the same headers, since HPACK indices count from the newest entry.
    second = [(":method", "POST"), (":path", "/a.B/C"), ("x-user", "bob")]
    assert decoder.decode(encoder.encode(second)) == second
    assert decoder.decode(encoder.encode(second)) == second
    assert decoder.decode(encoder.encode(first)) == first


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=5), max_size=30))
def test_decoder_agrees_with_hpack_over_a_connection(blocks: list[list[tuple[str, str]]]) -> None:
    encoder = hpack.Encoder()
    reference = hpack.Decoder()
    decoder = HeaderDecoder(64 * 1024)
    for headers in [*blocks, *blocks]:  # the second pass replays blocks that are fully indexed
        block = encoder.encode(headers)
        expected = [(str(n), str(v)) for n, v in reference.decode(block)]
        assert decoder.decode(block) == expected


def test_undecodable_and_oversized_blocks_end_the_connection() -> None:
    with pytest.raises(ProtocolViolation) as bad:
        HeaderDecoder(1024).decode(b"\xff\xff\xff\xff\xff\xff")  # index far past the table
    assert bad.value.code is ErrorCode.COMPRESSION_ERROR
    big = hpack.Encoder().encode([("x-big", "v" * 5000)])
    with pytest.raises(ProtocolViolation) as oversized:
        HeaderDecoder(1024).decode(big)
    assert oversized.value.code is ErrorCode.ENHANCE_YOUR_CALM
