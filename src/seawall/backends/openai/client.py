"""`ProviderClient`: the HTTP side of one LLM deployment, shared by every provider's backend.

It sends JSON calls (`post_json`) and opens SSE streams (`stream`) on an `HttpUpstream`, with the
deployment's headers, and answers a stream only once its FIRST chunk has arrived, within the
time-to-first-token limit: a failure up to that point (connection, HTTP status, silence,
keep-alives only, an error event, a malformed event) raises from `stream()`, where retries and
failover can still act unseen by the client. The rest comes as a `ChunkStream` bounded by the
idle limit; closing it closes the upstream connection at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from seawall.backends.http import HttpUpstream, error_for_status
from seawall.backends.openai.stream import ChunkDecoder, ChunkReader
from seawall.clock import Clock
from seawall.errors import BackendTimeoutError, BadResponseError
from seawall.types import ChunkStream

__all__ = ["ProviderBackend", "ProviderClient", "StreamLimits", "api_path"]


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Time limits of a streamed answer, on top of the `HttpUpstream`'s own timeouts."""

    #: From sending the request to the first chunk (time to first token); None: the deadline only.
    first_token_timeout_s: float | None = None
    #: Longest gap between two chunks after the first; None: the upstream's idle read timeout only.
    idle_timeout_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("first_token_timeout_s", "idle_timeout_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name}: must be more than 0, got {value}")


def api_path(base_url: str, path: str) -> str:
    """`path` (under `/v1/`) for an upstream whose base URL may or may not already end in `/v1`."""
    return path.removeprefix("/v1") if base_url.rstrip("/").endswith("/v1") else path


class ProviderClient:
    """JSON calls and first-chunk-first SSE streams to one upstream, named `where` in errors."""

    def __init__(
        self,
        upstream: HttpUpstream,
        *,
        where: str,
        clock: Clock,
        headers: Mapping[str, str] | None = None,
        limits: StreamLimits | None = None,
    ) -> None:
        self.upstream = upstream
        self.where = where
        self.limits = limits or StreamLimits()
        self._clock = clock
        self._headers = {"content-type": "application/json", **(headers or {})}

    async def post_json(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        deadline: float | None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """POST `body` and return the JSON object answered; a `BackendError` on any failure."""
        response = await self.upstream.request(
            "POST",
            api_path(self.upstream.base_url, path),
            body=orjson.dumps(body),
            headers={**self._headers, **(headers or {})},
            deadline=deadline,
        )
        if response.status >= 300:
            raise error_for_status(response.status, response.headers, response.body, self.where)
        document = response.json()
        if not isinstance(document, dict):
            raise BadResponseError(
                f"{self.where}: answered {type(document).__name__}, not an object"
            )
        return document

    async def stream(
        self,
        path: str,
        body: Mapping[str, Any],
        decoder: ChunkDecoder,
        *,
        deadline: float | None,
        prompt_tokens: int,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[dict[str, Any], ChunkStream]:
        """POST `body` and return the stream's first chunk and the rest, once the first arrived."""
        limit, within = self._first_chunk_limit(deadline)
        body_bytes = self.upstream.stream(
            "POST",
            api_path(self.upstream.base_url, path),
            body=orjson.dumps(body),
            headers={**self._headers, "accept": "text/event-stream", **(headers or {})},
            deadline=deadline,
        )
        reader = ChunkReader(
            body_bytes,
            decoder,
            where=self.where,
            clock=self._clock,
            idle_timeout_s=self.limits.idle_timeout_s,
        )
        rest = ChunkStream(reader, prompt_tokens=prompt_tokens, close=reader.aclose)
        reader.observe = rest.count
        first = await reader.read(limit, within)
        if first is None:
            raise BadResponseError(f"{self.where}: the stream ended before its first chunk")
        rest.count(first)
        return first, rest

    def _first_chunk_limit(self, deadline: float | None) -> tuple[float | None, str]:
        timeout = self.limits.first_token_timeout_s
        if deadline is None:
            return timeout, f"{(timeout or 0) * 1000:.0f} ms (time to first token)"
        left = deadline - self._clock.monotonic()
        if left <= 0:
            raise BackendTimeoutError(f"{self.where}: the request's deadline had passed")
        if timeout is not None and timeout <= left:
            return timeout, f"{timeout * 1000:.0f} ms (time to first token)"
        return left, "the request's deadline (first chunk)"


class ProviderBackend:
    """The lifecycle shared by provider backends: one upstream, reached through `_client`."""

    _client: ProviderClient
    _loaded: bool = False

    async def load(self) -> None:
        await self._client.upstream.start()
        self._loaded = True

    def ready(self) -> bool:
        return self._loaded

    async def close(self) -> None:
        self._loaded = False
        await self._client.upstream.close()
