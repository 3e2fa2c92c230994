"""Models and their pipelines, built from configuration.

Each model's pipeline is, outermost first::

    auth → rate limit → admission → validation → fallback
         → bulkhead → circuit breaker → retry → hedge → timeout → backend

A fallback to another model calls that model's inner chain (validation inward), so the other
model's bulkhead and breaker see the traffic, and fallbacks never chain into each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from seawall.assemble import options as build
from seawall.backends import (
    Backend,
    CallableBackend,
    InProcessOptions,
    MockBackend,
    ModelRepository,
    OnnxBackend,
    Respond,
    ServedModel,
    SklearnBackend,
)
from seawall.clock import Clock, SystemClock
from seawall.config import (
    BackendSettings,
    CallableBackendSettings,
    MockBackendSettings,
    ModelSettings,
    OnnxBackendSettings,
    SeawallConfig,
    SklearnBackendSettings,
    TensorSpecSettings,
)
from seawall.config.policies import PolicySettings
from seawall.errors import BackendUnavailableError, ConfigError
from seawall.pipeline import EventSink, Handler, Pipeline, Policy, discard
from seawall.policies import (
    AdmissionPolicy,
    ApiKey,
    AuthPolicy,
    BulkheadPolicy,
    CircuitBreakerPolicy,
    FallbackPolicy,
    HedgePolicy,
    RateLimitPolicy,
    RetryPolicy,
    TimeoutPolicy,
    ValidationOptions,
    ValidationPolicy,
)
from seawall.types import InferenceRequest, InferenceResponse, TensorSpec

__all__ = ["Assembly", "assemble", "build_backend"]

InferencePolicy = Policy[InferenceRequest, InferenceResponse]
InferenceHandler = Handler[InferenceRequest, InferenceResponse]


@dataclass
class Assembly:
    """Everything built from one config: the models, and the shared parts the admin API drives."""

    repository: ModelRepository
    #: Circuit breakers by "model:version", for the admin API and metrics.
    breakers: dict[str, CircuitBreakerPolicy[Any, Any]] = field(default_factory=dict)
    #: Bulkheads by "model:version", for metrics.
    bulkheads: dict[str, BulkheadPolicy[Any, Any]] = field(default_factory=dict)
    admission: AdmissionPolicy[Any, Any] | None = None
    api_keys: tuple[ApiKey, ...] = ()
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def aclose(self) -> None:
        """Close shared clients (the Redis connection of the rate limiter)."""
        for close in self.closers:
            await close()


@dataclass
class _Model:
    settings: ModelSettings
    label: str
    backend: Backend
    policies: PolicySettings
    validation: ValidationPolicy
    core: list[InferencePolicy]
    inner: InferenceHandler


def assemble(
    config: SeawallConfig, *, clock: Clock | None = None, on_event: EventSink = discard
) -> Assembly:
    """Build every configured model (backend plus pipeline); nothing is loaded yet."""
    clock = clock or SystemClock()
    shared = build.SharedParts.from_config(config, clock, on_event)
    assembly = Assembly(
        ModelRepository(clock),
        admission=shared.admission,
        api_keys=shared.api_keys,
        closers=shared.closers,
    )
    models = [_model(i, s, config, assembly, clock, on_event) for i, s in enumerate(config.models)]
    for model in models:
        assembly.repository.add(
            ServedModel(model.settings.name, model.settings.version, model.backend, model.inner),
            default=model.settings.default,
        )
    inner = {(m.settings.name, m.settings.version): m.inner for m in models}
    for i, model in enumerate(models):
        front = _front(model, config, shared, clock, on_event)
        fallback = _fallback(i, model, config, assembly.repository, inner, clock, on_event)
        policies = [*front, model.validation, *fallback, *model.core]
        served = assembly.repository.get(model.settings.name, model.settings.version)
        served.handler = Pipeline(policies, model.backend.infer, name=model.label)
    return assembly


def _model(
    index: int,
    settings: ModelSettings,
    config: SeawallConfig,
    assembly: Assembly,
    clock: Clock,
    on_event: EventSink,
) -> _Model:
    label = f"{settings.name}:{settings.version}"
    backend = build_backend(settings, config, clock)
    policies = config.policies_for(settings)
    validation = ValidationPolicy(
        backend.metadata,
        ValidationOptions(convert_datatypes=settings.validation.convert_datatypes),
        on_event=on_event,
    )
    core = _core(f"models[{index}].policies", policies, assembly, label, clock, on_event)
    inner = Pipeline([validation, *core], backend.infer, name=f"{label} (inner)")
    return _Model(settings, label, backend, policies, validation, core, inner)


def _core(
    where: str,
    policies: PolicySettings,
    assembly: Assembly,
    label: str,
    clock: Clock,
    on_event: EventSink,
) -> list[InferencePolicy]:
    """bulkhead → circuit breaker → retry → hedge → timeout, as configured."""
    kw: dict[str, Any] = {"clock": clock, "on_event": on_event, "target": label}
    core: list[InferencePolicy] = []
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


def _front(
    model: _Model,
    config: SeawallConfig,
    shared: build.SharedParts,
    clock: Clock,
    on_event: EventSink,
) -> list[InferencePolicy]:
    kw: dict[str, Any] = {"clock": clock, "on_event": on_event, "target": model.label}
    front: list[InferencePolicy] = []
    if shared.api_keys:
        with build.at("auth.keys"):  # two keys with one name, or with one secret
            front.append(AuthPolicy(keys=shared.api_keys, **kw))
    with build.at(f"ratelimit (model {model.label})"):
        limits = build.rate_limits(config.ratelimit, model.policies.ratelimit)
        if limits is not None:
            front.append(RateLimitPolicy(limits, storage=shared.storage, **kw))
    if shared.admission is not None:
        front.append(shared.admission)
    return front


def _fallback(
    index: int,
    model: _Model,
    config: SeawallConfig,
    repository: ModelRepository,
    inner: dict[tuple[str, str], InferenceHandler],
    clock: Clock,
    on_event: EventSink,
) -> list[InferencePolicy]:
    settings = model.policies.fallback
    if settings is None:
        return []
    with build.at(f"models[{index}].policies.fallback"):

        def handler(name: str, version: str | None) -> InferenceHandler:
            return inner[(name, version or repository.default_version(name))]

        alternatives = build.alternatives(settings, handler, config, clock)
        return [
            FallbackPolicy(
                alternatives,
                build.fallback(settings),
                clock=clock,
                on_event=on_event,
                target=model.label,
            )
        ]


def build_backend(settings: ModelSettings, config: SeawallConfig, clock: Clock) -> Backend:
    """The backend for one model version."""
    spec: BackendSettings = settings.backend
    if isinstance(spec, MockBackendSettings):
        return MockBackend(
            settings.name,
            default=Respond(latency_s=spec.latency_ms / 1000.0),
            error_rate=spec.error_rate,
            error=BackendUnavailableError(f"model {settings.name!r}: injected failure"),
            seed=spec.seed,
            clock=clock,
        )
    options = InProcessOptions(workers=spec.workers, max_queue=spec.max_queue)
    if isinstance(spec, SklearnBackendSettings):
        return SklearnBackend(
            config.resolve_path(spec.path),
            input_name=spec.input_name,
            input_datatype=spec.input_datatype,
            options=options,
            clock=clock,
        )
    if isinstance(spec, OnnxBackendSettings):
        return OnnxBackend(
            config.resolve_path(spec.path),
            intra_op_threads=spec.intra_op_threads,
            options=options,
            clock=clock,
        )
    if isinstance(spec, CallableBackendSettings):
        search_path = config.resolve_path(spec.search_path) if spec.search_path else None
        return CallableBackend(
            spec.target,
            inputs=[_spec(s) for s in spec.inputs],
            outputs=[_spec(s) for s in spec.outputs],
            search_path=search_path,
            options=options,
            clock=clock,
        )
    raise ConfigError(f"unhandled backend settings {type(spec).__name__}")  # pragma: no cover


def _spec(settings: TensorSpecSettings) -> TensorSpec:
    return TensorSpec(settings.name, settings.datatype, tuple(settings.shape))
