"""Tests of the Server-Sent Events parser and encoder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import openai
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.backends.openai.sse import (
    DONE,
    ENCODED_DONE,
    SseEvent,
    SseParser,
    encode_data,
    encode_error,
    encode_event,
)
from seawall.errors import BadResponseError

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.backends.openai.conftest import ScriptedServer


def parse(*chunks: bytes) -> list[SseEvent]:
    parser = SseParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def test_data_lines_become_one_event_per_blank_line() -> None:
    events = parse(b'data: {"a": 1}\n\ndata: two\n\n')
    assert events == [SseEvent('{"a": 1}'), SseEvent("two")]
    assert events[0].json() == {"a": 1}
    assert events[0].event == "message"


def test_multi_line_data_is_joined_by_newlines() -> None:
    assert parse(b"data: one\ndata: two\ndata:\ndata:  four\n\n") == [
        SseEvent("one\ntwo\n\n four")  # only the first space after the colon goes
    ]


def test_event_type_id_and_retry() -> None:
    events = parse(b"event: error\nid: 7\nretry: 1500\ndata: x\n\ndata: y\n\n")
    assert events == [SseEvent("x", "error", "7", 1500), SseEvent("y", "message", "7", None)]


def test_comments_and_keep_alives_are_dropped_and_counted() -> None:
    parser = SseParser()
    assert parser.feed(b": keep-alive\n\n:\n\n: ping\ndata: x\n\n") == [SseEvent("x")]
    assert parser.comments == 3


def test_an_event_without_data_is_not_dispatched() -> None:
    assert parse(b"event: ping\n\nid: 3\n\ndata: x\n\n") == [SseEvent("x", id="3")]


def test_unknown_fields_are_ignored_and_a_bare_field_name_has_an_empty_value() -> None:
    assert parse(b"foo: bar\ndata\nretry: soon\ndata: x\n\n") == [SseEvent("\nx")]


def test_cr_lf_crlf_and_mixed_line_ends() -> None:
    expected = [SseEvent("a"), SseEvent("b"), SseEvent("c")]
    assert parse(b"data: a\r\n\r\ndata: b\r\rdata: c\n\n") == expected


def test_a_crlf_split_between_chunks_is_one_line_end() -> None:
    # Were the LF a second line end, "x" would be dispatched early and "y" alone after it.
    assert parse(b"data: x\r", b"\ndata: y\r", b"\n\r", b"\n") == [SseEvent("x\ny")]


def test_a_multi_byte_character_split_between_chunks() -> None:
    encoded = "data: é漢🙂\n\n".encode()
    assert parse(*(encoded[i : i + 1] for i in range(len(encoded)))) == [SseEvent("é漢🙂")]


def test_a_leading_bom_is_skipped_once() -> None:
    bom = "\ufeff".encode()
    assert parse(bom[:1], bom[1:] + b"data: x\n\n") == [SseEvent("x")]
    # Only at the start of the stream: later, it makes the line an unknown field.
    assert parse(b"data: a\n\n\xef\xbb\xbfdata: b\n\n") == [SseEvent("a")]


def test_a_partial_event_at_the_end_is_held_not_dispatched() -> None:
    parser = SseParser()
    assert parser.feed(b"data: x\n") == []
    assert parser.feed(b"data: y") == []
    assert parser.feed(b"\n\n") == [SseEvent("x\ny")]


def test_done_marker() -> None:
    done, other = parse(b"data: [DONE]\n\ndata: [DONE]x\n\n")
    assert done.done
    assert done.data == DONE
    assert not other.done


def test_malformed_json_raises_bad_response() -> None:
    (event,) = parse(b"data: {not json\n\n")
    with pytest.raises(BadResponseError, match="malformed JSON"):
        event.json()


def test_an_event_over_the_limit_raises() -> None:
    parser = SseParser(max_event_bytes=100)
    parser.feed(b"data: " + b"x" * 60 + b"\n")
    with pytest.raises(BadResponseError, match="larger than 100 bytes"):
        parser.feed(b"data: " + b"y" * 60 + b"\n")


def test_a_line_without_end_over_the_limit_raises() -> None:
    with pytest.raises(BadResponseError, match="larger than 10 bytes"):
        SseParser(max_event_bytes=10).feed(b"data: 0123456789")


def test_encode_data_and_done() -> None:
    assert encode_data({"a": [1, "é"]}) == b'data: {"a":[1,"\xc3\xa9"]}\n\n'
    assert parse(ENCODED_DONE)[0].done


def test_encode_event_with_type_id_and_multi_line_text() -> None:
    encoded = encode_event("one\ntwo\r\nthree", event="note", id="9")
    assert encoded == b"event: note\nid: 9\ndata: one\ndata: two\ndata: three\n\n"
    assert parse(encoded) == [SseEvent("one\ntwo\nthree", "note", "9")]


def test_encode_event_refuses_a_line_break_in_the_type() -> None:
    with pytest.raises(ValueError, match="event: an SSE event cannot contain a line break"):
        encode_event("x", event="a\nb")


def test_encode_error_is_an_openai_error_event() -> None:
    (event,) = parse(encode_error("upstream broke", error_type="upstream_error", code="502"))
    assert event.event == "error"
    assert event.json() == {
        "error": {
            "message": "upstream broke",
            "type": "upstream_error",
            "param": None,
            "code": "502",
        }
    }


_line_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12
)
_event = st.tuples(
    st.sampled_from([None, "message", "error", "delta"]),
    st.lists(_line_text, min_size=1, max_size=3),
)


@st.composite
def _streams(draw: st.DrawFn) -> tuple[bytes, list[SseEvent]]:
    """A valid stream (any line ends, comments between events) and the events it holds."""
    parts, expected = [], []
    for event_type, lines in draw(st.lists(_event, max_size=6)):
        end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
        if draw(st.booleans()):
            parts.append(f": keep-alive{end}")
        if event_type is not None:
            parts.append(f"event: {event_type}{end}")
        parts.extend(f"data: {line}{end}" for line in lines)
        parts.append(end)
        expected.append(SseEvent("\n".join(lines), event_type or "message"))
    return "".join(parts).encode(), expected


@given(_streams(), st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_any_split_of_a_valid_stream_parses_identically(
    stream: tuple[bytes, list[SseEvent]], cuts: list[int]
) -> None:
    data, expected = stream
    points = sorted({min(cut, len(data)) for cut in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert parse(data) == expected
    assert parse(*chunks) == expected


@given(
    st.one_of(
        st.text(max_size=30), st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1))
    )
)
def test_encoded_events_parse_back(data: str | dict[str, int]) -> None:
    (event,) = parse(encode_event(data, event="e"))
    text = data if isinstance(data, str) else orjson.dumps(data).decode()
    assert event.data == text.replace("\r\n", "\n").replace("\r", "\n")
    assert event.event == "e"


async def test_the_openai_sdk_reads_encoded_chunks_and_raises_on_an_encoded_error(
    server: ScriptedServer,
) -> None:
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}],
    }
    error = encode_error("the upstream broke mid-stream", error_type="upstream_error")
    server.script(server.sse([encode_data(chunk), error]))
    client = openai.AsyncOpenAI(api_key="k", base_url=server.base_url + "/v1", max_retries=0)
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError, match="the upstream broke mid-stream"):
        await collect(stream, received)
    assert [c.choices[0].delta.content for c in received] == ["Hi"]
    await client.close()


async def collect(stream: AsyncIterator[Any], into: list[Any]) -> None:
    async for item in stream:
        into.append(item)
