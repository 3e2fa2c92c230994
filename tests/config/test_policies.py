"""Policy settings: defaults, bounds, merging over `policy_defaults`, alternatives, keys, paths."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from seawall.config import SeawallConfig, parse_config
from seawall.config.base import Settings
from seawall.config.policies import (
    AdmissionSettings,
    ApiKeySettings,
    BatchingSettings,
    BulkheadSettings,
    CachedAlternativeSettings,
    CacheSettings,
    CircuitBreakerSettings,
    FallbackSettings,
    FunctionAlternativeSettings,
    HedgeSettings,
    ModelAlternativeSettings,
    PolicySettings,
    RateLimitSettings,
    RateLimitsSettings,
    RetryBudgetSettings,
    RetrySettings,
    StaticAlternativeSettings,
    TimeoutSettings,
    WindowSettings,
)
from seawall.errors import ConfigError

SECRET = "s3cret-0123456789-abcdef"
SHA = "ab" * 32


def parse(text: str, environ: dict[str, str] | None = None) -> SeawallConfig:
    return parse_config(text, environ=environ or {})


def problems(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse(text, environ)
    return raised.value.problems


def one_model(policies: str, extra: str = "") -> str:
    return f"{extra}\nmodels:\n  - name: a\n    backend: {{kind: mock}}\n    policies: {policies}\n"


# --- defaults -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (TimeoutSettings(), {"timeout_ms": None}),
        (RetryBudgetSettings(), {"ratio": 0.2, "window_s": 10.0, "min_per_s": 10.0}),
        (
            RetrySettings(),
            {
                "attempts": 3,
                "base_delay_ms": 100.0,
                "multiplier": 2.0,
                "max_delay_ms": 2000.0,
                "budget": {"ratio": 0.2, "window_s": 10.0, "min_per_s": 10.0},
            },
        ),
        (WindowSettings(), {"kind": "count", "size": 100}),
        (
            CircuitBreakerSettings(),
            {
                "window": {"kind": "count", "size": 100},
                "minimum_calls": 20,
                "failure_rate": 0.5,
                "slow_call_ms": 60_000.0,
                "slow_call_rate": 1.0,
                "consecutive_failures": 5,
                "open_s": 30.0,
                "backoff_multiplier": 2.0,
                "max_open_s": 300.0,
                "half_open_calls": 1,
            },
        ),
        (BulkheadSettings(), {"max_concurrent": 16, "max_queue": 32, "max_wait_ms": 1000.0}),
        (
            HedgeSettings(),
            {
                "delay_ms": None,
                "max_hedges": 1,
                "quantile": 0.95,
                "min_delay_ms": 10.0,
                "initial_delay_ms": 100.0,
            },
        ),
        (
            AdmissionSettings(),
            {
                "max_in_flight": 128,
                "max_queue": 256,
                "target_queue_delay_ms": 100.0,
                "max_queue_delay_ms": 1000.0,
                "class_capacity": {"critical": 1.0, "normal": 0.9, "batch": 0.6},
            },
        ),
        (
            RateLimitsSettings(),
            {
                "storage": "memory",
                "redis_url": "redis://127.0.0.1:6379/0",
                "redis_timeout_ms": 100.0,
                "on_storage_error": "local",
                "global_limit": None,
                "per_key": None,
                "keys": {},
            },
        ),
        (
            CachedAlternativeSettings(),
            {"cached": True, "max_entries": 1024, "ttl_s": None},
        ),
        (
            CacheSettings(),
            {
                "ttl_s": 300.0,
                "max_entries": 10_000,
                "max_bytes": 64 * 1024 * 1024,
                "max_entry_bytes": 1024 * 1024,
                "storage": "memory",
                "redis_url": None,
                "redis_timeout_ms": 50.0,
                "coalesce": True,
                "llm": "deterministic_only",
            },
        ),
        (
            PolicySettings(),
            dict.fromkeys(
                [
                    "ratelimit",
                    "timeout",
                    "retry",
                    "circuit_breaker",
                    "bulkhead",
                    "hedge",
                    "fallback",
                    "batching",
                    "cache",
                ]
            ),
        ),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Settings) else "",
)
def test_section_defaults(settings: Settings, expected: dict[str, Any]) -> None:
    assert settings.model_dump() == expected


def test_fallback_defaults_leave_out_model_errors_and_rate_limits() -> None:
    fallback = FallbackSettings(chain=[CachedAlternativeSettings()])
    assert fallback.max_hops == 3
    assert fallback.triggers == [
        "timeout",
        "unavailable",
        "bad_response",
        "backend_error",
        "circuit_open",
        "overloaded",
        "model_not_ready",
    ]


def test_api_key_defaults_to_a_consumer_of_every_model_that_never_expires() -> None:
    key = ApiKeySettings(name="app", key=SECRET)
    assert (key.roles, key.models, key.expires_at, key.key_sha256) == (
        ["consumer"],
        None,
        None,
        None,
    )


def test_a_file_without_policy_sections_turns_every_policy_off() -> None:
    config = parse("models: [{name: a, backend: {kind: mock}}]")
    assert (config.auth, config.admission) == (None, None)
    assert config.ratelimit == RateLimitsSettings()
    assert config.policies_for(config.models[0]) == PolicySettings()


# --- bounds -------------------------------------------------------------------------------

#: Required fields, so that each bounds case changes one field only.
REQUIRED: dict[type[Settings], dict[str, Any]] = {
    RateLimitSettings: {"rate_per_s": 1.0, "burst": 1.0},
    FallbackSettings: {"chain": [{"cached": True}]},
    StaticAlternativeSettings: {"static": [{"name": "o", "data": [1]}]},
}

REFUSED = [
    (RetrySettings, "attempts", 0),
    (RetrySettings, "attempts", 11),
    (RetrySettings, "base_delay_ms", -1),
    (RetrySettings, "multiplier", 0.99),
    (RetrySettings, "max_delay_ms", -1),
    (RetryBudgetSettings, "ratio", -0.1),
    (RetryBudgetSettings, "ratio", 10.5),
    (RetryBudgetSettings, "window_s", 0),
    (RetryBudgetSettings, "min_per_s", -1),
    (TimeoutSettings, "timeout_ms", 0),
    (WindowSettings, "kind", "sliding"),
    (WindowSettings, "size", 0),
    (CircuitBreakerSettings, "minimum_calls", 0),
    (CircuitBreakerSettings, "failure_rate", 0),
    (CircuitBreakerSettings, "failure_rate", 1.01),
    (CircuitBreakerSettings, "slow_call_ms", 0),
    (CircuitBreakerSettings, "slow_call_rate", 0),
    (CircuitBreakerSettings, "slow_call_rate", 1.5),
    (CircuitBreakerSettings, "consecutive_failures", -1),
    (CircuitBreakerSettings, "open_s", 0),
    (CircuitBreakerSettings, "backoff_multiplier", 0.5),
    (CircuitBreakerSettings, "max_open_s", 0),
    (CircuitBreakerSettings, "half_open_calls", 0),
    (BulkheadSettings, "max_concurrent", 0),
    (BulkheadSettings, "max_queue", -1),
    (BulkheadSettings, "max_wait_ms", 0),
    (HedgeSettings, "delay_ms", 0),
    (HedgeSettings, "max_hedges", 0),
    (HedgeSettings, "max_hedges", 5),
    (HedgeSettings, "quantile", 0),
    (HedgeSettings, "quantile", 1),
    (HedgeSettings, "min_delay_ms", 0),
    (HedgeSettings, "initial_delay_ms", 0),
    (RateLimitSettings, "rate_per_s", 0),
    (RateLimitSettings, "burst", 0.5),
    (AdmissionSettings, "max_in_flight", 0),
    (AdmissionSettings, "max_queue", -1),
    (AdmissionSettings, "target_queue_delay_ms", -1),
    (AdmissionSettings, "max_queue_delay_ms", 0),
    (AdmissionSettings, "class_capacity", {"batch": 0}),
    (AdmissionSettings, "class_capacity", {"normal": 1.1}),
    (AdmissionSettings, "class_capacity", {"urgent": 0.5}),
    (RateLimitsSettings, "storage", "disk"),
    (RateLimitsSettings, "redis_timeout_ms", 0),
    (RateLimitsSettings, "on_storage_error", "open"),
    (FallbackSettings, "chain", []),
    (FallbackSettings, "max_hops", 0),
    (FallbackSettings, "triggers", ["invalid_input"]),
    (FallbackSettings, "triggers", ["not_found"]),
    (CachedAlternativeSettings, "max_entries", 0),
    (CachedAlternativeSettings, "ttl_s", 0),
    (StaticAlternativeSettings, "static", []),
    (CacheSettings, "ttl_s", 0),
    (CacheSettings, "ttl_s", float("inf")),
    (CacheSettings, "max_entries", 0),
    (CacheSettings, "max_bytes", 0),
    (CacheSettings, "max_entry_bytes", 0),
    (CacheSettings, "storage", "disk"),
    (CacheSettings, "redis_timeout_ms", 0),
    (CacheSettings, "llm", "sometimes"),
]


@pytest.mark.parametrize(("cls", "field", "value"), REFUSED)
def test_out_of_range_values_are_refused_at_their_field(
    cls: type[Settings], field: str, value: object
) -> None:
    with pytest.raises(ValidationError) as raised:
        cls.model_validate({**REQUIRED.get(cls, {}), field: value})
    assert [e["loc"][0] for e in raised.value.errors()] == [field]


ACCEPTED = [
    (RetrySettings, "attempts", 1),
    (RetrySettings, "attempts", 10),
    (RetrySettings, "base_delay_ms", 0),
    (RetrySettings, "multiplier", 1),
    (RetryBudgetSettings, "ratio", 0),
    (RetryBudgetSettings, "ratio", 10),
    (RetryBudgetSettings, "min_per_s", 0),
    (CircuitBreakerSettings, "failure_rate", 1),
    (CircuitBreakerSettings, "slow_call_ms", None),
    (CircuitBreakerSettings, "consecutive_failures", 0),
    (CircuitBreakerSettings, "backoff_multiplier", 1),
    (BulkheadSettings, "max_queue", 0),
    (HedgeSettings, "max_hedges", 4),
    (HedgeSettings, "quantile", 0.999),
    (RateLimitSettings, "burst", 1),
    (AdmissionSettings, "max_queue", 0),
    (AdmissionSettings, "target_queue_delay_ms", 0),
    (AdmissionSettings, "class_capacity", {"batch": 1.0}),
    (FallbackSettings, "triggers", ["model_error", "rate_limited"]),
]


@pytest.mark.parametrize(("cls", "field", "value"), ACCEPTED)
def test_values_on_the_bounds_are_accepted(cls: type[Settings], field: str, value: object) -> None:
    settings = cls.model_validate({**REQUIRED.get(cls, {}), field: value})
    assert getattr(settings, field) == value


def test_a_partial_class_capacity_keeps_only_the_classes_given() -> None:
    # The policy fills in the others with its own defaults (see the assemble tests).
    assert AdmissionSettings(class_capacity={"batch": 0.3}).class_capacity == {"batch": 0.3}


# --- merging over policy_defaults ---------------------------------------------------------

DEFAULTS = """
policy_defaults:
  timeout: {timeout_ms: 500}
  retry: {attempts: 2, base_delay_ms: 20}
  bulkhead: {max_concurrent: 4}
