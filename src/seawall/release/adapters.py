"""What the rollout controller drives and reads, on the gateway's own objects.

- `SplitTraffic`: a `TrafficTarget` over a model's traffic split (`seawall.policies.variants.
  TrafficSplit`): sets the canary and its weight, switches to it on promotion (moving a registry
  alias and recording the deployments), clears it on rollback.
- `RegistryApprovals`: an `ApprovalGate` asking the registry whether a version has its approvals.
- `RouterMetrics`: a `MetricSource` reading the router's per-version windows (error rate, p95
  latency) for the gateway's own traffic.

They talk to the split and the router through small protocols, so `seawall.release` does not
depend on the policies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from seawall.clock import Clock
from seawall.errors import ConflictError
from seawall.release.errors import MetricUnavailableError
from seawall.release.plan import MetricKind, MetricRef

if TYPE_CHECKING:
    from seawall.registry import Registry

__all__ = [
    "DEFAULT_DEPLOYMENT_TARGET",
    "DEFAULT_MIN_REQUESTS",
    "RegistryApprovals",
    "RouterLike",
    "RouterMetrics",
    "SplitLike",
    "SplitTraffic",
]

logger = logging.getLogger("seawall.release")

#: Where the gateway's deployments are recorded in the registry.
DEFAULT_DEPLOYMENT_TARGET = "gateway"
#: Calls a version must have served in the window before its error rate or latency counts.
DEFAULT_MIN_REQUESTS = 20


class SplitLike(Protocol):
    """The parts of a `TrafficSplit` a rollout moves."""

    @property
    def stable(self) -> str: ...

    @property
    def canary(self) -> str | None: ...

    @property
    def canary_weight(self) -> float: ...

    def set_canary_weight(self, percent: float) -> object: ...

    def set_canary(self, version: str | None) -> object: ...

    def switch(self, version: str) -> object: ...


class SplitTraffic:
    """Drives `split` for the rollout of `canary` of `model`; see the module docstring.

    With a `registry`, each change is recorded as a deployment of the version at `target`
    (share 0..1; a failure to record is logged, traffic moves regardless), and with an `alias`
    too, promotion first points the alias at the canary: a registry refusal (a protected alias
    not in production) stops the promotion before any traffic moves. Registry versions are
    numbers, so a non-numeric canary with a registry is refused.
    """

    def __init__(
        self,
        split: SplitLike,
        *,
        model: str,
        canary: str,
        registry: Registry | None = None,
        alias: str | None = None,
        actor: str,
        target: str = DEFAULT_DEPLOYMENT_TARGET,
    ) -> None:
        if alias is not None and registry is None:
            raise ValueError("alias: moving an alias needs the registry")
        if registry is not None and not canary.isdigit():
            raise ValueError(f"canary: registry versions are numbers, got {canary!r}")
        self.split = split
        self.model = model
        self.canary = canary
        self._registry = registry
        self._alias = alias
        self._actor = actor
        self._target = target

    async def set_canary_weight(self, percent: float) -> None:
        before = self.split.canary_weight if self.split.canary == self.canary else None
        self._moved(lambda: self._set(percent))
        if before != percent:
            await self._deployed(self.canary, percent / 100)

    async def promote(self) -> None:
        stable = self.split.stable
        if self._registry is not None and self._alias is not None:
            await self._registry.set_alias(
                self.model, self._alias, int(self.canary), actor=self._actor
            )
        self._moved(lambda: self.split.switch(self.canary))
        await self._deployed(self.canary, 1.0)
        if stable != self.canary and stable.isdigit():
            await self._deployed(stable, 0.0)

    async def rollback(self) -> None:
        self._moved(lambda: self.split.set_canary(None))
        await self._deployed(self.canary, 0.0)

    def _set(self, percent: float) -> None:
        if self.split.canary != self.canary:
            self.split.set_canary(self.canary)
        self.split.set_canary_weight(percent)

    def _moved(self, change: Callable[[], object]) -> None:
        try:
            change()
        except ValueError as exc:  # the split refuses a version it does not serve
            raise ConflictError(f"traffic of {self.model}: {exc}") from None

    async def _deployed(self, version: str, share: float) -> None:
        """Record the deployment; a registry failure is logged, never stops traffic moving."""
        if self._registry is None:
            return
        try:
            await self._registry.record_deployment(
                self.model, int(version), self._target, share, actor=self._actor
            )
        except Exception:  # history is secondary: a rollback must not wait for it
            logger.exception(
                "rollout of %s %s: could not record %s at %g of %s in the registry",
                self.model,
                self.canary,
                version,
                share,
                self._target,
            )


class RegistryApprovals:
    """Approved means: the registry says the version may enter production now."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    async def approved(self, model: str, version: str) -> bool:
        if not version.isdigit():
            logger.warning(
                "rollout of %s %s: waiting for an approval that cannot come: the registry "
                "approves numbered versions, and %r is not a number",
                model,
                version,
                version,
            )
            return False
        status = await self._registry.approval_status(model, int(version))
        return status.satisfied


class WindowLike(Protocol):
    """What one version did in a window (`VariantWindow`)."""

    @property
    def requests(self) -> int: ...

    @property
    def error_rate(self) -> float: ...

    @property
    def p95_s(self) -> float | None: ...


class StatsLike(Protocol):
    """One version's sliding window (`VariantStats`)."""

    def snapshot(self, now: float, window_s: float | None = None) -> WindowLike: ...


class RouterLike(Protocol):
    """A model's router (`RouterPolicy`): per-version statistics."""

    def stats(self, version: str) -> StatsLike: ...


class RouterMetrics:
    """`error_rate` and `latency_p95_s` of a version from the gateway's own calls.

    A version that served fewer than `min_requests` calls in the window (or no successful one,
    for latency) has no value yet: `MetricUnavailableError`, so the analysis waits rather than
    judges on a handful of calls. `clock` must be the router's (its windows use `monotonic`).
    """

    def __init__(
        self, router: RouterLike, *, clock: Clock, min_requests: int = DEFAULT_MIN_REQUESTS
    ) -> None:
        if min_requests < 1:
            raise ValueError(f"min_requests: at least 1, got {min_requests}")
        self._router = router
        self._clock = clock
        self._min_requests = min_requests

    async def value(self, metric: MetricRef, variant_version: str, window_s: float) -> float:
        if metric.kind not in (MetricKind.ERROR_RATE, MetricKind.LATENCY_P95_S):
            raise MetricUnavailableError(
                f"{metric.name}: the gateway does not measure {metric.kind}"
            )
        try:
            stats = self._router.stats(variant_version)
        except KeyError:
            raise MetricUnavailableError(
                f"{metric.name}: version {variant_version!r} is not routed by the gateway"
            ) from None
        window = stats.snapshot(self._clock.monotonic(), window_s)
        if window.requests < self._min_requests:
            raise MetricUnavailableError(
                f"{metric.name}: {variant_version!r} served {window.requests} call(s) in the "
                f"last {window_s:g} s, fewer than {self._min_requests}"
            )
        if metric.kind is MetricKind.ERROR_RATE:
            return window.error_rate
        if window.p95_s is None:
            raise MetricUnavailableError(
                f"{metric.name}: {variant_version!r} had no successful call in the last "
                f"{window_s:g} s"
            )
        return window.p95_s
