"""Policy settings: what the YAML file says about each resilience policy.

Durations below a second are in milliseconds (`_ms`), longer ones in seconds (`_s`). A policy
section under `policy_defaults` applies to every model; a model's own `policies` section replaces
it key by key, and `null` turns a default off for that model.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from seawall.config.base import NAME_PATTERN, Settings
from seawall.types import Datatype

__all__ = [
    "AdmissionSettings",
    "AlternativeSettings",
    "ApiKeySettings",
    "AuthSettings",
    "BatchingSettings",
    "BulkheadSettings",
    "CacheSettings",
    "CachedAlternativeSettings",
    "CircuitBreakerSettings",
    "FallbackSettings",
    "FunctionAlternativeSettings",
    "HedgeSettings",
    "ModelAlternativeSettings",
    "PolicySettings",
    "RateLimitSettings",
    "RateLimitsSettings",
    "RetryBudgetSettings",
    "RetrySettings",
    "StaticAlternativeSettings",
    "TimeoutSettings",
    "WindowSettings",
]

#: Error codes a fallback can be triggered by (`SeawallError.code`).
FALLBACK_TRIGGERS = Literal[
    "timeout",
    "unavailable",
    "bad_response",
    "backend_error",
    "model_error",
    "circuit_open",
    "overloaded",
    "model_not_ready",
    "rate_limited",
]


class RateLimitSettings(Settings):
    """A token bucket: `rate_per_s` on average, `burst` at once."""

    rate_per_s: float = Field(gt=0)
    """Units (requests) refilled per second."""
    burst: float = Field(ge=1)
    """Bucket size: the most units that can be spent at once."""


class TimeoutSettings(Settings):
    """Per-call timeout; the request's deadline applies too, whichever comes first."""

    timeout_ms: float | None = Field(None, gt=0)
    """Longest one call to the backend may take (null: only the deadline)."""


class RetryBudgetSettings(Settings):
    """Retries allowed as a share of requests (Finagle's retry budget)."""

    ratio: float = Field(0.2, ge=0, le=10)
    """Retries per request over the window."""
    window_s: float = Field(10.0, gt=0)
    """Sliding window the ratio is measured over."""
    min_per_s: float = Field(10.0, ge=0)
    """Retries always allowed per second, so little traffic can still retry."""


class RetrySettings(Settings):
    """Retries of transient failures with exponential backoff and full jitter."""

    attempts: int = Field(3, ge=1, le=10)
    """Calls in all, the first included."""
    base_delay_ms: float = Field(100.0, ge=0)
    """Backoff before the first retry (before jitter)."""
    multiplier: float = Field(2.0, ge=1)
    """Backoff growth per retry."""
    max_delay_ms: float = Field(2000.0, ge=0)
    """Cap on one backoff; a Retry-After longer than this is not waited for."""
    budget: RetryBudgetSettings | None = RetryBudgetSettings()
    """Retry budget shared by every call to the model (null: no budget)."""


class WindowSettings(Settings):
    """The sliding window a breaker measures failure rates over."""

    kind: Literal["count", "time"] = "count"
    """`count`: the last `size` calls; `time`: the calls of the last `size` seconds."""
    size: int = Field(100, ge=1)
    """Calls (count window) or whole seconds (time window)."""


class CircuitBreakerSettings(Settings):
    """Closed / open / half-open breaker on failure and slow-call rates."""

    window: WindowSettings = WindowSettings()
    """Window the rates are measured over."""
    minimum_calls: int = Field(20, ge=1)
    """Calls in the window before a rate can open the breaker."""
    failure_rate: float = Field(0.5, gt=0, le=1)
    """Failure share that opens the breaker."""
    slow_call_ms: float | None = Field(60_000.0, gt=0)
    """A call at least this long is slow (null: no slow-call rule)."""
    slow_call_rate: float = Field(1.0, gt=0, le=1)
    """Slow-call share that opens the breaker."""
    consecutive_failures: int = Field(5, ge=0)
    """Failures in a row that open it regardless of the window (0: off)."""
    open_s: float = Field(30.0, gt=0)
    """First open duration."""
    backoff_multiplier: float = Field(2.0, ge=1)
    """Growth of the open duration each time a probe fails."""
    max_open_s: float = Field(300.0, gt=0)
    """Cap on the open duration."""
    half_open_calls: int = Field(1, ge=1)
    """Probe calls let through when half-open."""