models:
  - name: plain
    backend: {kind: mock}
  - name: own
    backend: {kind: mock}
    policies:
      retry: {attempts: 5}
      hedge: {delay_ms: 50}
  - name: quiet
    backend: {kind: mock}
    policies: {retry: null, bulkhead: null}
"""


def test_a_model_without_policies_gets_the_defaults() -> None:
    config = parse(DEFAULTS)
    assert config.policies_for(config.models[0]) == config.policy_defaults


def test_a_model_section_replaces_the_default_section_whole() -> None:
    config = parse(DEFAULTS)
    own = config.policies_for(config.models[1])
    # Replaced, not merged field by field: base_delay_ms is RetrySettings' default, not 20.
    assert own.retry == RetrySettings(attempts=5, base_delay_ms=100.0)
    assert own.hedge == HedgeSettings(delay_ms=50)
    # Sections the model does not mention are inherited.
    assert own.timeout == TimeoutSettings(timeout_ms=500)
    assert own.bulkhead == BulkheadSettings(max_concurrent=4)


def test_null_in_a_model_turns_a_default_off() -> None:
    config = parse(DEFAULTS)
    off = config.policies_for(config.models[2])
    assert (off.retry, off.bulkhead) == (None, None)
    assert off.timeout == TimeoutSettings(timeout_ms=500)


def test_merged_over_directly() -> None:
    defaults = PolicySettings(retry=RetrySettings(attempts=2), timeout=TimeoutSettings())
    mine = PolicySettings.model_validate({"retry": None, "hedge": {}})
    merged = mine.merged_over(defaults)
    assert merged == PolicySettings(timeout=TimeoutSettings(), hedge=HedgeSettings())
    assert PolicySettings().merged_over(defaults) == defaults
    # Neither input changes.
    assert defaults.retry == RetrySettings(attempts=2)
    assert mine.timeout is None


def test_an_environment_override_can_turn_a_default_off_for_one_model() -> None:
    config = parse(DEFAULTS, {"SEAWALL_MODELS__0__POLICIES__RETRY": "null"})
    assert config.policies_for(config.models[0]).retry is None
    assert config.policies_for(config.models[0]).bulkhead == BulkheadSettings(max_concurrent=4)


# --- fallback alternatives: the discriminator ---------------------------------------------


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("{model: b}", ModelAlternativeSettings(model="b")),
        ('{model: b, version: "2"}', ModelAlternativeSettings(model="b", version="2")),
        ("{python: 'rules.mod:predict'}", FunctionAlternativeSettings(python="rules.mod:predict")),
        (
            "{python: 'm:f', search_path: lib, name: rules}",
            FunctionAlternativeSettings(python="m:f", search_path="lib", name="rules"),
        ),
        (
            "{static: [{name: out, datatype: FP32, data: [[0.5]]}]}",
            StaticAlternativeSettings.model_validate(
                {"static": [{"name": "out", "datatype": "FP32", "data": [[0.5]]}]}
            ),
        ),
        ("{cached: true}", CachedAlternativeSettings()),
        (
            "{cached: true, max_entries: 7, ttl_s: 60}",
            CachedAlternativeSettings(max_entries=7, ttl_s=60),
        ),
    ],
)
def test_each_alternative_shape_parses_to_its_settings(item: str, expected: Settings) -> None:
    fallback = FallbackSettings.model_validate({"chain": [yaml.safe_load(item)]})
    assert fallback.chain == [expected]
    assert type(fallback.chain[0]) is type(expected)


def test_a_chain_mixes_shapes_in_order() -> None:
    text = """
