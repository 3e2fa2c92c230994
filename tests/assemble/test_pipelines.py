"""assemble: configuration turned into backends, pipelines and a model repository."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from aiohttp import web

from seawall.assemble import Assembly, assemble
from seawall.backends import (
    CallableBackend,
    MockBackend,
    ModelRepository,
    ModelState,
    OnnxBackend,
    SklearnBackend,
)
from seawall.backends.balancer import LeastOutstanding, RoundRobin, WeightedRoundRobin
from seawall.backends.http import HttpOptions
from seawall.backends.oip import OipBackend
from seawall.backends.outlier import OutlierOptions
from seawall.backends.pool import EndpointLoadFailed, EndpointPool, HealthCheckOptions
from seawall.clock import FakeClock
from seawall.config import SeawallConfig, parse_config
from seawall.context import CallContext
from seawall.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigError,
    InvalidInputError,
    RateLimitedError,
    UnauthorizedError,
)
from seawall.pipeline import Pipeline
from seawall.policies import (
    AdmissionPolicy,
    BatchExecuted,
    BatchingOptions,
    BulkheadPolicy,
    CircuitState,
    FallbackPolicy,
    InputRejected,
    ModelAlternative,
    RedisBucketStorage,
    RetryAttempted,
)
from seawall.types import InferenceRequest, InferenceResponse, Tensor

SETOSA = [[5.1, 3.5, 1.4, 0.2]]


def request(model: str, rows: list[list[float]], dtype: type = np.float32) -> InferenceRequest:
    return InferenceRequest(
        model=model, inputs=[Tensor.from_numpy("input-0", np.asarray(rows, dtype=dtype))]
    )


async def call(repository: ModelRepository, req: InferenceRequest) -> InferenceResponse:
    return await repository.get(req.model).handler(req, CallContext.new())


def config(text: str, base_dir: Path) -> SeawallConfig:
    return parse_config(text, base_dir=base_dir, environ={})


def test_demo_config_assembles_four_models_with_their_backends(
    demo_config: SeawallConfig, demo_dir: Path
) -> None:
    repository = assemble(demo_config).repository

    assert len(repository) == 4
    kinds = {m.name: type(m.backend) for m in repository}
    assert kinds == {
        "iris": SklearnBackend,
        "iris-onnx": OnnxBackend,
        "diabetes": SklearnBackend,
        "iris-rules": CallableBackend,
    }
    assert all(m.version == "1" and m.state is ModelState.LOADING for m in repository)
    for name, file in [("iris", "iris.joblib"), ("iris-onnx", "iris.onnx")]:
        backend = repository.get(name).backend
        assert isinstance(backend, SklearnBackend | OnnxBackend)
        assert backend.path.is_absolute()
        assert backend.path == demo_dir.resolve() / file


def test_each_pipeline_shows_validation_then_the_backend(demo_config: SeawallConfig) -> None:
    repository = assemble(demo_config).repository

    # The demo's iris is checked against its training profile and sampled for drift.
    assert {m.name: repr(m.handler) for m in repository} == {
        "iris": "Pipeline(iris:1: validation → profile → sample → timeout → sklearn:iris.joblib)",
        "iris-onnx": "Pipeline(iris-onnx:1: validation → timeout → onnx:iris.onnx)",
        "diabetes": "Pipeline(diabetes:1: validation → timeout → sklearn:diabetes.joblib)",
        "iris-rules": "Pipeline(iris-rules:1: validation → timeout → python:iris_rules:predict)",
    }


async def test_demo_models_load_and_answer_through_their_pipelines(
    demo_config: SeawallConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rules module must be found through the resolved search_path, not an earlier import.
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "iris_rules", raising=False)
    repository = assemble(demo_config).repository
    await repository.load_all()
    try:
        names = ("iris", "iris-onnx", "diabetes", "iris-rules")
        ready = (ModelState.READY, "")
        assert {m.name: (m.state, m.reason) for m in repository} == dict.fromkeys(names, ready)
        for name in ("iris", "iris-onnx", "iris-rules"):
            response = await call(repository, request(name, SETOSA))
            predict = response.outputs[0]
            assert (predict.name, predict.data.tolist()) == ("predict", [0]), name
        diabetes = await call(repository, request("diabetes", [[0.0] * 10], np.float64))
        assert diabetes.outputs[0].shape == (1,)
    finally:
        await repository.close_all()


MOCKS = """
models:
  - name: slow
    backend: {kind: mock, latency_ms: 250}
  - name: flaky
    backend: {kind: mock, error_rate: 1.0}
  - name: sometimes
    backend: {kind: mock, error_rate: 0.5, seed: 42}
