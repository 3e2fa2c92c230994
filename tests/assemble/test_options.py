"""assemble.options: config sections mapped to policy options, and errors given their path."""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from seawall.assemble import options as build
from seawall.clock import FakeClock
from seawall.config import SeawallConfig, parse_config
from seawall.config.policies import (
    FALLBACK_TRIGGERS,
    AdmissionSettings,
    ApiKeySettings,
    BatchingSettings,
    BulkheadSettings,
    CircuitBreakerSettings,
    FallbackSettings,
    HedgeSettings,
    RateLimitSettings,
    RateLimitsSettings,
    RetrySettings,
    TimeoutSettings,
)
from seawall.context import CallContext
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
from seawall.pipeline import discard
from seawall.policies import (
    AdmissionOptions,
    ApiKey,
    BatchingOptions,
    BulkheadOptions,
    CachedAlternative,
    CircuitBreakerOptions,
    ClassCapacity,
    CountWindow,
    FunctionAlternative,
    HedgeOptions,
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
from seawall.policies.ratelimit import OnStorageError
from seawall.types import Datatype, InferenceRequest, InferenceResponse, Tensor

SECRET = "s3cret-0123456789-abcdef"


def config(text: str, base_dir: Path | None = None) -> SeawallConfig:
    return parse_config(text, base_dir=base_dir, environ={})


def request(model: str = "m") -> InferenceRequest:
    rows = np.asarray([[1.0, 2.0]], dtype=np.float32)
    return InferenceRequest(model=model, inputs=[Tensor.from_numpy("input-0", rows)])


# --- one function per section -------------------------------------------------------------


def test_timeout_in_ms_becomes_seconds_and_none_means_only_the_deadline() -> None:
    assert build.timeout(TimeoutSettings(timeout_ms=250)) == TimeoutOptions(timeout_s=0.25)
    assert build.timeout(TimeoutSettings()) == TimeoutOptions(timeout_s=None)
    # No section at all: the deadline still applies, but no per-call limit.
    assert build.timeout(None) == TimeoutOptions(timeout_s=None)


def test_retry_maps_delays_to_seconds_and_keeps_the_budget() -> None:
    settings = RetrySettings.model_validate(
        {
            "attempts": 4,
            "base_delay_ms": 20,
            "multiplier": 3,
            "max_delay_ms": 500,
            "budget": {"ratio": 0.5, "window_s": 30, "min_per_s": 2},
        }
    )
    options = build.retry(settings)
    assert (options.attempts, options.base_delay_s, options.multiplier, options.max_delay_s) == (
        4,
        0.02,
        3.0,
        0.5,
    )
    assert options.budget == RetryBudgetOptions(ratio=0.5, window_s=30.0, min_per_s=2.0)


def test_retry_budget_null_means_no_budget() -> None:
    assert build.retry(RetrySettings(budget=None)).budget is None


def test_circuit_breaker_maps_every_field_and_a_count_window() -> None:
    settings = CircuitBreakerSettings.model_validate(
        {
            "window": {"kind": "count", "size": 50},
            "minimum_calls": 10,
            "failure_rate": 0.25,
            "slow_call_ms": 800,
            "slow_call_rate": 0.75,
            "consecutive_failures": 3,
            "open_s": 5,
            "backoff_multiplier": 1.5,
            "max_open_s": 60,
            "half_open_calls": 2,
        }
    )
    assert build.circuit_breaker(settings) == CircuitBreakerOptions(
        window=CountWindow(50),
        minimum_calls=10,
        failure_rate_threshold=0.25,
        slow_call_rate_threshold=0.75,
        slow_call_duration_s=0.8,
        consecutive_failures=3,
        open_duration_s=5.0,
        backoff_multiplier=1.5,
        max_open_duration_s=60.0,
        half_open_max_calls=2,
    )


def test_circuit_breaker_time_window_is_in_whole_seconds_and_slow_calls_may_be_off() -> None:
    settings = CircuitBreakerSettings.model_validate(
        {"window": {"kind": "time", "size": 30}, "slow_call_ms": None}
    )
    options = build.circuit_breaker(settings)
    assert options.window == TimeWindow(30)
    assert options.slow_call_duration_s is None


def test_bulkhead_and_hedge_map_ms_to_seconds() -> None:
    bulkhead = BulkheadSettings(max_concurrent=3, max_queue=0, max_wait_ms=250)
    assert build.bulkhead(bulkhead) == BulkheadOptions(
        max_concurrent=3, max_queue=0, max_wait_s=0.25
    )
    hedge = HedgeSettings(delay_ms=50, max_hedges=2, quantile=0.9, min_delay_ms=5)
    assert build.hedge(hedge) == HedgeOptions(
        delay_s=0.05, max_hedges=2, quantile=0.9, min_delay_s=0.005, initial_delay_s=0.1
    )
    assert build.hedge(HedgeSettings()).delay_s is None  # adaptive


def test_batching_maps_ms_to_seconds_and_keeps_rows() -> None:
    settings = BatchingSettings(
        max_batch_size=64,
        max_wait_ms=2.5,
        max_queue_rows=512,
        max_concurrent_batches=2,
        adaptive=True,
    )
    assert build.batching(settings) == BatchingOptions(
        max_batch_size=64,
        max_wait_s=0.0025,
        max_queue_rows=512,
        max_concurrent_batches=2,
        adaptive=True,
    )
    assert build.batching(BatchingSettings(max_wait_ms=0)).max_wait_s == 0.0


def test_admission_maps_ms_to_seconds_and_class_capacity() -> None:
    settings = AdmissionSettings.model_validate(
        {
            "max_in_flight": 8,
            "max_queue": 4,
            "target_queue_delay_ms": 50,
            "max_queue_delay_ms": 400,
            "class_capacity": {"critical": 1.0, "normal": 0.5, "batch": 0.25},
        }
    )
    assert build.admission(settings) == AdmissionOptions(
        max_in_flight=8,
        max_queue=4,
        target_queue_delay_s=0.05,
        max_queue_delay_s=0.4,
        class_capacity=ClassCapacity(critical=1.0, normal=0.5, batch=0.25),
    )


def test_a_partial_class_capacity_keeps_the_policy_defaults_for_the_rest() -> None:
    options = build.admission(AdmissionSettings(class_capacity={"batch": 0.3}))
    assert options.class_capacity == ClassCapacity(critical=1.0, normal=0.9, batch=0.3)


@pytest.mark.parametrize(
    ("mapped", "policy_default"),
    [
        (build.retry(RetrySettings()), RetryOptions()),
        (build.circuit_breaker(CircuitBreakerSettings()), CircuitBreakerOptions()),
        (build.bulkhead(BulkheadSettings()), BulkheadOptions()),
        (build.hedge(HedgeSettings()), HedgeOptions()),
        (build.admission(AdmissionSettings()), AdmissionOptions()),
        (build.batching(BatchingSettings()), BatchingOptions()),
    ],
    ids=["retry", "circuit_breaker", "bulkhead", "hedge", "admission", "batching"],
)
def test_config_defaults_are_the_policies_own_defaults(
    mapped: object, policy_default: object
) -> None:
    # One set of documented defaults: an empty section behaves like the policy's defaults.
    assert mapped == policy_default


# --- fallback triggers --------------------------------------------------------------------


def test_every_error_code_config_accepts_maps_to_the_class_with_that_code() -> None:
    assert set(build.ERROR_CODES) == set(typing.get_args(FALLBACK_TRIGGERS))
    assert {code: cls.code for code, cls in build.ERROR_CODES.items()} == {  # type: ignore[attr-defined]
        code: code for code in build.ERROR_CODES
    }


def test_default_triggers_fall_back_on_backend_failures_but_not_model_errors() -> None:
    options = build.fallback(FallbackSettings.model_validate({"chain": [{"cached": True}]}))
    assert options.max_hops == 3
    assert options.triggers == (
        BackendTimeoutError,
        BackendUnavailableError,
        BadResponseError,
        BackendError,
        CircuitOpenError,
        OverloadedError,
        ModelNotReadyError,
    )
    # `backend_error` covers ModelExecutionError, so it is ignored unless listed itself.
    assert options.ignored == (ModelExecutionError,)
    assert options.triggers_on(BackendUnavailableError("down"))
    assert options.triggers_on(CircuitOpenError("open"))
    assert not options.triggers_on(ModelExecutionError("raised"))
    assert not options.triggers_on(RateLimitedError("quota"))


def test_listing_model_error_makes_model_errors_fall_back() -> None:
    settings = FallbackSettings.model_validate(
        {"chain": [{"cached": True}], "triggers": ["model_error", "rate_limited"], "max_hops": 1}
    )
    options = build.fallback(settings)
    assert (options.triggers, options.ignored, options.max_hops) == (
        (ModelExecutionError, RateLimitedError),
        (),
        1,
    )
    assert options.triggers_on(ModelExecutionError("raised"))
    assert options.triggers_on(RateLimitedError("quota"))
    assert not options.triggers_on(BackendUnavailableError("down"))


def test_backend_error_with_model_error_listed_covers_every_backend_failure() -> None:
    settings = FallbackSettings.model_validate(
        {"chain": [{"cached": True}], "triggers": ["backend_error", "model_error"]}
    )
    options = build.fallback(settings)
    assert options.ignored == ()
    assert options.triggers_on(ModelExecutionError("raised"))
    assert options.triggers_on(BackendTimeoutError("slow"))


# --- fallback alternatives ----------------------------------------------------------------


class Handlers:
    """Stands in for the assembler's lookup of a model's inner pipeline."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str | None]] = []

    def __call__(self, name: str, version: str | None) -> Any:
        self.asked.append((name, version))

        async def handler(req: InferenceRequest, ctx: CallContext) -> InferenceResponse:
            answer = np.asarray([[float(len(self.asked))]], dtype=np.float32)
            outputs = [Tensor.from_numpy("answer", answer)]
            return InferenceResponse(model=req.model, version=req.version, outputs=outputs)

        handler.__qualname__ = f"inner:{name}:{version}"
        return handler


def chain(items: list[dict[str, Any]]) -> FallbackSettings:
    return FallbackSettings.model_validate({"chain": items})


async def test_model_alternatives_call_the_handler_of_the_target_model() -> None:
    handlers = Handlers()
    settings = chain([{"model": "b"}, {"model": "c", "version": "2"}])
    built = build.alternatives(settings, handlers, config(""), FakeClock())

    assert handlers.asked == [("b", None), ("c", "2")]
    assert all(isinstance(a, ModelAlternative) for a in built)
    first, second = typing.cast(list[ModelAlternative], built)
    assert (first.name, first.model, first.version) == ("b", "b", None)
    assert (second.name, second.model, second.version) == ("c:2", "c", "2")
    assert second.handler.__qualname__ == "inner:c:2"
    # The request is re-addressed to the target before its handler sees it.
    response = await second.answer(request("a"), CallContext.new())
    assert (response.model, response.version) == ("c", "2")


def write_rules(directory: Path, module: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{module}.py").write_text(
        "import numpy as np\n"
        "def predict(inputs):\n"
        "    return {'predict': np.asarray(inputs['input-0']).sum(axis=1).astype('int64')}\n"
        "CONSTANT = 3\n",
        encoding="utf-8",
    )


@pytest.fixture
def clean_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    """sys.path and sys.modules restored after the test (python alternatives import modules)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))


