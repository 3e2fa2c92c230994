"""Prometheus metrics of the gateway, on a registry of its own (served at /metrics).

With several worker processes (`seawall serve --workers N`), counters, histograms and the
in-flight gauge are kept in files under `PROMETHEUS_MULTIPROC_DIR` (prometheus_client's
multiprocess mode) and /metrics sums them over every worker; the state gauges (readiness,
breakers, bulkheads, caches) are those of the worker that answers the scrape.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from seawall.assemble import Assembly
from seawall.backends import ModelRepository
from seawall.context import Priority
from seawall.policies import CircuitState
from seawall.types import Usage

__all__ = ["LATENCY_BUCKETS_S", "MULTIPROCESS_ENV", "GatewayMetrics"]

#: From 0.5 ms (an in-process model) to 30 s (a long LLM call).
LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

#: Set (to a directory) in worker processes: prometheus_client's multiprocess mode.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Label used for requests that name no known model (never the raw name: unbounded cardinality).
UNKNOWN = "_unknown"


class GatewayMetrics:
    """Request counts, latency and in-flight requests per model version, plus model readiness."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "seawall_requests",
            "Inference requests answered, by model, version and HTTP status.",
            ["model", "version", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "seawall_request_duration_seconds",
            "Time from request start to response, by model and version.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "seawall_requests_in_flight",
            "Inference requests being processed, by model.",
            ["model"],
            registry=self.registry,
            multiprocess_mode="livesum",  # with several workers: the sum over live ones
        )
        self.llm_tokens = Counter(
            "seawall_llm_tokens",
            "LLM tokens used, by model group and kind (prompt, completion).",
            ["model", "kind"],
            registry=self.registry,
        )
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._histograms: dict[tuple[str, str], Histogram] = {}
        self._in_flight: dict[str, Gauge] = {}
        self._tokens: dict[tuple[str, str], Counter] = {}
        self._state: list[Collector] = []
        self._watching: dict[int, tuple[Collector, ...]] = {}
        self._merged: CollectorRegistry | None = None

    def watch(self, assembly: Assembly) -> None:
        """Export model readiness and policy state (breakers, bulkheads, admission) when scraped."""
        collectors = (
            _ReadinessCollector(assembly.repository),
            _PolicyStateCollector(assembly),
            _CacheCollector(assembly),
            _DriftCollector(assembly),
            _ShadowCollector(assembly),
        )
        for collector in collectors:
            self.registry.register(collector)
            self._state.append(collector)
        self._watching[id(assembly)] = collectors
        self._merged = None  # rebuilt with these collectors on the next scrape

    def unwatch(self, assembly: Assembly) -> None:
        """Stop exporting `assembly`'s state (it was replaced by a reload)."""
        for collector in self._watching.pop(id(assembly), ()):
            self.registry.unregister(collector)
            self._state.remove(collector)
        self._merged = None  # rebuilt with the collectors left, on the next scrape

    def exposition(self) -> CollectorRegistry:
        """What /metrics serves: this registry, or with several workers, every worker's sums."""
        directory = os.environ.get(MULTIPROCESS_ENV)
        if not directory:
            return self.registry
        if self._merged is None:
            merged = CollectorRegistry()
            MultiProcessCollector(merged, path=directory)  # type: ignore[no-untyped-call]
            for collector in self._state:
                merged.register(collector)
            self._merged = merged
        return self._merged

    def in_flight_for(self, model: str) -> Gauge:
        """The in-flight gauge of `model` (cached: `labels()` is not free on the hot path)."""
        gauge = self._in_flight.get(model)
        if gauge is None:
            gauge = self._in_flight[model] = self.in_flight.labels(model)
        return gauge

    def observe(self, model: str, version: str, status: int, seconds: float) -> None:
        """Count one answered request and record its latency."""
        counter = self._counters.get((model, version, status))
        if counter is None:
            counter = self.requests.labels(model, version, str(status))
            self._counters[(model, version, status)] = counter
        counter.inc()
        histogram = self._histograms.get((model, version))
        if histogram is None:
            histogram = self.latency.labels(model, version)
            self._histograms[(model, version)] = histogram
        histogram.observe(seconds)

    def count_tokens(self, model: str, usage: Usage) -> None:
        """Add the tokens of one LLM call (the provider's count, or seawall's estimate)."""
        if usage.prompt_tokens > 0:
            self._tokens_child(model, "prompt").inc(usage.prompt_tokens)
        if usage.completion_tokens > 0:
            self._tokens_child(model, "completion").inc(usage.completion_tokens)

    def _tokens_child(self, model: str, kind: str) -> Counter:
        child = self._tokens.get((model, kind))
        if child is None:
            child = self._tokens[(model, kind)] = self.llm_tokens.labels(model, kind)
        return child