"""


async def test_mock_model_from_config_has_its_latency_on_the_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    repository = assemble(config(MOCKS, tmp_path), clock=clock).repository
    assert isinstance(repository.get("slow").backend, MockBackend)
    await repository.load_all()

    task = asyncio.create_task(call(repository, request("slow", [[1.0, 2.0]])))
    for _ in range(5):
        await asyncio.sleep(0)
    clock.advance(0.249)
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done()

    clock.advance(0.001)
    response = await task
    assert response.outputs[0].data.tolist() == [[1.0, 2.0]]


async def test_mock_model_from_config_fails_as_an_unavailable_backend(tmp_path: Path) -> None:
    repository = assemble(config(MOCKS, tmp_path), clock=FakeClock()).repository
    await repository.load_all()

    with pytest.raises(BackendUnavailableError, match="model 'flaky': injected failure"):
        await call(repository, request("flaky", [[1.0]]))


async def outcomes(repository: ModelRepository, model: str, calls: int) -> list[bool]:
    failed = []
    for _ in range(calls):
        try:
            await call(repository, request(model, [[1.0]]))
        except BackendUnavailableError:
            failed.append(True)
        else:
            failed.append(False)
    return failed


async def test_mock_error_rate_and_seed_from_config(tmp_path: Path) -> None:
    first = assemble(config(MOCKS, tmp_path), clock=FakeClock()).repository
    second = assemble(config(MOCKS, tmp_path), clock=FakeClock()).repository
    await first.load_all()
    await second.load_all()

    drawn = await outcomes(first, "sometimes", 400)

    assert drawn == await outcomes(second, "sometimes", 400)  # same seed, same failures
    assert 160 <= sum(drawn) <= 240  # 0.5 ± 4 standard deviations


def iris_onnx_twice(demo_dir: Path) -> str:
    return f"""
models:
  - name: strict
    validation: {{convert_datatypes: false}}
    backend: {{kind: onnx, path: {demo_dir / "iris.onnx"}}}
  - name: lenient
    backend: {{kind: onnx, path: iris.onnx}}
"""


async def test_convert_datatypes_false_refuses_fp64_for_the_fp32_onnx_model(
    demo_dir: Path,
) -> None:
    events: list[object] = []
    repository = assemble(
        config(iris_onnx_twice(demo_dir), demo_dir), on_event=events.append
    ).repository
    await repository.load_all()
    try:
        with pytest.raises(InvalidInputError) as raised:
            await call(repository, request("strict", SETOSA, np.float64))
        assert raised.value.field == "inputs[0].datatype"
        assert raised.value.reason == "input 'input-0' of model 'strict' takes FP32, got FP64"
        assert events == [InputRejected("strict", "inputs[0].datatype", raised.value.reason)]

        exact = await call(repository, request("strict", SETOSA, np.float32))
        converted = await call(repository, request("lenient", SETOSA, np.float64))
        assert exact.outputs[0].data.tolist() == converted.outputs[0].data.tolist() == [0]
    finally:
        await repository.close_all()


def test_default_version_comes_from_config(tmp_path: Path) -> None:
    text = """
models:
  - name: m
    version: "1"
    backend: {kind: mock}
  - name: m
    version: "2"
    default: true
    backend: {kind: mock}
"""
    repository = assemble(config(text, tmp_path)).repository
    assert repository.versions("m") == ("1", "2")
    assert repository.default_version("m") == "2"
    assert repr(repository.get("m", "1").handler) == "Pipeline(m:1: validation → timeout → mock:m)"


# --- resilience policies assembled from config ---------------------------------------------

SECRET = "s3cret-0123456789-abcdef"

EVERYTHING = f"""
auth:
  keys:
    - {{name: app, key: "{SECRET}"}}
admission: {{max_in_flight: 8}}
ratelimit:
  per_key: {{rate_per_s: 100, burst: 100}}
policy_defaults:
  timeout: {{timeout_ms: 200}}
