"""`EndpointPool`: one model served by several endpoints, with balancing, outlier ejection and
active health checks.

The pool is itself a `Backend`, so a pipeline does not know whether it talks to one endpoint or
many. Each call goes to one endpoint chosen by the balancer among those in service: ready, not
ejected by the `OutlierDetector` and, when health checks are on, healthy. Its outcome feeds the
detector: a `BackendError` is a failure, a success resets the count, and anything else (a
refusal, a cancellation) counts as neither.

Active health checks, after Envoy's: with `HealthCheckOptions`, `load()` starts a task that
probes every endpoint with a `check_health()` (`HealthChecked`) each `interval_s` on the clock,
each probe within `timeout_s`. `unhealthy_threshold` failed probes in a row take an endpoint out
of rotation, `healthy_threshold` passed probes in a row put it back; endpoints start healthy.
Passive ejection and active health combine: an endpoint serves only while it is both in service
and healthy, and one that recovers its health returns from ejection at once (Envoy's
`successful_active_health_check_uneject_host`, limited to that recovery). A checked endpoint
that failed to load is not given up: each round retries its `load()` instead of probing it,
and it joins the pool once it loads (Envoy adds a host when discovery finds it; an upstream
started after the gateway is the same case). `close()` cancels the task.

Panic routing, after Envoy's panic threshold (here at zero): when no endpoint is in service,
calls spread over the ready endpoints, ejected and unhealthy ones included, and when none is
ready, over all the loaded ones, so the caller gets that endpoint's own error. A loaded pool
never answers "no endpoint". For the same reason the pool is `ready()` while any loaded endpoint
is ready: ejection and health steer traffic, they do not take the model offline. Endpoints that
have not loaded are left out of everything (`infer` may only follow a successful `load`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from seawall.backends.balancer import Balancer, RoundRobin
from seawall.backends.base import Backend, HealthChecked
from seawall.backends.outlier import OutlierDetector, OutlierOptions
from seawall.clock import Clock, SystemClock
from seawall.context import CallContext
from seawall.errors import BackendError, ModelNotReadyError
from seawall.pipeline import EventSink, discard
from seawall.types import InferenceRequest, InferenceResponse, ModelMetadata

__all__ = [
    "Endpoint",
    "EndpointHealthy",
    "EndpointLoadFailed",
    "EndpointLoaded",
    "EndpointPool",
    "EndpointUnhealthy",
    "HealthCheckOptions",
]

DEFAULT_WEIGHT = 1
DEFAULT_HEALTH_INTERVAL_S = 5.0
DEFAULT_HEALTH_TIMEOUT_S = 1.0
DEFAULT_UNHEALTHY_THRESHOLD = 3
DEFAULT_HEALTHY_THRESHOLD = 2


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One member of a pool with its share of traffic under `WeightedRoundRobin`."""

    backend: Backend
    #: Relative share of calls (other balancers ignore it).
    weight: int = DEFAULT_WEIGHT

    def __post_init__(self) -> None:
        if self.weight < 1:
            raise ValueError(f"weight: must be at least 1, got {self.weight}")


