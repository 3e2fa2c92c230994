"""Small ASGI plumbing for the lean routes: request headers, bounded bodies, responses."""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from seawall.errors import InvalidInputError, PayloadTooLargeError

__all__ = [
    "ASGIApp",
    "ClientDisconnectedError",
    "Headers",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "json_body",
    "read_body",
    "request_headers",
    "send_response",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: Lower-cased request header names to values (the last one wins for repeated headers).
Headers = dict[str, str]

JSON = b"application/json"
_DECOMPRESSORS = {
    "gzip": 16 + zlib.MAX_WBITS,
    "x-gzip": 16 + zlib.MAX_WBITS,
    "deflate": zlib.MAX_WBITS,
}


class ClientDisconnectedError(Exception):
    """The client went away before its request body was read."""


def request_headers(scope: Scope) -> Headers:
    """The request's headers as a dict of lower-cased names (ASGI servers lower-case them)."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


async def read_body(receive: Receive, headers: Headers, limit: int) -> bytes:
    """The whole request body, decompressed, refused with 413 as soon as it exceeds `limit`."""
    declared = headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnectedError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    return _decompress(body, encoding, limit)


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    wbits = _DECOMPRESSORS.get(encoding)
    if wbits is None:
        raise InvalidInputError(
            "content-encoding", f"{encoding!r} is not supported (gzip, deflate or identity)"
        )
    decompressor = zlib.decompressobj(wbits)
    try:
        out = decompressor.decompress(body, limit + 1)  # bounded: a small bomb cannot expand
    except zlib.error as exc:
        raise InvalidInputError("body", f"cannot decompress {encoding} data: {exc}") from None
    if len(out) > limit or decompressor.unconsumed_tail:
        raise PayloadTooLargeError(limit)
    if not decompressor.eof:
        raise InvalidInputError("body", f"truncated {encoding} data")
    if decompressor.unused_data:
        raise InvalidInputError(
            "body", f"{len(decompressor.unused_data)} byte(s) after the end of the {encoding} data"
        )
    return out


def json_body(document: Any) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: bytes = JSON,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Send a complete response with Content-Type and Content-Length."""
    raw = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if headers:
        raw.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
