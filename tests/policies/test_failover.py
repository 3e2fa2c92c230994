"""`ModelGroup`: tiers, weights, failover, cooldowns (Retry-After), budget and group fallbacks."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from seawall.clock import FakeClock
from seawall.context import CallContext
from seawall.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    CircuitOpenError,
    InvalidInputError,
    ModelExecutionError,
    RateLimitedError,
)
from seawall.policies.failover import (
    Deployment,
    DeploymentCooledDown,
    DeploymentFailed,
    FailoverOptions,
    GroupFallbackUsed,
    ModelGroup,
    fails_over,
)
from seawall.policies.retry import RetryBudgetOptions


@dataclass
class Answer:
    text: str
    served_by: str = ""


@dataclass
class Scripted:
    """A deployment's handler: fails while `errors` has items, then answers its name."""

    name: str
    errors: list[Exception] = field(default_factory=list)
    always: Exception | None = None
    calls: int = 0

    async def __call__(self, request: str, ctx: CallContext) -> Answer:
        self.calls += 1
        if self.always is not None:
            raise self.always
        if self.errors:
            raise self.errors.pop(0)
        return Answer(self.name)


def group(
    *handlers: tuple[Scripted, int, float],
    options: FailoverOptions | None = None,
    clock: FakeClock | None = None,
    events: list[object] | None = None,
    seed: int = 1,
) -> ModelGroup[str, Answer]:
    deployments = [Deployment(h.name, h, tier, weight) for h, tier, weight in handlers]
    return ModelGroup(
        deployments,
        options or FailoverOptions(budget=None),
        clock=clock or FakeClock(),
        on_event=(events.append if events is not None else lambda e: None),
        target="chat",
        rng=random.Random(seed),
    )


async def test_the_primary_tier_serves_while_it_is_healthy() -> None:
    primary, backup = Scripted("primary"), Scripted("backup")
    chat = group((primary, 0, 1.0), (backup, 1, 1.0))
    ctx = CallContext.new()
    for _ in range(20):
        assert (await chat("hi", ctx)).text == "primary"
    assert (primary.calls, backup.calls) == (20, 0)
    assert ctx.response_headers["x-seawall-served-by"] == "chat/primary"


async def test_weights_spread_a_tier_s_traffic() -> None:
    a, b = Scripted("a"), Scripted("b")
    chat = group((a, 0, 3.0), (b, 0, 1.0))
    served = Counter([(await chat("hi", CallContext.new())).text for _ in range(4000)])
    assert served["a"] / 4000 == pytest.approx(0.75, abs=0.03)


async def test_a_failure_fails_over_invisibly_and_cools_the_deployment_down() -> None:
    clock, events = FakeClock(), []
    primary = Scripted("primary", errors=[BackendUnavailableError("connection refused")])
    backup = Scripted("backup")
    chat = group(
        (primary, 0, 1.0),
        (backup, 1, 1.0),
        options=FailoverOptions(allowed_fails=1, cooldown_s=30, budget=None),
        clock=clock,
        events=events,
    )
    response = await chat("hi", CallContext.new())
    assert response.text == "backup"
    assert response.served_by == "chat/backup"
    assert chat.cooling() == {"primary": pytest.approx(30.0)}
    assert [type(e) for e in events] == [DeploymentFailed, DeploymentCooledDown]

    await chat("hi", CallContext.new())
    assert primary.calls == 1  # skipped while cooling
    clock.advance(30.0)
    assert (await chat("hi", CallContext.new())).text == "primary"


async def test_a_429_cools_down_for_its_retry_after_at_once() -> None:
    clock = FakeClock()
    primary = Scripted("primary", errors=[BackendUnavailableError("429", retry_after_s=90.0)])
    chat = group(
        (primary, 0, 1.0),
        (Scripted("backup"), 1, 1.0),
        options=FailoverOptions(allowed_fails=3, cooldown_s=10, budget=None),
        clock=clock,
    )
    await chat("hi", CallContext.new())
    assert chat.cooling()["primary"] == pytest.approx(90.0)


async def test_allowed_fails_tolerates_isolated_failures() -> None:
    primary = Scripted("primary", errors=[BackendTimeoutError("slow")])
    chat = group(
        (primary, 0, 1.0),
        (Scripted("backup"), 1, 1.0),
        options=FailoverOptions(allowed_fails=2, budget=None),
    )
    assert (await chat("hi", CallContext.new())).text == "backup"
    assert chat.cooling() == {}
    assert (await chat("hi", CallContext.new())).text == "primary"  # success resets the count


