"""`ModelGroup`: one model name served by several deployments, with failover and cooldowns.

A call tries the deployments in order: lower `tier` first (tier 0 is the primary, tier 1 the
backup...), and within a tier a weighted random order, so traffic spreads by `weight`. A
deployment that fails with a failover error (timeout, unavailable, 5xx, 429, open breaker,
overload) is left for the next one; after `allowed_fails` failures in a row it cools down for
`cooldown_s` — or for the upstream's `Retry-After` if that is longer (a 429 cools it down at
once). Cooling deployments are skipped while others remain. Extra attempts spend the group's
retry budget, so a full outage cannot multiply the load on the providers. When every deployment
has failed, the `fallbacks` (other model groups) are tried the same way, and the response says
so (`x-seawall-fallback`). Errors that are the client's (invalid input, auth, quotas) are never
failed over.

Streaming needs nothing special: a deployment's call returns once the first chunk has arrived,
so a deployment that fails before that is failed over invisibly to the client.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from seawall.clock import Clock, SystemClock
from seawall.context import CallContext
from seawall.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    CircuitOpenError,
    ModelExecutionError,
    OverloadedError,
)
from seawall.pipeline import EventSink, Handler, discard
from seawall.policies.retry import RetryBudget, RetryBudgetOptions

__all__ = [
    "Deployment",
    "DeploymentCooledDown",
    "DeploymentFailed",
    "FailoverOptions",
    "GroupFallbackUsed",
    "ModelGroup",
    "fails_over",
]

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")

SERVED_BY_HEADER = "x-seawall-served-by"
FALLBACK_HEADER = "x-seawall-fallback"
DEFAULT_ALLOWED_FAILS = 1
DEFAULT_COOLDOWN_S = 30.0
#: Failovers allowed: as many as calls (every call may try one more deployment), plus 10 a second.
DEFAULT_FAILOVER_BUDGET = RetryBudgetOptions(ratio=1.0, min_per_s=10.0)


def fails_over(error: Exception) -> bool:
    """Transient upstream trouble: worth another deployment (never the client's own errors)."""
    if isinstance(error, ModelExecutionError):
        return False
    if isinstance(error, BackendError):
        return error.retryable
    return isinstance(error, CircuitOpenError | OverloadedError)


@dataclass(frozen=True, slots=True)
class Deployment(Generic[RequestT, ResponseT]):
    """One place the group's model runs: its own pipeline, preference tier and traffic weight."""

    name: str
    handler: Handler[RequestT, ResponseT]
    #: Lower tiers are tried first; a higher tier only takes traffic when the lower ones fail.
    tier: int = 0
    #: Share of its tier's traffic.
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.weight > 0:
            raise ValueError(f"weight: must be more than 0, got {self.weight}")


@dataclass(frozen=True, slots=True)
class FailoverOptions:
    """When a deployment is failed over and cooled down."""

    #: Failures in a row before a deployment cools down (a 429 cools it down at once).
    allowed_fails: int = DEFAULT_ALLOWED_FAILS
    #: How long a cooling deployment is skipped (at least the upstream's Retry-After).
    cooldown_s: float = DEFAULT_COOLDOWN_S
    #: Which errors move on to the next deployment.
    fails_over: Callable[[Exception], bool] = fails_over
    #: Extra attempts allowed as a share of calls (None: no budget).
    budget: RetryBudgetOptions | None = DEFAULT_FAILOVER_BUDGET

    def __post_init__(self) -> None:
        if self.allowed_fails < 1:
            raise ValueError(f"allowed_fails: must be at least 1, got {self.allowed_fails}")
        if not self.cooldown_s >= 0:
            raise ValueError(f"cooldown_s: must be 0 or more, got {self.cooldown_s}")


@dataclass(frozen=True, slots=True)
class DeploymentFailed:
    """A deployment failed a call; the group moves on."""

    target: str
    deployment: str
    error: str


@dataclass(frozen=True, slots=True)
class DeploymentCooledDown:
    """A deployment is skipped for `cooldown_s`."""

    target: str
    deployment: str
    cooldown_s: float


@dataclass(frozen=True, slots=True)
class GroupFallbackUsed:
    """Every deployment failed; another model group answered."""

    target: str
    fallback: str
    reason: str


class _Health:
    __slots__ = ("cool_until", "failures")

    def __init__(self) -> None:
        self.failures = 0
        self.cool_until = 0.0


class ModelGroup(Generic[RequestT, ResponseT]):
    """A `Handler` over deployments, tier by tier, with cooldowns, a budget and fallbacks."""

    name = "model_group"

    def __init__(
        self,
        deployments: Sequence[Deployment[RequestT, ResponseT]],
        options: FailoverOptions | None = None,
        *,
        fallbacks: Sequence[tuple[str, Handler[RequestT, ResponseT]]] = (),
        clock: Clock | None = None,
        on_event: EventSink = discard,
        target: str = "",
        rng: random.Random | None = None,
    ) -> None:
        if not deployments:
            raise ValueError("deployments: a model group needs at least one deployment")
        names = [d.name for d in deployments]
        if len(set(names)) != len(names):
            raise ValueError(f"deployments: names must be unique, got {names}")
        self.deployments = tuple(deployments)
        self.options = options or FailoverOptions()
        self.fallbacks = tuple(fallbacks)
        self.target = target
        self._clock = clock or SystemClock()
        self._on_event = on_event
        self._rng = rng or random.Random()
        self._health = {d.name: _Health() for d in deployments}
        # Tiers in priority order, built once: the order of a call is decided on every call.
        self._tiers = tuple(
            tuple((d, self._health[d.name]) for d in deployments if d.tier == tier)
            for tier in sorted({d.tier for d in deployments})
        )
        self._served_by = {d.name: f"{target}/{d.name}" for d in deployments}
        budget = self.options.budget
        self._budget = None if budget is None else RetryBudget(budget, clock=self._clock)

    def __repr__(self) -> str:
        return f"ModelGroup({self.target!r}, {[d.name for d in self.deployments]})"

    def cooling(self) -> dict[str, float]:
        """Deployments cooling down now, with the seconds left."""
        now = self._clock.monotonic()
        return {n: h.cool_until - now for n, h in self._health.items() if h.cool_until > now}

    async def __call__(self, request: RequestT, ctx: CallContext) -> ResponseT:
        try:
            return await self.without_fallbacks(request, ctx)
        except Exception as exc:
            if not self.fallbacks or not self.options.fails_over(exc):
                raise
            return await self._fall_back(request, ctx, exc)

    async def without_fallbacks(self, request: RequestT, ctx: CallContext) -> ResponseT:
        """The group's own deployments only: what another group falls back to (no loops)."""
        if self._budget is not None:
            self._budget.deposit()
        order = self._order()
        if not order:
            soonest = min(self.cooling().values(), default=self.options.cooldown_s)
            raise BackendUnavailableError(
                f"model group {self.target!r}: every deployment is cooling down",
                retry_after_s=max(soonest, 0.0),
            )
        error: Exception | None = None
        for attempt, deployment in enumerate(order):
            if attempt > 0 and not self._may_try_another(ctx):
                break
            try:
                response = await deployment.handler(request, ctx)
            except Exception as exc:
                if not self.options.fails_over(exc):
                    raise
                self._failed(deployment, exc)
                error = exc
                continue
            self._health[deployment.name].failures = 0
            served_by = self._served_by[deployment.name]
            ctx.response_headers[SERVED_BY_HEADER] = served_by
            _mark_served(response, served_by)
            return response
        assert error is not None
        raise error

    def _may_try_another(self, ctx: CallContext) -> bool:
        if ctx.expired(self._clock.monotonic()):
            return False
        return self._budget is None or self._budget.try_withdraw()

    def _order(self) -> list[Deployment[RequestT, ResponseT]]:
        now = self._clock.monotonic()
        ordered: list[Deployment[RequestT, ResponseT]] = []
        for tier in self._tiers:
            ready = [d for d, health in tier if health.cool_until <= now]
            if len(ready) > 1:
                ready = self._weighted_shuffle(ready)
            ordered.extend(ready)
        return ordered

    def _weighted_shuffle(
        self, deployments: list[Deployment[RequestT, ResponseT]]
    ) -> list[Deployment[RequestT, ResponseT]]:
        # Efraimidis-Spirakis: sort by u^(1/w); the first is chosen with probability w / sum(w).
        keys = [(self._rng.random() ** (1.0 / d.weight), i) for i, d in enumerate(deployments)]
        return [deployments[i] for _, i in sorted(keys, reverse=True)]

    def _failed(self, deployment: Deployment[RequestT, ResponseT], error: Exception) -> None:
        health = self._health[deployment.name]
        health.failures += 1
        self._on_event(DeploymentFailed(self.target, deployment.name, _describe(error)))
        retry_after = getattr(error, "retry_after_s", None) or 0.0
        rate_limited = isinstance(error, BackendUnavailableError) and retry_after > 0
        if health.failures >= self.options.allowed_fails or rate_limited:
            cooldown = max(self.options.cooldown_s, retry_after)
            health.cool_until = self._clock.monotonic() + cooldown
            health.failures = 0
            self._on_event(DeploymentCooledDown(self.target, deployment.name, cooldown))

    async def _fall_back(
        self, request: RequestT, ctx: CallContext, primary: Exception
    ) -> ResponseT:
        reason = getattr(primary, "code", "error")
        for name, handler in self.fallbacks:
            if ctx.expired(self._clock.monotonic()):
                break
            try:
                response = await handler(request, ctx)
            except Exception as exc:
                if not self.options.fails_over(exc):
                    raise
                continue
            self._on_event(GroupFallbackUsed(self.target, name, reason))
            ctx.response_headers[FALLBACK_HEADER] = reason
            return response
        raise primary


def _mark_served(response: Any, by: str) -> None:
    if hasattr(response, "served_by"):
        response.served_by = by


def _describe(error: Exception) -> str:
    if isinstance(error, BackendTimeoutError | BackendUnavailableError):
        return f"{error.code}: {error}"
    return f"{type(error).__name__}: {error}"
