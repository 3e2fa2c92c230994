"""Tests of the LLM call types: requests, usage and its estimate, streamed answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from seawall.errors import BadResponseError
from seawall.types import ChunkStream, LlmKind, LlmRequest, LlmResponse, Usage, estimate_tokens


def test_usage_totals_and_openai_shape() -> None:
    usage = Usage(10, 5)
    assert usage.total_tokens == 15
    assert usage.to_dict() == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    assert not usage.estimated


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}, Usage(3, 4)),
        ({"prompt_tokens": 3}, Usage(3, 0)),  # embeddings report no completion tokens
        ({"prompt_tokens": 3, "completion_tokens": None}, Usage(3, 0)),
        ({"prompt_tokens": None, "completion_tokens": 4}, None),
        ({"prompt_tokens": "3"}, None),
        ({"prompt_tokens": 3, "completion_tokens": 4.5}, None),
        ({}, None),
        (None, None),
        ([3, 4], None),
    ],
)
def test_usage_from_openai(value: Any, expected: Usage | None) -> None:
    assert Usage.from_openai(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 0),
        ("", 0),
        ("a", 1),
        ("abcd", 1),
        ("abcde", 2),
        ("x" * 400, 100),
        (["abcd", "abcde"], 3),
        ({"role": "user", "content": "abcd"}, 5),  # 4 for the message's framing
        ({"role": "user", "content": [{"type": "text", "text": "abcd"}]}, 9),
        ({"role": "assistant", "name": "a long name is not content"}, 4),
        ([1, 2, 3, 4, 5], 5),  # token ids
        ([[1, 2], [3]], 3),
        (True, 0),
        (3.5, 0),
    ],
)
def test_estimate_tokens(value: Any, expected: int) -> None:
    assert estimate_tokens(value) == expected


def test_llm_kind_values() -> None:
    assert [kind.value for kind in LlmKind] == ["chat", "completion", "embedding"]


@pytest.mark.parametrize(
    ("body", "stream"), [({"stream": True}, True), ({"stream": "true"}, False), ({}, False)]
)
def test_request_stream(body: dict[str, Any], stream: bool) -> None:
    assert LlmRequest(LlmKind.CHAT, "m", body).stream is stream


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"max_tokens": 10}, 10),
        ({"max_completion_tokens": 20, "max_tokens": 10}, 20),
        ({"max_tokens": True}, None),
        ({"max_tokens": "10"}, None),
        ({}, None),
    ],
)
def test_request_max_tokens(body: dict[str, Any], expected: int | None) -> None:
    assert LlmRequest(LlmKind.CHAT, "m", body).max_tokens == expected


@pytest.mark.parametrize(
    ("kind", "prompt"),
    [(LlmKind.CHAT, "the messages"), (LlmKind.COMPLETION, "the prompt"), (LlmKind.EMBEDDING, "in")],
)
def test_request_prompt_is_what_the_kind_reads(kind: LlmKind, prompt: str) -> None:
    body = {"messages": "the messages", "prompt": "the prompt", "input": "in"}
    request = LlmRequest(kind, "m", body)
    assert request.prompt() == prompt
    assert request.estimated_prompt_tokens() == estimate_tokens(prompt)


def test_body_for_renames_the_model_without_touching_the_clients_body() -> None:
    request = LlmRequest(LlmKind.CHAT, "group", {"model": "group", "temperature": 0})
    assert request.body_for("llama-3") == {"model": "llama-3", "temperature": 0}
    assert request.body == {"model": "group", "temperature": 0}


def test_response_defaults() -> None:
    response = LlmResponse("m")
    assert (response.body, response.first, response.stream) == (None, None, None)
    assert response.usage == Usage()
    assert response.served_by == ""


# ChunkStream.


def delta(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}}]}


class Source:
    """Chunks to stream, an optional error at the end, and a record of closes."""

    def __init__(self, *chunks: dict[str, Any], error: Exception | None = None) -> None:
        self.chunks = list(chunks)
        self.error = error
        self.closes = 0

    async def iterate(self) -> AsyncIterator[dict[str, Any]]:
        for chunk in self.chunks:
            await asyncio.sleep(0)
            if self.closes:  # like an upstream connection: nothing more once closed
                return
            yield chunk
        if self.error is not None:
            raise self.error

    async def close(self) -> None:
        self.closes += 1


def stream(source: Source, prompt_tokens: int = 7) -> ChunkStream:
    return ChunkStream(source.iterate(), prompt_tokens=prompt_tokens, close=source.close)


async def test_the_usage_is_estimated_from_the_text_streamed() -> None:
    source = Source(delta("abcd"), {"choices": [{"text": "efgh"}]}, delta("i"))
    chunks = stream(source)
    chunks.count(delta("jkl"))  # the first chunk, held by the pipeline
    assert [c async for c in chunks] == source.chunks
    assert chunks.usage == Usage(7, 3, estimated=True)  # ceil(12 characters / 4)


async def test_a_reported_usage_replaces_the_estimate() -> None:
    reported = {"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 9}}
    chunks = stream(Source(delta("abcdefgh"), reported))
    held = chunks.usage  # as LlmResponse.usage holds it
    assert len([c async for c in chunks]) == 2
    assert chunks.usage == Usage(30, 9)
    assert held == Usage(30, 9)


async def test_on_done_runs_once_with_the_usage_and_close_is_called_once() -> None:
    source = Source(delta("abcd"))
    chunks = stream(source)
    done: list[Usage] = []
    chunks.on_done.append(done.append)
    assert [c async for c in chunks] == [delta("abcd")]
    await chunks.aclose()
    assert done == [Usage(7, 1, estimated=True)]
    assert source.closes == 1


async def test_an_error_mid_stream_closes_and_propagates() -> None:
    source = Source(delta("a"), error=BadResponseError("broken"))
    chunks = stream(source)
    done: list[Usage] = []
    chunks.on_done.append(done.append)
    received: list[dict[str, Any]] = []
    with pytest.raises(BadResponseError, match="broken"):
        await collect(chunks, received)
    assert received == [delta("a")]
    assert source.closes == 1
    assert done == [Usage(7, 1, estimated=True)]


async def collect(chunks: ChunkStream, into: list[dict[str, Any]]) -> None:
    async for chunk in chunks:
        into.append(chunk)


async def test_a_stream_read_in_two_loops_continues_where_it_stopped() -> None:
    source = Source(delta("a"), delta("b"), delta("c"))
    chunks = stream(source)
    async for chunk in chunks:
        assert chunk == delta("a")
        break
    await asyncio.sleep(0)  # were the first loop's iterator collected, it must not close
    assert [c async for c in chunks] == [delta("b"), delta("c")]
    assert source.closes == 1


async def test_closing_early_stops_iteration_and_accepts_a_plain_function() -> None:
    closed: list[bool] = []
    chunks = ChunkStream(
        Source(delta("a"), delta("b")).iterate(), prompt_tokens=0, close=lambda: closed.append(True)
    )
    assert await anext(chunks) == delta("a")
    await chunks.aclose()
    assert [c async for c in chunks] == []
    assert closed == [True]


async def test_a_stream_without_close_ends_cleanly() -> None:
    chunks = ChunkStream(Source(delta("a")).iterate(), prompt_tokens=1)
    assert [c async for c in chunks] == [delta("a")]
    await chunks.aclose()
