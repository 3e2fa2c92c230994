"""Domain types shared by every layer: tensors and inference calls, and LLM calls.

These are protocol-neutral: the gateway decodes Open Inference Protocol v2 or OpenAI bodies into
them, policies and backends work on them, and the gateway encodes them back.
"""

from seawall.types.llm import ChunkStream, LlmKind, LlmRequest, LlmResponse, Usage, estimate_tokens
from seawall.types.tensor import (
    Datatype,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    Parameters,
    RequestedOutput,
    Tensor,
    TensorSpec,
    coerce,
)

__all__ = [
    "ChunkStream",
    "Datatype",
    "InferenceRequest",
    "InferenceResponse",
    "LlmKind",
    "LlmRequest",
    "LlmResponse",
    "ModelMetadata",
    "Parameters",
    "RequestedOutput",
    "Tensor",
    "TensorSpec",
    "Usage",
    "coerce",
    "estimate_tokens",
]
