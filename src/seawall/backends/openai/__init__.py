"""LLM provider deployments in the OpenAI shape: OpenAI-compatible servers and Anthropic.

`OpenAiBackend` and `AnthropicBackend` are `LlmBackend`s on an `HttpUpstream`. Both stream
first-chunk-first (`ProviderClient`): `call()` returns once the first chunk of a streamed
answer has arrived, within the time-to-first-token limit, so failures before it can still be
retried or failed over; the rest is bounded by an idle limit and closes its upstream
connection at once when closed. `sse` parses and encodes Server-Sent Events.
"""

from seawall.backends.openai.anthropic import AnthropicBackend
from seawall.backends.openai.client import ProviderClient, StreamLimits
from seawall.backends.openai.provider import OpenAiBackend
from seawall.backends.openai.sse import (
    DONE,
    ENCODED_DONE,
    SseEvent,
    SseParser,
    encode_data,
    encode_error,
    encode_event,
)

__all__ = [
    "DONE",
    "ENCODED_DONE",
    "AnthropicBackend",
    "OpenAiBackend",
    "ProviderClient",
    "SseEvent",
    "SseParser",
    "StreamLimits",
    "encode_data",
    "encode_error",
    "encode_event",
]