models:
  - name: a
    backend: {kind: mock}
    policies:
      fallback:
        chain: [{model: b}, {python: 'm:f'}, {static: [{name: o, data: [1]}]}, {cached: true}]
  - name: b
    backend: {kind: mock}
"""
    config = parse(text)
    fallback = config.policies_for(config.models[0]).fallback
    assert fallback is not None
    assert [type(a) for a in fallback.chain] == [
        ModelAlternativeSettings,
        FunctionAlternativeSettings,
        StaticAlternativeSettings,
        CachedAlternativeSettings,
    ]


UNKNOWN_SHAPE = "expected one of {model: ...}, {python: ...}, {static: [...]} or {cached: true}"


@pytest.mark.parametrize("item", ["{bogus: 1}", "{}", "{name: x}", "plain-text", "42", "[model]"])
def test_an_unknown_alternative_shape_names_the_field_path(item: str) -> None:
    text = one_model(f"{{fallback: {{chain: [{{cached: true}}, {item}]}}}}")
    assert problems(text) == [f"models[0].policies.fallback.chain[1]: {UNKNOWN_SHAPE}"]


def test_an_unknown_shape_under_policy_defaults_names_that_path() -> None:
    text = "policy_defaults: {fallback: {chain: [{modle: b}]}}"
    assert problems(text) == [f"policy_defaults.fallback.chain[0]: {UNKNOWN_SHAPE}"]


def test_a_cached_alternative_must_say_true() -> None:
    with pytest.raises(ValidationError):
        FallbackSettings.model_validate({"chain": [{"cached": False}]})


@pytest.mark.parametrize(
    "item",
    [
        "{model: 'bad name'}",
        "{python: 'no_colon'}",
        "{python: 'm:f', extra: 1}",
        "{static: [{name: '', data: [1]}]}",
        "{static: [{name: o, datatype: FP128, data: [1]}]}",
    ],
)
def test_a_known_shape_with_a_bad_field_is_refused(item: str) -> None:
    found = problems(one_model(f"{{fallback: {{chain: [{item}]}}}}"))
    assert len(found) == 1
    assert found[0].startswith("models[0].policies.fallback.chain[0].")


# --- API keys -----------------------------------------------------------------------------


def test_a_key_is_given_as_the_secret_or_its_sha256() -> None:
    assert ApiKeySettings(name="app", key=SECRET).key == SECRET
    assert ApiKeySettings(name="app", key_sha256=SHA.upper()).key_sha256 == SHA.upper()


@pytest.mark.parametrize(
    "secrets", ["", f", key: {SECRET}, key_sha256: '{SHA}'"], ids=["neither", "both"]
)
def test_exactly_one_of_key_or_key_sha256(secrets: str) -> None:
    assert problems(f"auth: {{keys: [{{name: app{secrets}}}]}}") == [
        "auth.keys[0]: key 'app': give exactly one of key or key_sha256"
    ]


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("key", "short-secret-15", "auth.keys[0].key: String should have at least 16 characters"),
        ("key_sha256", "ab" * 31, "auth.keys[0].key_sha256: String should match pattern"),
        ("key_sha256", "zz" * 32, "auth.keys[0].key_sha256: String should match pattern"),
    ],
)
def test_short_keys_and_malformed_hashes_are_refused_without_echoing_them(
    field: str, value: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse(f"auth: {{keys: [{{name: app, {field}: '{value}'}}]}}")
    assert raised.value.problems[0].startswith(problem)
    assert value not in str(raised.value)


def test_the_secret_is_not_in_the_settings_repr() -> None:
    text = repr(ApiKeySettings(name="app", key=SECRET)) + repr(
        ApiKeySettings(name="ops", key_sha256=SHA)
    )
    assert SECRET not in text
    assert SHA not in text
    assert "app" in text


def test_a_key_from_the_environment_with_roles_scopes_and_expiry() -> None:
    text = """
