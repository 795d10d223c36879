"""The ASGI front door, driven directly: scope dicts, receive/send callables, ``asyncio.run``."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from modelport.errors import (
    InvalidInput,
    MethodNotAllowed,
    ModelportError,
    NotFound,
    Overloaded,
)
from modelport.protocols import http as http_module
from modelport.protocols.http import HttpApp, HttpRequest, Mount, Route
from modelport.protocols.wire import HttpResponse

LIMIT = 100
GENERIC_500 = {"error": "internal server error; the server log has the details"}


class CountingPattern:
    """A compiled pattern that counts how often the router tries it."""

    def __init__(self, pattern: str) -> None:
        self._pattern = re.compile(pattern)
        self.calls = 0

    def fullmatch(self, path: str) -> re.Match[str] | None:
        self.calls += 1
        return self._pattern.fullmatch(path)


@dataclass
class Surface:
    """A Mount whose routes answer fixed responses and record what they were given."""

    seen: list[tuple[HttpRequest, dict[str, str | Any]]] = field(default_factory=list)
    gate: asyncio.Event | None = None
    entered: int = 0
    items: CountingPattern = field(
        default_factory=lambda: CountingPattern(r"/t/items/(?P<id>[^/]+)")
    )

    async def ok(self, request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        self.seen.append((request, match.groupdict()))
        return HttpResponse(200, b'{"ok":true}', headers=((b"x-extra", b"1"),))

    async def created(self, request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        self.seen.append((request, match.groupdict()))
        return HttpResponse(201, request.body, content_type=b"application/octet-stream")

    async def boom(self, request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        raise RuntimeError("secret detail: /etc/modelport/token")

    async def refuse(self, request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        raise InvalidInput("bad thing")

    async def busy(self, request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        raise Overloaded("queue full", retry_after_s=2.5)

    async def block(self, request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        assert self.gate is not None
        self.entered += 1
        await self.gate.wait()
        return HttpResponse(200, b"{}")

    def mount(self) -> Mount:
        routes = [
            Route(self.items, {"GET": self.ok, "POST": self.created, "PUT": self.created}),  # type: ignore[arg-type]
            Route(re.compile("/t/health"), {"GET": self.ok}, during_drain=True),
            Route(re.compile("/t/boom"), {"GET": self.boom}),
            Route(re.compile("/t/refuse"), {"GET": self.refuse}),
            Route(re.compile("/t/busy"), {"GET": self.busy}),
            Route(re.compile("/t/block"), {"POST": self.block}),
        ]
        return Mount(owns=lambda path: path.startswith("/t/"), routes=routes, unmatched=_unmatched)


def _unmatched(method: str, path: str, path_matched: tuple[str, ...]) -> ModelportError:
    if path_matched:
        return MethodNotAllowed(f"{method} is not allowed on {path}")
    return NotFound(f"no route for {path}")


def _other_mount() -> Mount:
    return Mount(
        owns=lambda path: path.startswith("/u/"),
        routes=[],
        unmatched=lambda method, path, _: InvalidInput(f"Malformed request: {method} {path}"),
    )


@dataclass
class Exchange:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    receives: int

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """Builds ASGI scopes and message streams; counts receive() calls."""

    def __init__(self, app: HttpApp) -> None:
        self.app = app

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: Sequence[tuple[bytes, bytes]] = (),
        chunks: Sequence[bytes] = (b"",),
        disconnect_after: int | None = None,
        raw_path: bytes | None = None,
    ) -> Exchange:
        messages: list[dict[str, Any]] = [
            {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
            for i, chunk in enumerate(chunks)
        ]
        if disconnect_after is not None:
            messages = [*messages[:disconnect_after], {"type": "http.disconnect"}]
        receives = 0

        async def receive() -> dict[str, Any]:
            nonlocal receives
            receives += 1
            if receives <= len(messages):
                return messages[receives - 1]
            return {"type": "http.disconnect"}

        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "raw_path": path.encode("latin-1") if raw_path is None else raw_path,
            "headers": list(headers),
        }
        await self.app(scope, receive, send)
        start, body = sent
        assert start["type"] == "http.response.start"
        assert body["type"] == "http.response.body"
        return Exchange(start["status"], dict(start["headers"]), body["body"], receives)

    def __call__(self, method: str, path: str, **kwargs: Any) -> Exchange:
        return asyncio.run(self.request(method, path, **kwargs))


@pytest.fixture
def surface() -> Surface:
    return Surface()


def _app(surface: Surface, *, draining: bool = False, limit: int = LIMIT) -> HttpApp:
    return HttpApp(
        [surface.mount(), _other_mount()], max_body_bytes=limit, is_draining=lambda: draining
    )


@pytest.fixture
def client(surface: Surface) -> Client:
    return Client(_app(surface))


# ---- routing -----------------------------------------------------------------------------------


def test_get_is_routed_with_match_groups_and_without_reading_a_body(
    client: Client, surface: Surface
) -> None:
    headers = [(b"accept", b"application/json"), (b"content-length", b"999999")]
    result = client("GET", "/t/items/42", headers=headers)
    assert result.status == 200
    assert result.body == b'{"ok":true}'
    assert result.receives == 0
    assert result.headers[b"content-type"] == b"application/json"
    assert result.headers[b"content-length"] == b"11"
    assert result.headers[b"x-extra"] == b"1"
    ((request, groups),) = surface.seen
    assert groups == {"id": "42"}
    assert (request.method, request.path, request.body) == ("GET", "/t/items/42", b"")
    assert request.header(b"accept") == b"application/json"
    assert request.header(b"missing") is None


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_post_and_put_read_the_body(client: Client, method: str) -> None:
    result = client(method, "/t/items/1", chunks=[b"hello"])
    assert result.status == 201
    assert result.body == b"hello"
    assert result.headers[b"content-type"] == b"application/octet-stream"
    assert result.receives == 1


def test_the_raw_path_is_matched_still_percent_encoded_and_without_query(
    client: Client, surface: Surface
) -> None:
    client("GET", "/t/items/a/b", raw_path=b"/t/items/a%2Fb?x=1")
    assert surface.seen[0][1] == {"id": "a%2Fb"}
    assert surface.seen[0][0].path == "/t/items/a%2Fb"


def test_scope_path_is_used_without_raw_path(surface: Surface) -> None:
    app = _app(surface)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("GET reads no body")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/t/items/7", "headers": []}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 200
    assert surface.seen[0][1] == {"id": "7"}


def test_a_path_no_mount_owns_is_a_json_404(client: Client) -> None:
    result = client("GET", "/elsewhere")
    assert result.status == 404
    assert result.json() == {"error": "Not Found"}
    assert result.headers[b"content-type"] == b"application/json"


def test_an_owned_path_without_a_route_asks_the_mount(client: Client) -> None:
    result = client("GET", "/t/nothing")
    assert result.status == 404
    assert result.json() == {"error": "no route for /t/nothing"}
    other = client("POST", "/u/x", chunks=[b"{}"])
    assert other.status == 400
    assert other.json() == {"error": "Malformed request: POST /u/x"}


def test_a_method_the_route_lacks_is_unmatched_with_path_matched(client: Client) -> None:
    result = client("DELETE", "/t/items/1")
    assert result.status == 405
    assert result.json() == {"error": "DELETE is not allowed on /t/items/1"}
    assert client("GET", "/t/block").status == 405


def test_matches_are_cached_per_method_and_path(client: Client, surface: Surface) -> None:
    for _ in range(3):
        assert client("GET", "/t/items/1").status == 200
    assert surface.items.calls == 1
    client("POST", "/t/items/1")
    client("GET", "/t/items/2")
    assert surface.items.calls == 3
    assert [groups["id"] for _, groups in surface.seen] == ["1"] * 4 + ["2"]


def test_failed_matches_are_not_cached(client: Client, surface: Surface) -> None:
    client("DELETE", "/t/items/1")
    client("DELETE", "/t/items/1")
    assert surface.items.calls == 2


def test_the_route_cache_is_bounded(
    client: Client, surface: Surface, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_module, "_ROUTE_CACHE_SIZE", 2)
    for path in ("/t/items/1", "/t/items/2", "/t/items/3", "/t/items/3", "/t/items/1"):
        assert client("GET", path).status == 200
    assert surface.items.calls == 4  # /t/items/3 was not remembered


# ---- body size ---------------------------------------------------------------------------------


def test_content_length_over_the_limit_is_413_before_receive(client: Client) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"101")]
    result = client("POST", "/t/items/1", headers=headers, chunks=[b"x" * 101])
    assert result.status == 413
    assert result.receives == 0
    assert result.headers[b"connection"] == b"close"
    assert "larger than the limit of 100 bytes" in result.json()["error"]


def test_body_of_exactly_the_limit_is_read(client: Client) -> None:
    headers = [(b"content-length", b"100")]
    result = client("POST", "/t/items/1", headers=headers, chunks=[b"x" * 100])
    assert result.status == 201
    assert len(result.body) == 100


def test_single_message_over_the_limit_is_413_whatever_content_length_says(
    client: Client,
) -> None:
    result = client("POST", "/t/items/1", headers=[(b"content-length", b"5")], chunks=[b"x" * 101])
    assert result.status == 413


def test_chunked_body_within_the_limit_is_joined(client: Client) -> None:
    result = client("POST", "/t/items/1", chunks=[b"a" * 40, b"", b"b" * 40, b"c" * 20])
    assert result.status == 201
    assert result.body == b"a" * 40 + b"b" * 40 + b"c" * 20
    assert result.receives == 4


def test_chunked_body_is_refused_as_soon_as_it_passes_the_limit(client: Client) -> None:
    chunks = [b"a" * 40, b"b" * 40, b"c" * 40, b"d" * 40, b"e" * 40]
    result = client("POST", "/t/items/1", chunks=chunks)
    assert result.status == 413
    assert result.receives == 3


def test_first_chunk_over_the_limit_is_refused_without_reading_more(client: Client) -> None:
    result = client("POST", "/t/items/1", chunks=[b"a" * 101, b"b" * 10, b"c"])
    assert result.status == 413
    assert result.receives == 1


def test_client_disconnecting_mid_body_is_a_400(client: Client) -> None:
    result = client("POST", "/t/items/1", chunks=[b"a", b"b", b"c"], disconnect_after=2)
    assert result.status == 400
    assert result.json() == {"error": "the client disconnected before sending the whole body"}


# ---- content encoding --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        (b"gzip", gzip.compress),
        (b"GZip ", gzip.compress),
        (b"deflate", zlib.compress),
        (b"identity", lambda body: body),
    ],
)
def test_compressed_bodies_are_inflated(client: Client, encoding: bytes, compress: Any) -> None:
    payload = b'{"instances": [1, 2, 3]}' * 3
    headers = [(b"content-encoding", encoding), (b"content-type", b"application/json")]
    result = client("POST", "/t/items/1", headers=headers, chunks=[compress(payload)])
    assert result.status == 201
    assert result.body == payload


def test_decompressed_size_of_exactly_the_limit_is_accepted(client: Client) -> None:
    headers = [(b"content-encoding", b"gzip")]
    result = client(
        "POST", "/t/items/1", headers=headers, chunks=[gzip.compress(b"z" * 100, mtime=0)]
    )
    assert result.status == 201


@pytest.mark.parametrize(
    ("encoding", "compress", "limit", "size"),
    [
        (b"gzip", gzip.compress, LIMIT, LIMIT + 1),
        (b"gzip", gzip.compress, 65_536, 10_000_000),
        (b"deflate", zlib.compress, 65_536, 20_000_000),
    ],
)
def test_decompression_bomb_is_413(encoding: bytes, compress: Any, limit: int, size: int) -> None:
    bomb = compress(b"\x00" * size)
    assert len(bomb) <= limit  # the compressed body itself is within the limit
    app = HttpApp([Surface().mount()], max_body_bytes=limit, is_draining=lambda: False)
    headers = [(b"content-encoding", encoding)]
    result = Client(app)("POST", "/t/items/1", headers=headers, chunks=[bomb])
    assert result.status == 413
    assert result.headers[b"connection"] == b"close"


@pytest.mark.parametrize(
    ("encoding", "body", "message"),
    [
        (b"gzip", b"not gzip at all", "not valid gzip data"),
        (b"deflate", gzip.compress(b"abc", mtime=0), "not valid deflate data"),
        (b"gzip", gzip.compress(b"abcdef" * 10, mtime=0)[:-12], "gzip body is truncated"),
        (b"gzip", b"", "truncated"),
    ],
)
def test_corrupt_compressed_bodies_are_400(
    client: Client, encoding: bytes, body: bytes, message: str
) -> None:
    result = client("POST", "/t/items/1", headers=[(b"content-encoding", encoding)], chunks=[body])
    assert result.status == 400
    assert message in result.json()["error"]


@pytest.mark.parametrize("encoding", [b"br", b"compress", b"gzip, deflate", b"zstd"])
def test_unsupported_content_encoding_is_415(client: Client, encoding: bytes) -> None:
    result = client("POST", "/t/items/1", headers=[(b"content-encoding", encoding)], chunks=[b"x"])
    assert result.status == 415
    assert "use gzip or deflate" in result.json()["error"]


@pytest.mark.parametrize(
    "content_type",
    [
        b"application/x-python-pickle",
        b"application/vnd.model+pickle",
        b"multipart/form-data; boundary=xyz",
        b"text/html",
    ],
)
def test_unsupported_content_type_is_415(client: Client, content_type: bytes) -> None:
    headers = [(b"content-type", content_type)]
    result = client("POST", "/t/items/1", headers=headers, chunks=[b"{}"])
    assert result.status == 415
    assert "is not supported" in result.json()["error"]


@pytest.mark.parametrize(
    "content_type",
    [
        b"application/json",
        b"Application/JSON; charset=utf-8",
        b"application/octet-stream",
        b"application/x-www-form-urlencoded",
        b"text/plain",
        b"",
    ],
)
def test_supported_content_types(client: Client, content_type: bytes) -> None:
    headers = [(b"content-type", content_type)]
    assert client("POST", "/t/items/1", headers=headers, chunks=[b"{}"]).status == 201


def _typed_app(surface: Surface, *, draining: bool = False) -> HttpApp:
    """Routes with their own Content-Type lists, on a mount that renders its own errors."""

    def render(exc: ModelportError) -> HttpResponse:
        return HttpResponse(exc.http_status, json.dumps({"own": exc.message}).encode())

    routes = [
        Route(re.compile("/f/any"), {"POST": surface.created}, content_types=None),
        Route(
            re.compile("/f/form"),
            {"POST": surface.created},
            content_types=frozenset({b"multipart/form-data"}),
        ),
        Route(re.compile("/f/boom"), {"GET": surface.boom}),
        Route(re.compile("/f/refuse"), {"GET": surface.refuse}),
    ]
    own = Mount(
        owns=lambda path: path.startswith("/f/"),
        routes=routes,
        unmatched=_unmatched,
        render_error=render,
    )
    return HttpApp([surface.mount(), own], max_body_bytes=LIMIT, is_draining=lambda: draining)


@pytest.mark.parametrize(
    "content_type",
    [b"multipart/form-data; boundary=xyz", b"image/jpeg", b"application/json", b"", b"x/y"],
)
def test_a_route_may_take_any_content_type(surface: Surface, content_type: bytes) -> None:
    client = Client(_typed_app(surface))
    result = client("POST", "/f/any", headers=[(b"content-type", content_type)], chunks=[b"b"])
    assert result.status == 201
    assert result.body == b"b"


def test_a_route_may_list_its_own_content_types(surface: Surface) -> None:
    client = Client(_typed_app(surface))
    form = [(b"content-type", b"Multipart/Form-Data; boundary=xyz")]
    assert client("POST", "/f/form", headers=form, chunks=[b"b"]).status == 201
    json_type = [(b"content-type", b"application/json")]
    refused = client("POST", "/f/form", headers=json_type, chunks=[b"{}"])
    assert refused.status == 415
    assert "is not supported" in refused.json()["own"]
    # The other surfaces keep the default list.
    assert client("POST", "/t/items/1", headers=form, chunks=[b"b"]).status == 415


def test_a_mount_renders_every_error_on_its_paths(surface: Surface) -> None:
    client = Client(_typed_app(surface))
    assert client("GET", "/f/refuse").json() == {"own": "bad thing"}
    boom = client("GET", "/f/boom")
    assert (boom.status, boom.json()) == (500, {"own": GENERIC_500["error"]})
    assert client("GET", "/f/nothing").json() == {"own": "no route for /f/nothing"}
    gzip_error = client("POST", "/f/any", headers=[(b"content-encoding", b"br")], chunks=[b"x"])
    assert gzip_error.status == 415
    assert "use gzip or deflate" in gzip_error.json()["own"]
    large = client("POST", "/f/any", headers=[(b"content-length", b"101")], chunks=[b"x" * 101])
    assert large.status == 413
    assert "larger than the limit" in large.json()["own"]
    # Other paths keep the default shape.
    assert client("GET", "/t/refuse").json() == {"error": "bad thing"}
    assert client("GET", "/nowhere").json() == {"error": "Not Found"}


def test_a_mount_renders_the_drain_refusal(surface: Surface) -> None:
    client = Client(_typed_app(surface, draining=True))
    result = client("POST", "/f/any", chunks=[b"x"])
    assert result.status == 503
    assert "shutting down" in result.json()["own"]


# ---- draining ----------------------------------------------------------------------------------


def test_draining_refuses_new_requests_with_503(surface: Surface) -> None:
    client = Client(_app(surface, draining=True))
    result = client("POST", "/t/items/1", chunks=[b"x"])
    assert result.status == 503
    assert "shutting down" in result.json()["error"]
    assert surface.seen == []


def test_draining_keeps_during_drain_routes_and_404s(surface: Surface) -> None:
    client = Client(_app(surface, draining=True))
    assert client("GET", "/t/health").status == 200
    assert client("GET", "/nowhere").status == 404


# ---- errors ------------------------------------------------------------------------------------


def test_unexpected_exception_is_a_generic_500_and_logged(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="modelport.protocols.http"):
        result = client("GET", "/t/boom")
    assert result.status == 500
    assert result.json() == GENERIC_500
    assert b"secret" not in result.body
    (record,) = [r for r in caplog.records if r.name == "modelport.protocols.http"]
    assert record.levelno == logging.ERROR
    assert "GET /t/boom" in record.getMessage()
    assert record.exc_info is not None
    assert "secret detail" in str(record.exc_info[1])


def test_modelport_errors_keep_their_status_and_message(client: Client) -> None:
    result = client("GET", "/t/refuse")
    assert result.status == 400
    assert result.json() == {"error": "bad thing"}
    busy = client("GET", "/t/busy")
    assert busy.status == 429
    assert busy.headers[b"retry-after"] == b"3"


# ---- in-flight requests ------------------------------------------------------------------------


def test_inflight_count_and_wait_idle(surface: Surface) -> None:
    app = _app(surface)
    client = Client(app)

    async def scenario() -> None:
        surface.gate = asyncio.Event()
        assert app.inflight == 0
        assert await app.wait_idle(1.0) is True
        tasks = [asyncio.create_task(client.request("POST", "/t/block")) for _ in range(2)]
        while surface.entered < 2:
            await asyncio.sleep(0)
        assert app.inflight == 2
        waiter = asyncio.create_task(app.wait_idle(60.0))
        # The handlers are parked on the gate, so a short wait cannot see the app idle.
        assert await app.wait_idle(0.01) is False
        assert not waiter.done()
        surface.gate.set()
        results = await asyncio.gather(*tasks)
        assert [r.status for r in results] == [200, 200]
        assert app.inflight == 0
        assert await waiter is True

    asyncio.run(scenario())


def test_inflight_returns_to_zero_after_errors(surface: Surface) -> None:
    app = _app(surface)
    client = Client(app)
    for method, path in [
        ("GET", "/t/boom"),
        ("GET", "/t/refuse"),
        ("GET", "/x"),
        ("DELETE", "/t/health"),
    ]:
        client(method, path)
        assert app.inflight == 0


# ---- HttpApp.handle, without ASGI -------------------------------------------------------------


def test_handle_answers_a_read_request_and_never_raises(surface: Surface) -> None:
    app = _app(surface)

    async def scenario() -> list[HttpResponse]:
        headers = [(b"content-encoding", b"gzip")]
        return [
            await app.handle(
                HttpRequest("POST", "/t/items/9", headers, gzip.compress(b"abc", mtime=0))
            ),
            await app.handle(HttpRequest("GET", "/t/boom", [])),
            await app.handle(HttpRequest("GET", "/none", [])),
        ]

    created, boom, missing = asyncio.run(scenario())
    assert (created.status, created.body) == (201, b"abc")
    assert (boom.status, json.loads(boom.body)) == (500, GENERIC_500)
    assert missing.status == 404
    assert app.inflight == 0


# ---- other scopes ------------------------------------------------------------------------------


def test_lifespan_startup_and_shutdown(client: Client) -> None:
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(client.app({"type": "lifespan"}, receive, send))
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]


def test_websocket_scope_is_ignored(client: Client) -> None:
    async def receive() -> dict[str, Any]:
        raise AssertionError("not read")

    async def send(message: dict[str, Any]) -> None:
        raise AssertionError("nothing sent")

    asyncio.run(client.app({"type": "websocket", "path": "/t/health"}, receive, send))
    assert client.app.inflight == 0
