"""`HttpUpstream`: one pooled aiohttp session per upstream, with the timeouts that matter.

Four timeouts, each bounded by the call's deadline too:

- connect: TCP (and TLS) connection set-up;
- first byte: from sending the request to the response's status line and headers (an upstream
  that accepts and never answers is cut here, not after the total timeout);
- idle read: the longest gap between two chunks of the body (a stream that stalls mid-way);
- total: the whole exchange.

Foreign exceptions (aiohttp's, asyncio's, the socket's) are translated here, once, into the
`BackendError` tree, and so are HTTP error statuses: 429 and 502/503/504 are
`BackendUnavailableError` with the upstream's `Retry-After`, 408 is a timeout, other 5xx are
retryable `BackendError`s, 400/404/422 are the upstream refusing the input (`InvalidInputError`),
and 401/403 mean the gateway's own credentials are wrong (not retryable).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson
from yarl import URL

from seawall.clock import Clock, SystemClock
from seawall.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    BadResponseError,
    InvalidInputError,
)

__all__ = ["HttpOptions", "HttpResponse", "HttpUpstream", "error_for_status"]

DEFAULT_CONNECT_TIMEOUT_S = 2.0
DEFAULT_FIRST_BYTE_TIMEOUT_S = 30.0
DEFAULT_IDLE_READ_TIMEOUT_S = 30.0
DEFAULT_MAX_CONNECTIONS = 100
DEFAULT_KEEPALIVE_S = 30.0
#: Largest response body read into memory.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
#: Parsed URLs kept per upstream (one per API path; paths come from config).
_MAX_CACHED_URLS = 1024


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """How to reach one upstream."""

    #: TCP and TLS connection set-up.
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    #: From request sent to response headers received.
    first_byte_timeout_s: float = DEFAULT_FIRST_BYTE_TIMEOUT_S
    #: Longest gap between two chunks of the response body.
    idle_read_timeout_s: float = DEFAULT_IDLE_READ_TIMEOUT_S
    #: The whole exchange (None: only the call's deadline).
    total_timeout_s: float | None = None
    #: Connections open at once to this upstream (calls beyond wait for one).
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    #: How long an idle connection is kept for reuse.
    keepalive_s: float = DEFAULT_KEEPALIVE_S
    #: Verify the upstream's TLS certificate.
    verify_tls: bool = True
    #: CA bundle (PEM) to verify it with; None: the system's.
    ca_file: str | None = None
    #: Client certificate and key (PEM) for mutual TLS.
    client_cert: str | None = None
    client_key: str | None = None
    #: Headers sent with every request (an upstream API key, say).
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Largest response body accepted.
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    def __post_init__(self) -> None:
        for name in ("connect_timeout_s", "first_byte_timeout_s", "idle_read_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be more than 0, got {getattr(self, name)}")
        if self.total_timeout_s is not None and not self.total_timeout_s > 0:
            raise ValueError(f"total_timeout_s: must be more than 0, got {self.total_timeout_s}")
        if self.max_connections < 1:
            raise ValueError(f"max_connections: must be at least 1, got {self.max_connections}")
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert: give both client_cert and client_key, or neither")


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete response: status, headers (lower-cased names) and body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise BadResponseError(f"upstream sent invalid JSON: {exc}") from None


class HttpUpstream:
    """A base URL and its connection pool; `start()` before use, `close()` after."""

    def __init__(
        self, base_url: str, options: HttpOptions | None = None, *, clock: Clock | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.options = options or HttpOptions()
        self._clock = clock or SystemClock()
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}

    def __repr__(self) -> str:
        return f"HttpUpstream({self.base_url!r})"

    async def start(self) -> None:
        if self._session is not None:
            return
        opts = self.options
        connector = aiohttp.TCPConnector(
            limit=opts.max_connections,
            limit_per_host=opts.max_connections,
            keepalive_timeout=opts.keepalive_s,
            ssl=_ssl_context(opts),
        )
        # No sock_read: aiohttp starts it once the request is sent, so it would also cut the
        # wait for the first byte; the idle read is timed per chunk in `_read_chunk` instead.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=opts.connect_timeout_s)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers=dict(opts.headers),
            auto_decompress=True,
            raise_for_status=False,
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        deadline: float | None = None,
    ) -> HttpResponse:
        """Send a request and read the whole response; raise a `BackendError` on failure."""
        until = self._until(deadline)
        async with self._exchange(method, path, body, headers, deadline) as response:
            data = await self._read_all(response, until)
            return HttpResponse(response.status, _lower(response.headers), data)

    async def stream(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        deadline: float | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """Send a request and yield the body's chunks as they arrive (after a 2xx status).

        Closing the iterator (or cancelling its consumer) closes the connection at once, so
        an abandoned stream frees its upstream slot.
        """
        until = self._until(deadline)
        async with self._exchange(method, path, body, headers, deadline) as response:
            if response.status >= 300:
                data = await self._read_all(response, until)
                raise error_for_status(response.status, _lower(response.headers), data, self)
            while chunk := await self._read_chunk(response, until, "reading the stream"):
                yield chunk

    def _exchange(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str] | None,
        deadline: float | None,
    ) -> _Exchange:
        if self._session is None:
            raise BackendUnavailableError(f"{self.base_url}: not started")
        return _Exchange(self, self._session, method, self.url(path), body, headers, deadline)

    def url(self, path: str) -> URL:
        """The parsed URL of `path` under the base URL (parsing is cached: it is per call)."""
        url = self._urls.get(path)
        if url is None:
            url = URL(self.base_url + path)
            if len(self._urls) < _MAX_CACHED_URLS:  # paths come from config: few, but bounded
                self._urls[path] = url
        return url

    async def _read_all(self, response: aiohttp.ClientResponse, until: float | None) -> bytes:
        limit = self.options.max_response_bytes
        if response.content_length is not None and response.content_length > limit:
            raise BadResponseError(f"{self.base_url}: response larger than {limit} bytes")
        content = response.content
        if content.is_eof():  # the whole body came with the headers: no wait, no timer
            data = content.read_nowait()
            if len(data) > limit:
                raise BadResponseError(f"{self.base_url}: response larger than {limit} bytes")
            return data
        chunks, size = [], 0
        while chunk := await self._read_chunk(response, until, "reading the response"):
            size += len(chunk)
            if size > limit:
                raise BadResponseError(f"{self.base_url}: response larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _read_chunk(
        self, response: aiohttp.ClientResponse, until: float | None, phase: str
    ) -> bytes:
        """The body's next chunk (b"" at its end) within the idle-read timeout and by `until`."""
        loop, idle = asyncio.get_running_loop(), self.options.idle_read_timeout_s
        by_total = until is not None and until - loop.time() < idle
        try:
            async with asyncio.timeout_at(until if by_total else loop.time() + idle):
                return await response.content.readany()
        except TimeoutError:
            what = (
                "the total timeout or deadline" if by_total else f"no data for {idle * 1000:.0f} ms"
            )
            raise BackendTimeoutError(f"{self.base_url}: timed out {phase} ({what})") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _translate(exc, self, phase=phase) from exc

    def _until(self, deadline: float | None) -> float | None:
        """When (event-loop time) the whole exchange must be over: total timeout or deadline."""
        limits = [
            x for x in (self.options.total_timeout_s, self.time_left(deadline)) if x is not None
        ]
        return asyncio.get_running_loop().time() + min(limits) if limits else None

    def time_left(self, deadline: float | None) -> float | None:
        """Seconds until `deadline` (None: no deadline), never below zero."""
        return None if deadline is None else max(0.0, deadline - self._clock.monotonic())