class _ReadinessCollector(Collector):
    def __init__(self, repository: ModelRepository) -> None:
        self._repository = repository

    def collect(self) -> Iterator[Metric]:
        ready = GaugeMetricFamily(
            "seawall_model_ready",
            "1 if the model version can serve, else 0.",
            labels=["model", "version", "state"],
        )
        for model in self._repository:
            ready.add_metric(
                [model.name, model.version, model.state.value], 1.0 if model.ready else 0.0
            )
        yield ready


class _PolicyStateCollector(Collector):
    """Breaker states, bulkhead, batching and admission occupancy, read when scraped."""

    def __init__(self, assembly: Assembly) -> None:
        self._assembly = assembly

    def collect(self) -> Iterator[Metric]:
        yield from self._breakers()
        yield from self._bulkheads()
        yield from self._batchers()
        yield from self._admission()

    def _breakers(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "seawall_circuit_state",
            "1 for the circuit breaker's current state (closed, open, half_open), else 0.",
            labels=["target", "state", "mode"],
        )
        rate = GaugeMetricFamily(
            "seawall_circuit_failure_rate",
            "Failure share of the calls in the breaker's window.",
            labels=["target"],
        )
        for target, breaker in self._assembly.breakers.items():
            snapshot = breaker.snapshot()
            for each in CircuitState:
                value = 1.0 if snapshot.state is each else 0.0
                state.add_metric([target, each.value, snapshot.mode.value], value)
            rate.add_metric([target], snapshot.failure_rate)
        yield state
        yield rate

    def _bulkheads(self) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily(
            "seawall_bulkhead_in_flight", "Calls running inside the bulkhead.", labels=["target"]
        )
        waiting = GaugeMetricFamily(
            "seawall_bulkhead_waiting", "Calls waiting for a bulkhead slot.", labels=["target"]
        )
        for target, bulkhead in self._assembly.bulkheads.items():
            snapshot = bulkhead.snapshot()
            in_flight.add_metric([target], snapshot.in_flight)
            waiting.add_metric([target], snapshot.waiting)
        yield in_flight
        yield waiting

    def _batchers(self) -> Iterator[Metric]:
        rows = GaugeMetricFamily(
            "seawall_batch_queue_rows", "Rows waiting to join a batch.", labels=["target"]
        )
        running = GaugeMetricFamily(
            "seawall_batches_in_flight", "Batches running in the backend.", labels=["target"]
        )
        for target, batcher in self._assembly.batchers.items():
            snapshot = batcher.snapshot()
            rows.add_metric([target], snapshot.queued_rows)
            running.add_metric([target], snapshot.batches_in_flight)
        yield rows
        yield running

    def _admission(self) -> Iterator[Metric]:
        admission = self._assembly.admission
        if admission is None:
            return
        snapshot = admission.snapshot()
        yield GaugeMetricFamily(
            "seawall_admission_in_flight",
            "Calls admitted and running, all models together.",
            value=snapshot.in_flight,
        )
        waiting = GaugeMetricFamily(
            "seawall_admission_waiting",
            "Calls waiting to be admitted, by priority class.",
            labels=["priority"],
        )
        names = [p.name.lower() for p in Priority]
        for name, count in zip(names, snapshot.waiting_by_priority, strict=True):
            waiting.add_metric([name], count)
        yield waiting