auth:
  keys:
    - name: app
      key: ${APP_KEY}
      roles: [consumer, viewer]
      models: [iris, "iris-*"]
      expires_at: "2030-01-01T00:00:00Z"
"""
    auth = parse(text, {"APP_KEY": SECRET}).auth
    assert auth is not None
    key = auth.keys[0]
    assert (key.key, key.roles, key.models) == (SECRET, ["consumer", "viewer"], ["iris", "iris-*"])
    assert key.expires_at == datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("auth: {keys: []}", "auth: keys: give at least one key, or set database_keys: true"),
        (
            f"auth: {{keys: [{{name: app, key: {SECRET}, roles: [root]}}]}}",
            "auth.keys[0].roles[0]: Input should be 'admin', 'consumer'",
        ),
        (f"auth: {{keys: [{{name: 'a b', key: {SECRET}}}]}}", "auth.keys[0].name: String should"),
    ],
)
def test_auth_section_problems(text: str, problem: str) -> None:
    assert problems(text)[0].startswith(problem)


# --- rate-limit section -------------------------------------------------------------------


def test_the_global_bucket_is_written_global_in_yaml() -> None:
    config = parse(
        "ratelimit: {global: {rate_per_s: 5, burst: 10}, per_key: {rate_per_s: 1, burst: 2}}"
    )
    assert config.ratelimit.global_limit == RateLimitSettings(rate_per_s=5, burst=10)
    assert config.ratelimit.per_key == RateLimitSettings(rate_per_s=1, burst=2)
    assert "global" in RateLimitsSettings.model_json_schema(by_alias=True)["properties"]


def test_the_global_bucket_can_be_set_from_the_environment() -> None:
    environ = {
        "SEAWALL_RATELIMIT__GLOBAL__RATE_PER_S": "5",
        "SEAWALL_RATELIMIT__GLOBAL__BURST": "7",
    }
    assert parse("", environ).ratelimit.global_limit == RateLimitSettings(rate_per_s=5, burst=7)


def test_rate_limit_section_problems_name_the_yaml_path() -> None:
    assert problems("ratelimit: {global: {rate_per_s: 0, burst: 1}}") == [
        "ratelimit.global.rate_per_s: Input should be greater than 0"
    ]
    assert problems("ratelimit: {globl: {rate_per_s: 1, burst: 1}}") == [
        "ratelimit.globl: unknown field (check the spelling; see `seawall config schema`)"
    ]


def test_rate_limit_settings_stay_frozen() -> None:
    limits = RateLimitsSettings()
    with pytest.raises(ValidationError):
        limits.storage = "redis"  # type: ignore[misc]


# --- problems through parse_config name the path ------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            one_model("{retry: {attempts: 0}}"),
            "models[0].policies.retry.attempts: Input should be greater than or equal to 1",
        ),
        (
            one_model("{retry: {budget: {ratio: -1}}}"),
            "models[0].policies.retry.budget.ratio: Input should be greater than or equal to 0",
        ),
        (
            one_model("{bulkhead: {max_concurrentt: 1}}"),
            "models[0].policies.bulkhead.max_concurrentt: unknown field "
            "(check the spelling; see `seawall config schema`)",
        ),
        (
            one_model("{fallback: {chain: [{cached: true}], triggers: [invalid_input]}}"),
            "models[0].policies.fallback.triggers[0]: Input should be 'timeout', 'unavailable', "
            "'bad_response', 'backend_error', 'model_error', 'circuit_open', 'overloaded', "
            "'model_not_ready' or 'rate_limited'",
        ),
        (
            "policy_defaults: {circuit_breaker: {window: {kind: sliding}}}",
            "policy_defaults.circuit_breaker.window.kind: Input should be 'count' or 'time'",
        ),
        (
            "admission: {class_capacity: {batch: 1.5}}",
            "admission.class_capacity.batch: Input should be less than or equal to 1",
        ),
        (
            "admission: {class_capacity: {urgent: 0.5}}",
            "admission.class_capacity.urgent.[key]: "
            "Input should be 'critical', 'normal' or 'batch'",
        ),
        (
            one_model("{chaos: {}}"),
            "models[0].policies.chaos: unknown field "
            "(check the spelling; see `seawall config schema`)",
        ),
    ],
)
def test_a_bad_policy_field_is_reported_with_its_path(text: str, problem: str) -> None:
    assert problems(text) == [problem]


# --- document-level references ------------------------------------------------------------

TWO_MODELS = """
models:
  - name: a
    backend: {kind: mock}
    policies: {fallback: {chain: [%s]}}
  - name: b
    version: "1"
    backend: {kind: mock}
  - name: b
    version: "2"
    backend: {kind: mock}
