"""`EndpointPool`: one model served by several endpoints, with balancing and outlier ejection.

The pool is itself a `Backend`, so a pipeline does not know whether it talks to one endpoint or
many. Each call goes to one endpoint chosen by the balancer among those in service (not ejected
by the `OutlierDetector`) and ready. Its outcome feeds the detector: a `BackendError` is a failure,
a success resets the count, and anything else (a refusal, a cancellation) counts as neither.

Panic routing, after Envoy's panic threshold (here at zero): when no endpoint is both in service
and ready, calls spread over the ready endpoints, ejected ones included, and when none is ready,
over all the loaded ones, so the caller gets that endpoint's own error. A loaded pool never
answers "no endpoint". For the same reason the pool is `ready()` while any loaded endpoint is
ready: ejection steers traffic, it does not take the model offline. Endpoints that failed to
load are left out of everything (`infer` may only follow a successful `load`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from seawall.backends.balancer import Balancer, RoundRobin
from seawall.backends.base import Backend
from seawall.backends.outlier import OutlierDetector, OutlierOptions
from seawall.clock import Clock
from seawall.context import CallContext
from seawall.errors import BackendError, ModelNotReadyError
from seawall.pipeline import EventSink, discard
from seawall.types import InferenceRequest, InferenceResponse, ModelMetadata

__all__ = ["Endpoint", "EndpointLoadFailed", "EndpointPool"]

DEFAULT_WEIGHT = 1


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
class EndpointLoadFailed:
    """An endpoint failed to load; the pool serves with the others."""

    target: str
    endpoint: str
    index: int
    error: str


class EndpointPool:
    """A `Backend` that spreads calls over endpoint backends and ejects the failing ones."""

    def __init__(
        self,
        endpoints: Sequence[Backend | Endpoint],
        *,
        balancer: Balancer | None = None,
        outlier: OutlierOptions | None = None,
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
        self._target = target
        self._on_event = on_event
        self.detector = OutlierDetector(
            names, outlier, clock=clock, on_event=on_event, target=target
        )
        self._outstanding = [0] * len(members)
        self._loaded = [False] * len(members)

    @property
    def endpoints(self) -> tuple[Backend, ...]:
        return tuple(self._backends)

    @property
    def outstanding(self) -> tuple[int, ...]:
        """Calls in flight per endpoint."""
        return tuple(self._outstanding)

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
        in_service = [i for i in ready if not self.detector.is_ejected(i)]
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
        """Close every endpoint, even if some fail to; then raise the first failure."""
        results = await asyncio.gather(*(b.close() for b in self._backends), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def __repr__(self) -> str:
        return f"EndpointPool({self.name!r}, balancer={self._balancer!r})"