class _Exchange:
    """`async with`: the response once its headers arrived, within the first-byte timeout."""

    def __init__(
        self,
        upstream: HttpUpstream,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        body: bytes | None,
        headers: Mapping[str, str] | None,
        deadline: float | None,
    ) -> None:
        self._upstream = upstream
        self._session = session
        self._args = (method, url)
        self._body = body
        self._headers = headers
        self._deadline = deadline
        self._response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        upstream, opts = self._upstream, self._upstream.options
        left = upstream.time_left(self._deadline)
        if left == 0.0:
            raise BackendTimeoutError(f"{upstream.base_url}: the request's deadline had passed")
        limit = min(x for x in (opts.first_byte_timeout_s, opts.total_timeout_s, left) if x)
        by_deadline = left is not None and left <= limit
        try:
            async with asyncio.timeout(limit):
                self._response = await self._session.request(
                    *self._args, data=self._body, headers=self._headers
                )
        except aiohttp.ServerTimeoutError:  # sock_connect, the only aiohttp timeout set
            raise BackendTimeoutError(
                f"{upstream.base_url}: cannot connect within {opts.connect_timeout_s * 1000:.0f} ms"
            ) from None
        except TimeoutError:
            what = "the request's deadline" if by_deadline else f"{limit * 1000:.0f} ms"
            raise BackendTimeoutError(
                f"{upstream.base_url}: no response within {what} (first byte)"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _translate(exc, upstream, phase="sending the request") from exc
        return self._response

    async def __aexit__(self, *exc_info: object) -> None:
        response, self._response = self._response, None
        if response is not None:
            if exc_info[0] is not None:
                response.close()  # abandoned mid-body: drop the connection, do not reuse it
            else:
                response.release()


def error_for_status(
    status: int, headers: Mapping[str, str], body: bytes, upstream: HttpUpstream | str
) -> BackendError | InvalidInputError:
    """The error for an HTTP error status from an upstream, with its message and Retry-After."""
    where = upstream.base_url if isinstance(upstream, HttpUpstream) else upstream
    detail = _message(body)
    text = f"{where} answered {status}" + (f": {detail}" if detail else "")
    retry_after = _retry_after_s(headers.get("retry-after"))
    if status in (400, 404, 409, 413, 415, 422):
        return InvalidInputError("upstream", detail or f"{where} refused the input ({status})")
    if status == 408:
        return BackendTimeoutError(text, retry_after_s=retry_after)
    if status in (429, 502, 503, 504, 529):  # 529: Anthropic's 'overloaded'
        return BackendUnavailableError(text, retry_after_s=retry_after)
    error = BackendError(text, retry_after_s=retry_after)
    if 400 <= status < 500:  # 401, 403...: the gateway's own request or credentials are wrong
        error.retryable = False
    return error


def _message(body: bytes) -> str:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode("utf-8", "replace").strip()
    if isinstance(document, dict):
        error = document.get("error", document.get("message", document.get("detail")))
        if isinstance(error, dict):  # OpenAI: {"error": {"message": ...}}
            error = error.get("message")
        if error is not None:
            return str(error)[:500]
    return ""


def _retry_after_s(value: str | None) -> float | None:
    if value is None:
        return None
    value = value.strip()
    if value.replace(".", "", 1).isdigit():
        return float(value)
    try:  # an HTTP date
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _translate(exc: BaseException, upstream: HttpUpstream, *, phase: str) -> BackendError:
    where = upstream.base_url
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return BackendTimeoutError(f"{where}: timed out {phase} (idle read or connect)")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return BackendUnavailableError(f"{where}: cannot connect: {exc.os_error or exc}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return BadResponseError(f"{where}: broken response body while {phase}: {exc}")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError | OSError):
        return BackendUnavailableError(f"{where}: connection lost while {phase}: {exc}")
    return BackendUnavailableError(f"{where}: {type(exc).__name__} while {phase}: {exc}")


def _ssl_context(options: HttpOptions) -> ssl.SSLContext | bool:
    if options.ca_file is None and options.client_cert is None:
        return options.verify_tls
    context = ssl.create_default_context(cafile=options.ca_file)
    if not options.verify_tls:  # still present the client certificate, if any
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if options.client_cert is not None:
        context.load_cert_chain(options.client_cert, options.client_key)
    return context


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}
