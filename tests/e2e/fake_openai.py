"""A scripted OpenAI-compatible upstream for the e2e tests, run as a process of its own.

    python tests/e2e/fake_openai.py --name primary [--port P] [--port-file FILE] [--mode MODE]

It speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies, chunked responses) on a bare
`asyncio.Protocol`, so it sees every connection come and go. It answers

    POST /v1/chat/completions, /v1/completions    JSON, or SSE when the body says "stream": true
    POST /v1/embeddings                            JSON (float or base64 vectors)
    GET  /v1/models                                the one model it serves

The answer's text is `text(name, chunks)`: `"<name>:0 <name>:1 ..."`, one piece per stream chunk.
How the model calls go is the current script; every field has a default (see `Script`):

    mode          ok | fail500 | 429 | hang (read the request, never send a byte)
                  | stall_first (stream: headers, then silence; JSON: headers, then silence)
                  | ping (stream: headers, then SSE comments only; JSON: as stall_first)
                  | stall_mid (`after_chunks` chunks, then silence; JSON: half the body)
                  | drop (close abruptly after `after_chunks` chunks; JSON: before any byte)
    chunks        content pieces in an answer          interval_ms  pause between chunks
    after_chunks  chunks before stall_mid or drop      retry_after  Retry-After of a 429
    stall_ms      how long a stall lasts               fail_next    the next N calls get
                                                                    `fail_status` first

Admin routes (their connections are not counted, and close after each answer):

    GET  /admin/stats    {"open", "busy", "connections", "disconnects", "requests": {path: n},
                          "calls", "last": {"path", "model", "authorization", "body"}, "script"}
    POST /admin/script   replace the script (JSON: any `Script` fields; the rest are defaults)
    POST /admin/reset    zero the counters (open connections stay counted)

`disconnects` counts connections the peer closed while an answer was still owed or being sent:
a gateway cutting a silent upstream, or giving up a stream its client left. A call's body may
carry `"x_fake": {...}` to override script fields for that call alone.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import signal
import struct
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests"}
HOUR_MS = 3_600_000


@dataclass
class Script:
    """How model calls are answered."""

    mode: str = "ok"
    chunks: int = 3
    interval_ms: float = 0.0
    after_chunks: int = 1
    retry_after: str = "2"
    stall_ms: float = HOUR_MS
    fail_next: int = 0
    fail_status: int = 500


def text(name: str, chunks: int) -> str:
    """The whole answer of upstream `name` with `chunks` pieces."""
    return "".join(piece(name, i) for i in range(chunks))


def piece(name: str, i: int) -> str:
    return f"{name}:{i} "


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def keep_alive(self) -> bool:
        return self.headers.get("connection", "").lower() != "close"


class Upstream:
    """The fake provider: its script, counters, and the answers."""

    def __init__(self, name: str, script: Script) -> None:
        self.name = name
        self.script = script
        self.open: set[Connection] = set()
        self.connections = 0
        self.disconnects = 0
        self.requests: Counter[str] = Counter()
        self.calls = 0
        self.last: dict[str, Any] = {}

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "open": sum(1 for c in self.open if not c.admin),
            "busy": sum(1 for c in self.open if not c.admin and c.busy),
            "connections": self.connections,
            "disconnects": self.disconnects,
            "requests": dict(self.requests),
            "calls": self.calls,
            "last": self.last,
            "script": dataclasses.asdict(self.script),
        }

    def reset(self) -> None:
        self.connections = sum(1 for c in self.open if not c.admin)
        self.disconnects = 0
        self.requests.clear()
        self.calls = 0
        self.last = {}

    async def handle(self, request: Request, conn: Connection) -> bool:
        """Answer one request; False if the connection must close afterwards."""
        if request.path.startswith("/admin/"):
            if not conn.admin:
                conn.admin = True
                self.connections -= 1  # not one of the connections under test
            await self._admin(request, conn)
            return False
        self.requests[request.path] += 1
        if request.method == "GET" and request.path == "/v1/models":
            model = {"id": f"{self.name}-model", "object": "model", "created": 0, "owned_by": "x"}
            conn.send_json(200, {"object": "list", "data": [model]})
            return request.keep_alive
        if request.method != "POST" or request.path not in MODEL_PATHS:
            conn.send_json(404, _error(f"no route {request.method} {request.path}", None))
            return request.keep_alive
        try:
            body = json.loads(request.body)
        except json.JSONDecodeError:
            conn.send_json(400, _error("invalid JSON", "invalid_request_error"))
            return request.keep_alive
        self.calls += 1
        self.last = {
            "path": request.path,
            "model": body.get("model"),
            "authorization": request.headers.get("authorization"),
            "body": body,
        }
        script = self.script
        if isinstance(body.get("x_fake"), dict):
            script = dataclasses.replace(script, **body["x_fake"])
        if self.script.fail_next > 0:
            self.script.fail_next -= 1
            conn.send_json(script.fail_status, _error("scripted failure", "server_error"))
            return request.keep_alive
        return await self._call(request, body, script, conn)

    async def _call(
        self, request: Request, body: dict[str, Any], script: Script, conn: Connection
    ) -> bool:
        mode = script.mode
        if mode == "fail500":
            conn.send_json(500, _error("the upstream is broken", "server_error"))
            return request.keep_alive
        if mode == "429":
            headers = {"retry-after": script.retry_after}
            conn.send_json(429, _error("slow down", "rate_limit_exceeded"), headers)
            return request.keep_alive
        if mode == "hang":
            await asyncio.sleep(HOUR_MS / 1000)
            return False
        if mode == "drop" and not body.get("stream"):
            conn.abort()  # before a byte of the answer
            return False
        if request.path == "/v1/embeddings":
            conn.send_json(200, _embeddings(body, self.name))
            return request.keep_alive
        if body.get("stream"):
            await self._stream(request.path, body, script, conn)
            return mode == "ok" and request.keep_alive
        payload = json.dumps(_answer(request.path, body, self.name, script.chunks)).encode()
        if mode in ("stall_first", "ping"):
            conn.send_head(200, {"content-length": str(len(payload))}, "application/json")
            await asyncio.sleep(script.stall_ms / 1000)
            return False
        if mode == "stall_mid":
            conn.send_head(200, {"content-length": str(len(payload))}, "application/json")
            conn.write(payload[: len(payload) // 2])
            await asyncio.sleep(script.stall_ms / 1000)
            return False
        conn.send_json(200, json.loads(payload))
        return request.keep_alive

    async def _stream(
        self, path: str, body: dict[str, Any], script: Script, conn: Connection
    ) -> None:
        conn.send_head(200, {"transfer-encoding": "chunked"}, "text/event-stream")
        if script.mode == "stall_first":
            await asyncio.sleep(script.stall_ms / 1000)
            return
        if script.mode == "ping":  # keep-alive comments, never an event
            while True:
                conn.write(_chunked(b": keep-alive\n\n"))
                await asyncio.sleep(max(script.interval_ms, 50.0) / 1000)
        events = _events(path, body, self.name, script.chunks)
        if script.mode == "ok" and script.interval_ms <= 0:
            conn.write(_chunked(b"".join(events)) + b"0\r\n\r\n")  # the whole stream at once
            return
        limit = script.chunks + 3 if script.mode == "ok" else script.after_chunks
        for _, event in zip(range(limit), events, strict=False):
            conn.write(_chunked(event))
            if script.interval_ms > 0:
                await asyncio.sleep(script.interval_ms / 1000)
        if script.mode == "drop":
            await asyncio.sleep(0.05)  # the chunks reach the peer before the connection breaks
            conn.abort()
        elif script.mode == "ok":
            conn.write(b"0\r\n\r\n")
        else:  # stall_mid
            await asyncio.sleep(script.stall_ms / 1000)

    async def _admin(self, request: Request, conn: Connection) -> None:
        if request.path == "/admin/stats":
            conn.send_json(200, self.stats(), {"connection": "close"})
        elif request.path == "/admin/script" and request.method == "POST":
            self.script = Script(**json.loads(request.body or b"{}"))
            conn.send_json(200, self.stats(), {"connection": "close"})
        elif request.path == "/admin/reset" and request.method == "POST":
            self.reset()
            conn.send_json(200, self.stats(), {"connection": "close"})
        else:
            conn.send_json(404, _error("no such admin route", None), {"connection": "close"})


class Connection(asyncio.Protocol):
    """One client connection: parses requests one at a time, answers each in a task."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.admin = False
        self.transport: asyncio.Transport | None = None
        self._buffer = b""
        self._task: asyncio.Task[None] | None = None
        self._closing = False  # closed by this side, not the peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.upstream.open.add(self)
        self.upstream.connections += 1

    @property
    def busy(self) -> bool:
        """True while an answer is owed or being sent."""
        return self._task is not None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._next()

    def eof_received(self) -> bool:
        return False  # the peer is done: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.upstream.open.discard(self)
        if self._task is not None and not self._closing and not self.admin:
            self.upstream.disconnects += 1
        if self._task is not None:
            self._task.cancel()

    def _next(self) -> None:
        if self._task is not None or self._closing:
            return
        head_end = self._buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        lines = self._buffer[:head_end].decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        start = head_end + 4
        if len(self._buffer) < start + length:
            return
        body, self._buffer = self._buffer[start : start + length], self._buffer[start + length :]
        request = Request(method, target.split("?", 1)[0], headers, body)
        self._task = asyncio.get_running_loop().create_task(self._serve(request))

    async def _serve(self, request: Request) -> None:
        try:
            keep = await self.upstream.handle(request, self)
        except Exception:  # a bad script: say so in the log, and drop the connection
            traceback.print_exc()
            self.abort()
            return
        self._task = None
        if self._closing:
            return
        if not keep:
            self.close()
            return
        self._next()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send_head(self, status: int, headers: dict[str, str], content_type: str) -> None:
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}"]
        lines.append(f"content-type: {content_type}")
        lines.extend(f"{k}: {v}" for k, v in headers.items())
        self.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def send_json(self, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(document).encode()
        head = {"content-length": str(len(payload)), **(headers or {})}
        self.send_head(status, head, "application/json")
        self.write(payload)

    def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.abort()


def _error(message: str, kind: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _usage(chunks: int) -> dict[str, int]:
    return {"prompt_tokens": 7, "completion_tokens": chunks, "total_tokens": 7 + chunks}


def _answer(path: str, body: dict[str, Any], name: str, chunks: int) -> dict[str, Any]:
    common = {"id": f"{name}-1", "created": int(time.time()), "model": body.get("model")}
    content = text(name, chunks)
    if path == "/v1/completions":
        choice = {"index": 0, "text": content, "finish_reason": "stop", "logprobs": None}
        return {**common, "object": "text_completion", "choices": [choice], "usage": _usage(chunks)}
    message = {"role": "assistant", "content": content}
    choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
    return {**common, "object": "chat.completion", "choices": [choice], "usage": _usage(chunks)}


def _events(path: str, body: dict[str, Any], name: str, chunks: int) -> Iterator[bytes]:
    """The SSE events of a streamed answer, `[DONE]` included, made as they are sent."""
    common = {"id": f"{name}-1", "created": int(time.time()), "model": body.get("model")}
    completion = path == "/v1/completions"
    kind = "text_completion" if completion else "chat.completion.chunk"
    for i in range(chunks):
        choice: dict[str, Any]
        if completion:
            choice = {"index": 0, "text": piece(name, i), "finish_reason": None}
        else:
            delta = {"content": piece(name, i)} | ({"role": "assistant"} if i == 0 else {})
            choice = {"index": 0, "delta": delta, "finish_reason": None}
        yield _event({**common, "object": kind, "choices": [choice]})
    if completion:
        choice = {"index": 0, "text": "", "finish_reason": "stop"}
    else:
        choice = {"index": 0, "delta": {}, "finish_reason": "stop"}
    yield _event({**common, "object": kind, "choices": [choice]})
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        yield _event({**common, "object": kind, "choices": [], "usage": _usage(chunks)})
    yield b"data: [DONE]\n\n"


def _event(document: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(document).encode() + b"\n\n"


def _embeddings(body: dict[str, Any], name: str) -> dict[str, Any]:
    inputs = body.get("input")
    items = inputs if isinstance(inputs, list) else [inputs]
    data = []
    for i, item in enumerate(items):
        vector = [float(len(str(item))), 0.5, -0.25]
        embedding: Any = vector
        if body.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    return {"object": "list", "data": data, "model": body.get("model"), "usage": _usage(0)}


def _chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _announce(path: Path, port: int) -> None:
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(str(port))
    partial.rename(path)  # atomic: the reader never sees a half-written port


async def serve(args: argparse.Namespace) -> None:
    upstream = Upstream(args.name, Script(mode=args.mode))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(upstream), "127.0.0.1", args.port)
    port = server.sockets[0].getsockname()[1]
    if args.port_file:
        _announce(Path(args.port_file), port)
    print(f"fake-openai {args.name} listening on 127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="fake")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", default="")
    parser.add_argument("--mode", default="ok")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
