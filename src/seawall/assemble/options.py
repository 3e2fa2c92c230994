"""Config sections to policy options: units converted, kinds resolved, errors given a path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC
from typing import TYPE_CHECKING, Any

import numpy as np

from seawall.assemble.control import ControlPlane
from seawall.backends.inprocess.callable import resolve
from seawall.clock import Clock
from seawall.config import SeawallConfig
from seawall.config.policies import (
    AdmissionSettings,
    ApiKeySettings,
    BatchingSettings,
    BulkheadSettings,
    CachedAlternativeSettings,
    CircuitBreakerSettings,
    FallbackSettings,
    FunctionAlternativeSettings,
    HedgeSettings,
    ModelAlternativeSettings,
    RateLimitSettings,
    RateLimitsSettings,
    RetryBudgetSettings,
    RetrySettings,
    StaticAlternativeSettings,
    TimeoutSettings,
)
from seawall.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    BadResponseError,
    CircuitOpenError,
    ConfigError,
    ModelExecutionError,
    ModelNotReadyError,
    OverloadedError,
    RateLimitedError,
)
from seawall.pipeline import EventSink, Handler
from seawall.policies import (
    AdmissionOptions,
    AdmissionPolicy,
    ApiKey,
    BucketStorage,
    BulkheadOptions,
    CachedAlternative,
    CircuitBreakerOptions,
    ClassCapacity,
    CountWindow,
    FallbackOptions,
    FunctionAlternative,
    HedgeOptions,
    LastGoodCache,
    MemoryBucketStorage,
    ModelAlternative,
    RateLimit,
    RateLimitOptions,
    RedisBucketStorage,
    RetryBudgetOptions,
    RetryOptions,
    StaticAlternative,
    TimeoutOptions,
    TimeWindow,
)
from seawall.policies.auth import CachedKeyLookup, KeyLookup, hash_key
from seawall.policies.batching import BatchingOptions
from seawall.policies.fallback import Alternative
from seawall.types import InferenceRequest, InferenceResponse

if TYPE_CHECKING:
    from seawall.registry import Registry
    from seawall.store import AuditLog, Database

__all__ = ["ERROR_CODES", "SharedParts", "at"]

#: Error codes that config names (fallback `on`), and the classes they stand for.
ERROR_CODES: dict[str, type[Exception]] = {
    "timeout": BackendTimeoutError,
    "unavailable": BackendUnavailableError,
    "bad_response": BadResponseError,
    "backend_error": BackendError,
    "model_error": ModelExecutionError,
    "circuit_open": CircuitOpenError,
    "overloaded": OverloadedError,
    "model_not_ready": ModelNotReadyError,
    "rate_limited": RateLimitedError,
}


@contextmanager
def at(where: str) -> Iterator[None]:
    """Report an options object's `ValueError` (or a `ConfigError`) at the section's path."""
    try:
        yield
    except (ValueError, ConfigError) as exc:  # ConfigError: an import of a python alternative
        raise ConfigError(f"{where}: {exc}") from None


def _s(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000.0


def timeout(settings: TimeoutSettings | None) -> TimeoutOptions:
    return TimeoutOptions(timeout_s=_s(settings.timeout_ms) if settings else None)


def retry_budget(settings: RetryBudgetSettings) -> RetryBudgetOptions:
    return RetryBudgetOptions(
        ratio=settings.ratio, window_s=settings.window_s, min_per_s=settings.min_per_s
    )


def retry(settings: RetrySettings) -> RetryOptions:
    budget = settings.budget
    return RetryOptions(
        attempts=settings.attempts,
        base_delay_s=settings.base_delay_ms / 1000.0,
        multiplier=settings.multiplier,
        max_delay_s=settings.max_delay_ms / 1000.0,
        budget=None if budget is None else retry_budget(budget),
    )


def circuit_breaker(settings: CircuitBreakerSettings) -> CircuitBreakerOptions:
    window = settings.window
    return CircuitBreakerOptions(
        window=CountWindow(window.size) if window.kind == "count" else TimeWindow(window.size),
        minimum_calls=settings.minimum_calls,
        failure_rate_threshold=settings.failure_rate,
        slow_call_rate_threshold=settings.slow_call_rate,
        slow_call_duration_s=_s(settings.slow_call_ms),
        consecutive_failures=settings.consecutive_failures,
        open_duration_s=settings.open_s,
        backoff_multiplier=settings.backoff_multiplier,
        max_open_duration_s=settings.max_open_s,
        half_open_max_calls=settings.half_open_calls,
    )


def bulkhead(settings: BulkheadSettings) -> BulkheadOptions:
    return BulkheadOptions(
        max_concurrent=settings.max_concurrent,
        max_queue=settings.max_queue,
        max_wait_s=settings.max_wait_ms / 1000.0,
    )


def batching(settings: BatchingSettings) -> BatchingOptions:
    return BatchingOptions(
        max_batch_size=settings.max_batch_size,
        max_wait_s=settings.max_wait_ms / 1000.0,
        max_queue_rows=settings.max_queue_rows,
        max_concurrent_batches=settings.max_concurrent_batches,
        adaptive=settings.adaptive,
    )


def hedge(settings: HedgeSettings) -> HedgeOptions:
    return HedgeOptions(
        delay_s=_s(settings.delay_ms),
        max_hedges=settings.max_hedges,
        quantile=settings.quantile,
        min_delay_s=settings.min_delay_ms / 1000.0,
        initial_delay_s=settings.initial_delay_ms / 1000.0,
    )


def fallback(settings: FallbackSettings) -> FallbackOptions:
    return FallbackOptions(
        max_hops=settings.max_hops,
        triggers=tuple(ERROR_CODES[code] for code in settings.triggers),
        ignored=() if "model_error" in settings.triggers else (ModelExecutionError,),
    )


def alternatives(
    settings: FallbackSettings,
    handler: Callable[[str, str | None], Handler[InferenceRequest, InferenceResponse]],
    config: SeawallConfig,
    clock: Clock,
) -> list[Alternative]:
    """The fallback chain's alternatives, in order."""
    built: list[Alternative] = []
    for item in settings.chain:
        if isinstance(item, ModelAlternativeSettings):
            name = item.model if item.version is None else f"{item.model}:{item.version}"
            target = handler(item.model, item.version)
            built.append(ModelAlternative(name, target, item.model, item.version))
        elif isinstance(item, FunctionAlternativeSettings):
            path = config.resolve_path(item.search_path) if item.search_path else None
            fn = resolve(item.python, path)
            if not callable(fn):
                raise ConfigError(f"python: {item.python!r} is not callable")
            built.append(FunctionAlternative(item.name or item.python, fn))
        elif isinstance(item, StaticAlternativeSettings):
            outputs = {o.name: np.asarray(o.data) for o in item.static}
            types = {o.name: o.datatype for o in item.static if o.datatype is not None}
            built.append(StaticAlternative(outputs, datatypes=types, name=item.name))
        elif isinstance(item, CachedAlternativeSettings):
            cache = LastGoodCache(item.max_entries, ttl_s=item.ttl_s, clock=clock)
            built.append(CachedAlternative(cache))
    return built