models:
  - name: a
    backend: {{kind: mock, error_rate: 1.0}}
    policies:
      ratelimit: {{rate_per_s: 100, burst: 100}}
      bulkhead: {{max_concurrent: 2}}
      circuit_breaker: {{window: {{kind: time, size: 10}}, minimum_calls: 5}}
      retry: {{attempts: 2, base_delay_ms: 0}}
      hedge: {{delay_ms: 50}}
      fallback: {{chain: [{{model: b}}, {{static: [{{name: output-0, data: [[0.0]]}}]}}]}}
  - name: b
    version: "1"
    backend: {{kind: mock}}
    policies: {{bulkhead: {{max_concurrent: 1}}, circuit_breaker: {{}}}}
  - name: b
    version: "2"
    default: true
    backend: {{kind: mock}}
    policies: {{circuit_breaker: {{}}}}
"""


def pipeline_of(assembly: Assembly, name: str, version: str | None = None) -> Pipeline[Any, Any]:
    handler = assembly.repository.get(name, version).handler
    assert isinstance(handler, Pipeline)
    return handler


def test_every_policy_is_assembled_in_the_documented_order(tmp_path: Path) -> None:
    assembly = assemble(config(EVERYTHING, tmp_path), clock=FakeClock())

    assert {f"{m.name}:{m.version}": repr(m.handler) for m in assembly.repository} == {
        "a:1": "Pipeline(a:1: auth → ratelimit → admission → validation → fallback → bulkhead"
        " → circuit_breaker → retry → hedge → timeout → mock:a)",
        "b:1": "Pipeline(b:1: auth → ratelimit → admission → validation → bulkhead"
        " → circuit_breaker → timeout → mock:b)",
        "b:2": "Pipeline(b:2: auth → ratelimit → admission → validation → circuit_breaker"
        " → timeout → mock:b)",
    }


def test_breakers_and_bulkheads_are_kept_by_model_and_version(tmp_path: Path) -> None:
    assembly = assemble(config(EVERYTHING, tmp_path), clock=FakeClock())

    assert sorted(assembly.breakers) == ["a:1", "b:1", "b:2"]
    assert sorted(assembly.bulkheads) == ["a:1", "b:1"]
    for label, breaker in assembly.breakers.items():
        name, version = label.split(":")
        assert breaker in pipeline_of(assembly, name, version).policies
        assert breaker.target == label
    assert isinstance(assembly.bulkheads["a:1"], BulkheadPolicy)
    assert assembly.bulkheads["a:1"].options.max_concurrent == 2
    assert assembly.bulkheads["b:1"].options.max_concurrent == 1
    assert assembly.bulkheads["b:1"] in pipeline_of(assembly, "b", "1").policies


def test_one_admission_gate_is_shared_by_every_model(tmp_path: Path) -> None:
    assembly = assemble(config(EVERYTHING, tmp_path), clock=FakeClock())

    gates = [
        p
        for m in assembly.repository
        for p in pipeline_of(assembly, m.name, m.version).policies
        if isinstance(p, AdmissionPolicy)
    ]
    assert len(gates) == 3
    assert all(gate is assembly.admission for gate in gates)
    assert assembly.admission is not None
    assert assembly.admission.options.max_in_flight == 8
    assert [key.name for key in assembly.api_keys] == ["app"]


def test_a_model_alternative_calls_the_default_version_of_the_target_from_validation_in(
    tmp_path: Path,
) -> None:
    assembly = assemble(config(EVERYTHING, tmp_path), clock=FakeClock())

    (fallback,) = [p for p in pipeline_of(assembly, "a").policies if isinstance(p, FallbackPolicy)]
    model, static = fallback.alternatives
    assert isinstance(model, ModelAlternative)
    assert (model.name, model.model, model.version) == ("b", "b", None)
    # b's default version (2), and its inner chain: no auth, rate limit, admission or fallback.
    assert repr(model.handler) == (
        "Pipeline(b:2 (inner): validation → circuit_breaker → timeout → mock:b)"
    )
    assert static.name == "static"


def test_a_model_without_policies_still_gets_the_shared_front(tmp_path: Path) -> None:
    text = f"""
