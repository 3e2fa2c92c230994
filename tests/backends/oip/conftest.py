"""An OIP v2 stand-in server in this process (aiohttp.web): scripted metadata, readiness, infer."""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from seawall.backends.oip.codec import decode_infer_request, encode_infer_response
from seawall.types import InferenceResponse, Tensor

#: What the stand-in reports for its model `iris` (the demo's signature).
IRIS_METADATA: dict[str, Any] = {
    "name": "iris",
    "versions": ["7"],
    "platform": "sklearn",
    "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}],
    "outputs": [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
    ],
}


def closed_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Reply:
    """A raw answer to an infer call."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


#: An infer or readiness call that never answers (until the test ends).
HANG = "hang"


@dataclass
class Received:
    """One infer call as the stand-in saw it."""

    path: str
    headers: dict[str, str]
    body: bytes


class StandIn:
    """An OIP v2 server: `models` by name, `ready_status` for readiness, `script` for infer.

    Infer calls without a scripted step echo their inputs as outputs through seawall's own
    server-side codec (binary outputs when the request asks for them), under `model_version`.
    """

    def __init__(self) -> None:
        self.models: dict[str, dict[str, Any]] = {"iris": dict(IRIS_METADATA)}
        self.model_version = "7"
        self.ready_status: int | str = 200
        self.script: deque[Reply | str] = deque()
        self.received: list[Received] = []
        self.probes = 0
        self.release = asyncio.Event()
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def push_json(self, document: Any, status: int = 200, **headers: str) -> None:
        """Answer the next infer call with this JSON document."""
        headers = {"content-type": "application/json", **headers}
        self.script.append(Reply(status, orjson.dumps(document), headers))

    def push_raw(self, body: bytes, status: int = 200, **headers: str) -> None:
        """Answer the next infer call with these bytes (header names: `_` for `-`)."""
        named = {k.replace("_", "-"): v for k, v in headers.items()}
        self.script.append(Reply(status, body, named))

    def push_hang(self) -> None:
        """Never answer the next infer call."""
        self.script.append(HANG)

    def hang_readiness(self) -> None:
        self.ready_status = HANG

    async def start(self, port: int = 0) -> StandIn:
        app = web.Application()
        app.router.add_get("/v2/models/{model}", self._metadata)
        app.router.add_get("/v2/models/{model}/versions/{version}", self._metadata)
        app.router.add_get("/v2/models/{model}/ready", self._ready)
        app.router.add_get("/v2/models/{model}/versions/{version}/ready", self._ready)
        app.router.add_post("/v2/models/{model}/infer", self._infer)
        app.router.add_post("/v2/models/{model}/versions/{version}/infer", self._infer)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _known(self, request: web.Request) -> dict[str, Any] | None:
        return self.models.get(request.match_info["model"])

    async def _metadata(self, request: web.Request) -> web.Response:
        metadata = self._known(request)
        if metadata is None:
            name = request.match_info["model"]
            return web.json_response({"error": f"model '{name}' not found"}, status=404)
        return web.json_response(metadata)

    async def _ready(self, request: web.Request) -> web.Response:
        self.probes += 1
        if self.ready_status == HANG:
            await self.release.wait()
        status = int(self.ready_status)
        return web.json_response({"ready": status == 200}, status=status)

    async def _infer(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.received.append(Received(request.path, headers, body))
        step = self.script.popleft() if self.script else None
        if step == HANG:
            await self.release.wait()
            return web.Response(status=503)
        if isinstance(step, Reply):
            return web.Response(status=step.status, body=step.body, headers=step.headers)
        length = headers.get("inference-header-content-length")
        call = decode_infer_request(
            body, int(length) if length else None, request.match_info["model"], self.model_version
        )
        outputs = [Tensor(f"out-{t.name}", t.datatype, t.shape, t.data) for t in call.inputs]
        answer = InferenceResponse(call.model, outputs, self.model_version, call.id)
        payload, content_type, json_length = encode_infer_response(answer, call)
        out_headers = {"content-type": content_type.decode()}
        if json_length is not None:
            out_headers["inference-header-content-length"] = str(json_length)
        return web.Response(body=payload, headers=out_headers)


#: `await start_stand_in(port=0)`: another started stand-in, stopped after the test.
StartStandIn = Callable[..., Awaitable[StandIn]]


@pytest.fixture
async def start_stand_in() -> AsyncIterator[StartStandIn]:
    started: list[StandIn] = []

    async def start(port: int = 0) -> StandIn:
        server = await StandIn().start(port)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            await server.stop()


@pytest.fixture
async def stand_in(start_stand_in: StartStandIn) -> StandIn:
    """A started stand-in OIP server; stopped (hung calls released) after the test."""
    return await start_stand_in()


@pytest.fixture
def unused_port() -> int:
    """A port on 127.0.0.1 nothing listens on: connections to it are refused."""
    return closed_port()