@pytest.mark.usefixtures("clean_imports")
async def test_a_python_alternative_is_imported_from_its_search_path(tmp_path: Path) -> None:
    module = f"fallback_rules_{tmp_path.name.replace('-', '_')}"
    write_rules(tmp_path / "lib", module)
    settings = chain([{"python": f"{module}:predict", "search_path": "lib"}])
    built = build.alternatives(settings, Handlers(), config("", tmp_path), FakeClock())

    (alternative,) = built
    assert isinstance(alternative, FunctionAlternative)
    assert alternative.name == f"{module}:predict"
    assert str(tmp_path / "lib") in sys.path  # relative to the config file's directory
    response = await alternative.answer(request(), CallContext.new())
    assert [(t.name, t.datatype, t.data.tolist()) for t in response.outputs] == [
        ("predict", Datatype.INT64, [3])
    ]


@pytest.mark.usefixtures("clean_imports")
def test_a_python_alternative_can_be_named(tmp_path: Path) -> None:
    module = f"named_rules_{tmp_path.name.replace('-', '_')}"
    write_rules(tmp_path, module)
    settings = chain([{"python": f"{module}:predict", "search_path": ".", "name": "rules"}])
    (alternative,) = build.alternatives(settings, Handlers(), config("", tmp_path), FakeClock())
    assert alternative.name == "rules"


