"""Tests of `ChunkReader` on an in-memory body and a `FakeClock`: limits, ends, closing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from seawall.backends.openai.sse import SseEvent
from seawall.backends.openai.stream import (
    DRAIN_TIMEOUT_S,
    ChunkReader,
    Emit,
    stream_error,
    wants_usage_chunk,
)
from seawall.clock import FakeClock
from seawall.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    BadResponseError,
)


class Body:
    """An upstream body fed by the test: bytes, None (the end) or an exception to raise."""

    def __init__(self, *items: bytes | BaseException | None) -> None:
        self.queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        for item in items:
            self.queue.put_nowait(item)
        self.closed = False
        self.ended = False  # the body ran to its end, as opposed to being closed mid-way

    async def iterate(self) -> AsyncIterator[bytes]:
        try:
            while True:
                item = await self.queue.get()
                if item is None:
                    self.ended = True
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.closed = True


class EchoDecoder:
    """Each event's JSON is a chunk; `{"hidden": ...}` is observed; `[DONE]` finishes."""

    def __init__(self) -> None:
        self.finished = False
        self.complete = False

    def decode(self, event: SseEvent, emit: Emit, observe: Emit) -> None:
        if event.done:
            self.finished = True
            return
        chunk = event.json()
        if "fail" in chunk:
            raise BadResponseError(chunk["fail"])
        self.complete = self.complete or "finish" in chunk
        (observe if "hidden" in chunk else emit)(chunk)


def event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


DONE = b"data: [DONE]\n\n"


def reader(body: Body, clock: FakeClock, idle_timeout_s: float | None = None) -> ChunkReader:
    return ChunkReader(
        body.iterate(), EchoDecoder(), where="up", clock=clock, idle_timeout_s=idle_timeout_s
    )


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_chunks_come_in_order_and_the_stream_ends_at_done() -> None:
    data = event({"n": 1}) + event({"n": 2}) + DONE
    body = Body(data[:5], data[5:31], data[31:], None)
    chunks = reader(body, FakeClock())
    assert [chunk async for chunk in chunks] == [{"n": 1}, {"n": 2}]
    assert body.ended
    assert chunks.closed


async def test_the_rest_of_the_body_is_drained_after_done_for_reuse() -> None:
    body = Body(event({"n": 1}) + DONE, b": trailing comment\n\n", None)
    chunks = reader(body, FakeClock())
    assert await chunks.read(None, "") == {"n": 1}
    assert body.ended  # read to its end, not closed mid-way: the connection can be reused
    assert await chunks.read(None, "") is None


async def test_a_body_that_lingers_after_done_is_closed_after_the_drain_limit() -> None:
    clock = FakeClock()
    body = Body(event({"n": 1}) + DONE)
    chunks = reader(body, clock)
    task = asyncio.create_task(chunks.read(None, ""))
    await settle()
    clock.advance(DRAIN_TIMEOUT_S * 0.9)
    await settle()
    assert not task.done()
    clock.advance(DRAIN_TIMEOUT_S * 0.2)
    assert await task == {"n": 1}
    assert body.closed
    assert not body.ended


async def test_no_first_chunk_within_the_limit_times_out_and_closes_the_body() -> None:
    clock = FakeClock()
    body = Body(b": keep-alive\n\n")  # a comment is not a chunk
    chunks = reader(body, clock)
    task = asyncio.create_task(chunks.read(0.2, "200 ms (time to first token)"))
    await settle()
    clock.advance(0.15)
    body.queue.put_nowait(b": still alive\n\n")
    await settle()
    assert not task.done()
    clock.advance(0.06)
    with pytest.raises(BackendTimeoutError, match=r"^up: no chunk within 200 ms \(time to first"):
        await task
    assert body.closed
    assert chunks.closed
    assert await chunks.read(0.2, "") is None