class BulkheadSettings(Settings):
    """A concurrency cap for this model, with a bounded wait queue."""

    max_concurrent: int = Field(16, ge=1)
    """Calls of this model running at once."""
    max_queue: int = Field(32, ge=0)
    """Calls that may wait for a slot; more are refused at once (503)."""
    max_wait_ms: float = Field(1000.0, gt=0)
    """Longest wait for a slot."""


class HedgeSettings(Settings):
    """A second attempt when the first is slow (idempotent models only)."""

    delay_ms: float | None = Field(None, gt=0)
    """Fixed delay before hedging (null: the observed `quantile` of recent latencies)."""
    max_hedges: int = Field(1, ge=1, le=4)
    """Extra attempts at most."""
    quantile: float = Field(0.95, gt=0, lt=1)
    """Latency quantile used as the adaptive delay."""
    min_delay_ms: float = Field(10.0, gt=0)
    """Floor of the adaptive delay."""
    initial_delay_ms: float = Field(100.0, gt=0)
    """Delay used until enough latencies are known."""


class BatchingSettings(Settings):
    """Dynamic batching: concurrent calls merged into one backend call, inputs stacked by rows.

    Calls share a batch only if their inputs agree but for the first (batch) dimension and they
    ask for the same outputs with the same parameters; the answer is split back by rows.
    """

    max_batch_size: int = Field(32, ge=1)
    """Rows in one batch: the calls' first dimensions summed (a larger call runs alone)."""
    max_wait_ms: float = Field(5.0, ge=0, allow_inf_nan=False)
    """Longest the oldest queued call waits for others (0: take what is queued now)."""
    max_queue_rows: int = Field(256, ge=1)
    """Rows that may wait for a batch; a call that does not fit is refused at once (503)."""
    max_concurrent_batches: int = Field(1, ge=1)
    """Batches running at once (e.g. the in-process backend's `workers`)."""
    adaptive: bool = False
    """Cap each batch's rows so that, at the measured time per row, it ends before the earliest
    deadline among its calls."""

    @model_validator(mode="after")
    def _queue_holds_a_batch(self) -> BatchingSettings:
        if self.max_queue_rows < self.max_batch_size:
            raise ValueError(
                f"max_queue_rows ({self.max_queue_rows}) must be at least max_batch_size "
                f"({self.max_batch_size})"
            )
        return self


class ModelAlternativeSettings(Settings):
    """Fall back to another configured model (or another version of one)."""

    model: str = Field(pattern=NAME_PATTERN)
    """Model name."""
    version: str | None = None
    """Version (default: the model's default version)."""


class FunctionAlternativeSettings(Settings):
    """Fall back to a Python heuristic: `fn(inputs) -> {output: array}`."""

    python: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
    """Import path, `package.module:function`."""
    search_path: str | None = None
    """Directory added to the import path first (relative to the config file)."""
    name: str | None = None
    """Name in `x-seawall-served-by` (default: the import path)."""


class StaticOutputSettings(Settings):
    """One output tensor of a static fallback response."""

    name: str = Field(min_length=1)
    """Output name."""
    datatype: Datatype | None = None
    """Datatype (default: inferred from the values)."""
    data: list[Any]
    """Values, flat or nested, row-major; the shape is the nesting's."""


class StaticAlternativeSettings(Settings):
    """Fall back to a fixed response."""

    static: list[StaticOutputSettings] = Field(min_length=1)
    """The outputs returned."""
    name: str = "static"
    """Name in `x-seawall-served-by`."""