@pytest.mark.usefixtures("clean_imports")
def test_a_python_alternative_that_is_not_callable_is_a_config_error(tmp_path: Path) -> None:
    module = f"const_rules_{tmp_path.name.replace('-', '_')}"
    write_rules(tmp_path, module)
    settings = chain([{"python": f"{module}:CONSTANT", "search_path": "."}])
    with pytest.raises(ConfigError, match=f"'{module}:CONSTANT' is not callable"):
        build.alternatives(settings, Handlers(), config("", tmp_path), FakeClock())


@pytest.mark.usefixtures("clean_imports")
def test_a_python_alternative_that_cannot_be_imported_is_a_config_error(tmp_path: Path) -> None:
    settings = chain([{"python": "no_such_module_for_seawall:predict"}])
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module_for_seawall'"):
        build.alternatives(settings, Handlers(), config("", tmp_path), FakeClock())


async def test_a_static_alternative_answers_its_outputs_with_their_datatypes() -> None:
    settings = chain(
        [
            {
                "static": [
                    {"name": "score", "datatype": "FP32", "data": [[0.5, 0.25]]},
                    {"name": "label", "data": [1, 2]},
                ],
                "name": "default-answer",
            }
        ]
    )
    (alternative,) = build.alternatives(settings, Handlers(), config(""), FakeClock())

    assert isinstance(alternative, StaticAlternative)
    assert alternative.name == "default-answer"
    response = await alternative.answer(request(), CallContext.new())
    assert [(t.name, t.datatype, t.shape, t.data.tolist()) for t in response.outputs] == [
        ("score", Datatype.FP32, (1, 2), [[0.5, 0.25]]),
        ("label", Datatype.INT64, (2,), [1, 2]),
    ]