async def test_the_idle_limit_applies_between_chunks() -> None:
    clock = FakeClock()
    body = Body(event({"n": 1}))
    chunks = reader(body, clock, idle_timeout_s=0.5)
    assert await anext(chunks) == {"n": 1}
    task = asyncio.create_task(anext(chunks))
    await settle()
    clock.advance(0.4)
    body.queue.put_nowait(event({"n": 2}))  # a chunk restarts the idle clock
    assert await task == {"n": 2}
    task = asyncio.create_task(anext(chunks))
    await settle()
    clock.advance(0.49)
    await settle()
    assert not task.done()
    clock.advance(0.02)
    with pytest.raises(BackendTimeoutError, match=r"no chunk within 500 ms \(idle mid-stream\)"):
        await task
    assert body.closed


async def test_a_body_ending_before_the_answer_is_complete_is_a_bad_response() -> None:
    chunks = reader(Body(event({"n": 1}), None), FakeClock())
    assert await anext(chunks) == {"n": 1}
    with pytest.raises(BadResponseError, match="ended before the answer was complete"):
        await anext(chunks)


async def test_a_body_ending_after_a_finish_reason_ends_the_stream_cleanly() -> None:
    chunks = reader(Body(event({"finish": "stop"}), None), FakeClock())
    assert [chunk async for chunk in chunks] == [{"finish": "stop"}]


async def test_a_decoder_error_raises_and_closes_the_body() -> None:
    body = Body(event({"n": 1}) + event({"fail": "broken"}))
    chunks = reader(body, FakeClock())
    assert await anext(chunks) == {"n": 1}
    with pytest.raises(BadResponseError, match="broken"):
        await anext(chunks)
    assert body.closed
    assert not body.ended


async def test_a_body_error_propagates() -> None:
    chunks = reader(Body(BackendUnavailableError("connection lost")), FakeClock())
    with pytest.raises(BackendUnavailableError, match="connection lost"):
        await chunks.read(None, "")
    assert chunks.closed


async def test_observed_chunks_go_to_observe_not_to_the_reader() -> None:
    chunks = reader(Body(event({"n": 1}) + event({"hidden": 5}) + DONE, None), FakeClock())
    seen: list[dict[str, Any]] = []
    chunks.observe = seen.append
    assert [chunk async for chunk in chunks] == [{"n": 1}]
    assert seen == [{"hidden": 5}]


async def test_aclose_from_another_task_ends_a_waiting_read_quietly() -> None:
    body = Body(event({"n": 1}))
    chunks = reader(body, FakeClock())
    assert await anext(chunks) == {"n": 1}
    consumer = asyncio.create_task(anext(chunks, None))
    await settle()
    await chunks.aclose()
    assert body.closed
    assert not body.ended
    assert await consumer is None  # the stream ended; the consumer was not cancelled
    assert not consumer.cancelled()


async def test_cancelling_the_reader_closes_the_body_and_propagates() -> None:
    body = Body()
    chunks = reader(body, FakeClock())
    task = asyncio.create_task(chunks.read(None, ""))
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert body.closed


async def test_aclose_before_reading_and_twice_is_harmless() -> None:
    body = Body(event({"n": 1}))
    chunks = reader(body, FakeClock())
    await chunks.aclose()
    await chunks.aclose()
    assert await chunks.read(None, "") is None


def test_an_error_event_before_the_first_chunk_means_unavailable() -> None:
    payload = {"error": {"message": "Overloaded", "type": "overloaded_error"}}
    error = stream_error("up", payload, started=False)
    assert isinstance(error, BackendUnavailableError)
    assert (
        str(error)
        == "up: the upstream sent an error instead of an answer: Overloaded (overloaded_error)"
    )


def test_an_error_event_mid_stream_is_a_bad_response() -> None:
    error = stream_error("up", {"message": "boom", "code": 500}, started=True)
    assert type(error) is BadResponseError
    assert str(error) == "up: the upstream sent an error mid-stream: boom (500)"
    assert "['odd']" in str(stream_error("up", ["odd"], started=True))


def test_wants_usage_chunk() -> None:
    assert wants_usage_chunk({"stream_options": {"include_usage": True}})
    assert not wants_usage_chunk({"stream_options": {"include_usage": False}})
    assert not wants_usage_chunk({"stream_options": "yes"})
    assert not wants_usage_chunk({})
