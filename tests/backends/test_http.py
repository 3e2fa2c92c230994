"""HttpUpstream against real local HTTP servers: timeouts, errors, pooling, streaming, TLS."""

from __future__ import annotations

import asyncio
import datetime
import errno
import gzip
import ipaddress
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from seawall.backends.http import HttpOptions, HttpResponse, HttpUpstream, error_for_status
from seawall.clock import FakeClock
from seawall.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    BadResponseError,
    InvalidInputError,
)

# Real sockets, so real time: timeouts of 0.2 s, asserted with ~5x margins.
SHORT_S = 0.2
LONG_S = 5.0

WebHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


# --- servers -------------------------------------------------------------------------------


@asynccontextmanager
async def web_server(
    routes: dict[str, WebHandler], ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    """An aiohttp.web server on 127.0.0.1 (random port) serving `routes` for any method."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def raw_server(handler: RawHandler) -> AsyncIterator[str]:
    """A TCP server on 127.0.0.1 whose handler writes (or withholds) the HTTP bytes itself."""
    tasks: set[asyncio.Task[Any]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def read_head(reader: asyncio.StreamReader) -> str:
    """The request line and headers (the tests' requests have no body)."""
    return (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")


def head(status: int = 200, **headers: str | int) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


@asynccontextmanager
async def upstream(url: str, **options: Any) -> AsyncIterator[HttpUpstream]:
    up = HttpUpstream(url, HttpOptions(**options))
    await up.start()
    try:
        yield up
    finally:
        await up.close()


def now() -> float:
    return time.monotonic()


async def fetch(
    up: HttpUpstream, streaming: bool, got: list[bytes] | None = None, **kwargs: Any
) -> None:
    """GET / with `request()`, or with `stream()` read to its end (its chunks into `got`)."""
    if streaming:
        async for part in up.stream("GET", "/", **kwargs):
            if got is not None:
                got.append(part)
    else:
        await up.request("GET", "/", **kwargs)


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts the request and never sends a byte; returns when the client goes away."""
    await read_head(reader)
    await reader.read()


async def headers_then_stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(head(content_length=100) + b"0123456789")
    await writer.drain()
    await reader.read()


@dataclass
class Endless:
    """A chunked 200 that sends a chunk every 20 ms until the client goes away (noting when)."""

    connections: int = 0
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    closed_at: float = 0.0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if "GET /ok " in await read_head(reader):
            writer.write(head(content_length=2) + b"ok")
            await reader.read()
            return
        writer.write(head(transfer_encoding="chunked"))
        try:
            n = 0
            while not reader.at_eof() and not writer.transport.is_closing():
                writer.write(chunk(f"part {n};".encode()))
                await writer.drain()
                n += 1
                await asyncio.sleep(0.02)
        except ConnectionError:
            pass
        finally:
            self.closed_at = now()
            self.closed.set()


# --- HttpOptions and the pure helpers ------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field_name"),
    [
        ({"connect_timeout_s": 0}, "connect_timeout_s"),
        ({"first_byte_timeout_s": -1.0}, "first_byte_timeout_s"),
        ({"idle_read_timeout_s": 0.0}, "idle_read_timeout_s"),
        ({"total_timeout_s": 0}, "total_timeout_s"),
        ({"max_connections": 0}, "max_connections"),
        ({"client_cert": "c.pem"}, "client_cert"),
        ({"client_key": "k.pem"}, "client_cert"),
    ],
)
def test_options_reject_invalid_values(options: dict[str, Any], field_name: str) -> None:
    with pytest.raises(ValueError, match=f"^{field_name}: "):
        HttpOptions(**options)


def test_options_accept_limits_at_their_edges() -> None:
    options = HttpOptions(
        connect_timeout_s=0.001,
        total_timeout_s=None,
        max_connections=1,
        client_cert="c.pem",
        client_key="k.pem",
    )
    assert (options.max_connections, options.total_timeout_s) == (1, None)
    assert HttpOptions().first_byte_timeout_s == 30.0
    assert HttpOptions().max_response_bytes == 64 * 1024 * 1024


UPSTREAM = "http://up:8000"

STATUS_TABLE = [
    (400, InvalidInputError, False),
    (404, InvalidInputError, False),
    (409, InvalidInputError, False),
    (413, InvalidInputError, False),
    (415, InvalidInputError, False),
    (422, InvalidInputError, False),
    (401, BackendError, False),
    (403, BackendError, False),
    (405, BackendError, False),
    (410, BackendError, False),
    (408, BackendTimeoutError, True),
    (429, BackendUnavailableError, True),
    (502, BackendUnavailableError, True),
    (503, BackendUnavailableError, True),
    (504, BackendUnavailableError, True),
    (500, BackendError, True),
    (501, BackendError, True),
    (505, BackendError, True),
]


@pytest.mark.parametrize(("status", "cls", "retryable"), STATUS_TABLE)
def test_error_for_status_maps_each_status(
    status: int, cls: type[Exception], retryable: bool
) -> None:
    error = error_for_status(status, {"retry-after": "3"}, b'{"error": "nope"}', UPSTREAM)
    assert type(error) is cls
    if isinstance(error, InvalidInputError):
        assert (error.field, error.reason, error.retry_after_s) == ("upstream", "nope", None)
    else:
        assert error.retryable is retryable
        assert error.retry_after_s == 3.0
        assert error.message == f"{UPSTREAM} answered {status}: nope"
    assert BackendError.retryable is True  # a 4xx's flag is the instance's, not the class's


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"error": "bad shape"}', "bad shape"),
        (b'{"error": {"message": "model overloaded", "type": "server_error"}}', "model overloaded"),
        (b'{"message": "from message"}', "from message"),
        (b'{"detail": "from detail"}', "from detail"),
        (b"upstream exploded\n", "upstream exploded"),
        (b'{"error": {"code": 7}}', ""),
        (b"[1, 2]", ""),
        (b"", ""),
    ],
)
def test_error_for_status_takes_the_message_from_the_body(body: bytes, detail: str) -> None:
    error = error_for_status(500, {}, body, UPSTREAM)
    assert error.message == f"{UPSTREAM} answered 500" + (f": {detail}" if detail else "")
    refused = error_for_status(422, {}, body, UPSTREAM)
    assert isinstance(refused, InvalidInputError)
    assert refused.reason == (detail or f"{UPSTREAM} refused the input (422)")


def test_error_for_status_truncates_long_details() -> None:
    text = error_for_status(500, {}, b"x" * 5000, UPSTREAM).message
    json_ = error_for_status(500, {}, orjson.dumps({"error": "y" * 5000}), UPSTREAM).message
    assert text == f"{UPSTREAM} answered 500: " + "x" * 200
    assert json_ == f"{UPSTREAM} answered 500: " + "y" * 500


def http_date(seconds_from_now: float) -> str:
    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds_from_now)
    return format_datetime(when, usegmt=True)


@pytest.mark.parametrize(
    ("value", "low", "high"),
    [
        ("7", 7.0, 7.0),
        (" 1.5 ", 1.5, 1.5),
        ("0", 0.0, 0.0),
        (60, 57.0, 61.0),  # an HTTP date a minute ahead, made when the test runs
        (-60, 0.0, 0.0),
    ],
)
def test_retry_after_in_seconds_or_as_an_http_date(
    value: str | int, low: float, high: float
) -> None:
    header = http_date(value) if isinstance(value, int) else value
    error = error_for_status(429, {"retry-after": header}, b"", UPSTREAM)
    assert error.retry_after_s is not None
    assert low <= error.retry_after_s <= high


@pytest.mark.parametrize("value", ["soon", "-5", "1e3", ""])
def test_unreadable_retry_after_is_ignored(value: str) -> None:
    assert error_for_status(503, {"retry-after": value}, b"", UPSTREAM).retry_after_s is None
    assert error_for_status(503, {}, b"", UPSTREAM).retry_after_s is None


def test_response_json_parses_or_raises_bad_response() -> None:
    assert HttpResponse(200, {}, b'{"a": [1, 2]}').json() == {"a": [1, 2]}
    with pytest.raises(BadResponseError, match="invalid JSON"):
        HttpResponse(200, {}, b"<html>").json()


def test_time_left_uses_the_injected_clock() -> None:
    clock = FakeClock()
    up = HttpUpstream("http://up/", clock=clock)
    assert up.base_url == "http://up"
    assert up.time_left(None) is None
    assert up.time_left(clock.monotonic() + 2.5) == pytest.approx(2.5)
    clock.advance(4.0)
    assert up.time_left(clock.monotonic() - 1.5) == 0.0


async def test_requests_before_start_or_after_close_are_refused() -> None:
    up = HttpUpstream("http://127.0.0.1:9")
    with pytest.raises(BackendUnavailableError, match="not started"):
        await up.request("GET", "/")
    await up.start()
    await up.close()
    with pytest.raises(BackendUnavailableError, match="not started"):
        await anext(up.stream("GET", "/"))


# --- answering normally --------------------------------------------------------------------


async def test_request_sends_method_path_body_and_headers_and_reads_json() -> None:
    seen: list[tuple[str, str, bytes, str | None, str | None]] = []

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(
            (
                request.method,
                request.path_qs,
                body,
                request.headers.get("X-Call"),
                request.headers.get("Authorization"),
            )
        )
        return web.json_response({"got": orjson.loads(body)}, headers={"X-Served-By": "u1"})

    async with (
        web_server({"/v2/models/m/infer": echo}) as url,
        upstream(url + "/", headers={"Authorization": "Bearer k"}) as up,
    ):
        for i in range(3):
            response = await up.request(
                "POST",
                "/v2/models/m/infer?x=1",
                body=orjson.dumps({"i": i}),
                headers={"X-Call": str(i)},
            )
            assert response.status == 200
            assert response.json() == {"got": {"i": i}}
            assert response.headers["x-served-by"] == "u1"
            assert response.headers["content-type"].startswith("application/json")
    assert seen == [
        ("POST", "/v2/models/m/infer?x=1", orjson.dumps({"i": i}), str(i), "Bearer k")
        for i in range(3)
    ]


async def test_large_and_chunked_and_gzipped_bodies_arrive_whole() -> None:
    big = bytes(range(256)) * (4 * 1024 * 4)  # 4 MiB
    parts = [f"part-{i};".encode() * 100 for i in range(50)]

    async def large(request: web.Request) -> web.Response:
        return web.Response(body=big)

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in parts:
            await response.write(part)
        await response.write_eof()
        return response

    async def zipped(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(big), headers={"Content-Encoding": "gzip"})

    async with (
        web_server({"/large": large, "/chunked": chunked, "/gzip": zipped}) as url,
        upstream(url) as up,
    ):
        assert (await up.request("GET", "/large")).body == big
        streamed = await up.request("GET", "/chunked")
        assert streamed.body == b"".join(parts)
        assert "content-length" not in streamed.headers
        assert (await up.request("GET", "/gzip")).body == big
        assert [c async for c in up.stream("GET", "/large")] != []
        assert b"".join([c async for c in up.stream("GET", "/chunked")]) == b"".join(parts)


def json_error(status: int, document: object, **headers: str) -> WebHandler:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(document, status=status, headers=headers)

    return handler


ERROR_ROUTES: dict[str, tuple[WebHandler, type[Exception], float | None, str]] = {
    "/400": (json_error(400, {"error": "bad input shape"}), InvalidInputError, None, "bad input"),
    "/404": (json_error(404, {"error": {"message": "no model m"}}), InvalidInputError, None, "no"),
    "/422": (json_error(422, {"detail": "field x"}), InvalidInputError, None, "field x"),
    "/401": (json_error(401, {"error": "bad key"}), BackendError, None, "401: bad key"),
    "/403": (json_error(403, {"error": "no scope"}), BackendError, None, "403: no scope"),
    "/408": (json_error(408, {"error": "slow"}), BackendTimeoutError, None, "408: slow"),
    "/429": (
        json_error(429, {"error": {"message": "rate limit"}}, **{"Retry-After": "12"}),
        BackendUnavailableError,
        12.0,
        "429: rate limit",
    ),
    "/500": (json_error(500, {"error": "boom"}), BackendError, None, "500: boom"),
    "/502": (json_error(502, {"error": "bad gw"}), BackendUnavailableError, None, "502"),
    "/503": (
        json_error(503, {"error": "warming"}, **{"Retry-After": "2"}),
        BackendUnavailableError,
        2.0,
        "503: warming",
    ),
    "/504": (json_error(504, {"error": "gw timeout"}), BackendUnavailableError, None, "504"),
}


@pytest.fixture
async def error_server() -> AsyncIterator[str]:
    async with web_server({path: route[0] for path, route in ERROR_ROUTES.items()}) as url:
        yield url


@pytest.mark.parametrize("path", list(ERROR_ROUTES))
async def test_error_statuses_from_a_real_server(error_server: str, path: str) -> None:
    _, cls, retry_after, text = ERROR_ROUTES[path]
    async with upstream(error_server) as up:
        response = await up.request("POST", path, body=b"{}")
        assert response.status == int(path[1:])  # request() returns every status as it came
        error = error_for_status(response.status, response.headers, response.body, up)
        assert type(error) is cls
        assert error.retry_after_s == retry_after
        assert text in str(error)
        if isinstance(error, BackendError):
            assert str(error).startswith(f"{error_server} answered {path[1:]}")
            assert error.retryable is (response.status not in (401, 403))
        chunks = up.stream("POST", path, body=b"{}")
        with pytest.raises(cls) as raised:  # stream() raises it before yielding anything
            await anext(chunks)
        assert type(raised.value) is cls
        assert str(raised.value) == str(error)


async def test_retry_after_as_an_http_date_from_a_real_server() -> None:
    handler = json_error(429, {"error": "slow down"}, **{"Retry-After": http_date(30)})
    async with web_server({"/": handler}) as url, upstream(url) as up:
        with pytest.raises(BackendUnavailableError) as raised:
            await anext(up.stream("GET", "/"))
    assert raised.value.retry_after_s is not None
    assert 27.0 <= raised.value.retry_after_s <= 31.0


# --- timeouts ------------------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True])
async def test_silent_upstream_is_cut_at_the_first_byte_timeout(streaming: bool) -> None:
    async with (
        raw_server(silent) as url,
        upstream(url, first_byte_timeout_s=SHORT_S, idle_read_timeout_s=LONG_S) as up,
    ):
        start = now()
        with pytest.raises(BackendTimeoutError) as raised:
            await fetch(up, streaming)
        elapsed = now() - start
    assert str(raised.value) == f"{url}: no response within 200 ms (first byte)"
    assert SHORT_S * 0.9 <= elapsed < 1.0


async def test_first_byte_timeout_longer_than_the_idle_read_timeout_is_honoured() -> None:
    async def slow_headers(request: web.Request) -> web.Response:
        await asyncio.sleep(5 * SHORT_S / 2)
        return web.json_response({"late": True})

    async with (
        web_server({"/": slow_headers}) as url,
        upstream(url, first_byte_timeout_s=LONG_S, idle_read_timeout_s=SHORT_S / 2) as up,
    ):
        start = now()
        response = await up.request("GET", "/")
    assert response.json() == {"late": True}
    assert now() - start >= 5 * SHORT_S / 2


async def test_total_timeout_cuts_a_silent_upstream_when_it_is_the_shortest() -> None:
    async with (
        raw_server(silent) as url,
        upstream(url, first_byte_timeout_s=LONG_S, total_timeout_s=SHORT_S) as up,
    ):
        start = now()
        with pytest.raises(BackendTimeoutError, match="within 200 ms"):
            await up.request("GET", "/")
    assert now() - start < 1.0


@pytest.mark.parametrize("streaming", [False, True])
async def test_deadline_shorter_than_the_timeouts_cuts_the_wait(streaming: bool) -> None:
    async with raw_server(silent) as url, upstream(url, first_byte_timeout_s=LONG_S) as up:
        start = now()
        with pytest.raises(BackendTimeoutError) as raised:
            await fetch(up, streaming, deadline=now() + SHORT_S)
        elapsed = now() - start
    assert str(raised.value) == f"{url}: no response within the request's deadline (first byte)"
    assert elapsed < 1.0


async def test_a_passed_deadline_fails_fast_without_connecting() -> None:
    clock = FakeClock(start=0.0)
    endless = Endless()
    async with raw_server(endless) as url:
        up = HttpUpstream(url, clock=clock)
        await up.start()
        try:
            clock.advance(10.0)
            with pytest.raises(BackendTimeoutError, match="deadline had passed"):
                await up.request("GET", "/ok", deadline=9.0)
            with pytest.raises(BackendTimeoutError, match="deadline had passed"):
                await anext(up.stream("GET", "/", deadline=10.0))
            assert (await up.request("GET", "/ok", deadline=10.5)).body == b"ok"
        finally:
            await up.close()
    assert endless.connections == 1


@pytest.mark.parametrize("streaming", [False, True])
async def test_a_body_that_stalls_is_cut_at_the_idle_read_timeout(streaming: bool) -> None:
    async with (
        raw_server(headers_then_stall) as url,
        upstream(url, idle_read_timeout_s=SHORT_S, first_byte_timeout_s=LONG_S) as up,
    ):
        got: list[bytes] = []
        start = now()
        with pytest.raises(BackendTimeoutError) as raised:
            await fetch(up, streaming, got)
        elapsed = now() - start
    phase = "reading the stream" if streaming else "reading the response"
    assert str(raised.value) == f"{url}: timed out {phase} (no data for 200 ms)"
    assert b"".join(got) == (b"0123456789" if streaming else b"")
    assert SHORT_S * 0.9 <= elapsed < 1.0


async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Headers at once, then a chunk every 50 ms for 3 s: never idle, never done quickly."""
    await read_head(reader)
    writer.write(head(transfer_encoding="chunked"))
    for _ in range(60):
        writer.write(chunk(b"drip"))
        await writer.drain()
        await asyncio.sleep(0.05)
    writer.write(b"0\r\n\r\n")


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("bound", ["total", "deadline"])
async def test_total_timeout_and_deadline_bound_the_whole_body(bound: str, streaming: bool) -> None:
    total = SHORT_S * 2 if bound == "total" else None
    async with (
        raw_server(trickle) as url,
        upstream(url, idle_read_timeout_s=LONG_S, total_timeout_s=total) as up,
    ):
        deadline = now() + SHORT_S * 2 if bound == "deadline" else None
        got: list[bytes] = []
        start = now()
        with pytest.raises(BackendTimeoutError, match="total timeout or deadline"):
            await fetch(up, streaming, got, deadline=deadline)
        elapsed = now() - start
    assert SHORT_S * 2 * 0.9 <= elapsed < 1.5
    assert not streaming or b"".join(got).startswith(b"drip")


def listener_with_full_backlog() -> tuple[socket.socket, list[socket.socket]]:
    """A listening socket whose accept queue is full, so the kernel drops new SYNs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with suppress(BlockingIOError):  # non-blocking: the handshake completes later
            filler.connect(listener.getsockname())
        fillers.append(filler)
    return listener, fillers


async def test_connect_timeout_fires_when_the_handshake_never_completes() -> None:
    listener, fillers = listener_with_full_backlog()
    try:
        await asyncio.sleep(0.05)  # let the fillers' handshakes complete
        port = listener.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        async with upstream(url, connect_timeout_s=SHORT_S, first_byte_timeout_s=LONG_S) as up:
            start = now()
            with pytest.raises(BackendTimeoutError) as raised:
                await up.request("GET", "/")
            elapsed = now() - start
    finally:
        for sock in [listener, *fillers]:
            sock.close()
    assert str(raised.value) == f"{url}: cannot connect within 200 ms"
    assert SHORT_S * 0.9 <= elapsed < 1.0


# --- broken connections --------------------------------------------------------------------


@contextmanager
def closed_port() -> Iterator[int]:
    """A port that is bound (so nothing else takes it) but not listening: connections refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize("streaming", [False, True])
async def test_connection_refused_is_unavailable(streaming: bool) -> None:
    with closed_port() as port:
        async with upstream(f"http://127.0.0.1:{port}") as up:
            start = now()
            with pytest.raises(BackendUnavailableError) as raised:
                await fetch(up, streaming)
    assert str(raised.value).startswith(f"http://127.0.0.1:{port}: cannot connect: ")
    cause = raised.value.__cause__
    assert isinstance(cause, aiohttp.ClientConnectorError)
    assert cause.os_error.errno == errno.ECONNREFUSED
    assert raised.value.retryable
    assert now() - start < 1.0


async def test_connection_closed_before_the_headers_is_unavailable() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)

    async with raw_server(hang_up) as url, upstream(url) as up:
        with pytest.raises(BackendUnavailableError, match="connection lost while sending"):
            await up.request("GET", "/")


def drop_mid_body(framing: str) -> RawHandler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        if framing == "length":
            writer.write(head(content_length=1000) + b"x" * 10)
        else:
            writer.write(head(transfer_encoding="chunked") + chunk(b"x" * 10))
        await writer.drain()
        await asyncio.sleep(0.05)  # the client reads the first part before the drop

    return handler


@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize("streaming", [False, True])
async def test_connection_dropped_mid_body_is_a_bad_response(framing: str, streaming: bool) -> None:
    async with raw_server(drop_mid_body(framing)) as url, upstream(url) as up:
        got: list[bytes] = []
        start = now()
        with pytest.raises(BadResponseError) as raised:
            await fetch(up, streaming, got)
    phase = "reading the stream" if streaming else "reading the response"
    assert str(raised.value).startswith(f"{url}: broken response body while {phase}: ")
    assert raised.value.retryable
    assert b"".join(got) == (b"x" * 10 if streaming else b"")
    assert now() - start < 1.0


@dataclass
class Flood:
    """Sends `size` bytes (with or without Content-Length); notes how many got out."""

    size: int
    with_length: bool
    sent: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        framing = {"content_length": self.size} if self.with_length else {"connection": "close"}
        writer.write(head(**framing))
        piece = b"z" * 65536
        try:
            while self.sent < self.size:
                writer.write(piece)
                await writer.drain()
                self.sent += len(piece)
        finally:
            self.done.set()


@pytest.mark.parametrize("with_length", [True, False])
async def test_a_response_over_max_response_bytes_is_refused_unread(with_length: bool) -> None:
    flood = Flood(size=64 * 1024 * 1024, with_length=with_length)
    async with raw_server(flood) as url, upstream(url, max_response_bytes=1024 * 1024) as up:
        with pytest.raises(BadResponseError) as raised:
            await up.request("GET", "/")
        async with asyncio.timeout(2.0):
            await flood.done.wait()  # the server's writes failed: the client hung up
    assert str(raised.value) == f"{url}: response larger than 1048576 bytes"
    assert flood.sent < flood.size // 4


async def test_a_content_length_over_the_limit_is_refused_before_any_body_arrives() -> None:
    async def announce_then_stall(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_head(reader)
        writer.write(head(content_length=10**9))
        await reader.read()

    async with (
        raw_server(announce_then_stall) as url,
        upstream(url, max_response_bytes=1024, idle_read_timeout_s=LONG_S) as up,
    ):
        start = now()
        with pytest.raises(BadResponseError, match="larger than 1024 bytes"):
            await up.request("GET", "/")
    assert now() - start < 1.0


async def test_max_response_bytes_counts_decompressed_bytes() -> None:
    zeros = bytes(2 * 1024 * 1024)

    async def bomb(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(zeros), headers={"Content-Encoding": "gzip"})

    async with (
        web_server({"/": bomb}) as url,
        upstream(url, max_response_bytes=256 * 1024) as up,
    ):
        with pytest.raises(BadResponseError, match="larger than 262144 bytes"):
            await up.request("GET", "/")


# --- the connection pool -------------------------------------------------------------------


@dataclass
class Recorder:
    """An aiohttp.web handler noting each request's client address and the peak in flight."""

    delay_s: float = 0.0
    peers: list[tuple[str, int]] = field(default_factory=list)
    in_flight: int = 0
    peak: int = 0
    headers: list[str | None] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        assert request.transport is not None
        self.peers.append(request.transport.get_extra_info("peername"))
        self.headers.append(request.headers.get("X-Api-Key"))
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        return web.json_response({"n": len(self.peers)})


async def test_sequential_requests_reuse_one_keep_alive_connection() -> None:
    recorder = Recorder()
    async with (
        web_server({"/": recorder.handle}) as url,
        upstream(url, headers={"X-Api-Key": "secret"}) as up,
    ):
        for i in range(20):
            assert (await up.request("GET", "/")).json() == {"n": i + 1}
        chunks = [c async for c in up.stream("GET", "/")]
    assert b"".join(chunks) == b'{"n": 21}'
    assert len(recorder.peers) == 21
    assert len(set(recorder.peers)) == 1
    assert recorder.headers == ["secret"] * 21


@pytest.mark.parametrize(("max_connections", "expected_peak"), [(2, 2), (6, 6)])
async def test_max_connections_bounds_the_connections_in_flight(
    max_connections: int, expected_peak: int
) -> None:
    recorder = Recorder(delay_s=SHORT_S)
    async with (
        web_server({"/": recorder.handle}) as url,
        upstream(url, max_connections=max_connections) as up,
    ):
        start = now()
        responses = await asyncio.gather(*(up.request("GET", "/") for _ in range(6)))
        elapsed = now() - start
    assert [r.status for r in responses] == [200] * 6
    assert recorder.peak == expected_peak
    assert len(set(recorder.peers)) == expected_peak
    assert elapsed >= (6 / expected_peak) * SHORT_S * 0.9


# --- streaming -----------------------------------------------------------------------------


async def test_stream_yields_each_chunk_as_it_arrives() -> None:
    acks = [asyncio.Event() for _ in range(4)]

    async def lockstep(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for i, ack in enumerate(acks):
            await response.write(f"chunk {i};".encode())
            await ack.wait()  # the next chunk only once the client has seen this one
        await response.write_eof()
        return response

    async with web_server({"/": lockstep}) as url, upstream(url) as up:
        got = b""
        async with asyncio.timeout(2.0):
            async for part in up.stream("GET", "/"):
                got += part
                acks[got.count(b";") - 1].set()
    assert got == b"chunk 0;chunk 1;chunk 2;chunk 3;"


async def consume_two_then_break(up: HttpUpstream) -> None:
    got = 0
    async for _ in up.stream("GET", "/"):
        got += 1
        if got == 2:
            break


async def consume_two_then_aclose(up: HttpUpstream) -> None:
    chunks = up.stream("GET", "/")
    await anext(chunks)
    await anext(chunks)
    await chunks.aclose()


async def consume_two_then_cancel(up: HttpUpstream) -> None:
    got = asyncio.Event()

    async def consume() -> None:
        count = 0
        async for _ in up.stream("GET", "/"):
            count += 1
            if count == 2:
                got.set()

    task = asyncio.create_task(consume())
    await got.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize(
    "stop",
    [consume_two_then_break, consume_two_then_aclose, consume_two_then_cancel],
    ids=["break", "aclose", "cancel"],
)
async def test_stopping_a_stream_early_closes_its_connection(
    stop: Callable[[HttpUpstream], Awaitable[None]],
) -> None:
    endless = Endless()
    async with raw_server(endless) as url, upstream(url, max_connections=1) as up:
        await stop(up)
        stopped = now()
        async with asyncio.timeout(2.0):
            await endless.closed.wait()
        assert endless.closed_at - stopped < 1.0
        # The one connection slot is free again, for a new connection.
        async with asyncio.timeout(2.0):
            assert (await up.request("GET", "/ok")).body == b"ok"
    assert endless.connections == 2


# --- TLS -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path


def self_signed(directory: Path, name: str) -> Pem:
    """A self-signed certificate for 127.0.0.1 and localhost, usable as its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = Pem(directory / f"{name}.crt", directory / f"{name}.key")
    pem.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pem


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pem, Pem]:
    """The server's and the client's certificates."""
    directory = tmp_path_factory.mktemp("tls")
    return self_signed(directory, "server"), self_signed(directory, "client")


def server_context(server: Pem, client_ca: Pem | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server.cert, server.key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca.cert)
    return context


async def hello(request: web.Request) -> web.Response:
    return web.json_response({"tls": request.secure})


async def test_tls_verification_against_a_self_signed_certificate(certs: tuple[Pem, Pem]) -> None:
    server, _ = certs
    async with web_server({"/": hello}, server_context(server)) as url:
        assert url.startswith("https://")
        async with upstream(url, verify_tls=False) as up:
            assert (await up.request("GET", "/")).json() == {"tls": True}
        async with upstream(url, verify_tls=True) as up:
            with pytest.raises(BackendUnavailableError) as raised:
                await up.request("GET", "/")
        assert str(raised.value).startswith(f"{url}: cannot connect: ")
        assert "CERTIFICATE_VERIFY_FAILED" in str(raised.value)
        async with upstream(url, ca_file=str(server.cert)) as up:
            assert (await up.request("GET", "/")).json() == {"tls": True}
            assert [c async for c in up.stream("GET", "/")] == [b'{"tls": true}']


@pytest.mark.parametrize("verify_tls", [True, False])
async def test_mutual_tls_presents_the_client_certificate(
    certs: tuple[Pem, Pem], verify_tls: bool
) -> None:
    server, client = certs
    async with web_server({"/": hello}, server_context(server, client_ca=client)) as url:
        ca_file = str(server.cert) if verify_tls else None
        mutual = {"client_cert": str(client.cert), "client_key": str(client.key)}
        async with upstream(url, verify_tls=verify_tls, ca_file=ca_file, **mutual) as up:
            assert (await up.request("GET", "/")).json() == {"tls": True}
        async with upstream(url, verify_tls=verify_tls, ca_file=ca_file) as up:
            with pytest.raises(BackendUnavailableError):
                await up.request("GET", "/")
