"""`Assembly` and the policy chains every kind of model shares (front and core)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from seawall.assemble import options as build
from seawall.backends import ModelRepository
from seawall.backends.llm import LlmBackend
from seawall.clock import Clock
from seawall.config import SeawallConfig
from seawall.config.policies import PolicySettings
from seawall.pipeline import EventSink, Handler, Policy
from seawall.policies import (
    AdmissionPolicy,
    ApiKey,
    AuthPolicy,
    BatchingPolicy,
    BulkheadPolicy,
    CircuitBreakerPolicy,
    HedgePolicy,
    RateLimitPolicy,
    RetryPolicy,
    TimeoutPolicy,
)
from seawall.policies.cache import CachePolicy
from seawall.types import InferenceRequest, InferenceResponse, LlmRequest, LlmResponse

if TYPE_CHECKING:
    from seawall.assemble.reference import TrainingReference
    from seawall.monitor.service import DriftMonitor
    from seawall.policies.routing import RouterPolicy

__all__ = ["Assembly", "InferencePolicy", "core_policies", "front_policies"]

logger = logging.getLogger("seawall.assemble")

InferencePolicy = Policy[InferenceRequest, InferenceResponse]


@dataclass
class Assembly:
    """Everything built from one config: the models, and the shared parts the admin API drives."""

    repository: ModelRepository
    #: Circuit breakers by "model:version", for the admin API and metrics.
    breakers: dict[str, CircuitBreakerPolicy[Any, Any]] = field(default_factory=dict)
    #: Bulkheads by "model:version", for metrics.
    bulkheads: dict[str, BulkheadPolicy[Any, Any]] = field(default_factory=dict)
    #: Batchers by "model:version", for metrics.
    batchers: dict[str, BatchingPolicy] = field(default_factory=dict)
    #: Response caches by (model, version) — an LLM group's by (group, "") — for metrics.
    caches: dict[tuple[str, str], CachePolicy[Any, Any]] = field(default_factory=dict)
    #: Redis clients of the response caches by (url, timeout_s): one pool per server.
    cache_clients: dict[tuple[str, float], Any] = field(default_factory=dict)
    admission: AdmissionPolicy[Any, Any] | None = None
    api_keys: tuple[ApiKey, ...] = ()
    #: LLM model groups by the name clients use (`/v1/...`), each a full pipeline.
    llm: dict[str, Handler[LlmRequest, LlmResponse]] = field(default_factory=dict)
    #: LLM deployments, loaded at start-up and closed at shutdown with the models.
    llm_backends: list[LlmBackend] = field(default_factory=list)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    #: Run first at start-up, in order (database migrations, background writers).
    starters: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    #: Training references (profiles by version) of the models that check inputs against one.
    references: dict[str, TrainingReference] = field(default_factory=dict)
    #: Traffic routers of the models with `traffic:`, by model name.
    routers: dict[str, RouterPolicy] = field(default_factory=dict)
    #: Drift monitors of the models with `drift`, by "model:version".
    monitors: dict[str, DriftMonitor] = field(default_factory=dict)
    #: Run after the models loaded, in order (reading training profiles for loaded models).
    after_load: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    #: What every pipeline shares (keys, admission, rate-limit storage).
    shared: build.SharedParts | None = None

    async def start(self) -> None:
        """Start shared parts, then load the models and LLM deployments (failures recorded)."""
        for start in self.starters:
            await start()
        await self.repository.load_all()
        for after in self.after_load:
            await after()
        for backend in self.llm_backends:
            try:
                await backend.load()
            except Exception:  # one bad deployment must not stop the others; groups fail over
                logger.exception("LLM deployment failed to load", extra={"backend": backend.name})

    async def aclose(self) -> None:
        """Close the LLM deployments and shared clients (the rate limiter's Redis connection)."""
        for backend in self.llm_backends:
            await backend.close()
        for close in self.closers:
            await close()


def core_policies(
    where: str,
    policies: PolicySettings,
    assembly: Assembly,
    label: str,
    clock: Clock,
    on_event: EventSink,
) -> list[Any]:
    """bulkhead → circuit breaker → retry → hedge → timeout, as configured (any request type)."""
    kw: dict[str, Any] = {"clock": clock, "on_event": on_event, "target": label}
    core: list[Any] = []
    if policies.bulkhead is not None:
        with build.at(f"{where}.bulkhead"):
            bulkhead: BulkheadPolicy[Any, Any] = BulkheadPolicy(
                build.bulkhead(policies.bulkhead), **kw
            )
        assembly.bulkheads[label] = bulkhead
        core.append(bulkhead)
    if policies.circuit_breaker is not None:
        with build.at(f"{where}.circuit_breaker"):
            breaker: CircuitBreakerPolicy[Any, Any] = CircuitBreakerPolicy(
                build.circuit_breaker(policies.circuit_breaker), **kw
            )
        assembly.breakers[label] = breaker
        core.append(breaker)
    if policies.retry is not None:
        with build.at(f"{where}.retry"):
            core.append(RetryPolicy(build.retry(policies.retry), **kw))
    if policies.hedge is not None:
        with build.at(f"{where}.hedge"):
            core.append(HedgePolicy(build.hedge(policies.hedge), **kw))
    # Always last: even without a per-call timeout, the request's deadline is enforced.
    with build.at(f"{where}.timeout"):
        core.append(TimeoutPolicy(build.timeout(policies.timeout), **kw))
    return core


def front_policies(
    label: str,
    policies: PolicySettings,
    config: SeawallConfig,
    shared: build.SharedParts,
    clock: Clock,
    on_event: EventSink,
    *,
    before_admission: Sequence[Any] = (),
) -> list[Any]:
    """auth → rate limit → [before_admission] → admission, as configured (any kind of model)."""
    kw: dict[str, Any] = {"clock": clock, "on_event": on_event, "target": label}
    front: list[Any] = []
    if shared.authenticates:
        with build.at("auth.keys"):  # two keys with one name, or with one secret
            front.append(AuthPolicy(keys=shared.api_keys, lookup=shared.key_lookup, **kw))
    with build.at(f"ratelimit (model {label})"):
        limits = build.rate_limits(config.ratelimit, policies.ratelimit)
        if limits is not None:
            front.append(RateLimitPolicy(limits, storage=shared.storage, **kw))
    front.extend(before_admission)
    if shared.admission is not None:
        front.append(shared.admission)
    return front
