"""Server-Sent Events: an incremental parser for upstream streams and an encoder for clients.

The parser follows the WHATWG HTML "event stream interpretation" rules: lines end in CRLF, LF
or CR (a CRLF split across two chunks is one line end); `data` lines accumulate, joined by LF;
a blank line dispatches the event; lines starting with `:` are comments (keep-alives) and are
dropped; an event with no `data` line is not dispatched; a leading BOM is skipped; a partial
event left when the stream ends is discarded. Bytes may arrive split anywhere, even inside a
multi-byte UTF-8 character, and parse the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from seawall.errors import BadResponseError

__all__ = [
    "DONE",
    "ENCODED_DONE",
    "SseEvent",
    "SseParser",
    "encode_data",
    "encode_error",
    "encode_event",
]

#: The data of the last event of an OpenAI stream.
DONE = "[DONE]"
#: That event, encoded.
ENCODED_DONE = b"data: [DONE]\n\n"
#: Largest event (its data and any unfinished line) the parser holds before giving up.
DEFAULT_MAX_EVENT_BYTES = 8 * 1024 * 1024

_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event: its type (`message` unless an `event:` line set one) and data."""

    data: str
    event: str = "message"
    #: The last event id seen so far in the stream (it carries over, as in browsers).
    id: str | None = None
    #: A `retry:` reconnection time in milliseconds, when this event set one.
    retry_ms: int | None = None

    @property
    def done(self) -> bool:
        """True for OpenAI's end-of-stream marker, `data: [DONE]`."""
        return self.data.strip() == DONE

    def json(self) -> Any:
        """The data parsed as JSON; `BadResponseError` if it is not JSON."""
        try:
            return orjson.loads(self.data)
        except orjson.JSONDecodeError as exc:
            raise BadResponseError(
                f"malformed JSON in a stream event ({exc}): {self.data[:200]!r}"
            ) from None


class SseParser:
    """Turns the bytes of an event stream, in chunks split anywhere, into `SseEvent`s."""

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max_event_bytes = max_event_bytes
        self._buffer = b""
        self._skip_lf = False  # the last chunk ended in CR: a LF opening the next one pairs with it
        self._first_line = True
        self._data: list[str] = []
        self._data_bytes = 0
        self._event = ""
        self._id: str | None = None
        self._retry_ms: int | None = None
        #: Comment lines seen (keep-alives), for whoever wants to know the upstream is alive.
        self.comments = 0

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events that `chunk` completes, in order."""
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        buffer = self._buffer + chunk if self._buffer else chunk
        events: list[SseEvent] = []
        start = 0
        for match in _LINE_END.finditer(buffer):
            line = buffer[start : match.start()]
            start = match.end()
            if start == len(buffer) and match.group() == b"\r":
                self._skip_lf = True
            event = self._line(line.decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
        self._buffer = buffer[start:]
        if len(self._buffer) + self._data_bytes > self._max_event_bytes:
            raise BadResponseError(f"a stream event is larger than {self._max_event_bytes} bytes")
        return events

    def _line(self, line: str) -> SseEvent | None:
        if self._first_line:
            self._first_line = False
            line = line.removeprefix(_BOM)
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_bytes += len(value) + 1
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry_ms = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        data, event, retry_ms = self._data, self._event, self._retry_ms
        self._data, self._data_bytes, self._event, self._retry_ms = [], 0, "", None
        if not data:
            return None
        return SseEvent("\n".join(data), event or "message", self._id, retry_ms)


def encode_event(data: Any, *, event: str | None = None, id: str | None = None) -> bytes:
    """One event: `data` as is if it is a string (one `data:` line per line), else as JSON."""
    text = data if isinstance(data, str) else orjson.dumps(data).decode()
    head = ""
    if event is not None:
        head += f"event: {_one_line('event', event)}\n"
    if id is not None:
        head += f"id: {_one_line('id', id)}\n"
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return (head + "".join(f"data: {line}\n" for line in lines) + "\n").encode()


def encode_data(payload: Any) -> bytes:
    """`data: <json>` and the blank line: one chunk of an OpenAI stream."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def encode_error(
    message: str, *, error_type: str = "server_error", code: str | None = None
) -> bytes:
    """An `error` event with an OpenAI error object, which the OpenAI SDKs raise as `APIError`."""
    error = {"message": message, "type": error_type, "param": None, "code": code}
    return b"event: error\ndata: " + orjson.dumps({"error": error}) + b"\n\n"


def _one_line(field: str, value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError(f"{field}: an SSE {field} cannot contain a line break")
    return value