auth: {{keys: [{{name: app, key: "{SECRET}"}}]}}
ratelimit: {{global: {{rate_per_s: 5, burst: 5}}}}
models: [{{name: m, backend: {{kind: mock}}}}]
"""
    assembly = assemble(config(text, tmp_path))
    assert repr(pipeline_of(assembly, "m")) == (
        "Pipeline(m:1: auth → ratelimit → validation → timeout → mock:m)"
    )
    assert (assembly.breakers, assembly.bulkheads, assembly.admission) == ({}, {}, None)


async def loaded(text: str, base_dir: Path, clock: FakeClock, **kwargs: Any) -> Assembly:
    assembly = assemble(config(text, base_dir), clock=clock, **kwargs)
    await assembly.repository.load_all()
    return assembly


def mock_of(assembly: Assembly, name: str) -> MockBackend:
    backend = assembly.repository.get(name).backend
    assert isinstance(backend, MockBackend)
    return backend


FALLING = """
models:
  - name: a
    backend: {kind: mock, error_rate: 1.0}
    policies:
      %s
      fallback: {chain: [{model: b}]}
  - name: b
    backend: {kind: mock}
"""


async def test_a_failing_model_is_answered_by_its_fallback_model(tmp_path: Path) -> None:
    assembly = await loaded(FALLING % "", tmp_path, FakeClock())
    served = assembly.repository.get("a")

    for i in range(10):
        ctx = CallContext.new()
        response = await served.handler(request("a", [[float(i), 1.0]]), ctx)
        assert (response.model, response.outputs[0].data.tolist()) == ("b", [[float(i), 1.0]])
        assert ctx.response_headers["x-seawall-served-by"] == "b"
        assert ctx.response_headers["x-seawall-fallback"] == "unavailable"
    assert (mock_of(assembly, "a").stats.failed, mock_of(assembly, "b").stats.completed) == (10, 10)


async def test_retries_are_spent_before_the_fallback_answers(tmp_path: Path) -> None:
    text = FALLING % "retry: {attempts: 3, base_delay_ms: 0}"
    assembly = await loaded(text, tmp_path, FakeClock())

    ctx = CallContext.new()
    await assembly.repository.get("a").handler(request("a", [[1.0]]), ctx)

    assert ctx.response_headers["x-seawall-attempts"] == "3"
    assert ctx.response_headers["x-seawall-served-by"] == "b"
    assert (mock_of(assembly, "a").stats.calls, mock_of(assembly, "b").stats.calls) == (3, 1)


async def test_an_open_breaker_falls_back_without_calling_the_model(tmp_path: Path) -> None:
    text = FALLING % "circuit_breaker: {consecutive_failures: 2, minimum_calls: 100}"
    assembly = await loaded(text, tmp_path, FakeClock())
    served = assembly.repository.get("a")

    reasons = []
    for _ in range(4):
        ctx = CallContext.new()
        await served.handler(request("a", [[1.0]]), ctx)
        reasons.append(ctx.response_headers["x-seawall-fallback"])

    assert reasons == ["unavailable", "unavailable", "circuit_open", "circuit_open"]
    assert assembly.breakers["a:1"].state is CircuitState.OPEN
    assert mock_of(assembly, "a").stats.calls == 2


AUTHENTICATED = f"""
auth:
  keys:
    - {{name: app, key: "{SECRET}"}}
    - {{name: gold, key: "{SECRET}-gold"}}
models:
  - name: a
    backend: {{kind: mock}}
  - name: b
    backend: {{kind: mock}}
"""
PER_KEY_LIMITS = """
ratelimit:
  per_key: {rate_per_s: 1, burst: 1}
  keys: {gold: {rate_per_s: 1, burst: 3}}
"""


def misnamed(model: str) -> InferenceRequest:
    rows = np.asarray([[1.0]], dtype=np.float32)
    return InferenceRequest(model=model, inputs=[Tensor.from_numpy("nope", rows)])


@pytest.mark.parametrize("credentials", [None, "", "wrong-key-0123456789"])
async def test_a_call_without_a_valid_key_is_refused_before_validation(
    tmp_path: Path, credentials: str | None
) -> None:
    assembly = await loaded(AUTHENTICATED, tmp_path, FakeClock())
    ctx = CallContext.new(credentials=credentials)

    # The request is invalid too: auth answers first, so nothing about the model leaks.
    with pytest.raises(UnauthorizedError):
        await assembly.repository.get("a").handler(misnamed("a"), ctx)
    assert ctx.principal is None
    assert mock_of(assembly, "a").stats.calls == 0


async def test_a_valid_key_passes_to_validation_and_the_model(tmp_path: Path) -> None:
    assembly = await loaded(AUTHENTICATED, tmp_path, FakeClock())
    handler = assembly.repository.get("a").handler

    with pytest.raises(InvalidInputError):
        await handler(misnamed("a"), CallContext.new(credentials=SECRET))
    ctx = CallContext.new(credentials=SECRET)
    response = await handler(request("a", [[1.0]]), ctx)
    assert response.outputs[0].data.tolist() == [[1.0]]
    assert ctx.principal == "app"


async def call_as(assembly: Assembly, model: str, credentials: str) -> CallContext:
    ctx = CallContext.new(credentials=credentials)
    await assembly.repository.get(model).handler(request(model, [[1.0]]), ctx)
    return ctx


async def test_a_refused_call_is_429_with_rate_limit_headers(tmp_path: Path) -> None:
    text = """
