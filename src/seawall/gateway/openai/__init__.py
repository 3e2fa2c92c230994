"""The OpenAI-compatible API: chat, completions, embeddings and models under `/v1`."""

from seawall.gateway.openai.errors import OpenAiError
from seawall.gateway.openai.routes import OVERHEAD_HEADER, SERVED_BY_HEADER, OpenAiRoutes

__all__ = ["OVERHEAD_HEADER", "SERVED_BY_HEADER", "OpenAiError", "OpenAiRoutes"]
