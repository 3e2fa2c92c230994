"""Policies: one module per policy, each with `XOptions`, `XPolicy` and `XEvent` classes."""

from seawall.policies.admission import AdmissionOptions, AdmissionPolicy, CallShed, ClassCapacity
from seawall.policies.auth import ApiKey, AuthFailed, AuthOptions, AuthPolicy
from seawall.policies.batching import (
    BatchExecuted,
    BatchingOptions,
    BatchingPolicy,
    BatchItemDropped,
    BatchQueueFull,
    BatchSplit,
)
from seawall.policies.bucket import BucketStorage, MemoryBucketStorage, RedisBucketStorage
from seawall.policies.bulkhead import BulkheadOptions, BulkheadPolicy, BulkheadRejected
from seawall.policies.cache import CacheEntrySkipped, CacheOptions, CachePolicy
from seawall.policies.cache_codec import InferenceCodec, LlmCodec
from seawall.policies.cache_store import (
    CacheStoreFailed,
    MemoryCacheStore,
    RedisCacheStore,
)
from seawall.policies.circuit import (
    CircuitBreakerOptions,
    CircuitBreakerPolicy,
    CircuitClosed,
    CircuitForced,
    CircuitHalfOpened,
    CircuitMode,
    CircuitOpened,
    CircuitRejected,
    CircuitState,
)
from seawall.policies.fallback import (
    FallbackOptions,
    FallbackPolicy,
    FallbackUsed,
    FunctionAlternative,
    ModelAlternative,
    StaticAlternative,
)
from seawall.policies.fallback_cache import CachedAlternative, LastGoodCache
from seawall.policies.hedge import HedgeOptions, HedgePolicy
from seawall.policies.profile import (
    FeatureRule,
    InputOutOfProfile,
    ProfileCheckOptions,
    ProfileCheckPolicy,
    ProfileRules,
)
from seawall.policies.ratelimit import RateLimit, RateLimited, RateLimitOptions, RateLimitPolicy
from seawall.policies.retry import (
    RetryAttempted,
    RetryBudget,
    RetryBudgetOptions,
    RetryOptions,
    RetryPolicy,
)
from seawall.policies.telemetry import PolicyTelemetry
from seawall.policies.timeout import CallTimedOut, TimeoutOptions, TimeoutPolicy
from seawall.policies.validation import InputRejected, ValidationOptions, ValidationPolicy
from seawall.policies.window import CountWindow, TimeWindow

__all__ = [
    "AdmissionOptions",
    "AdmissionPolicy",
    "ApiKey",
    "AuthFailed",
    "AuthOptions",
    "AuthPolicy",
    "BatchExecuted",
    "BatchItemDropped",
    "BatchQueueFull",
    "BatchSplit",
    "BatchingOptions",
    "BatchingPolicy",
    "BucketStorage",
    "BulkheadOptions",
    "BulkheadPolicy",
    "BulkheadRejected",
    "CacheEntrySkipped",
    "CacheOptions",
    "CachePolicy",
    "CacheStoreFailed",
    "CachedAlternative",
    "CallShed",
    "CallTimedOut",
    "CircuitBreakerOptions",
    "CircuitBreakerPolicy",
    "CircuitClosed",
    "CircuitForced",
    "CircuitHalfOpened",
    "CircuitMode",
    "CircuitOpened",
    "CircuitRejected",
    "CircuitState",
    "ClassCapacity",
    "CountWindow",
    "FallbackOptions",
    "FallbackPolicy",
    "FallbackUsed",
    "FeatureRule",
    "FunctionAlternative",
    "HedgeOptions",
    "HedgePolicy",
    "InferenceCodec",
    "InputOutOfProfile",
    "InputRejected",
    "LastGoodCache",
    "LlmCodec",
    "MemoryBucketStorage",
    "MemoryCacheStore",
    "ModelAlternative",
    "PolicyTelemetry",
    "ProfileCheckOptions",
    "ProfileCheckPolicy",
    "ProfileRules",
    "RateLimit",
    "RateLimitOptions",
    "RateLimitPolicy",
    "RateLimited",
    "RedisBucketStorage",
    "RedisCacheStore",
    "RetryAttempted",
    "RetryBudget",
    "RetryBudgetOptions",
    "RetryOptions",
    "RetryPolicy",
    "StaticAlternative",
    "TimeWindow",
    "TimeoutOptions",
    "TimeoutPolicy",
    "ValidationOptions",
    "ValidationPolicy",
]