models:
  - name: a
    backend: {kind: mock}
    policies: {ratelimit: {rate_per_s: 1, burst: 2}}
"""
    clock = FakeClock()
    assembly = await loaded(text, tmp_path, clock)
    handler = assembly.repository.get("a").handler

    first = CallContext.new()
    await handler(request("a", [[1.0]]), first)
    await handler(request("a", [[1.0]]), CallContext.new())
    refused = CallContext.new()
    with pytest.raises(RateLimitedError) as raised:
        await handler(request("a", [[1.0]]), refused)

    assert first.response_headers == {
        "x-ratelimit-limit": "2",
        "x-ratelimit-remaining": "1",
        "x-ratelimit-reset": "1",
    }
    assert refused.response_headers == {
        "x-ratelimit-limit": "2",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": "2",
    }
    assert raised.value.retry_after_s == pytest.approx(1.0)
    assert mock_of(assembly, "a").stats.calls == 2
    clock.advance(1.0)
    await handler(request("a", [[1.0]]), CallContext.new())
    assert mock_of(assembly, "a").stats.calls == 3


async def test_per_key_limits_count_the_key_auth_found_across_models(tmp_path: Path) -> None:
    assembly = await loaded(AUTHENTICATED + PER_KEY_LIMITS, tmp_path, FakeClock())

    ctx = await call_as(assembly, "a", SECRET)
    assert ctx.response_headers["x-ratelimit-limit"] == "1"
    # The key's bucket is shared by every model: app's one call is spent.
    with pytest.raises(RateLimitedError, match="API key 'app'"):
        await call_as(assembly, "b", SECRET)
    # gold has its own, larger bucket.
    for model in ("a", "b", "a"):
        ctx = await call_as(assembly, model, f"{SECRET}-gold")
    assert ctx.response_headers["x-ratelimit-limit"] == "3"
    with pytest.raises(RateLimitedError, match="API key 'gold'"):
        await call_as(assembly, "b", f"{SECRET}-gold")


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_the_per_call_timeout_cancels_a_slow_model(tmp_path: Path) -> None:
    text = """
models:
  - name: slow
    backend: {kind: mock, latency_ms: 500}
    policies: {timeout: {timeout_ms: 100}}
"""
    clock = FakeClock()
    assembly = await loaded(text, tmp_path, clock)
    task = asyncio.create_task(call(assembly.repository, request("slow", [[1.0]])))
    await settle()
    clock.advance(0.099)
    await settle()
    assert not task.done()

    clock.advance(0.001)
    with pytest.raises(BackendTimeoutError):
        await task
    assert mock_of(assembly, "slow").stats.cancelled == 1


async def test_retries_back_off_on_the_clock_and_count_in_a_header(tmp_path: Path) -> None:
    text = """
models:
  - name: flaky
    backend: {kind: mock, error_rate: 1.0}
    policies: {retry: {attempts: 3, base_delay_ms: 100, max_delay_ms: 100}}
"""
    clock = FakeClock()
    events: list[object] = []
    assembly = await loaded(text, tmp_path, clock, on_event=events.append)
    ctx = CallContext.new()
    task = asyncio.create_task(
        assembly.repository.get("flaky").handler(request("flaky", [[1.0]]), ctx)
    )
    await clock.run_for(0.25, 0.01)

    with pytest.raises(BackendUnavailableError):
        await task
    assert ctx.response_headers["x-seawall-attempts"] == "3"
    assert mock_of(assembly, "flaky").stats.calls == 3
    retries = [e for e in events if isinstance(e, RetryAttempted)]
    assert [(e.target, e.attempt) for e in retries] == [("flaky:1", 2), ("flaky:1", 3)]
    assert all(0 <= e.delay_s <= 0.1 for e in retries)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            """
models:
  - name: ok
    backend: {kind: mock}
  - name: bad
    backend: {kind: mock}
    policies: {circuit_breaker: {window: {size: 10}, minimum_calls: 20}}