@dataclass(frozen=True, slots=True)
class HealthCheckOptions:
    """How often a pool probes its endpoints and when it takes one out (Envoy's names)."""

    #: Seconds between the end of one round of probes and the start of the next.
    interval_s: float = DEFAULT_HEALTH_INTERVAL_S
    #: Seconds a probe may take; a slower one has failed.
    timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S
    #: Failed probes in a row that take a healthy endpoint out of rotation.
    unhealthy_threshold: int = DEFAULT_UNHEALTHY_THRESHOLD
    #: Passed probes in a row that put an unhealthy endpoint back.
    healthy_threshold: int = DEFAULT_HEALTHY_THRESHOLD

    def __post_init__(self) -> None:
        for name in ("interval_s", "timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be more than 0, got {getattr(self, name)}")
        for name in ("unhealthy_threshold", "healthy_threshold"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class EndpointLoadFailed:
    """An endpoint failed to load; the pool serves with the others."""

    target: str
    endpoint: str
    index: int
    error: str


@dataclass(frozen=True, slots=True)
class EndpointLoaded:
    """An endpoint that had failed to load loaded on a health-check round: it joins the pool."""

    target: str
    endpoint: str
    index: int
    #: Loads tried by health-check rounds, this one included.
    attempts: int


@dataclass(frozen=True, slots=True)
class EndpointUnhealthy:
    """An endpoint failed `unhealthy_threshold` health checks in a row: out of rotation."""

    target: str
    endpoint: str
    index: int
    consecutive_failures: int
    #: Why the last probe failed.
    reason: str


@dataclass(frozen=True, slots=True)
class EndpointHealthy:
    """An unhealthy endpoint passed `healthy_threshold` health checks in a row: back in rotation."""

    target: str
    endpoint: str
    index: int
    consecutive_successes: int
    #: Seconds it was out of rotation.
    unhealthy_s: float


class _Health:
    """What the health checks know of one endpoint."""

    __slots__ = ("failures", "healthy", "load_attempts", "since", "successes")

    def __init__(self) -> None:
        self.healthy = True
        self.failures = 0  # failed probes in a row while healthy
        self.successes = 0  # passed probes in a row while unhealthy
        self.since = 0.0  # when it became unhealthy
        self.load_attempts = 0


class EndpointPool:
    """A `Backend` that spreads calls over endpoint backends and ejects the failing ones."""

    def __init__(
        self,
        endpoints: Sequence[Backend | Endpoint],
        *,
        balancer: Balancer | None = None,
        outlier: OutlierOptions | None = None,
        health: HealthCheckOptions | None = None,
        clock: Clock | None = None,
        on_event: EventSink = discard,
        target: str = "",
    ) -> None:
        if not endpoints:
            raise ValueError("endpoints: a pool needs at least one endpoint")
        members = [e if isinstance(e, Endpoint) else Endpoint(e) for e in endpoints]
        self._backends = [m.backend for m in members]
        self._weights = [m.weight for m in members]
        names = [b.name for b in self._backends]
        self.name = f"pool[{', '.join(names)}]"
        self._balancer: Balancer = balancer or RoundRobin()
        self._clock = clock or SystemClock()
        self._target = target
        self._on_event = on_event
        self.detector = OutlierDetector(
            names, outlier, clock=self._clock, on_event=on_event, target=target
        )
        self.health_options = health
        self._health = [_Health() for _ in members]
        self._checked = [i for i, b in enumerate(self._backends) if isinstance(b, HealthChecked)]
        self._checks: asyncio.Task[None] | None = None
        self._outstanding = [0] * len(members)
        self._loaded = [False] * len(members)

    @property
    def endpoints(self) -> tuple[Backend, ...]:
        return tuple(self._backends)

    @property
    def outstanding(self) -> tuple[int, ...]:
        """Calls in flight per endpoint."""
        return tuple(self._outstanding)

    @property
    def weights(self) -> tuple[int, ...]:
        return tuple(self._weights)

    @property
    def balancer(self) -> Balancer:
        return self._balancer

    @property
    def loaded(self) -> tuple[bool, ...]:
        """Whether each endpoint has loaded (and may be called)."""
        return tuple(self._loaded)

    def is_healthy(self, index: int) -> bool:
        """False while the health checks keep endpoint `index` out of rotation."""
        return self._health[index].healthy

    async def load(self) -> None:
        """Load every endpoint concurrently; fail only if none loads."""
        results = await asyncio.gather(*(b.load() for b in self._backends), return_exceptions=True)
        errors: list[Exception] = []
        for index, result in enumerate(results):
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result  # cancelled: not a load failure
            if isinstance(result, Exception):
                errors.append(result)
                self._on_event(
                    EndpointLoadFailed(
                        self._target,
                        self._backends[index].name,
                        index,
                        f"{type(result).__name__}: {result}",
                    )
                )
            else:
                self._loaded[index] = True
        if len(errors) == len(self._backends):
            raise errors[0]
        if self.health_options is not None and self._checked and self._checks is None:
            self._checks = asyncio.create_task(self._check_loop(self.health_options))

    def ready(self) -> bool:
        return any(ok and b.ready() for ok, b in zip(self._loaded, self._backends, strict=True))

    def metadata(self) -> ModelMetadata:
        """The signature of the first endpoint that loaded."""
        for loaded, backend in zip(self._loaded, self._backends, strict=True):
            if loaded:
                return backend.metadata()
        raise ModelNotReadyError(f"{self.name}: no endpoint is loaded")

    def pick(self) -> int:
        """The index of the endpoint for the next call (panic routing if none is in service)."""
        # An endpoint that failed to load is never called: the Backend contract forbids it.
        loaded = [i for i, ok in enumerate(self._loaded) if ok]
        if not loaded:
            raise ModelNotReadyError(f"{self.name}: no endpoint is loaded")
        ready = [i for i in loaded if self._backends[i].ready()]
        in_service = [
            i for i in ready if self._health[i].healthy and not self.detector.is_ejected(i)
        ]
        candidates = in_service or ready or loaded
        return self._balancer.pick(candidates, self._outstanding, self._weights)

    async def infer(self, request: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        index = self.pick()
        self._outstanding[index] += 1
        try:
            response = await self._backends[index].infer(request, ctx)
        except BackendError:
            self.detector.record_failure(index)
            raise
        finally:
            self._outstanding[index] -= 1
        self.detector.record_success(index)
        return response

    async def close(self) -> None:
        """Stop the health checks; close every endpoint, even if some fail to; then raise the
        first failure."""
        checks, self._checks = self._checks, None
        if checks is not None:
            checks.cancel()
            try:
                await checks
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # close() itself was cancelled, not just the checks
        results = await asyncio.gather(*(b.close() for b in self._backends), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _check_loop(self, options: HealthCheckOptions) -> None:
        while True:
            await self._clock.sleep(options.interval_s)
            await asyncio.gather(*(self._probe(i, options) for i in self._checked))

    async def _probe(self, index: int, options: HealthCheckOptions) -> None:
        """One probe of one endpoint (a load, if it has not loaded yet); never raises."""
        backend = self._backends[index]
        loading = not self._loaded[index]
        passed, reason = False, "the health check failed"
        try:
            async with self._clock.timeout(options.timeout_s):
                if loading:
                    await backend.load()
                    passed = True
                elif isinstance(backend, HealthChecked):
                    passed = await backend.check_health()
        except TimeoutError:
            reason = f"no answer within {options.timeout_s:g} s"
        except Exception as exc:  # a probe that raises has failed; the checks must go on
            reason = f"{type(exc).__name__}: {exc}"
        if loading:
            self._after_load(index, passed)
        else:
            self._record(index, passed, reason, options)

    def _after_load(self, index: int, loaded: bool) -> None:
        health = self._health[index]
        health.load_attempts += 1
        if not loaded:
            return
        self._loaded[index] = True
        health.healthy, health.failures, health.successes = True, 0, 0
        name = self._backends[index].name
        self._on_event(EndpointLoaded(self._target, name, index, health.load_attempts))

    def _record(self, index: int, passed: bool, reason: str, options: HealthCheckOptions) -> None:
        health = self._health[index]
        name = self._backends[index].name
        if passed:
            health.failures = 0
            if health.healthy:
                return
            health.successes += 1
            if health.successes >= options.healthy_threshold:
                unhealthy_s = self._clock.monotonic() - health.since
                health.healthy = True
                self._on_event(
                    EndpointHealthy(self._target, name, index, health.successes, unhealthy_s)
                )
                health.successes = 0
                # Its ejection most likely came from the same outage: it serves again now.
                self.detector.return_early(index)
            return
        health.successes = 0
        if not health.healthy:
            return
        health.failures += 1
        if health.failures >= options.unhealthy_threshold:
            health.healthy, health.since = False, self._clock.monotonic()
            self._on_event(EndpointUnhealthy(self._target, name, index, health.failures, reason))
            health.failures = 0

    def __repr__(self) -> str:
        return f"EndpointPool({self.name!r}, balancer={self._balancer!r})"
