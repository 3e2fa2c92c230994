"""`SamplePolicy`: hands each answered call to a sampler (drift monitors), off the hot path.

The policy only calls `offer(version, request, response)` after a successful answer; the
sampler decides in O(1) whether to keep the call (a reservoir keeps a uniform sample per
window by reference, without copying or converting a tensor). Turning kept calls into rows
and computing statistics happens later, in a worker thread, never on the request path.
"""

from __future__ import annotations

from collections.abc import Callable

from seawall.context import CallContext
from seawall.pipeline import Handler
from seawall.types import InferenceRequest, InferenceResponse

__all__ = ["Offer", "SamplePolicy"]

#: Receives the serving version, the (validated) request and its answer; must be O(1).
Offer = Callable[[str, InferenceRequest, InferenceResponse], None]


class SamplePolicy:
    """Offers each successful call to `offer` with the version that answered it."""

    name = "sample"

    def __init__(self, offer: Offer, version: Callable[[CallContext], str]) -> None:
        """`version(ctx)`: the version that answered, once the call returned."""
        self._offer = offer
        self._version = version

    async def __call__(
        self,
        request: InferenceRequest,
        ctx: CallContext,
        call_next: Handler[InferenceRequest, InferenceResponse],
    ) -> InferenceResponse:
        response = await call_next(request, ctx)
        self._offer(self._version(ctx), request, response)
        return response