def test_a_static_alternative_is_named_static_by_default() -> None:
    settings = chain([{"static": [{"name": "o", "data": ["yes"], "datatype": "BYTES"}]}])
    (alternative,) = build.alternatives(settings, Handlers(), config(""), FakeClock())
    assert alternative.name == "static"


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ({"name": "o", "datatype": "INT64", "data": [1.5]}, "outputs.o: expected integers"),
        ({"name": "o", "data": [[1], [2, 3]]}, "inhomogeneous"),
    ],
)
def test_static_outputs_that_do_not_fit_are_value_errors(
    output: dict[str, Any], message: str
) -> None:
    # ValueError, so that `at` reports it at the fallback section's path.
    with pytest.raises(ValueError, match=message):
        build.alternatives(chain([{"static": [output]}]), Handlers(), config(""), FakeClock())


async def test_a_cached_alternative_gets_a_cache_of_the_configured_size_on_the_clock() -> None:
    clock = FakeClock()
    settings = chain([{"cached": True, "max_entries": 2, "ttl_s": 60}])
    (alternative,) = build.alternatives(settings, Handlers(), config(""), clock)

    assert isinstance(alternative, CachedAlternative)
    assert (alternative.cache.max_entries, alternative.cache.ttl_s) == (2, 60.0)
    req = request()
    answer = InferenceResponse(model="m", outputs=[Tensor.from_numpy("o", np.asarray([1]))])
    alternative.cache.put(req, answer)
    assert (await alternative.answer(req, CallContext.new())).outputs[0].data.tolist() == [1]
    clock.advance(60)  # the ttl runs on the injected clock
    assert alternative.cache.get(req) is None


def test_alternatives_keep_the_chain_order() -> None:
    settings = chain(
        [{"cached": True}, {"model": "b"}, {"static": [{"name": "o", "data": [0]}], "name": "s"}]
    )
    built = build.alternatives(settings, Handlers(), config(""), FakeClock())
    assert [a.name for a in built] == ["cached", "b", "s"]


