"""ASGI plumbing: bounded and decompressed request bodies, headers, complete responses."""

from __future__ import annotations

import gzip
import zlib

import numpy as np
import orjson
import pytest

from seawall.errors import InvalidInputError, PayloadTooLargeError
from seawall.gateway.asgi import (
    ClientDisconnectedError,
    Message,
    Receive,
    json_body,
    read_body,
    request_headers,
    send_response,
)


class Inbox:
    """A `receive` that hands out `messages` in order and counts how many were taken."""

    def __init__(self, *messages: Message) -> None:
        self._messages = list(messages)
        self.taken = 0

    async def __call__(self) -> Message:
        if self.taken == len(self._messages):
            raise AssertionError("read past the last message")
        self.taken += 1
        return self._messages[self.taken - 1]


def _chunks(*chunks: bytes) -> Inbox:
    return Inbox(
        *(
            {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
            for i, chunk in enumerate(chunks)
        )
    )


async def _read(receive: Receive, limit: int = 1000, **headers: str) -> bytes:
    return await read_body(receive, {k.replace("_", "-"): v for k, v in headers.items()}, limit)


# --- size limits -----------------------------------------------------------------------------


async def test_a_single_chunk_body_is_returned() -> None:
    assert await _read(_chunks(b'{"a": 1}')) == b'{"a": 1}'


async def test_chunks_are_joined_in_order() -> None:
    assert await _read(_chunks(b"ab", b"", b"cd", b"e")) == b"abcde"


async def test_a_message_without_body_is_an_empty_body() -> None:
    assert await _read(Inbox({"type": "http.request"})) == b""


async def test_declared_length_over_the_limit_is_refused_before_reading() -> None:
    inbox = _chunks(b"x" * 10)
    with pytest.raises(PayloadTooLargeError) as info:
        await _read(inbox, limit=100, content_length="101")
    assert inbox.taken == 0
    assert info.value.limit_bytes == 100
    assert info.value.message == "body: larger than the limit of 100 bytes"


async def test_declared_length_at_the_limit_is_read() -> None:
    assert await _read(_chunks(b"x" * 100), limit=100, content_length="100") == b"x" * 100


async def test_streamed_chunks_over_the_limit_are_refused_as_soon_as_they_pass_it() -> None:
    inbox = _chunks(b"x" * 40, b"x" * 40, b"x" * 40, b"x" * 40)
    with pytest.raises(PayloadTooLargeError):
        await _read(inbox, limit=100)
    assert inbox.taken == 3  # the fourth chunk is never read


async def test_a_lying_content_length_does_not_lift_the_limit() -> None:
    with pytest.raises(PayloadTooLargeError):
        await _read(_chunks(b"x" * 60, b"x" * 60), limit=100, content_length="5")


@pytest.mark.parametrize("declared", ["abc", "-5", "\u00b2", ""])
async def test_an_unusable_content_length_is_ignored(declared: str) -> None:
    assert await _read(_chunks(b"body"), limit=100, content_length=declared) == b"body"


async def test_a_disconnect_raises_client_disconnected() -> None:
    inbox = Inbox(
        {"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.disconnect"}
    )
    with pytest.raises(ClientDisconnectedError):
        await _read(inbox)


# --- decompression ---------------------------------------------------------------------------

PAYLOAD = orjson.dumps({"inputs": [{"name": "x", "data": list(range(50))}]})


@pytest.mark.parametrize(
    ("encoding", "compressed"),
    [
        ("gzip", gzip.compress(PAYLOAD)),
        ("x-gzip", gzip.compress(PAYLOAD)),
        ("deflate", zlib.compress(PAYLOAD)),
        (" GZip ", gzip.compress(PAYLOAD)),
        ("identity", PAYLOAD),
        ("", PAYLOAD),
    ],
)
async def test_bodies_are_decompressed(encoding: str, compressed: bytes) -> None:
    body = await _read(_chunks(compressed[:10], compressed[10:]), content_encoding=encoding)
    assert body == PAYLOAD


async def test_the_limit_applies_to_the_compressed_size_too() -> None:
    compressed = gzip.compress(PAYLOAD)
    with pytest.raises(PayloadTooLargeError):
        await _read(_chunks(compressed), limit=len(compressed) - 1, content_encoding="gzip")


async def test_a_body_that_inflates_to_exactly_the_limit_is_accepted() -> None:
    body = await _read(_chunks(gzip.compress(PAYLOAD)), limit=len(PAYLOAD), content_encoding="gzip")
    assert body == PAYLOAD


async def test_a_gzip_bomb_is_refused_without_inflating_it() -> None:
    bomb = gzip.compress(b"\0" * 5_000_000, compresslevel=9)
    assert len(bomb) < 10_000
    with pytest.raises(PayloadTooLargeError) as info:
        await _read(_chunks(bomb), limit=100_000, content_encoding="gzip")
    assert info.value.limit_bytes == 100_000


async def test_one_byte_over_the_limit_after_inflating_is_refused() -> None:
    with pytest.raises(PayloadTooLargeError):
        await _read(
            _chunks(gzip.compress(PAYLOAD)), limit=len(PAYLOAD) - 1, content_encoding="gzip"
        )


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_truncated_data_is_400(encoding: str) -> None:
    compressed = gzip.compress(PAYLOAD) if encoding == "gzip" else zlib.compress(PAYLOAD)
    with pytest.raises(InvalidInputError) as info:
        await _read(_chunks(compressed[: len(compressed) // 2]), content_encoding=encoding)
    assert (info.value.field, info.value.reason) == ("body", f"truncated {encoding} data")


async def test_an_empty_gzip_body_is_truncated() -> None:
    with pytest.raises(InvalidInputError) as info:
        await _read(_chunks(b""), content_encoding="gzip")
    assert info.value.message == "body: truncated gzip data"


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_corrupt_data_is_400(encoding: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        await _read(_chunks(b"this is not compressed at all"), content_encoding=encoding)
    assert info.value.field == "body"
    assert info.value.reason.startswith(f"cannot decompress {encoding} data: ")


async def test_an_unknown_encoding_is_400() -> None:
    with pytest.raises(InvalidInputError) as info:
        await _read(_chunks(b"x"), content_encoding="br")
    assert info.value.message == (
        "content-encoding: 'br' is not supported (gzip, deflate or identity)"
    )


# --- headers and responses -------------------------------------------------------------------


def test_request_headers_decode_latin1_and_keep_the_last_repeated_value() -> None:
    scope = {
        "headers": [
            (b"x-request-id", b"first"),
            (b"content-type", b"application/json"),
            (b"x-request-id", b"second"),
            (b"x-note", b"caf\xe9"),
        ]
    }
    assert request_headers(scope) == {
        "x-request-id": "second",
        "content-type": "application/json",
        "x-note": "café",
    }


def test_json_body_serialises_numpy_arrays() -> None:
    document = {"data": np.array([[1, 2], [3, 4]], dtype=np.int32), "ok": True}
    assert json_body(document) == b'{"data":[[1,2],[3,4]],"ok":true}'


async def test_send_response_sends_start_then_the_whole_body() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await send_response(send, 201, b"hello", content_type=b"text/plain")
    assert sent == [
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")],
        },
        {"type": "http.response.body", "body": b"hello"},
    ]


async def test_send_response_defaults_to_json_and_appends_extra_headers() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    body = b'{"error":"x"}'
    await send_response(send, 503, body, headers=[(b"retry-after", b"2"), (b"x-a", b"b")])
    assert sent[0]["status"] == 503
    assert sent[0]["headers"] == [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"2"),
        (b"x-a", b"b"),
    ]
    assert sent[1] == {"type": "http.response.body", "body": body}


async def test_data_after_the_end_of_the_gzip_stream_is_refused() -> None:
    # A second gzip member (or junk) after the first would otherwise be dropped silently.
    body = gzip.compress(PAYLOAD) + gzip.compress(b"more")
    with pytest.raises(InvalidInputError) as info:
        await _read(_chunks(body), content_encoding="gzip")
    assert info.value.field == "body"
    assert "after the end of the gzip data" in info.value.reason
