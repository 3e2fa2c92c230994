"""A scripted upstream: an aiohttp server on 127.0.0.1 that answers, fails, stalls or drops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import pytest
from aiohttp import web

from seawall.backends.http import HttpOptions, HttpUpstream

Step = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Long enough that only a timeout or a disconnect ends it.
FOREVER_S = 30.0


@dataclass(frozen=True, slots=True)
class Seen:
    """A request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    #: The client's port: one per connection.
    port: int


class ScriptedServer:
    """Answers each request with the next scripted step (the last one repeats).

    Handlers are cancelled when their client goes away (aiohttp's `handler_cancellation`), and
    the server counts those disconnects and when they happened.
    """

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.disconnects: list[float] = []
        self.disconnected = asyncio.Event()
        self.active = 0
        self._script: list[Step] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def open_connections(self) -> int:
        """Connections the server holds open right now."""
        assert self._runner is not None
        assert self._runner.server is not None
        return len(self._runner.server.connections)

    def script(self, *steps: Step) -> None:
        self._script = list(steps)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.seen.append(
            Seen(
                request.method,
                request.path,
                {k.lower(): v for k, v in request.headers.items()},
                orjson.loads(raw) if raw else None,
                peer[1] if peer else 0,
            )
        )
        step = self._script.pop(0) if len(self._script) > 1 else self._script[0]
        self.active += 1
        try:
            return await step(request)
        except (asyncio.CancelledError, ConnectionResetError):
            self.disconnects.append(time.monotonic())
            self.disconnected.set()
            raise
        finally:
            self.active -= 1

    @staticmethod
    def data(payload: Any) -> bytes:
        """One `data:` event carrying `payload` as JSON."""
        return b"data: " + orjson.dumps(payload) + b"\n\n"

    # Steps.

    @staticmethod
    def json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Step:
        async def step(request: web.Request) -> web.StreamResponse:
            return web.Response(
                body=orjson.dumps(body),
                status=status,
                headers=headers,
                content_type="application/json",
            )

        return step

    @staticmethod
    def text(body: bytes, status: int = 200) -> Step:
        async def step(request: web.Request) -> web.StreamResponse:
            return web.Response(body=body, status=status, content_type="text/plain")

        return step

    @staticmethod
    def stall(seconds: float = FOREVER_S) -> Step:
        """Accept and send nothing (not even headers) for `seconds`, then answer `{}`."""

        async def step(request: web.Request) -> web.StreamResponse:
            await asyncio.sleep(seconds)
            return web.json_response({})

        return step

    @staticmethod
    def sse(
        parts: Sequence[bytes | float | asyncio.Event],
        *,
        then: Literal["end", "hang", "drop"] = "end",
    ) -> Step:
        """Send SSE headers, then each part (bytes are written, a float is a pause in seconds,
        an event is waited for), then end the body, hang until the client leaves, or drop the
        connection."""

        async def step(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            for part in parts:
                if isinstance(part, float):
                    await asyncio.sleep(part)
                elif isinstance(part, asyncio.Event):
                    await part.wait()
                else:
                    await response.write(part)
            if then == "hang":
                await asyncio.sleep(FOREVER_S)
            elif then == "drop":
                assert request.transport is not None
                request.transport.abort()
                return response
            await response.write_eof()
            return response

        return step


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer()
    await scripted.start()
    try:
        yield scripted
    finally:
        await scripted.stop()


@pytest.fixture
async def upstream(server: ScriptedServer) -> AsyncIterator[HttpUpstream]:
    """An `HttpUpstream` to `server` (base URL ending in /v1) with generous own timeouts."""
    options = HttpOptions(first_byte_timeout_s=5.0, idle_read_timeout_s=5.0)
    http = HttpUpstream(server.base_url + "/v1", options)
    await http.start()
    try:
        yield http
    finally:
        await http.close()
