"""`relay`: chunks out as SSE, errors as a final event, the client's departure closes the stream."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from seawall.errors import BackendTimeoutError
from seawall.gateway.asgi import Message
from seawall.gateway.openai.errors import OpenAiError
from seawall.gateway.openai.stream import CLIENT_CLOSED, relay
from seawall.types import ChunkStream, Usage


@dataclass
class Upstream:
    """A fake upstream stream: `chunks`, then `then` raised, or a stall if `hang`."""

    chunks: list[dict[str, Any]]
    then: BaseException | None = None
    hang: bool = False
    sent: int = 0
    generator_closed: bool = False
    connection_closed: int = 0
    usages: list[Usage] = field(default_factory=list)

    async def _rest(self) -> AsyncIterator[dict[str, Any]]:
        try:
            for chunk in self.chunks:
                self.sent += 1
                yield chunk
            if self.hang:
                await asyncio.Event().wait()
            if self.then is not None:
                raise self.then
        finally:
            self.generator_closed = True

    def _close(self) -> None:
        self.connection_closed += 1

    def stream(self) -> ChunkStream:
        stream = ChunkStream(self._rest(), prompt_tokens=3, close=self._close)
        stream.on_done.append(self.usages.append)
        return stream


@dataclass
class Client:
    """The ASGI side: records what is sent; `leave()` makes `receive` report a disconnect."""

    messages: list[Message] = field(default_factory=list)
    left: asyncio.Event = field(default_factory=asyncio.Event)
    got_one: asyncio.Event = field(default_factory=asyncio.Event)
    leave_after: int | None = None
    fail_sends: bool = False
    noise: int = 0

    async def receive(self) -> Message:
        if self.noise:  # messages a server might deliver before the disconnect
            self.noise -= 1
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.fail_sends:
            raise ConnectionResetError("client went away")
        self.messages.append(message)
        self.got_one.set()
        if self.leave_after is not None and len(self.messages) >= self.leave_after:
            self.left.set()

    def events(self) -> list[Any]:
        body = b"".join(m["body"] for m in self.messages)
        raw = [e.removeprefix(b"data: ") for e in body.split(b"\n\n") if e]
        return [e.decode() if e == b"[DONE]" else orjson.loads(e) for e in raw]


def _chunk(text: str) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}}],
    }


def _internal() -> OpenAiError:
    return OpenAiError.internal("rid-1")


async def test_every_chunk_is_sent_then_done_and_the_stream_is_closed() -> None:
    upstream = Upstream([_chunk("a"), _chunk("bb"), _chunk("cccc")])
    client = Client()
    before = len(asyncio.all_tasks())
    status = await relay(upstream.stream(), client.receive, client.send, internal=_internal)
    assert status == 200
    assert client.events() == [_chunk("a"), _chunk("bb"), _chunk("cccc"), "[DONE]"]
    assert [m.get("more_body") for m in client.messages] == [True, True, True, False]
    assert upstream.generator_closed
    assert upstream.connection_closed == 1
    assert upstream.usages == [Usage(3, 2, estimated=True)]  # 7 characters: 2 tokens
    assert len(asyncio.all_tasks()) == before


async def test_a_failure_mid_stream_ends_it_with_an_error_event_then_done() -> None:
    error = BackendTimeoutError("model 'chat': no chunk for 30 s")
    upstream = Upstream([_chunk("a")], then=error)
    client = Client()
    status = await relay(upstream.stream(), client.receive, client.send, internal=_internal)
    assert status == 504
    assert client.events() == [
        _chunk("a"),
        {
            "error": {
                "message": "model 'chat': no chunk for 30 s",
                "type": "server_error",
                "param": None,
                "code": "timeout",
            }
        },
        "[DONE]",
    ]
    assert client.messages[-1]["more_body"] is False
    assert (upstream.generator_closed, upstream.connection_closed) == (True, 1)


async def test_a_bug_mid_stream_is_a_logged_internal_error_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream = Upstream([_chunk("a")], then=KeyError("choices"))
    client = Client()
    with caplog.at_level(logging.ERROR, logger="seawall.gateway"):
        status = await relay(upstream.stream(), client.receive, client.send, internal=_internal)
    assert status == 500
    assert client.events()[1]["error"]["message"] == "internal error (request id rid-1)"
    assert client.events()[-1] == "[DONE]"
    assert "unexpected error in an LLM stream" in caplog.text
    assert upstream.connection_closed == 1


async def test_a_client_leaving_a_silent_stream_closes_it_at_once() -> None:
    upstream = Upstream([_chunk("a"), _chunk("b")], hang=True)
    client = Client(leave_after=2, noise=3)
    before = len(asyncio.all_tasks())
    status = await relay(upstream.stream(), client.receive, client.send, internal=_internal)
    assert status == CLIENT_CLOSED
    assert client.events() == [_chunk("a"), _chunk("b")]  # no [DONE]: nobody is listening
    assert upstream.generator_closed
    assert upstream.connection_closed == 1
    assert len(upstream.usages) == 1
    assert len(asyncio.all_tasks()) == before


async def test_a_failing_send_stops_the_stream() -> None:
    upstream = Upstream([_chunk("a"), _chunk("b")], hang=True)
    client = Client(fail_sends=True)
    status = await relay(upstream.stream(), client.receive, client.send, internal=_internal)
    assert status == CLIENT_CLOSED
    assert upstream.sent == 1  # the first failed send ended it: nothing more was read
    assert (upstream.generator_closed, upstream.connection_closed) == (True, 1)


async def test_a_failing_final_send_is_a_departed_client() -> None:
    upstream = Upstream([])
    client = Client()

    async def send(message: Message) -> None:
        raise BrokenPipeError

    status = await relay(upstream.stream(), client.receive, send, internal=_internal)
    assert status == CLIENT_CLOSED
    assert upstream.connection_closed == 1


async def test_cancelling_the_relay_cancels_both_tasks_and_closes_the_stream() -> None:
    upstream = Upstream([_chunk("a")], hang=True)
    client = Client()
    before = len(asyncio.all_tasks())
    task = asyncio.create_task(
        relay(upstream.stream(), client.receive, client.send, internal=_internal)
    )
    await client.got_one.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (upstream.generator_closed, upstream.connection_closed) == (True, 1)
    assert len(asyncio.all_tasks()) == before