# --- rate limits --------------------------------------------------------------------------


def test_no_bucket_applies_without_any_limit() -> None:
    assert build.rate_limits(RateLimitsSettings(), None) is None


def test_a_model_limit_alone_gives_a_model_bucket() -> None:
    options = build.rate_limits(RateLimitsSettings(), RateLimitSettings(rate_per_s=3, burst=6))
    assert options == RateLimitOptions(model_limit=RateLimit(3, 6))


def test_shared_limits_map_to_key_global_and_per_key_buckets() -> None:
    shared = RateLimitsSettings.model_validate(
        {
            "global": {"rate_per_s": 100, "burst": 200},
            "per_key": {"rate_per_s": 10, "burst": 20},
            "keys": {"gold": {"rate_per_s": 50, "burst": 50}},
            "on_storage_error": "deny",
        }
    )
    options = build.rate_limits(shared, None)
    assert options is not None
    assert (options.global_limit, options.key_limit, options.model_limit) == (
        RateLimit(100, 200),
        RateLimit(10, 20),
        None,
    )
    assert dict(options.key_limits or {}) == {"gold": RateLimit(50, 50)}
    assert options.on_storage_error is OnStorageError.DENY


def test_named_key_limits_alone_are_enough_for_a_policy() -> None:
    shared = RateLimitsSettings.model_validate({"keys": {"gold": {"rate_per_s": 5, "burst": 5}}})
    options = build.rate_limits(shared, None)
    assert options is not None
    assert (options.key_limit, dict(options.key_limits or {})) == (None, {"gold": RateLimit(5, 5)})
    assert options.on_storage_error is OnStorageError.LOCAL


# --- API keys -----------------------------------------------------------------------------


def test_a_plaintext_key_is_hashed_and_not_kept() -> None:
    key = build.api_key(ApiKeySettings(name="app", key=SECRET, roles=["consumer", "viewer"]))

    assert key.sha256 == hashlib.sha256(SECRET.encode()).hexdigest()
    assert (key.name, key.roles, key.models, key.expires_at) == (
        "app",
        frozenset({"consumer", "viewer"}),
        None,
        None,
    )
    assert all(SECRET not in str(value) for value in dataclasses.astuple(key))
    assert SECRET not in repr(key)


def test_a_sha256_key_is_used_as_given_in_lower_case() -> None:
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    key = build.api_key(ApiKeySettings(name="ops", key_sha256=digest.upper(), models=["iris*"]))
    assert key == ApiKey("ops", digest, frozenset({"consumer"}), frozenset({"iris*"}), None)


@pytest.mark.parametrize(
    ("expires_at", "timestamp"),
    [("2030-01-01T00:00:00Z", 1_893_456_000.0), ("2030-01-01T02:00:00+02:00", 1_893_456_000.0)],
)
def test_expiry_becomes_a_wall_clock_timestamp(expires_at: str, timestamp: float) -> None:
    settings = ApiKeySettings.model_validate(
        {"name": "app", "key": SECRET, "expires_at": expires_at}
    )
    key = build.api_key(settings)
    assert key.expires_at == timestamp
    assert not key.expired(timestamp - 1)
    assert key.expired(timestamp)


# --- at(): section paths ------------------------------------------------------------------


def test_at_turns_a_value_error_into_a_config_error_at_the_path() -> None:
    with pytest.raises(ConfigError) as raised, build.at("models[2].policies.retry"):
        RetryOptions(attempts=0)
    assert str(raised.value) == "models[2].policies.retry: attempts: must be at least 1, got 0"
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_at_lets_other_errors_through() -> None:
    with pytest.raises(TypeError, match="boom"), build.at("admission"):
        raise TypeError("boom")
    with build.at("admission"):
        pass  # nothing raised, nothing reported


@pytest.mark.usefixtures("clean_imports")
def test_at_gives_a_config_error_raised_inside_the_section_its_path(tmp_path: Path) -> None:
    settings = chain([{"python": "no_such_module_for_seawall:predict"}])
    with pytest.raises(ConfigError) as raised, build.at("models[0].policies.fallback"):
        build.alternatives(settings, Handlers(), config("", tmp_path), FakeClock())
    message = str(raised.value)
    assert message.startswith("models[0].policies.fallback: ")
    assert "cannot import module 'no_such_module_for_seawall'" in message