def _limit(settings: RateLimitSettings | None) -> RateLimit | None:
    return None if settings is None else RateLimit(settings.rate_per_s, settings.burst)


def rate_limits(
    shared: RateLimitsSettings, model: RateLimitSettings | None
) -> RateLimitOptions | None:
    """The rate-limit options of one model, or None when no bucket applies to it."""
    key_limits = {name: RateLimit(s.rate_per_s, s.burst) for name, s in shared.keys.items()}
    if shared.global_limit is None and shared.per_key is None and not key_limits and not model:
        return None
    return RateLimitOptions(
        key_limit=_limit(shared.per_key),
        model_limit=_limit(model),
        global_limit=_limit(shared.global_limit),
        key_limits=key_limits or None,
        on_storage_error=shared.on_storage_error,  # type: ignore[arg-type]
    )


def api_key(settings: ApiKeySettings) -> ApiKey:
    roles = frozenset(settings.roles)
    models = frozenset(settings.models) if settings.models is not None else None
    expires = settings.expires_at
    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)  # a time without a zone is UTC, not the host's
    expires_at = expires.timestamp() if expires is not None else None
    if settings.key is not None:
        return ApiKey.from_plaintext(
            settings.name, settings.key, roles=roles, models=models, expires_at=expires_at
        )
    assert settings.key_sha256 is not None  # the settings validator guarantees one of the two
    return ApiKey(settings.name, settings.key_sha256, roles, models, expires_at)


