"""Models and their pipelines, built from configuration.

Each model's pipeline is, outermost first::

    auth → rate limit → admission → validation → profile check → cache → fallback
         → bulkhead → circuit breaker → retry → hedge → timeout → batching → backend

A fallback to another model calls that model's inner chain (validation inward), so the other
model's bulkhead and breaker see the traffic, and fallbacks never chain into each other.
The cache sits after validation (only valid inputs, converted as the model takes them, are
keyed) and before the fallback, so a fallback's answer is seen, and not stored, by the cache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from seawall.assemble import options as build
from seawall.assemble.cache import model_cache
from seawall.assemble.control import ControlPlane
from seawall.assemble.drift import drift_sampler
from seawall.assemble.llm import assemble_llm
from seawall.assemble.parts import Assembly, InferencePolicy, core_policies, front_policies
from seawall.assemble.reference import profile_check, training_reference
from seawall.assemble.registry import registry_backend
from seawall.assemble.release import assemble_release
from seawall.assemble.signing import artifact_check, artifact_verifier
from seawall.assemble.traffic import assemble_traffic
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
from seawall.backends.balancer import Balancer, LeastOutstanding, RoundRobin, WeightedRoundRobin
from seawall.backends.http import HttpOptions, HttpUpstream
from seawall.backends.oip import OipBackend
from seawall.backends.oip.backend import DEFAULT_HEALTH_TIMEOUT_S
from seawall.backends.outlier import OutlierOptions
from seawall.backends.pool import Endpoint, EndpointPool, HealthCheckOptions
from seawall.backends.swap import SwappableBackend
from seawall.clock import Clock, SystemClock
from seawall.config import (
    BackendSettings,
    CallableBackendSettings,
    MockBackendSettings,
    ModelSettings,
    OnnxBackendSettings,
    RegistryBackendSettings,
    SeawallConfig,
    SklearnBackendSettings,
    TensorSpecSettings,
)
from seawall.config.models import OipBackendSettings
from seawall.config.policies import PolicySettings
from seawall.errors import BackendUnavailableError, ConfigError
from seawall.pipeline import EventSink, Handler, Pipeline, discard
from seawall.policies import (
    BatchingPolicy,
    FallbackPolicy,
    ValidationOptions,
    ValidationPolicy,
)
from seawall.security import ArtifactVerifier
from seawall.types import InferenceRequest, InferenceResponse, ModelMetadata, TensorSpec

__all__ = ["assemble", "build_backend"]

InferenceHandler = Handler[InferenceRequest, InferenceResponse]


@dataclass
class _Model:
    settings: ModelSettings
    label: str
    backend: Backend
    policies: PolicySettings
    #: Signature validation, then the training-profile check (if on).
    checks: list[InferencePolicy]
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
        starters=shared.starters,
        shared=shared,
    )
    verifier = artifact_verifier(config)  # keys read once; a bad one fails here, with its path
    models = [
        _model(i, s, config, assembly, clock, on_event, verifier)
        for i, s in enumerate(config.models)
    ]
    for model in models:
        served = ServedModel(
            model.settings.name, model.settings.version, model.backend, model.inner
        )
        assembly.repository.add(served, default=model.settings.default)
        if isinstance(model.backend, SwappableBackend):
            model.backend.on_swap = assembly.repository.swapped_hook(served)
    inner = {(m.settings.name, m.settings.version): m.inner for m in models}
    routed: dict[tuple[str, str], InferenceHandler] = {}
    for i, model in enumerate(models):
        front = front_policies(model.label, model.policies, config, shared, clock, on_event)
        fallback = _fallback(i, model, config, assembly.repository, inner, clock, on_event)
        served = assembly.repository.get(model.settings.name, model.settings.version)
        where = f"models[{i}].policies.cache"
        cache = model_cache(where, model.policies.cache, served, config, assembly, clock, on_event)
        behind = [*model.checks, *cache, *fallback, *model.core]
        served.handler = Pipeline([*front, *behind], model.backend.infer, name=model.label)
        if model.settings.name in config.traffic:  # the router ran the front policies already
            label = f"{model.label} (routed)"
            routed[(model.settings.name, model.settings.version)] = Pipeline(
                behind, model.backend.infer, name=label
            )
    assemble_traffic(config, assembly, routed=routed, inner=inner, clock=clock, on_event=on_event)
    assemble_release(config, assembly, clock)
    assemble_llm(config, assembly, clock=clock, on_event=on_event)
    return assembly


def _model(
    index: int,
    settings: ModelSettings,
    config: SeawallConfig,
    assembly: Assembly,
    clock: Clock,
    on_event: EventSink,
    verifier: ArtifactVerifier,
) -> _Model:
    label = f"{settings.name}:{settings.version}"
    with build.at(f"models[{index}].backend"):
        control = assembly.shared.control if assembly.shared is not None else None
        backend = build_backend(
            settings, config, clock, on_event, verifier=verifier, control=control
        )
    policies = config.policies_for(settings)
    validation = ValidationPolicy(
        backend.metadata,
        ValidationOptions(convert_datatypes=settings.validation.convert_datatypes),
        on_event=on_event,
    )
    core = core_policies(f"models[{index}].policies", policies, assembly, label, clock, on_event)
    if policies.batching is not None:
        # Innermost, inside the timeout: each caller still gives up at its own deadline.
        with build.at(f"models[{index}].policies.batching"):
            batcher = BatchingPolicy(
                build.batching(policies.batching), clock=clock, on_event=on_event, target=label
            )
        assembly.batchers[label] = batcher
        core.append(batcher)
    reference = training_reference(index, settings, config, assembly, backend)
    profile = profile_check(settings, reference, clock=clock, on_event=on_event)
    checks: list[InferencePolicy] = [validation] if profile is None else [validation, profile]
    sampler = drift_sampler(settings, assembly, backend, reference, clock=clock)
    if sampler is not None:  # inside the fallback: only this model's own answers are sampled
        core.insert(0, sampler)
    inner = Pipeline([*checks, *core], backend.infer, name=f"{label} (inner)")
    return _Model(settings, label, backend, policies, checks, core, inner)


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


def build_backend(
    settings: ModelSettings,
    config: SeawallConfig,
    clock: Clock,
    on_event: EventSink = discard,
    *,
    verifier: ArtifactVerifier | None = None,
    control: ControlPlane | None = None,
) -> Backend:
    """The backend for one model version; a remote one's events go to `on_event`.

    A model file is verified against `verifier` (default: the config's `security`) before it
    is loaded. A registry model needs `control` (the database holding the registry).
    """
    spec: BackendSettings = settings.backend
    if isinstance(spec, RegistryBackendSettings):
        if control is None:
            raise ConfigError("a registry model needs the control plane's database")
        return registry_backend(
            settings,
            spec,
            config,
            registry=control.registry,
            audit=control.audit,
            verifier=verifier or artifact_verifier(config),
            clock=clock,
            on_event=on_event,
        )
    if isinstance(spec, OipBackendSettings):
        return _oip_pool(settings, spec, config, clock, on_event)
    if isinstance(spec, MockBackendSettings):
        return MockBackend(
            settings.name,
            default=Respond(latency_s=spec.latency_ms / 1000.0),
            error_rate=spec.error_rate,
            error=BackendUnavailableError(f"model {settings.name!r}: injected failure"),
            seed=spec.seed,
            clock=clock,
        )
    check = artifact_check(settings, config, verifier or artifact_verifier(config))
    options = InProcessOptions(workers=spec.workers, max_queue=spec.max_queue, check_artifact=check)
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


_BALANCERS: dict[str, Callable[[], Balancer]] = {
    "round_robin": RoundRobin,
    "least_outstanding": LeastOutstanding,
    "weighted": WeightedRoundRobin,
}


def _oip_pool(
    settings: ModelSettings,
    spec: OipBackendSettings,
    config: SeawallConfig,
    clock: Clock,
    on_event: EventSink,
) -> EndpointPool:
    """A pool of `OipBackend`s, one per endpoint, even for a single endpoint (its health checks
    and outlier events still tell the operator what the upstream does)."""
    http, health = spec.http, spec.health_check
    options = HttpOptions(
        connect_timeout_s=http.connect_timeout_ms / 1000.0,
        first_byte_timeout_s=http.first_byte_timeout_ms / 1000.0,
        idle_read_timeout_s=http.idle_read_timeout_ms / 1000.0,
        total_timeout_s=None if http.total_timeout_ms is None else http.total_timeout_ms / 1000.0,
        max_connections=http.max_connections,
        keepalive_s=http.keepalive_s,
        verify_tls=http.verify_tls,
        ca_file=_path(config, http.ca_file),
        client_cert=_path(config, http.client_cert),
        client_key=_path(config, http.client_key),
        headers=dict(http.headers),
    )
    probe_s = health.timeout_ms / 1000.0 if health else DEFAULT_HEALTH_TIMEOUT_S
    signature = None
    if spec.inputs is not None and spec.outputs is not None:
        signature = ModelMetadata(
            name=spec.model or settings.name,
            platform="oip",
            inputs=tuple(_spec(s) for s in spec.inputs),
            outputs=tuple(_spec(s) for s in spec.outputs),
        )
    endpoints = [
        Endpoint(
            OipBackend(
                HttpUpstream(endpoint.url, options, clock=clock),
                spec.model or settings.name,
                spec.version,
                binary=spec.binary,
                health_timeout_s=probe_s,
                signature=signature,
                clock=clock,
            ),
            weight=endpoint.weight,
        )
        for endpoint in spec.endpoints
    ]
    outlier = spec.outlier
    return EndpointPool(
        endpoints,
        balancer=_BALANCERS[spec.balancer](),
        outlier=OutlierOptions(
            consecutive_5xx=outlier.consecutive_5xx,
            base_ejection_time_s=outlier.base_ejection_s,
            max_ejection_time_s=outlier.max_ejection_s,
            max_ejection_percent=outlier.max_ejection_percent,
        )
        if outlier is not None
        else OutlierOptions(max_ejection_percent=0.0),  # 0: never eject
        health=HealthCheckOptions(
            interval_s=health.interval_s,
            timeout_s=probe_s,
            unhealthy_threshold=health.unhealthy_threshold,
            healthy_threshold=health.healthy_threshold,
        )
        if health is not None
        else None,
        clock=clock,
        on_event=on_event,
        target=f"{settings.name}:{settings.version}",
    )


def _path(config: SeawallConfig, path: str | None) -> str | None:
    """A TLS file's absolute path; it must exist now, so a typo fails at start with its name."""
    if path is None:
        return None
    resolved = config.resolve_path(path)
    if not resolved.is_file():
        raise ConfigError(f"http: no such file {str(resolved)!r}")
    return str(resolved)
