"""`relay`: sends a `ChunkStream` to the client as SSE, and stops when the client leaves.

Two tasks run per stream: the pump, which sends each chunk as it arrives, and a watcher, which
waits on ASGI `receive()` for `http.disconnect` (servers report a client that went away there;
uvicorn's `send` quietly drops what is written to a closed connection). Whichever ends first
cancels the other, and `relay` returns only once both have finished and the stream is closed,
so a departed client frees its upstream connection at once, even while the upstream is silent,
and no task outlives the request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from seawall.errors import SeawallError
from seawall.gateway.asgi import ClientDisconnectedError, Receive, Send
from seawall.gateway.openai.codec import DONE_EVENT, sse_event
from seawall.gateway.openai.errors import OpenAiError
from seawall.types import ChunkStream

__all__ = ["CLIENT_CLOSED", "relay", "unless_disconnected"]

logger = logging.getLogger("seawall.gateway")

T = TypeVar("T")

#: Status recorded for a stream the client left before its end (nginx's 499: client closed).
CLIENT_CLOSED = 499
#: How long a call runs before its client is watched for leaving (see `unless_disconnected`).
WATCH_AFTER_S = 0.05


class _ClientGoneError(Exception):
    """Sending failed: the connection to the client is closed."""


async def relay(
    stream: ChunkStream, receive: Receive, send: Send, *, internal: Callable[[], OpenAiError]
) -> int:
    """Send `stream`'s chunks, then `[DONE]`; the status to record (200, 499 or an error's).

    A failure of the stream ends it with an error event (`internal()` for one that is not a
    `SeawallError`). The response's start and first chunk are already sent.
    """
    pump = asyncio.create_task(_pump(stream, send, internal))
    watcher = asyncio.create_task(_until_disconnect(receive))
    tasks = (pump, watcher)
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await _cancel_all(tasks)
    if pump.cancelled():
        return CLIENT_CLOSED
    return pump.result()


async def unless_disconnected(call: Awaitable[T], receive: Receive) -> T:
    """Await `call`, but cancel it and raise `ClientDisconnectedError` if the client leaves first.

    Used around the pipeline: before its first chunk an LLM call may wait for tens of seconds,
    and an abandoned call must not keep its upstream connection (nor count as the deployment
    failing, and be failed over, for a client that is gone). The request body has been read,
    so the next `receive()` only ever reports the disconnect.

    This is on every request's path, so `call` runs in the caller's task, and the watcher task
    starts only once the call has taken `WATCH_AFTER_S`: most calls finish before and cost one
    timer; a client that leaves is still noticed within that time.
    """
    task = asyncio.current_task()
    assert task is not None, "unless_disconnected runs inside a task"
    gone = False
    watcher: asyncio.Task[None] | None = None

    async def watch() -> None:
        nonlocal gone
        await _until_disconnect(receive)
        gone = True
        task.cancel()

    def start_watching() -> None:
        nonlocal watcher
        watcher = asyncio.create_task(watch())

    timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S, start_watching)
    try:
        return await call
    except asyncio.CancelledError:
        if not gone:
            raise  # cancelled from outside (shutdown): not the client's doing
        task.uncancel()
        raise ClientDisconnectedError from None
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()  # ends at the loop's next turn: it only ever waits on receive()


async def _pump(stream: ChunkStream, send: Send, internal: Callable[[], OpenAiError]) -> int:
    try:
        while True:
            try:
                chunk = await anext(stream)
            except StopAsyncIteration:
                status, tail = 200, DONE_EVENT
                break
            await _send(send, sse_event(chunk), more=True)
    except _ClientGoneError:
        return CLIENT_CLOSED
    except SeawallError as exc:
        error = OpenAiError.of(exc)
        status, tail = error.status, sse_event(error.document()) + DONE_EVENT
    except Exception:  # a bug must cost one stream, never the process
        logger.exception("unexpected error in an LLM stream")
        error = internal()
        status, tail = error.status, sse_event(error.document()) + DONE_EVENT
    finally:
        await stream.aclose()  # at once, whatever ended the loop: frees the upstream connection
    try:
        await _send(send, tail, more=False)
    except _ClientGoneError:
        return CLIENT_CLOSED
    return status


async def _send(send: Send, body: bytes, *, more: bool) -> None:
    try:
        await send({"type": "http.response.body", "body": body, "more_body": more})
    except OSError as exc:  # servers that raise on a closed connection (hypercorn, daphne)
        raise _ClientGoneError from exc


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _cancel_all(tasks: tuple[asyncio.Task[Any], ...]) -> None:
    """Cancel the tasks still running and wait until every one has finished."""
    for task in tasks:
        task.cancel()
    interrupted = False
    while running := [t for t in tasks if not t.done()]:
        try:
            await asyncio.wait(running)
        except asyncio.CancelledError:
            interrupted = True  # finish the clean-up first, then pass the cancellation on
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved, so a failure is not logged as never retrieved
    if interrupted:
        raise asyncio.CancelledError