class _CacheCollector(Collector):
    """Response-cache lookups by result, and the size of in-memory caches, read when scraped."""

    def __init__(self, assembly: Assembly) -> None:
        self._assembly = assembly

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "seawall_cache_requests",
            "Response-cache lookups by model, version and result (hit, miss, bypass; coalesced:"
            " hits that waited for an identical call in flight, also counted as hits).",
            labels=["model", "version", "result"],
        )
        entries = GaugeMetricFamily(
            "seawall_cache_entries",
            "Answers held by in-memory response caches.",
            labels=["model", "version"],
        )
        size = GaugeMetricFamily(
            "seawall_cache_bytes",
            "Bytes held by in-memory response caches (keys, values and per-entry overhead).",
            labels=["model", "version"],
        )
        for (model, version), cache in self._assembly.caches.items():
            snapshot = cache.snapshot()
            for result, count in (
                ("hit", snapshot.hits),
                ("miss", snapshot.misses),
                ("bypass", snapshot.bypasses),
                ("coalesced", snapshot.coalesced),
            ):
                requests.add_metric([model, version, result], count)
            if snapshot.entries is not None and snapshot.size_bytes is not None:
                entries.add_metric([model, version], snapshot.entries)
                size.add_metric([model, version], snapshot.size_bytes)
        yield requests
        yield entries
        yield size


class _DriftCollector(Collector):
    """Each monitored model version's latest drift report, read when scraped."""

    def __init__(self, assembly: Assembly) -> None:
        self._assembly = assembly

    def collect(self) -> Iterator[Metric]:
        drift = GaugeMetricFamily(
            "seawall_feature_drift",
            "Latest window's drift statistic per feature (and prediction) of a model version:"
            " psi, js (distance), ks (statistic), chi2, null_rate, new_category.",
            labels=["model", "version", "feature", "stat"],
        )
        p_value = GaugeMetricFamily(
            "seawall_feature_drift_p_value",
            "p-value of the latest window's drift test per feature, where the statistic has one.",
            labels=["model", "version", "feature", "stat"],
        )
        drifting = GaugeMetricFamily(
            "seawall_model_drifting",
            "1 if the latest window's report of a model version says drifting, else 0.",
            labels=["model", "version"],
        )
        rows = GaugeMetricFamily(
            "seawall_drift_sample_rows",
            "Rows the latest drift report of a model version was computed over.",
            labels=["model", "version"],
        )
        for label, monitor in self._assembly.monitors.items():
            model = label.rsplit(":", 1)[0]
            for version, report in monitor.latest().items():
                drifting.add_metric([model, version], float(report.drifting))
                rows.add_metric([model, version], report.rows)
                for result in report.results:
                    labels = [model, version, result.feature, str(result.stat)]
                    if result.value is not None:
                        drift.add_metric(labels, result.value)
                    if result.p_value is not None:
                        p_value.add_metric(labels, result.p_value)
        yield drift
        yield p_value
        yield drifting
        yield rows


class _ShadowCollector(Collector):
    """Each routed model's shadow mirroring: copies by outcome, agreement, latencies."""

    def __init__(self, assembly: Assembly) -> None:
        self._assembly = assembly

    def collect(self) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "seawall_shadow_calls",
            "Shadow copies by result: mirrored, skipped_busy (bound reached, not queued), "
            "failed, timed_out, agreed and disagreed (with the primary's answer).",
            labels=["model", "version", "result"],
        )
        agreement = GaugeMetricFamily(
            "seawall_shadow_agreement_ratio",
            "Share of compared shadow answers equal to the primary's.",
            labels=["model", "version"],
        )
        latency = GaugeMetricFamily(
            "seawall_shadow_latency_seconds",
            "Latency quantiles of the shadow copies and of the primary calls they mirrored.",
            labels=["model", "version", "side", "quantile"],
        )
        for model, router in self._assembly.routers.items():
            shadow = router.shadow
            if shadow is None:
                continue
            version = shadow.version or ""
            snap = shadow.stats.snapshot()
            for result in (
                "mirrored",
                "skipped_busy",
                "failed",
                "timed_out",
                "agreed",
                "disagreed",
            ):
                calls.add_metric([model, version, result], getattr(snap, result))
            if snap.agreement_rate is not None:
                agreement.add_metric([model, version], snap.agreement_rate)
            for side, p50, p95 in (
                ("shadow", snap.shadow_p50_s, snap.shadow_p95_s),
                ("primary", snap.primary_p50_s, snap.primary_p95_s),
            ):
                for quantile, value in (("0.5", p50), ("0.95", p95)):
                    if value is not None:
                        latency.add_metric([model, version, side, quantile], value)
        yield calls
        yield agreement
        yield latency
