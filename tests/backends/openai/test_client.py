"""Tests of `ProviderClient`: paths, JSON calls and first-chunk-first streams on a real server."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from seawall.backends.http import HttpUpstream
from seawall.backends.openai.client import ProviderClient, StreamLimits, api_path
from seawall.backends.openai.provider import OpenAiChunkDecoder
from seawall.clock import SystemClock
from seawall.errors import BackendTimeoutError, BackendUnavailableError, BadResponseError
from seawall.types import Usage

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.backends.openai.conftest import ScriptedServer

CUT_MAX_S = 2.0


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://h", "/v1/chat/completions"),
        ("http://h/", "/v1/chat/completions"),
        ("http://h/v1", "/chat/completions"),
        ("http://h/v1/", "/chat/completions"),
        ("http://h/openai/v1", "/chat/completions"),
        ("http://h/v10", "/v1/chat/completions"),
        ("http://h/api", "/v1/chat/completions"),
    ],
)
def test_api_path(base_url: str, expected: str) -> None:
    assert api_path(base_url, "/v1/chat/completions") == expected


@pytest.mark.parametrize("field", ["first_token_timeout_s", "idle_timeout_s"])
@pytest.mark.parametrize("value", [0.0, -1.0])
def test_stream_limits_must_be_positive(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"^{field}: must be more than 0, got {value}$"):
        StreamLimits(**{field: value})


def test_stream_limits_default_to_none() -> None:
    assert StreamLimits() == StreamLimits(None, None)


def client(upstream: HttpUpstream, **limits: float) -> ProviderClient:
    return ProviderClient(
        upstream,
        where="dep-1",
        clock=SystemClock(),
        headers={"x-key": "k", "content-type": "application/vnd+json"},
        limits=StreamLimits(**limits),
    )


def chunk(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


async def test_post_json_sends_the_headers_and_returns_the_object(
    server: ScriptedServer, upstream: HttpUpstream
) -> None:
    server.script(server.json({"ok": True}))
    answer = await client(upstream).post_json(
        "/v1/x", {"a": 1}, deadline=None, headers={"x-call": "c"}
    )
    assert answer == {"ok": True}
    (seen,) = server.seen
    assert (seen.path, seen.body) == ("/v1/x", {"a": 1})
    assert seen.headers["x-key"] == "k"
    assert seen.headers["x-call"] == "c"
    assert seen.headers["content-type"] == "application/vnd+json"  # the deployment's overrides


async def test_post_json_errors_name_the_deployment(
    server: ScriptedServer, upstream: HttpUpstream
) -> None:
    server.script(server.json({"error": {"message": "down"}}, status=503))
    with pytest.raises(BackendUnavailableError, match=r"^dep-1 answered 503: down$"):
        await client(upstream).post_json("/v1/x", {}, deadline=None)


async def test_a_stream_returns_its_first_chunk_counted_in_the_usage(
    server: ScriptedServer, upstream: HttpUpstream
) -> None:
    server.script(server.sse([server.data(chunk("abcdefgh")), b"data: [DONE]\n\n"]))
    first, rest = await client(upstream).stream(
        "/v1/s", {"b": 2}, OpenAiChunkDecoder("dep-1"), deadline=None, prompt_tokens=7
    )
    assert first == chunk("abcdefgh")
    assert rest.usage == Usage(7, 2, estimated=True)
    assert [c async for c in rest] == []
    assert server.seen[0].headers["accept"] == "text/event-stream"


async def test_a_stream_with_no_chunk_before_done_is_a_bad_response(
    server: ScriptedServer, upstream: HttpUpstream
) -> None:
    server.script(server.sse([b": hi\n\n", b"data: [DONE]\n\n"]))
    with pytest.raises(BadResponseError, match=r"^dep-1: the stream ended before its first chunk"):
        await client(upstream).stream(
            "/v1/s", {}, OpenAiChunkDecoder("dep-1"), deadline=None, prompt_tokens=0
        )


@pytest.mark.parametrize(
    ("ttft_s", "deadline_in_s", "message"),
    [
        (0.2, 30.0, r"no chunk within 200 ms \(time to first token\)"),
        (30.0, 0.2, r"no chunk within the request's deadline \(first chunk\)"),
        (None, 0.2, r"no chunk within the request's deadline \(first chunk\)"),
    ],
)
async def test_the_first_chunk_waits_for_the_sooner_of_ttft_and_deadline(
    server: ScriptedServer,
    upstream: HttpUpstream,
    ttft_s: float | None,
    deadline_in_s: float,
    message: str,
) -> None:
    server.script(server.sse([b": keep-alive\n\n"], then="hang"))
    limits = {} if ttft_s is None else {"first_token_timeout_s": ttft_s}
    start = time.monotonic()
    with pytest.raises(BackendTimeoutError, match=f"^dep-1: {message}"):
        await client(upstream, **limits).stream(
            "/v1/s",
            {},
            OpenAiChunkDecoder("dep-1"),
            deadline=start + deadline_in_s,
            prompt_tokens=0,
        )
    assert 0.18 <= time.monotonic() - start < CUT_MAX_S
