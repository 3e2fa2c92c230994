"""SamplePolicy: successful calls are offered with the version that answered; failures are not."""

from __future__ import annotations

import numpy as np
import pytest

from seawall.context import CallContext
from seawall.errors import BackendUnavailableError
from seawall.policies.sample import SamplePolicy
from seawall.types import InferenceRequest, InferenceResponse, Tensor


def _request() -> InferenceRequest:
    return InferenceRequest("m", [Tensor.from_numpy("x", np.array([[1.0, 2.0]]))])


async def test_answered_calls_are_offered_with_their_version() -> None:
    offered: list[tuple[str, InferenceRequest, InferenceResponse]] = []
    policy = SamplePolicy(
        lambda v, q, r: offered.append((v, q, r)),
        lambda ctx: ctx.response_headers.get("x-seawall-model-version", "1"),
    )
    request = _request()
    answer = InferenceResponse("m", [Tensor.from_numpy("y", np.array([0]))])

    async def call_next(req: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        ctx.response_headers["x-seawall-model-version"] = "7"
        return answer

    assert await policy(request, CallContext("r"), call_next) is answer
    assert offered == [("7", request, answer)]


async def test_failed_calls_are_not_offered() -> None:
    offered: list[object] = []
    policy = SamplePolicy(lambda v, q, r: offered.append(v), lambda ctx: "1")

    async def call_next(req: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        raise BackendUnavailableError("down")

    with pytest.raises(BackendUnavailableError):
        await policy(_request(), CallContext("r"), call_next)
    assert offered == []