""",
            "models[1].policies.circuit_breaker: minimum_calls: must be at most the window's 10, "
            "got 20",
        ),
        (
            """
models:
  - name: a
    backend: {kind: mock}
    policies:
      fallback: {chain: [{static: [{name: o, data: [1]}]}, {static: [{name: o, data: [2]}]}]}
""",
            "models[0].policies.fallback: alternatives[1].name: 'static' is used twice",
        ),
        (
            """
models:
  - name: a
    backend: {kind: mock}
    policies: {fallback: {chain: [{static: [{name: o, datatype: INT64, data: [0.5]}]}]}}
""",
            "models[0].policies.fallback: outputs.o: expected integers for INT64, "
            "got fractional numbers",
        ),
        (
            f"""
auth:
  keys:
    - {{name: app, key: "{SECRET}"}}
    - {{name: app, key: "{SECRET}-2"}}
models: [{{name: a, backend: {{kind: mock}}}}]
""",
            "auth.keys: keys: the name 'app' is given twice",
        ),
        (
            f"""
auth:
  keys:
    - {{name: app, key: "{SECRET}"}}
    - {{name: ops, key_sha256: "{hashlib.sha256(SECRET.encode()).hexdigest()}"}}
models: [{{name: a, backend: {{kind: mock}}}}]
""",
            "auth.keys: keys: 'ops' has the same secret as 'app'",
        ),
    ],
    ids=["breaker", "duplicate-alternative", "static-datatype", "key-name-twice", "secret-twice"],
)
def test_options_that_do_not_fit_are_config_errors_at_their_section(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        assemble(config(text, tmp_path))
    assert str(raised.value) == message


def test_a_python_alternative_that_cannot_be_imported_names_its_section(tmp_path: Path) -> None:
    text = """
models:
  - name: a
    backend: {kind: mock}
    policies: {fallback: {chain: [{python: "no_such_module_for_seawall:predict"}]}}
"""
    with pytest.raises(ConfigError) as raised:
        assemble(config(text, tmp_path))
    assert str(raised.value).startswith("models[0].policies.fallback: ")
    assert "cannot import module 'no_such_module_for_seawall'" in str(raised.value)


async def test_closing_the_assembly_closes_the_redis_storage(tmp_path: Path) -> None:
    text = """
ratelimit: {storage: redis, redis_url: "redis://127.0.0.1:1/0", per_key: {rate_per_s: 1, burst: 1}}
models: [{name: a, backend: {kind: mock}}]
"""
    assembly = assemble(config(text, tmp_path), clock=FakeClock())
    closed: list[str] = []
    (close,) = assembly.closers

    async def recorded() -> None:
        closed.append("redis")
        await close()

    assembly.closers[:] = [recorded]
    await assembly.aclose()
    assert closed == ["redis"]
    assert isinstance(getattr(close, "__self__", None), RedisBucketStorage)


# --- kind: oip -------------------------------------------------------------------------------

REMOTE = """
models:
  - name: iris
    version: 2
    backend:
      kind: oip
      endpoints:
        - {{url: "{first}", weight: 3}}
        - {{url: "{second}"}}
      balancer: weighted
      binary: true
      http:
        connect_timeout_ms: 250
        first_byte_timeout_ms: 4000
        idle_read_timeout_ms: 1500
        total_timeout_ms: 9000
        max_connections: 7
        keepalive_s: 12
        ca_file: certs/ca.pem
        headers: {{x-api-key: k}}
      health_check: {{interval_s: 2, timeout_ms: 300, unhealthy_threshold: 4, healthy_threshold: 1}}
      outlier: {{consecutive_5xx: 2, base_ejection_s: 5, max_ejection_s: 50}}