@pytest.mark.parametrize(
    "error",
    [InvalidInputError("messages", "empty"), RateLimitedError("quota"), ModelExecutionError("x")],
)
async def test_the_client_s_own_errors_are_not_failed_over(error: Exception) -> None:
    primary, backup = Scripted("primary", always=error), Scripted("backup")
    chat = group((primary, 0, 1.0), (backup, 1, 1.0))
    with pytest.raises(type(error)):
        await chat("hi", CallContext.new())
    assert backup.calls == 0
    assert chat.cooling() == {}


async def test_when_every_deployment_fails_the_last_error_is_raised() -> None:
    a = Scripted("a", always=BackendUnavailableError("a down"))
    b = Scripted("b", always=BackendTimeoutError("b slow"))
    chat = group((a, 0, 1.0), (b, 1, 1.0))
    with pytest.raises(BackendTimeoutError, match="b slow"):
        await chat("hi", CallContext.new())


async def test_every_deployment_cooling_is_a_503_with_the_soonest_retry_after() -> None:
    clock = FakeClock()
    a = Scripted("a", always=BackendUnavailableError("down"))
    chat = group((a, 0, 1.0), options=FailoverOptions(cooldown_s=20, budget=None), clock=clock)
    with pytest.raises(BackendUnavailableError):
        await chat("hi", CallContext.new())
    clock.advance(5)
    with pytest.raises(BackendUnavailableError, match="cooling down") as info:
        await chat("hi", CallContext.new())
    assert info.value.retry_after_s == pytest.approx(15.0)
    assert a.calls == 1


async def test_the_budget_bounds_failovers_in_a_full_outage() -> None:
    clock = FakeClock()
    handlers = [Scripted(n, always=BackendUnavailableError("down")) for n in "abcd"]
    chat = group(
        *((h, 0, 1.0) for h in handlers),
        options=FailoverOptions(
            allowed_fails=10**6, budget=RetryBudgetOptions(ratio=0.5, window_s=10, min_per_s=0)
        ),
        clock=clock,
    )
    for _ in range(200):
        with pytest.raises(BackendUnavailableError):
            await chat("hi", CallContext.new())
        clock.advance(0.01)
    calls = sum(h.calls for h in handlers)
    assert calls <= 200 * 1.5
    assert calls >= 200 * 1.4


async def test_no_failover_after_the_deadline() -> None:
    clock = FakeClock()
    a, b = Scripted("a", always=BackendTimeoutError("slow")), Scripted("b")
    chat = group((a, 0, 1.0), (b, 1, 1.0), clock=clock)
    ctx = CallContext.new(deadline=clock.monotonic())
    with pytest.raises(BackendTimeoutError):
        await chat("hi", ctx)
    assert b.calls == 0


async def test_fallback_groups_answer_when_every_deployment_fails() -> None:
    events: list[object] = []
    other = group((Scripted("other-a"), 0, 1.0))
    chat = group((Scripted("a", always=CircuitOpenError("open")), 0, 1.0), events=events)
    chat.fallbacks = (("backup-group", other.without_fallbacks),)
    ctx = CallContext.new()
    response = await chat("hi", ctx)
    assert response.text == "other-a"
    assert ctx.response_headers["x-seawall-fallback"] == "circuit_open"
    assert any(isinstance(e, GroupFallbackUsed) and e.fallback == "backup-group" for e in events)


async def test_fallbacks_that_fail_too_raise_the_primary_error() -> None:
    broken = group((Scripted("x", always=BackendTimeoutError("also down")), 0, 1.0))
    chat = group((Scripted("a", always=BackendUnavailableError("primary down")), 0, 1.0))
    chat.fallbacks = (("broken", broken.without_fallbacks),)
    with pytest.raises(BackendUnavailableError, match="primary down"):
        await chat("hi", CallContext.new())


def test_construction_is_checked() -> None:
    with pytest.raises(ValueError, match="at least one deployment"):
        ModelGroup([])
    with pytest.raises(ValueError, match="unique"):
        ModelGroup([Deployment("a", Scripted("a")), Deployment("a", Scripted("a"))])
    with pytest.raises(ValueError, match="weight"):
        Deployment("a", Scripted("a"), weight=0)
    with pytest.raises(ValueError, match="allowed_fails"):
        FailoverOptions(allowed_fails=0)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (BackendUnavailableError("x"), True),
        (BackendTimeoutError("x"), True),
        (CircuitOpenError("x"), True),
        (ModelExecutionError("x"), False),
        (InvalidInputError("f", "r"), False),
        (RateLimitedError("x"), False),
        (ValueError("x"), False),
    ],
)
def test_fails_over_predicate(error: Exception, expected: bool) -> None:
    assert fails_over(error) is expected
