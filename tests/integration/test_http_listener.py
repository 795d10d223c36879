"""The HTTP/1.1 listener with raw sockets: keep-alive, pipelining, HEAD, Expect, malformed
requests, and the slow-client and idle timeouts."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from tests.models import build_example_repository
from tests.server import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = build_example_repository(tmp_path_factory.mktemp("listener") / "models")
    process = ServerProcess(
        [
            "--model-repository",
            str(root),
            "--header-timeout-s",
            "1",
            "--body-timeout-s",
            "1",
            "--keep-alive-timeout-s",
            "1",
        ],
        root.parent / "server.log",
    )
    process.wait_ready()
    yield process
    process.stop()


def connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[bytes, dict[str, str], bytes]:
    """One response off the socket (status line, headers, body by Content-Length)."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {bytes(buffer)!r}")
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {k.decode().lower(): v.decode() for k, v in (line.split(b": ", 1) for line in lines)}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the body")
        rest += chunk
    del buffer[:]
    buffer += rest[length:]
    return status, headers, rest[:length]


def closed(sock: socket.socket) -> bool:
    """Whether the server closed the connection (reads to the end of what it sent)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    return True


def post(path: str, body: dict[str, object], extra: str = "") -> bytes:
    data = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n{extra}\r\n"
    ).encode() + data


TABULAR = {
    "inputs": [
        {"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        {"name": "category", "shape": [1, 1], "datatype": "INT64", "data": [1]},
    ]
}


def test_keep_alive_serves_several_requests_on_one_connection(server: ServerProcess) -> None:
    with connect(server) as sock:
        buffer = bytearray()
        for _ in range(3):
            sock.sendall(post("/v2/models/tabular/infer", TABULAR))
            status, headers, body = read_response(sock, buffer)
            assert status == b"HTTP/1.1 200 OK"
            assert "connection" not in headers
            assert json.loads(body)["model_name"] == "tabular"


def test_pipelined_requests_are_answered_in_order(server: ServerProcess) -> None:
    requests = [post("/v2/models/tabular/infer", {**TABULAR, "id": str(i)}) for i in range(5)] + [
        b"GET /v2/models/mnist HTTP/1.1\r\nHost: x\r\n\r\n"
    ]
    with connect(server) as sock:
        sock.sendall(b"".join(requests))
        buffer = bytearray()
        ids = [json.loads(read_response(sock, buffer)[2])["id"] for _ in range(5)]
        assert ids == ["0", "1", "2", "3", "4"]
        assert json.loads(read_response(sock, buffer)[2])["name"] == "mnist"


def test_connection_close_is_honoured(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, headers, _ = read_response(sock, bytearray())
        assert status == b"HTTP/1.1 200 OK"
        assert headers["connection"] == "close"
        assert closed(sock)


def test_http_1_0_closes_after_the_answer(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.0\r\n\r\n")
        assert read_response(sock, bytearray())[0].endswith(b"200 OK")
        assert closed(sock)


def test_head_gets_headers_without_a_body(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"HEAD /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        data = sock.recv(65536)
        # The HEAD answer (405: the route takes GET only) carries no body; the GET answer follows.
        assert data.startswith(b"HTTP/1.1 405 ")
        assert data.count(b"HTTP/1.1 ") == 2
        head_part, _, rest = data.partition(b"\r\n\r\n")
        assert b"allow: GET" in head_part
        assert rest.startswith(b"HTTP/1.1 200 OK")


def test_expect_100_continue(server: ServerProcess) -> None:
    data = json.dumps(TABULAR).encode()
    with connect(server) as sock:
        sock.sendall(
            b"POST /v2/models/tabular/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nExpect: 100-continue\r\nContent-Length: " + str(len(data)).encode() + b"\r\n\r\n"
        )
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(data)
        assert read_response(sock, bytearray())[0] == b"HTTP/1.1 200 OK"


def test_malformed_request_line_gets_400_and_a_close(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, _, body = read_response(sock, bytearray())
        assert status.startswith(b"HTTP/1.1 400 ")
        assert json.loads(body) == {"error": "malformed HTTP request"}
        assert closed(sock)


def test_slow_headers_get_408(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /v2/models/tabular/infer HTTP/1.1\r\nHost: x\r\n")
        status, _, body = read_response(sock, bytearray())  # waits for the server's deadline
        assert status.startswith(b"HTTP/1.1 408 ")
        assert "too long" in json.loads(body)["error"]
        assert closed(sock)


def test_slow_body_gets_408(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"POST /v2/models/tabular/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
        )
        assert read_response(sock, bytearray())[0].startswith(b"HTTP/1.1 408 ")


def test_idle_keep_alive_connections_close_quietly(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock, bytearray())[0].endswith(b"200 OK")
        assert sock.recv(65536) == b"", "closed after the keep-alive timeout, with no answer"


def test_server_still_serves_after_all_that(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(post("/v2/models/tabular/infer", TABULAR))
        assert read_response(sock, bytearray())[0] == b"HTTP/1.1 200 OK"
    assert "Traceback" not in server.log()