"""


def remote(tmp_path: Path, first: str, second: str) -> SeawallConfig:
    (tmp_path / "certs").mkdir(exist_ok=True)
    (tmp_path / "certs" / "ca.pem").write_text("not read before the first call")
    return config(REMOTE.format(first=first, second=second), tmp_path)


def oip_pool(assembly: Assembly, name: str) -> EndpointPool:
    pool = assembly.repository.get(name).backend
    assert isinstance(pool, EndpointPool)
    return pool


def test_an_oip_model_is_a_pool_of_oip_backends_with_its_settings(tmp_path: Path) -> None:
    pool = oip_pool(assemble(remote(tmp_path, "http://a:8000", "https://b:8443/")), "iris")
    assert pool.name == "pool[oip:http://a:8000/iris, oip:https://b:8443/iris]"
    assert pool.weights == (3, 1)
    assert isinstance(pool.balancer, WeightedRoundRobin)
    backends = pool.endpoints
    assert all(isinstance(b, OipBackend) for b in backends)
    first = backends[0]
    assert isinstance(first, OipBackend)
    assert (first.model, first.version, first.binary) == ("iris", None, True)
    assert first.upstream.options == HttpOptions(
        connect_timeout_s=0.25,
        first_byte_timeout_s=4.0,
        idle_read_timeout_s=1.5,
        total_timeout_s=9.0,
        max_connections=7,
        keepalive_s=12.0,
        ca_file=str(tmp_path / "certs" / "ca.pem"),
        headers={"x-api-key": "k"},
    )
    assert pool.health_options == HealthCheckOptions(
        interval_s=2.0, timeout_s=0.3, unhealthy_threshold=4, healthy_threshold=1
    )
    assert pool.detector.options == OutlierOptions(
        consecutive_5xx=2, base_ejection_time_s=5.0, max_ejection_time_s=50.0
    )


@pytest.mark.parametrize(
    ("balancer", "kind"),
    [("round_robin", RoundRobin), ("least_outstanding", LeastOutstanding)],
)
def test_an_oip_model_names_its_upstream_model_and_balancer(
    tmp_path: Path, balancer: str, kind: type
) -> None:
    text = f"""
models:
  - name: front
    backend:
      kind: oip
      model: back
      version: "3"
      balancer: {balancer}
      endpoints: [{{url: "http://a:1"}}]
      health_check: null
      outlier: null
"""
    pool = oip_pool(assemble(config(text, tmp_path)), "front")
    assert isinstance(pool.balancer, kind)
    (backend,) = pool.endpoints
    assert isinstance(backend, OipBackend)
    assert backend.name == "oip:http://a:1/back/versions/3"
    assert pool.health_options is None
    assert pool.detector.options.max_ejection_percent == 0  # never ejects


def test_a_missing_tls_file_fails_at_assembly_with_its_path(tmp_path: Path) -> None:
    text = REMOTE.format(first="http://a:8000", second="http://b:8000")
    with pytest.raises(ConfigError) as raised:
        assemble(config(text, tmp_path))
    missing = tmp_path / "certs" / "ca.pem"
    assert str(raised.value) == f"models[0].backend: http: no such file {str(missing)!r}"


async def test_oip_pool_events_go_to_the_sink_as_model_version(tmp_path: Path) -> None:
    down = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    events: list[object] = []
    text = REMOTE.format(first=down[0], second=down[1]).replace("ca_file: certs/ca.pem", "")
    assembly = assemble(config(text, tmp_path), on_event=events.append)
    await assembly.repository.load_all()
    try:
        model = assembly.repository.get("iris")
        assert model.state is ModelState.FAILED
        assert f"oip:{down[0]}/iris: cannot read the model's metadata" in model.reason
        assert [(e.target, e.endpoint) for e in events if isinstance(e, EndpointLoadFailed)] == [
            ("iris:2", f"oip:{down[0]}/iris"),
            ("iris:2", f"oip:{down[1]}/iris"),
        ]
    finally:
        await assembly.repository.close_all()


async def test_an_oip_model_serves_through_its_pipeline(tmp_path: Path) -> None:
    calls: list[bytes] = []
    runner = await metadata_and_echo_upstream(calls)
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    text = f"""
models:
  - name: front
    backend: {{kind: oip, model: iris, endpoints: [{{url: "{url}"}}], health_check: null}}
