"""TimeoutPolicy: min(timeout, deadline) per call, real cancellation, 504 with a clear message."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from seawall.backends.mock import Fail, Hang, MockBackend, Respond
from seawall.clock import FakeClock, SystemClock
from seawall.context import CallContext
from seawall.errors import BackendTimeoutError, BackendUnavailableError
from seawall.pipeline import Pipeline, Policy
from seawall.policies.timeout import CallTimedOut, TimeoutOptions, TimeoutPolicy
from seawall.types import InferenceRequest, InferenceResponse, Tensor


def request() -> InferenceRequest:
    data = np.ones((1, 2), np.float32)
    return InferenceRequest("iris", [Tensor.from_numpy("input-0", data)], version="1")


async def settle() -> None:
    """Let tasks run until they block on the fake clock."""
    for _ in range(5):
        await asyncio.sleep(0)


class Harness:
    """A policy on a FakeClock in front of a MockBackend, recording events."""

    def __init__(self, timeout_s: float | None = 0.2, *steps: Respond | Fail | Hang) -> None:
        self.clock = FakeClock()
        self.events: list[object] = []
        self.backend = MockBackend("iris", script=steps, clock=self.clock)
        self.policy: TimeoutPolicy[InferenceRequest, InferenceResponse] = TimeoutPolicy(
            TimeoutOptions(timeout_s),
            clock=self.clock,
            on_event=self.events.append,
            target="iris:1",
        )

    async def start(self, ctx: CallContext | None = None) -> asyncio.Task[InferenceResponse]:
        await self.backend.load()
        task = asyncio.create_task(
            self.policy(request(), ctx or CallContext.new(), self.backend.infer)
        )
        await settle()
        return task


async def test_a_call_within_the_timeout_answers_unchanged_and_leaves_no_timer() -> None:
    harness = Harness(0.2, Respond(latency_s=0.15))
    task = await harness.start()
    harness.clock.advance(0.15)
    response = await task
    assert response.model == "iris"
    assert harness.events == []
    assert harness.clock.sleepers == 0
    assert (harness.backend.stats.completed, harness.backend.stats.cancelled) == (1, 0)


async def test_a_hanging_backend_is_cancelled_at_the_timeout_and_leaves_no_task() -> None:
    baseline = len(asyncio.all_tasks())
    harness = Harness(0.2, Hang())
    started = harness.clock.monotonic()
    task = await harness.start()

    harness.clock.advance(0.199)
    await settle()
    assert not task.done()
    harness.clock.advance(0.001)
    with pytest.raises(BackendTimeoutError) as info:
        await task

    assert str(info.value) == "model 'iris:1' did not answer within 200 ms"
    assert harness.clock.monotonic() - started == pytest.approx(0.2)
    stats = harness.backend.stats
    assert (stats.calls, stats.cancelled, stats.in_flight) == (1, 1, 0)
    assert harness.events == [CallTimedOut("iris:1", 0.2, by_deadline=False)]
    assert len(asyncio.all_tasks()) == baseline
    assert harness.clock.sleepers == 0


async def test_the_deadline_shortens_the_timeout_and_the_message_says_so() -> None:
    harness = Harness(0.2, Hang())
    ctx = CallContext.new(deadline=harness.clock.monotonic() + 0.05)
    task = await harness.start(ctx)

    harness.clock.advance(0.049)
    await settle()
    assert not task.done()
    harness.clock.advance(0.001)
    with pytest.raises(BackendTimeoutError) as info:
        await task

    assert str(info.value) == (
        "model 'iris:1' did not answer within 50 ms: the request's deadline passed"
    )
    [event] = harness.events
    assert isinstance(event, CallTimedOut)
    assert event.by_deadline
    assert event.timeout_s == pytest.approx(0.05)
    assert harness.backend.stats.cancelled == 1


async def test_a_later_deadline_leaves_the_timeout_in_charge() -> None:
    harness = Harness(0.2, Hang())
    task = await harness.start(CallContext.new(deadline=harness.clock.monotonic() + 5.0))
    harness.clock.advance(0.2)
    with pytest.raises(BackendTimeoutError, match=r"within 200 ms$"):
        await task
    assert harness.events == [CallTimedOut("iris:1", 0.2, by_deadline=False)]


async def test_no_time_left_fails_fast_without_calling_the_backend() -> None:
    harness = Harness(0.2)
    await harness.backend.load()
    now = harness.clock.monotonic()
    for deadline in (now, now - 1.0):
        with pytest.raises(BackendTimeoutError) as info:
            await harness.policy(
                request(), CallContext.new(deadline=deadline), harness.backend.infer
            )
        assert str(info.value) == "model 'iris:1' was not called: the request's deadline had passed"
    assert harness.backend.stats.calls == 0
    assert harness.events == [CallTimedOut("iris:1", 0.0, by_deadline=True)] * 2


async def test_without_timeout_only_the_deadline_limits_the_call() -> None:
    harness = Harness(None, Respond(latency_s=100.0), Hang())
    slow = await harness.start()
    harness.clock.advance(100.0)
    assert (await slow).model == "iris"  # no timeout and no deadline: nothing cuts it short

    hanging = await harness.start(CallContext.new(deadline=harness.clock.monotonic() + 0.3))
    harness.clock.advance(0.3)
    with pytest.raises(BackendTimeoutError, match="within 300 ms: the request's deadline passed"):
        await hanging
    assert harness.backend.stats.cancelled == 1


async def test_backend_errors_pass_through_untouched() -> None:
    error = BackendUnavailableError("down")
    harness = Harness(0.2, Fail(error, latency_s=0.1))
    task = await harness.start()
    harness.clock.advance(0.1)
    with pytest.raises(BackendUnavailableError) as info:
        await task
    assert info.value is error
    assert harness.events == []


async def test_an_outer_cancellation_is_not_reported_as_a_timeout() -> None:
    harness = Harness(0.2, Hang())
    task = await harness.start()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert harness.backend.stats.cancelled == 1
    assert harness.events == []
    assert harness.clock.sleepers == 0


async def test_an_unnamed_target_reads_as_the_model() -> None:
    clock = FakeClock()
    policy: TimeoutPolicy[str, str] = TimeoutPolicy(TimeoutOptions(0.005), clock=clock)

    async def hang(req: str, ctx: CallContext) -> str:
        await clock.sleep(10.0)
        return req

    task = asyncio.create_task(policy("x", CallContext.new(), hang))
    await settle()
    clock.advance(0.005)
    with pytest.raises(BackendTimeoutError, match=r"^the model did not answer within 5 ms$"):
        await task


async def test_generic_over_request_and_response_types_and_a_policy() -> None:
    clock = FakeClock()
    policy: TimeoutPolicy[str, int] = TimeoutPolicy(clock=clock)

    async def length(req: str, ctx: CallContext) -> int:
        return len(req)

    assert isinstance(policy, Policy)
    assert policy.options.timeout_s == 30.0
    pipeline: Pipeline[str, int] = Pipeline([policy], length)
    assert await pipeline("four", CallContext.new()) == 4
    assert repr(pipeline).startswith("Pipeline(timeout → ")


def test_limit_is_the_smaller_of_timeout_and_time_left() -> None:
    clock = FakeClock()
    policy: TimeoutPolicy[object, object] = TimeoutPolicy(TimeoutOptions(1.0), clock=clock)
    now = clock.monotonic()
    assert policy.limit_s(CallContext.new()) == (1.0, False)
    assert policy.limit_s(CallContext.new(deadline=now + 2.0)) == (1.0, False)
    assert policy.limit_s(CallContext.new(deadline=now + 0.5)) == (0.5, True)
    assert policy.limit_s(CallContext.new(deadline=now - 0.5)) == (-0.5, True)
    unlimited: TimeoutPolicy[object, object] = TimeoutPolicy(TimeoutOptions(None), clock=clock)
    assert unlimited.limit_s(CallContext.new()) == (None, False)
    assert unlimited.limit_s(CallContext.new(deadline=now + 3.0)) == (3.0, True)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_options_refuse_a_timeout_that_is_not_a_positive_number(bad: float) -> None:
    with pytest.raises(ValueError, match=r"^timeout_s: must be a positive number or None"):
        TimeoutOptions(bad)


async def test_on_the_system_clock_the_call_is_cancelled_too() -> None:
    backend = MockBackend("iris", default=Hang(), clock=SystemClock())
    await backend.load()
    policy: TimeoutPolicy[InferenceRequest, InferenceResponse] = TimeoutPolicy(
        TimeoutOptions(0.001), target="iris:1"
    )
    with pytest.raises(BackendTimeoutError, match="within 1 ms"):
        await policy(request(), CallContext.new(), backend.infer)
    assert backend.stats.cancelled == 1