def admission(settings: AdmissionSettings) -> AdmissionOptions:
    return AdmissionOptions(
        max_in_flight=settings.max_in_flight,
        max_queue=settings.max_queue,
        target_queue_delay_s=settings.target_queue_delay_ms / 1000.0,
        max_queue_delay_s=settings.max_queue_delay_ms / 1000.0,
        class_capacity=ClassCapacity(**settings.class_capacity),
    )


@dataclass
class SharedParts:
    """What every model's pipeline shares: API keys, admission control, rate-limit storage."""

    api_keys: tuple[ApiKey, ...]
    admission: AdmissionPolicy[Any, Any] | None
    storage: BucketStorage
    closers: list[Callable[[], Any]] = field(default_factory=list)
    #: Keys made by `seawall keys create`, looked up in the database (`auth.database_keys`).
    key_lookup: KeyLookup | None = None
    #: Run at start-up before the models load (the key database's migrations).
    starters: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    #: The database of `database_url` (or of `auth.database_keys`), opened on first use: API
    #: keys, the audit log. None when neither is configured.
    control: ControlPlane | None = None

    @property
    def authenticates(self) -> bool:
        return bool(self.api_keys) or self.key_lookup is not None

    @classmethod
    def from_config(cls, config: SeawallConfig, clock: Clock, on_event: EventSink) -> SharedParts:
        with at("auth.keys"):
            keys = tuple(api_key(k) for k in config.auth.keys) if config.auth else ()
        gate: AdmissionPolicy[Any, Any] | None = None
        if config.admission is not None:
            with at("admission"):
                gate = AdmissionPolicy(
                    admission(config.admission), clock=clock, on_event=on_event, target="gateway"
                )
        limits = config.ratelimit
        closers: list[Callable[[], Any]] = []
        storage: BucketStorage
        if limits.storage == "redis":
            redis = RedisBucketStorage.from_url(
                limits.redis_url, timeout_s=limits.redis_timeout_ms / 1000.0, clock=clock
            )
            closers.append(redis.aclose)
            storage = redis
        else:
            storage = MemoryBucketStorage(clock=clock)
        parts = cls(keys, gate, storage, closers)
        database_keys = config.auth is not None and config.auth.database_keys
        registry_models = any(m.backend.kind == "registry" for m in config.models)
        snapshots = any(
            m.training is not None and m.training.snapshot is not None for m in config.models
        )
        needed = registry_models or snapshots or bool(config.traffic)  # traffic: rollouts
        if config.database_url is not None or database_keys or needed:
            control = parts.control = control_plane(config, clock)
            parts.closers.append(control.aclose)
            if database_keys:
                parts.key_lookup = database_key_lookup(config, clock, control)
                parts.starters.append(control.start)  # an unreachable database fails the start
        return parts


def control_plane(config: SeawallConfig, clock: Clock) -> ControlPlane:
    """The config's database, opened and migrated on first use (`ControlPlane`)."""

    def open_database() -> Database:
        from seawall.assemble.llm import open_database  # deferred: SQLAlchemy only when used

        return open_database(config)

    def make_registry(database: Database, audit: AuditLog) -> Registry:
        from seawall.registry import Registry
        from seawall.store import BlobStore

        settings = config.registry
        store = settings.artifact_store
        root = store if "://" in store else config.resolve_path(store)
        options = settings.options()
        blobs = BlobStore(root, cache_dir=config.resolve_path(settings.cache_dir) / "blobs")
        return Registry(database, clock=clock, audit=audit, blobs=blobs, options=options)

    return ControlPlane(open_database, clock=clock, make_registry=make_registry)


def database_key_lookup(config: SeawallConfig, clock: Clock, control: ControlPlane) -> KeyLookup:
    """A cached lookup of the API keys in `control`'s database."""
    assert config.auth is not None

    async def lookup(secret: str) -> ApiKey | None:
        record = await (await control.keys()).lookup(secret)
        if record is None:
            return None
        expires_at = None if record.expires_at is None else record.expires_at.timestamp()
        models = None if record.models is None else frozenset(record.models)
        return ApiKey(record.name, hash_key(secret), frozenset(record.roles), models, expires_at)

    return CachedKeyLookup(lookup, clock=clock, ttl_s=config.auth.key_cache_ttl_s)
