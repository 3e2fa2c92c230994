"""`GatewayMetrics`: request counts, latency histogram, in-flight gauge and model readiness."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from seawall.assemble import Assembly
from seawall.backends import MockBackend, ModelRepository, Respond, ServedModel
from seawall.clock import FakeClock
from seawall.context import CallContext
from seawall.gateway.metrics import LATENCY_BUCKETS_S, UNKNOWN, GatewayMetrics
from seawall.policies.batching import BatchingOptions, BatchingPolicy
from seawall.policies.cache import CachePolicy
from seawall.policies.cache_codec import InferenceCodec, LlmCodec
from seawall.policies.cache_store import MemoryCacheStore, RedisCacheStore
from seawall.types import (
    InferenceRequest,
    InferenceResponse,
    LlmRequest,
    LlmResponse,
    Tensor,
    Usage,
)


def _value(metrics: GatewayMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_observe_counts_requests_by_model_version_and_status() -> None:
    metrics = GatewayMetrics()
    for _ in range(3):
        metrics.observe("iris", "1", 200, 0.001)
    metrics.observe("iris", "1", 400, 0.001)
    metrics.observe("iris", "2", 200, 0.001)
    assert _value(metrics, "seawall_requests_total", model="iris", version="1", status="200") == 3
    assert _value(metrics, "seawall_requests_total", model="iris", version="1", status="400") == 1
    assert _value(metrics, "seawall_requests_total", model="iris", version="2", status="200") == 1
    assert (
        _value(metrics, "seawall_requests_total", model="iris", version="2", status="400") is None
    )


def test_observe_records_latency_in_the_buckets() -> None:
    metrics = GatewayMetrics()
    for seconds in (0.0004, 0.003, 0.003, 2.0, 100.0):
        metrics.observe("iris", "1", 200, seconds)
    labels = {"model": "iris", "version": "1"}
    assert _value(metrics, "seawall_request_duration_seconds_count", **labels) == 5
    assert _value(metrics, "seawall_request_duration_seconds_sum", **labels) == pytest.approx(
        102.0064
    )
    cumulative = {"0.0005": 1, "0.0025": 1, "0.005": 3, "1.0": 3, "2.5": 4, "30.0": 4, "+Inf": 5}
    for le, count in cumulative.items():
        assert _value(metrics, "seawall_request_duration_seconds_bucket", le=le, **labels) == count


def test_observe_looks_up_each_labelled_child_once(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = GatewayMetrics()
    lookups: list[tuple[Any, ...]] = []
    counter_labels, histogram_labels = metrics.requests.labels, metrics.latency.labels

    def count_counter(*values: str) -> Any:
        lookups.append(("counter", *values))
        return counter_labels(*values)

    def count_histogram(*values: str) -> Any:
        lookups.append(("histogram", *values))
        return histogram_labels(*values)

    monkeypatch.setattr(metrics.requests, "labels", count_counter)
    monkeypatch.setattr(metrics.latency, "labels", count_histogram)
    for _ in range(4):
        metrics.observe("iris", "1", 200, 0.01)
        metrics.observe("iris", "1", 503, 0.01)
    assert lookups == [
        ("counter", "iris", "1", "200"),
        ("histogram", "iris", "1"),
        ("counter", "iris", "1", "503"),
    ]
    assert _value(metrics, "seawall_requests_total", model="iris", version="1", status="200") == 4
    assert _value(metrics, "seawall_request_duration_seconds_count", model="iris", version="1") == 8


def test_llm_tokens_are_counted_by_group_and_kind() -> None:
    metrics = GatewayMetrics()
    metrics.count_tokens("chat", Usage(7, 3))
    metrics.count_tokens("chat", Usage(5, 0, estimated=True))
    metrics.count_tokens("embed", Usage(4, 0))
    metrics.count_tokens("embed", Usage(-2, -9))  # a provider's nonsense is not counted
    assert _value(metrics, "seawall_llm_tokens_total", model="chat", kind="prompt") == 12
    assert _value(metrics, "seawall_llm_tokens_total", model="chat", kind="completion") == 3
    assert _value(metrics, "seawall_llm_tokens_total", model="embed", kind="prompt") == 4
    assert _value(metrics, "seawall_llm_tokens_total", model="embed", kind="completion") is None


def test_in_flight_gauge_is_cached_per_model() -> None:
    metrics = GatewayMetrics()
    gauge = metrics.in_flight_for("iris")
    assert metrics.in_flight_for("iris") is gauge
    assert metrics.in_flight_for("other") is not gauge
    gauge.inc()
    gauge.inc()
    gauge.dec()
    assert _value(metrics, "seawall_requests_in_flight", model="iris") == 1


def test_each_instance_has_its_own_registry() -> None:
    first, second = GatewayMetrics(), GatewayMetrics()
    first.observe(UNKNOWN, "", 404, 0.001)
    assert _value(first, "seawall_requests_total", model="_unknown", version="", status="404") == 1
    assert (
        _value(second, "seawall_requests_total", model="_unknown", version="", status="404") is None
    )


def test_latency_buckets_are_increasing_from_half_a_millisecond_to_thirty_seconds() -> None:
    assert list(LATENCY_BUCKETS_S) == sorted(set(LATENCY_BUCKETS_S))
    assert (LATENCY_BUCKETS_S[0], LATENCY_BUCKETS_S[-1]) == (0.0005, 30.0)


async def test_readiness_follows_the_repository_at_each_scrape() -> None:
    repository = ModelRepository()
    for name, error in (("iris", None), ("broken", RuntimeError("no file"))):
        backend = MockBackend(name, load_error=error)
        repository.add(ServedModel(name, "1", backend, backend.infer))
    metrics = GatewayMetrics()
    metrics.watch(Assembly(repository))

    def ready(model: str, state: str) -> float | None:
        return _value(metrics, "seawall_model_ready", model=model, version="1", state=state)

    assert (ready("iris", "LOADING"), ready("broken", "LOADING")) == (0, 0)
    await repository.load_all()
    assert (ready("iris", "READY"), ready("broken", "FAILED")) == (1, 0)
    assert ready("iris", "LOADING") is None
    await repository.close_all()
    assert (ready("iris", "UNLOADED"), ready("broken", "UNLOADED")) == (0, 0)


async def test_cache_lookups_and_memory_sizes_are_read_at_each_scrape() -> None:
    clock = FakeClock()
    memory = MemoryCacheStore(clock=clock)
    assembly = Assembly(ModelRepository())
    cached: CachePolicy[InferenceRequest, InferenceResponse] = CachePolicy(
        InferenceCodec(), store=memory, clock=clock, target="iris:1"
    )
    shared: CachePolicy[LlmRequest, LlmResponse] = CachePolicy(
        LlmCodec(),
        store=RedisCacheStore(RedisCacheStore.client("redis://127.0.0.1:1/0")),
        target="chat",
    )
    assembly.caches.update({("iris", "1"): cached, ("chat", ""): shared})
    metrics = GatewayMetrics()
    metrics.watch(assembly)
    backend = MockBackend("iris")
    await backend.load()
    call = InferenceRequest("iris", [Tensor.from_numpy("input-0", [[1.0]])], version="1")
    for headers in ({}, {}, {"cache-control": "no-cache"}):
        await cached(call, CallContext.new(headers=headers), backend.infer)

    def requests(model: str, version: str, result: str) -> float | None:
        labels = {"model": model, "version": version, "result": result}
        return _value(metrics, "seawall_cache_requests_total", **labels)

    counts = [requests("iris", "1", r) for r in ("hit", "miss", "bypass", "coalesced")]
    assert counts == [1, 1, 1, 0]
    assert requests("chat", "", "miss") == 0
    assert _value(metrics, "seawall_cache_entries", model="iris", version="1") == 1
    size = _value(metrics, "seawall_cache_bytes", model="iris", version="1")
    assert size == memory.size_bytes > 0
    # A Redis cache's size is Redis's business: no gauges for it.
    assert _value(metrics, "seawall_cache_entries", model="chat", version="") is None


async def test_batch_queues_and_running_batches_are_read_at_each_scrape() -> None:
    clock = FakeClock()
    assembly = Assembly(ModelRepository())
    batcher = BatchingPolicy(BatchingOptions(max_wait_s=0.0), clock=clock, target="iris:1")
    assembly.batchers["iris:1"] = batcher
    metrics = GatewayMetrics()
    metrics.watch(assembly)
    backend = MockBackend("iris", clock=clock, default=Respond(latency_s=1.0))
    await backend.load()

    def gauges() -> tuple[float | None, float | None]:
        return (
            _value(metrics, "seawall_batch_queue_rows", target="iris:1"),
            _value(metrics, "seawall_batches_in_flight", target="iris:1"),
        )

    assert gauges() == (0, 0)
    rows = [[1.0, 2.0], [3.0, 4.0]]
    tasks = [
        asyncio.create_task(
            batcher(
                InferenceRequest("iris", [Tensor.from_numpy("input-0", [r] * (i + 1))]),
                CallContext.new(),
                backend.infer,
            )
        )
        for i, r in enumerate(rows * 2)
    ]
    for _ in range(10):
        await asyncio.sleep(0)
    assert gauges() == (0, 1)  # the four calls (10 rows) went as one batch
    late = asyncio.create_task(
        batcher(
            InferenceRequest("iris", [Tensor.from_numpy("input-0", [rows[0]] * 3)]),
            CallContext.new(),
            backend.infer,
        )
    )
    for _ in range(10):
        await asyncio.sleep(0)
    assert gauges() == (3, 1)
    clock.advance(1.0)
    for _ in range(10):
        await asyncio.sleep(0)
    assert gauges() == (0, 1)
    clock.advance(1.0)
    await asyncio.gather(*tasks, late)
    assert gauges() == (0, 0)
