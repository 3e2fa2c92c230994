"""`ChunkReader`: the chunks of an upstream SSE stream, each read bounded in time, closable at once.

The reader sits between the upstream's body (an async iterator of bytes, `HttpUpstream.stream`)
and the `ChunkStream` the pipeline hands out. It parses the events (`SseParser`), lets a
provider's `ChunkDecoder` turn them into OpenAI chunks, and bounds each read: the first by the
time-to-first-token limit, the others by the idle limit. Comments and keep-alives do not count
as progress: an upstream that only pings is cut like a silent one.

Closing is immediate in every case: on an error or a timeout the body iterator is closed (which
drops the upstream connection), and `aclose()` called from another task while a read is waiting
cancels that read, which then ends the stream quietly (as `asyncio.timeout` does, by
`cancel()` then `uncancel()`). After the last event the rest of the body is drained briefly, so
a well-behaved upstream's connection goes back to the pool instead of being dropped.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any, Protocol

from seawall.backends.openai.sse import SseEvent, SseParser
from seawall.clock import Clock
from seawall.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    BadResponseError,
)

__all__ = [
    "DRAIN_TIMEOUT_S",
    "ChunkDecoder",
    "ChunkReader",
    "Emit",
    "stream_error",
    "wants_usage_chunk",
]

#: After the last event, how long to wait for the end of the body so the connection can be reused.
DRAIN_TIMEOUT_S = 0.25

Emit = Callable[[dict[str, Any]], None]


class ChunkDecoder(Protocol):
    """Turns the events of one provider's stream into OpenAI `chat.completion.chunk`s."""

    #: The upstream said the answer is over (`[DONE]`, `message_stop`): stop reading.
    finished: bool
    #: A finish reason arrived, so the body may end without `finished` and not be truncated.
    complete: bool

    def decode(self, event: SseEvent, emit: Emit, observe: Emit) -> None:
        """Pass each chunk for the client to `emit`, and chunks only to account for to `observe`.

        Raise a `BackendError` for an error event or a malformed one.
        """
        ...


def stream_error(where: str, payload: Any, *, started: bool) -> BackendError:
    """The error for an `error` event: before the first chunk the upstream is unavailable (fail
    over); after it the stream is broken."""
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    detail = str(payload)[:300]
    if isinstance(error, dict):
        message, kind = error.get("message"), error.get("type") or error.get("code")
        detail = f"{message}" + (f" ({kind})" if kind else "")
    if started:
        return BadResponseError(f"{where}: the upstream sent an error mid-stream: {detail}")
    return BackendUnavailableError(
        f"{where}: the upstream sent an error instead of an answer: {detail}"
    )


def wants_usage_chunk(body: Mapping[str, Any]) -> bool:
    """True if an OpenAI request asks for the usage-only chunk at the end of its stream."""
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _ignore(chunk: dict[str, Any]) -> None:
    return None


class ChunkReader:
    """The decoded chunks of one upstream stream; also an async iterator under the idle limit."""

    def __init__(
        self,
        body: AsyncIterator[bytes],
        decoder: ChunkDecoder,
        *,
        where: str,
        clock: Clock,
        idle_timeout_s: float | None = None,
    ) -> None:
        self._body = body
        self._decoder = decoder
        self._parser = SseParser()
        self._pending: deque[dict[str, Any]] = deque()
        self._where = where
        self._clock = clock
        self._idle_timeout_s = idle_timeout_s
        self._closed = False
        self._error: BackendError | None = None
        self._reader: asyncio.Task[Any] | None = None
        self._close_requested = False
        self._unwound: asyncio.Event | None = None
        #: Where chunks not for the client go (the provider's usage when the client did not ask).
        self.observe: Emit = _ignore

    @property
    def closed(self) -> bool:
        """True once the upstream body is finished with (ended, failed or closed)."""
        return self._closed

    def __aiter__(self) -> ChunkReader:
        return self

    async def __anext__(self) -> dict[str, Any]:
        limit = self._idle_timeout_s
        within = f"{limit * 1000:.0f} ms (idle mid-stream)" if limit is not None else ""
        chunk = await self.read(limit, within)
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def read(self, limit_s: float | None, within: str) -> dict[str, Any] | None:
        """The next chunk, or None at the end; `BackendTimeoutError` "no chunk within `within`"
        if none arrives within `limit_s` (None: no limit)."""
        if self._pending:
            return self._pending.popleft()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if self._closed:
            return None
        task = self._reader = asyncio.current_task()
        try:
            async with self._clock.timeout(limit_s):
                await self._fill()
            if self._decoder.finished and not self._closed:
                await self._drain()
        except TimeoutError:
            await self._close_body()
            raise BackendTimeoutError(f"{self._where}: no chunk within {within}") from None
        except asyncio.CancelledError:
            await self._close_body()
            if self._close_requested and task is not None and task.uncancel() == 0:
                return None  # aclose() from another task ended this read: the stream is over
            raise
        except BaseException:
            await self._close_body()
            raise
        finally:
            self._reader = None
            if self._unwound is not None:
                self._unwound.set()
        return self._pending.popleft() if self._pending else None

    async def _fill(self) -> None:
        decoder = self._decoder
        while not self._pending:
            data = await anext(self._body, None)
            if data is None:
                self._closed = True
                if not (decoder.finished or decoder.complete):
                    raise BadResponseError(
                        f"{self._where}: the stream ended before the answer was complete"
                    )
                return
            for event in self._parser.feed(data):
                try:
                    decoder.decode(event, self._pending.append, self.observe)
                except BackendError as exc:
                    if not self._pending:
                        raise
                    # The chunks decoded before the bad event go out first; the error after.
                    self._error = exc
                    await self._close_body()
                    return
                if decoder.finished:
                    return  # read() drains the rest, outside the read's time limit

    async def _drain(self) -> None:
        # Reading the body to its end lets aiohttp put the connection back in the pool.
        self._closed = True
        try:
            async with self._clock.timeout(DRAIN_TIMEOUT_S):
                while await anext(self._body, None) is not None:
                    pass
        except (TimeoutError, BackendError):
            pass  # the answer is whole: a body that lingers or breaks now is only dropped
        await self._close_body()

    async def _close_body(self) -> None:
        self._closed = True
        if isinstance(self._body, AsyncGenerator):
            await self._body.aclose()

    async def aclose(self) -> None:
        """Close the upstream connection now; a read waiting in another task returns None."""
        reader = self._reader
        if reader is not None and reader is not asyncio.current_task():
            self._close_requested = True
            self._unwound = asyncio.Event()
            reader.cancel()
            await self._unwound.wait()
        await self._close_body()