"""


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        (
            "{model: ghost}",
            "models[0].policies.fallback.chain[0]: 'ghost' is not a configured model",
        ),
        (
            '{model: b, version: "3"}',
            "models[0].policies.fallback.chain[0]: 'b' version '3' is not a configured model",
        ),
        ("{model: a}", "models[0].policies.fallback.chain[0]: model 'a' falls back to itself"),
        (
            '{model: a, version: "1"}',
            "models[0].policies.fallback.chain[0]: model 'a' falls back to itself",
        ),
    ],
)
def test_a_fallback_must_name_another_configured_model(item: str, problem: str) -> None:
    found = problems(TWO_MODELS % item)
    assert len(found) == 1
    assert found[0].endswith(problem)


@pytest.mark.parametrize("item", ["{model: b}", '{model: b, version: "2"}'])
def test_a_fallback_to_a_configured_model_or_version_is_accepted(item: str) -> None:
    config = parse(TWO_MODELS % item)
    fallback = config.policies_for(config.models[0]).fallback
    assert fallback is not None
    assert isinstance(fallback.chain[0], ModelAlternativeSettings)


CANARY = """
models:
  - name: m
    version: "1"
    backend: {kind: mock}
  - name: m
    version: "2"
    %s
    backend: {kind: mock}
    policies: {fallback: {chain: [%s]}}
