"""The `LlmBackend` protocol: an LLM provider deployment behind a model group."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from seawall.context import CallContext
from seawall.types import LlmRequest, LlmResponse

__all__ = ["LlmBackend"]


@runtime_checkable
class LlmBackend(Protocol):
    """One deployment: an OpenAI-compatible server (OpenAI, vLLM...) or an adapted provider.

    `call()` answers a request in the OpenAI shape. For a streamed request (`request.stream`)
    it returns as soon as the FIRST chunk has arrived (`LlmResponse.first`), with the rest in
    `LlmResponse.stream`: everything that can fail before the client sees a byte fails inside
    `call()`, where timeouts, retries and failover can still act. Failures after that surface
    while iterating the stream.
    """

    #: `provider:base_url/model`, for logs and `repr(pipeline)`.
    name: str

    async def load(self) -> None:
        """Open connection pools; raise if the deployment is misconfigured."""
        ...

    def ready(self) -> bool: ...

    async def call(self, request: LlmRequest, ctx: CallContext) -> LlmResponse:
        """Answer `request` (complete, or up to its first chunk when streamed)."""
        ...

    async def close(self) -> None: ...