# --- SharedParts --------------------------------------------------------------------------


def test_shared_parts_default_to_no_keys_no_admission_and_memory_buckets() -> None:
    shared = build.SharedParts.from_config(config(""), FakeClock(), discard)
    assert (shared.api_keys, shared.admission, shared.closers) == ((), None, [])
    assert isinstance(shared.storage, MemoryBucketStorage)


def test_shared_parts_hash_every_key_and_build_one_admission_gate() -> None:
    digest = "ab" * 32
    text = f"""
auth:
  keys:
    - {{name: app, key: {SECRET}}}
    - {{name: ops, key_sha256: "{digest}", roles: [admin]}}
admission: {{max_in_flight: 3, class_capacity: {{batch: 0.5}}}}
"""
    shared = build.SharedParts.from_config(config(text), FakeClock(), discard)
    assert [(k.name, k.sha256) for k in shared.api_keys] == [
        ("app", hashlib.sha256(SECRET.encode()).hexdigest()),
        ("ops", digest),
    ]
    assert shared.admission is not None
    assert shared.admission.options == AdmissionOptions(
        max_in_flight=3, class_capacity=ClassCapacity(batch=0.5)
    )


async def test_redis_storage_is_built_without_connecting_and_registers_its_closer() -> None:
    # Port 1: nothing listens there; building and closing must not need a connection.
    text = "ratelimit: {storage: redis, redis_url: 'redis://127.0.0.1:1/0', redis_timeout_ms: 250}"
    shared = build.SharedParts.from_config(config(text), FakeClock(), discard)

    assert isinstance(shared.storage, RedisBucketStorage)
    assert repr(shared.storage) == "RedisBucketStorage(prefix='seawall:rl:', timeout_s=0.25)"
    assert shared.closers == [shared.storage.aclose]
    for close in shared.closers:
        await close()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "admission: {class_capacity: {critical: 0.5}}",
            "admission: class_capacity: a less important class may not get a larger share "
            "(critical 0.5, normal 0.9, batch 0.6)",
        ),
        (
            "admission: {target_queue_delay_ms: 500, max_queue_delay_ms: 200}",
            "admission: max_queue_delay_s: must be positive and at least target_queue_delay_s "
            "(0.5), got 0.2",
        ),
    ],
)
def test_shared_parts_report_option_errors_at_their_section(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        build.SharedParts.from_config(config(text), FakeClock(), discard)
    assert str(raised.value) == message


def test_database_keys_give_a_cached_lookup_migrated_at_start(tmp_path: Path) -> None:
    config = parse_config(
        f'database_url: "sqlite:///{tmp_path / "k.db"}"\nauth: {{database_keys: true}}\n'
        "models: [{name: m, backend: {kind: mock}}]\n",
        environ={},
    )
    parts = build.SharedParts.from_config(config, FakeClock(), discard)
    assert parts.api_keys == ()
    assert parts.key_lookup is not None
    assert parts.authenticates
    assert len(parts.starters) == 1
    assert len(parts.closers) == 1
    assert parts.control is not None
    assert parts.starters == [parts.control.start]
    assert parts.closers == [parts.control.aclose]


async def test_a_database_url_alone_gives_a_control_plane_opened_on_first_use(
    tmp_path: Path,
) -> None:
    database = tmp_path / "c.db"
    text = f'database_url: "sqlite:///{database}"\nmodels: []\n'
    parts = build.SharedParts.from_config(parse_config(text, environ={}), FakeClock(), discard)
    assert parts.control is not None
    assert (parts.key_lookup, parts.starters) == (None, [])
    assert not database.exists()  # nothing is opened or migrated until the admin API asks
    await (await parts.control.audit()).append("ops", "circuit.mode", "m:1")
    assert database.exists()
    for close in parts.closers:
        await close()
    without = build.SharedParts.from_config(config("models: []"), FakeClock(), discard)
    assert without.control is None
