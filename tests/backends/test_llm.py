"""`LlmBackend`: every provider backend satisfies the protocol."""

from __future__ import annotations

import pytest

from seawall.backends.http import HttpUpstream
from seawall.backends.llm import LlmBackend
from seawall.backends.openai import AnthropicBackend, OpenAiBackend


@pytest.mark.parametrize(
    "backend",
    [
        OpenAiBackend(HttpUpstream("http://127.0.0.1:1"), "m"),
        AnthropicBackend(HttpUpstream("http://127.0.0.1:1"), "m", api_key="k"),
    ],
    ids=["openai", "anthropic"],
)
def test_provider_backends_are_llm_backends(backend: object) -> None:
    assert isinstance(backend, LlmBackend)


def test_an_object_without_call_is_not_one() -> None:
    class Incomplete:
        name = "x"

        async def load(self) -> None: ...

        def ready(self) -> bool:
            return True

        async def close(self) -> None: ...

    assert not isinstance(Incomplete(), LlmBackend)