"""


def test_a_version_may_fall_back_to_another_version_of_its_model() -> None:
    config = parse(CANARY % ("", '{model: m, version: "1"}'))
    assert config.policies_for(config.models[1]).fallback is not None


def test_a_canary_may_fall_back_to_its_models_default_version() -> None:
    # m:2 is not the default (m:1 is, as the first listed): {model: m} means m:1, not itself.
    config = parse(CANARY % ("", "{model: m}"))
    assert config.policies_for(config.models[1]).fallback is not None


def test_the_default_version_falling_back_to_its_model_is_a_fallback_to_itself() -> None:
    found = problems(CANARY % ("default: true", "{model: m}"))
    assert len(found) == 1
    assert found[0].endswith("models[1].policies.fallback.chain[0]: model 'm' falls back to itself")


def test_a_fallback_in_policy_defaults_is_checked_for_every_model() -> None:
    text = """
policy_defaults: {fallback: {chain: [{model: b}]}}
models:
  - name: a
    backend: {kind: mock}
  - name: b
    backend: {kind: mock}
    %s
"""
    found = problems(text % "")
    assert len(found) == 1
    assert found[0].endswith("models[1].policies.fallback.chain[0]: model 'b' falls back to itself")
    config = parse(text % "policies: {fallback: null}")
    assert [config.policies_for(m).fallback is None for m in config.models] == [False, True]


def test_per_key_rate_limits_must_name_configured_keys() -> None:
    keys = f"auth: {{keys: [{{name: app, key: {SECRET}}}]}}\n"
    limits = "ratelimit: {keys: {%s: {rate_per_s: 1, burst: 1}}}\n"
    found = problems(keys + limits % "ghost")
    assert len(found) == 1
    assert found[0].endswith("ratelimit.keys: no API key named ghost in auth.keys")
    without_auth = problems(limits % "app")
    assert without_auth[0].endswith("ratelimit.keys: no API key named app in auth.keys")
    assert parse(keys + limits % "app").ratelimit.keys == {
        "app": RateLimitSettings(rate_per_s=1, burst=1)
    }


# --- response cache -----------------------------------------------------------------------


def test_a_cache_in_policy_defaults_applies_to_every_model_unless_turned_off() -> None:
    text = """
