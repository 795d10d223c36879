"""gRPC message framing: splitting, limits before allocation, compression, timeouts, messages."""

from __future__ import annotations

import gzip
import itertools
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelport.listeners.grpc_messages import (
    MessageReader,
    check_encoding,
    frame_message,
    parse_timeout,
    percent_encode,
)
from modelport.protocols.grpc import GrpcStatus, StatusCode


@settings(max_examples=300, deadline=None, database=None)
@given(
    messages=st.lists(st.binary(max_size=300), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=10),
)
def test_messages_survive_any_split_into_frames(messages: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(frame_message(m) for m in messages)
    points = sorted({0, len(wire), *(c for c in cuts if c < len(wire))})
    reader = MessageReader(10_000, None)
    out: list[bytes] = []
    for start, end in itertools.pairwise(points):
        out += reader.feed(wire[start:end])
    assert out == messages
    assert not reader.partial


def test_the_declared_length_is_refused_before_the_message_arrives() -> None:
    reader = MessageReader(100, None)
    with pytest.raises(GrpcStatus) as status:
        reader.feed(b"\x00" + (2**32 - 1).to_bytes(4, "big"))  # only the prefix: 4 GiB declared
    assert status.value.code is StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max (4294967295 vs. 100)" in status.value.message


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress)],
)
def test_compressed_messages(encoding: str, compress: object) -> None:
    assert callable(compress)
    payload = b"tensor bytes " * 100
    wire = b"\x01" + len(body := compress(payload)).to_bytes(4, "big") + body
    assert MessageReader(10_000, encoding).feed(wire) == [payload]


def test_a_compression_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\x00" * (64 * 1024 * 1024))  # 64 MiB of zeros in ~64 KiB
    wire = b"\x01" + len(bomb).to_bytes(4, "big") + bomb
    with pytest.raises(GrpcStatus) as status:
        MessageReader(1024 * 1024, "gzip").feed(wire)
    assert status.value.code is StatusCode.RESOURCE_EXHAUSTED


def test_compression_errors_say_what_to_do() -> None:
    with pytest.raises(GrpcStatus) as unflagged:
        MessageReader(100, None).feed(b"\x01\x00\x00\x00\x01x")
    assert "grpc-encoding 'identity'" in unflagged.value.message
    with pytest.raises(GrpcStatus) as garbage:
        MessageReader(100, "gzip").feed(b"\x01\x00\x00\x00\x03abc")
    assert garbage.value.code is StatusCode.INTERNAL
    with pytest.raises(GrpcStatus) as flag:
        MessageReader(100, None).feed(b"\x07\x00\x00\x00\x00")
    assert "invalid message flag 7" in flag.value.message
    with pytest.raises(GrpcStatus) as unknown:
        check_encoding("snappy")
    assert unknown.value.code is StatusCode.UNIMPLEMENTED
    assert "identity,deflate,gzip" in unknown.value.message
    for fine in (None, "identity", "gzip", "deflate"):
        check_encoding(fine)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("1S", 1.0), ("100m", 0.1), ("5M", 300.0), ("2H", 7200.0), ("250u", 250e-6), ("9n", 9e-9)],
)
def test_timeouts(header: str, seconds: float) -> None:
    assert parse_timeout(header) == pytest.approx(seconds)


@pytest.mark.parametrize("header", ["", "S", "1", "1x", "-1S", "123456789S", "1.5S"])
def test_malformed_timeouts_are_ignored(header: str) -> None:
    assert parse_timeout(header) is None


def test_status_messages_are_percent_encoded() -> None:
    assert percent_encode("plain text: ok") == b"plain text: ok"
    assert percent_encode("100% caf\u00e9\n") == b"100%25 caf%C3%A9%0A"