class CachedAlternativeSettings(Settings):
    """Fall back to the last good response for the same input."""

    cached: Literal[True] = True
    """Must be true."""
    max_entries: int = Field(1024, ge=1)
    """Responses remembered (least recently used are forgotten first)."""
    ttl_s: float | None = Field(None, gt=0)
    """How long a remembered response may be served (null: no limit)."""


def _alternative_kind(value: Any) -> str | None:
    # A dict from the file, or a built settings object; anything else (a bare string) is no shape.
    keys = value if isinstance(value, dict) else getattr(value, "__dict__", ())
    return next((k for k in ("model", "python", "static", "cached") if k in keys), None)


AlternativeSettings = Annotated[
    Annotated[ModelAlternativeSettings, Tag("model")]
    | Annotated[FunctionAlternativeSettings, Tag("python")]
    | Annotated[StaticAlternativeSettings, Tag("static")]
    | Annotated[CachedAlternativeSettings, Tag("cached")],
    Discriminator(
        _alternative_kind,
        custom_error_type="alternative_kind",
        custom_error_message=(
            "expected one of {model: ...}, {python: ...}, {static: [...]} or {cached: true}"
        ),
    ),
]


class FallbackSettings(Settings):
    """Ordered alternatives tried when the model fails."""

    chain: list[AlternativeSettings] = Field(min_length=1)
    """Alternatives in order: `{model: m}`, `{python: m:f}`, `{static: [...]}`, `{cached: true}`."""
    triggers: list[FALLBACK_TRIGGERS] = [
        "timeout",
        "unavailable",
        "bad_response",
        "backend_error",
        "circuit_open",
        "overloaded",
        "model_not_ready",
    ]
    """Error codes of the failures that start the chain (not `on`: YAML reads it as true)."""
    max_hops: int = Field(3, ge=1)
    """Alternatives tried at most per call."""


class CacheSettings(Settings):
    """Response cache: exact-match answers kept for `ttl_s` (see the README's "Response cache")."""

    ttl_s: float = Field(300.0, gt=0, allow_inf_nan=False)
    """How long an answer is served from the cache, in seconds."""
    max_entries: int = Field(10_000, ge=1)
    """Answers kept in memory, per model (least recently used dropped first)."""
    max_bytes: int = Field(64 * 1024 * 1024, ge=1)
    """Bytes of answers kept in memory, per model."""
    max_entry_bytes: int = Field(1024 * 1024, ge=1)
    """Largest answer kept (larger ones are answered, not cached)."""
    storage: Literal["memory", "redis"] = "memory"
    """`memory`: this process; `redis`: shared by every replica."""
    redis_url: str | None = None
    """Redis server when `storage` is redis (null: `ratelimit.redis_url`)."""
    redis_timeout_ms: float = Field(50.0, gt=0, allow_inf_nan=False)
    """Longest a Redis lookup or write may take; slower is a miss, never an error."""
    coalesce: bool = True
    """Identical calls arriving while one is answered wait for its answer (per process)."""
    llm: Literal["deterministic_only", "always"] = "deterministic_only"
    """LLM groups: cache only `temperature: 0` chat and completion calls (and embeddings), or
    every call; streamed calls never."""

    @model_validator(mode="after")
    def _entry_fits(self) -> CacheSettings:
        if self.storage == "memory" and self.max_entry_bytes > self.max_bytes:
            raise ValueError(
                f"max_entry_bytes ({self.max_entry_bytes}) is larger than max_bytes "
                f"({self.max_bytes}): no answer that size could be kept"
            )
        return self


class PolicySettings(Settings):
    """The policies in front of one model (each absent or null: off)."""

    ratelimit: RateLimitSettings | None = None
    """Token bucket for this model, all callers together."""
    timeout: TimeoutSettings | None = None
    """Per-call timeout."""
    retry: RetrySettings | None = None
    """Retries of transient failures."""
    circuit_breaker: CircuitBreakerSettings | None = None
    """Circuit breaker."""
    bulkhead: BulkheadSettings | None = None
    """Concurrency cap."""
    hedge: HedgeSettings | None = None
    """Hedged requests."""
    fallback: FallbackSettings | None = None
    """Fallback chain."""
    cache: CacheSettings | None = None
    """Response cache (for an LLM group: on the group, not on a deployment)."""
    batching: BatchingSettings | None = None
    """Dynamic batching (the innermost policy, just before the backend)."""

    def merged_over(self, defaults: PolicySettings) -> PolicySettings:
        """These settings, with `defaults` for every section this one does not mention."""
        mine = self.model_dump(exclude_unset=True)
        return defaults.model_copy(update={k: getattr(self, k) for k in mine})