policy_defaults: {cache: {ttl_s: 60, storage: redis, redis_url: "redis://cache:6379/1"}}
models:
  - {name: a, backend: {kind: mock}}
  - {name: b, backend: {kind: mock}, policies: {cache: null}}
  - {name: c, backend: {kind: mock}, policies: {cache: {llm: always}}}
"""
    config = parse(text)
    a, b, c = (config.policies_for(m).cache for m in config.models)
    assert a == CacheSettings(ttl_s=60, storage="redis", redis_url="redis://cache:6379/1")
    assert b is None
    assert c == CacheSettings(llm="always")  # a model's section replaces the default whole


def test_a_cache_entry_larger_than_the_memory_cache_is_refused_at_its_path() -> None:
    found = problems(one_model("{cache: {max_bytes: 1000, max_entry_bytes: 1001}}"))
    assert found == [
        "models[0].policies.cache: max_entry_bytes (1001) is larger than max_bytes (1000): "
        "no answer that size could be kept"
    ]
    # In Redis, max_bytes does not apply (Redis's own maxmemory bounds it).
    redis = parse(one_model("{cache: {storage: redis, max_bytes: 1000, max_entry_bytes: 1001}}"))
    cache = redis.policies_for(redis.models[0]).cache
    assert cache is not None
    assert cache.max_entry_bytes == 1001


def test_a_bad_cache_field_names_its_path() -> None:
    found = problems(one_model("{cache: {ttl_s: 0}}"))
    assert found == ["models[0].policies.cache.ttl_s: Input should be greater than 0"]
    found = problems(one_model("{cache: {storage: disk}}"))
    assert found == ["models[0].policies.cache.storage: Input should be 'memory' or 'redis'"]


# --- batching -----------------------------------------------------------------------------


def test_batching_defaults() -> None:
    assert BatchingSettings().model_dump() == {
        "max_batch_size": 32,
        "max_wait_ms": 5.0,
        "max_queue_rows": 256,
        "max_concurrent_batches": 1,
        "adaptive": False,
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_batch_size", 0),
        ("max_wait_ms", -1),
        ("max_wait_ms", float("inf")),
        ("max_queue_rows", 0),
        ("max_concurrent_batches", 0),
        ("adaptive", "sometimes"),
    ],
)
def test_batching_values_out_of_range_are_refused_at_their_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as raised:
        BatchingSettings.model_validate({field: value})
    assert [e["loc"][0] for e in raised.value.errors()] == [field]


def test_batching_accepts_no_wait_and_a_queue_of_one_batch() -> None:
    settings = BatchingSettings(max_wait_ms=0, max_batch_size=8, max_queue_rows=8)
    assert (settings.max_wait_ms, settings.max_queue_rows) == (0, 8)


@pytest.mark.parametrize(
    ("policies", "problem"),
    [
        (
            "{batching: {max_batch_size: 0}}",
            "models[0].policies.batching.max_batch_size: "
            "Input should be greater than or equal to 1",
        ),
        (
            "{batching: {max_batch_size: 64, max_queue_rows: 32}}",
            "models[0].policies.batching: max_queue_rows (32) must be at least max_batch_size (64)",
        ),
        (
            "{batching: {max_wait: 5}}",
            "models[0].policies.batching.max_wait: unknown field "
            "(check the spelling; see `seawall config schema`)",
        ),
    ],
)
def test_batching_problems_name_their_path(policies: str, problem: str) -> None:
    assert problems(one_model(policies)) == [problem]


def test_batching_in_policy_defaults_applies_to_every_model_unless_turned_off() -> None:
    config = parse(
        "policy_defaults: {batching: {max_batch_size: 16}}\n"
        "models:\n"
        "  - {name: a, backend: {kind: mock}}\n"
        "  - {name: b, backend: {kind: mock}, policies: {batching: null}}\n"
    )
    a, b = (config.policies_for(m) for m in config.models)
    assert a.batching == BatchingSettings(max_batch_size=16)
    assert b.batching is None


def test_auth_needs_keys_or_the_database() -> None:
    with pytest.raises(
        ConfigError, match="auth: keys: give at least one key, or set database_keys"
    ):
        parse_config("auth: {}\nmodels: []\n", environ={})
    config = parse_config("auth: {database_keys: true}\nmodels: []\n", environ={})
    assert config.auth is not None
    assert (config.auth.keys, config.auth.database_keys, config.auth.key_cache_ttl_s) == (
        [],
        True,
        5.0,
    )
