"""The one place that turns configuration into backends and pipelines.

Every backend kind and policy kind named in config is resolved here, once, at start-up; the
rest of seawall receives built objects and never switches on strings.
"""

from __future__ import annotations

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
from seawall.errors import BackendUnavailableError
from seawall.pipeline import EventSink, Pipeline, discard
from seawall.policies import ValidationOptions, ValidationPolicy
from seawall.types import InferenceRequest, InferenceResponse, TensorSpec

__all__ = ["assemble", "build_backend", "build_pipeline"]


def assemble(
    config: SeawallConfig, *, clock: Clock | None = None, on_event: EventSink = discard
) -> ModelRepository:
    """Build every configured model (backend plus pipeline); nothing is loaded yet."""
    clock = clock or SystemClock()
    repository = ModelRepository(clock)
    for settings in config.models:
        backend = build_backend(settings, config, clock)
        pipeline = build_pipeline(settings, backend, on_event=on_event)
        model = ServedModel(settings.name, settings.version, backend, pipeline)
        repository.add(model, default=settings.default)
    return repository


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
    raise AssertionError(f"unhandled backend settings {type(spec).__name__}")  # pragma: no cover


def build_pipeline(
    settings: ModelSettings, backend: Backend, *, on_event: EventSink = discard
) -> Pipeline[InferenceRequest, InferenceResponse]:
    """The policies in front of one model version, outermost first."""
    validation = ValidationPolicy(
        backend.metadata,
        ValidationOptions(convert_datatypes=settings.validation.convert_datatypes),
        on_event=on_event,
    )
    return Pipeline([validation], backend.infer, name=f"{settings.name}:{settings.version}")


def _spec(settings: TensorSpecSettings) -> TensorSpec:
    return TensorSpec(settings.name, settings.datatype, tuple(settings.shape))