class ApiKeySettings(Settings):
    """An API key: give `key` (from the environment) or `key_sha256`, never both."""

    name: str = Field(pattern=NAME_PATTERN)
    """Who the key belongs to: used in logs, metrics and per-key limits."""
    key: str | None = Field(None, min_length=16, repr=False)
    """The secret, e.g. `${APP_KEY}`; hashed at load and never logged."""
    key_sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$", repr=False)
    """SHA-256 (hex) of the secret, for files that must not hold it."""
    roles: list[Literal["admin", "consumer", "viewer", "deployer", "approver", "data-steward"]] = [
        "consumer"
    ]
    """Roles; `consumer` may call models, `admin` everything."""
    models: list[str] | None = None
    """Model names (`*` wildcards) the key may call (null: all)."""
    expires_at: datetime | None = None
    """When the key stops working (ISO 8601)."""

    @model_validator(mode="after")
    def _one_secret(self) -> ApiKeySettings:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError(f"key {self.name!r}: give exactly one of key or key_sha256")
        return self


class AuthSettings(Settings):
    """API keys; when this section is present, every inference call needs a valid key."""

    keys: list[ApiKeySettings] = []
    """Keys given in the file (from the environment)."""
    database_keys: bool = False
    """Also accept the keys made by `seawall keys create` (in `database_url`'s database)."""
    key_cache_ttl_s: float = Field(5.0, ge=0, le=300)
    """How long a database key's answer is reused: a revoked key stops working within it."""

    @model_validator(mode="after")
    def _some_keys(self) -> AuthSettings:
        if not self.keys and not self.database_keys:
            raise ValueError("keys: give at least one key, or set database_keys: true")
        return self


class AdmissionSettings(Settings):
    """Global admission control: in-flight limit, bounded queue, early shedding by priority."""

    max_in_flight: int = Field(128, ge=1)
    """Calls running at once, all models together."""
    max_queue: int = Field(256, ge=0)
    """Calls that may wait to be admitted."""
    target_queue_delay_ms: float = Field(100.0, ge=0)
    """Estimated wait above which a newcomer is refused at once (503)."""
    max_queue_delay_ms: float = Field(1000.0, gt=0)
    """Longest a queued call waits."""
    class_capacity: dict[
        Literal["critical", "normal", "batch"], Annotated[float, Field(gt=0, le=1)]
    ] = {
        "critical": 1.0,
        "normal": 0.9,
        "batch": 0.6,
    }
    """Share of `max_in_flight` each priority class may fill (lower classes are shed first)."""


class RateLimitsSettings(Settings):
    """Shared rate-limit settings: storage, and the global and per-key buckets."""

    storage: Literal["memory", "redis"] = "memory"
    """`redis` shares one limit across every gateway replica."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis server, when `storage` is `redis`."""
    redis_timeout_ms: float = Field(100.0, gt=0)
    """Longest a limit decision waits for Redis before falling back."""
    on_storage_error: Literal["local", "deny"] = "local"
    """When Redis fails: `local` limits per replica, `deny` refuses calls (503)."""
    global_limit: RateLimitSettings | None = Field(None, alias="global")
    """One bucket for all calls."""
    per_key: RateLimitSettings | None = None
    """One bucket per API key (anonymous callers share one)."""
    keys: dict[str, RateLimitSettings] = {}
    """Per-key buckets that replace `per_key` for the named keys."""

    model_config = Settings.model_config | {"populate_by_name": True}