"""
    assembly = assemble(config(text, tmp_path))
    await assembly.repository.load_all()
    try:
        model = assembly.repository.get("front")
        assert model.state is ModelState.READY, model.reason
        assert model.metadata().inputs[0].shape == (-1, 4)
        with pytest.raises(InvalidInputError, match="takes shape \\[-1, 4\\], got \\[1, 3\\]"):
            await call(assembly.repository, request("front", [[1.0, 2.0, 3.0]]))
        assert calls == []  # validated against the upstream's metadata, here
        response = await call(assembly.repository, request("front", SETOSA, np.float64))
        assert response.outputs[0].data.tolist() == SETOSA
        assert len(calls) == 1
    finally:
        await assembly.repository.close_all()
        await runner.cleanup()


async def metadata_and_echo_upstream(calls: list[bytes]) -> web.AppRunner:
    """An OIP server of one model, `iris` (FP64 [-1, 4] in and out), echoing its input."""
    spec = {"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}
    metadata = {"name": "iris", "platform": "x", "inputs": [spec], "outputs": [spec]}

    async def infer(http: web.Request) -> web.Response:
        calls.append(await http.read())
        document = orjson.loads(calls[-1])
        return web.json_response({"model_name": "iris", "outputs": document["inputs"]})

    async def describe(http: web.Request) -> web.Response:
        return web.json_response(metadata)

    app = web.Application()
    app.router.add_get("/v2/models/iris", describe)
    app.router.add_post("/v2/models/iris/infer", infer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- batching -------------------------------------------------------------------------------

BATCHING = """
models:
  - name: m
    backend: {kind: mock, latency_ms: 10}
    policies:
      bulkhead: {max_concurrent: 64}
      timeout: {timeout_ms: 1000}
      batching: {max_batch_size: 8, max_wait_ms: 2, max_queue_rows: 16, adaptive: true}
  - name: plain
    backend: {kind: mock}
    policies: {fallback: {chain: [{model: m}]}}
"""


def test_the_batcher_is_the_innermost_policy_and_kept_for_metrics(tmp_path: Path) -> None:
    assembly = assemble(config(BATCHING, tmp_path), clock=FakeClock())

    assert repr(pipeline_of(assembly, "m")) == (
        "Pipeline(m:1: validation → bulkhead → timeout → batching → mock:m)"
    )
    assert list(assembly.batchers) == ["m:1"]
    batcher = assembly.batchers["m:1"]
    assert batcher in pipeline_of(assembly, "m").policies
    assert (batcher.target, batcher.options) == (
        "m:1",
        BatchingOptions(max_batch_size=8, max_wait_s=0.002, max_queue_rows=16, adaptive=True),
    )
    # A fallback to m goes through m's inner chain, batcher included.
    (fallback,) = [
        p for p in pipeline_of(assembly, "plain").policies if isinstance(p, FallbackPolicy)
    ]
    (alternative,) = fallback.alternatives
    assert isinstance(alternative, ModelAlternative)
    assert repr(alternative.handler) == (
        "Pipeline(m:1 (inner): validation → bulkhead → timeout → batching → mock:m)"
    )


async def test_concurrent_calls_reach_the_backend_as_one_batch(tmp_path: Path) -> None:
    clock = FakeClock()
    events: list[Any] = []
    assembly = await loaded(BATCHING, tmp_path, clock, on_event=events.append)
    handler = assembly.repository.get("m").handler
    rows = [[[float(i), 0.5]] for i in range(6)]
    tasks = [asyncio.create_task(handler(request("m", r), CallContext.new())) for r in rows]
    for _ in range(10):
        await asyncio.sleep(0)
    clock.advance(0.002)  # the wait for companions
    for _ in range(10):
        await asyncio.sleep(0)
    clock.advance(0.01)  # the mock's latency
    for _ in range(10):
        await asyncio.sleep(0)

    assert mock_of(assembly, "m").stats.calls == 1
    assert [t.result().outputs[0].data.tolist() for t in tasks] == rows
    (executed,) = [e for e in events if isinstance(e, BatchExecuted)]
    assert (executed.target, executed.requests, executed.rows) == ("m:1", 6, 6)


async def test_an_oip_model_batches_calls_into_one_upstream_request(tmp_path: Path) -> None:
    calls: list[bytes] = []
    runner = await metadata_and_echo_upstream(calls)
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    text = f"""
models:
  - name: front
    backend: {{kind: oip, model: iris, endpoints: [{{url: "{url}"}}], health_check: null}}
    policies: {{batching: {{max_batch_size: 16, max_wait_ms: 50}}}}
"""
    assembly = assemble(config(text, tmp_path))
    await assembly.repository.load_all()
    try:
        rows = [[[float(i), 1.0, 2.0, 3.0]] for i in range(5)]
        responses = await asyncio.gather(
            *(call(assembly.repository, request("front", r, np.float64)) for r in rows)
        )
        assert [r.outputs[0].data.tolist() for r in responses] == rows
        assert len(calls) == 1
        assert orjson.loads(calls[0])["inputs"][0]["shape"] == [5, 4]
    finally:
        await assembly.repository.close_all()
        await runner.cleanup()
