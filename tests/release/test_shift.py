"""prediction_shift: same-distribution predictions are close, a shifted canary is far, and too
few predictions of either version make the metric unavailable."""

from __future__ import annotations

import random
from typing import Any

import pytest

from seawall.clock import FakeClock
from seawall.policies.variants import TrafficSplit, VariantStats
from seawall.release.errors import MetricUnavailableError
from seawall.release.plan import MetricKind, MetricRef
from seawall.release.shift import PredictionShift, distribution_shift

METRIC = MetricRef(MetricKind.PREDICTION_SHIFT, name="shift")


def test_labels_compare_as_categories() -> None:
    rng = random.Random(1)
    stable = [rng.choice([0, 1, 2]) for _ in range(2000)]
    same = [rng.choice([0, 1, 2]) for _ in range(2000)]
    skewed = [rng.choice([0, 2, 2, 2]) for _ in range(2000)]
    assert distribution_shift(stable, same) < 0.05
    assert distribution_shift(stable, skewed) > 0.3
    assert distribution_shift(["a"] * 10, ["b"] * 10) == pytest.approx(1.0)


def test_scores_compare_over_the_stable_versions_deciles() -> None:
    rng = random.Random(2)
    stable = [rng.gauss(0, 1) for _ in range(3000)]
    same = [rng.gauss(0, 1) for _ in range(3000)]
    moved = [rng.gauss(1, 1) for _ in range(3000)]
    assert distribution_shift(stable, same) < 0.06
    assert distribution_shift(stable, moved) > 0.3
    with pytest.raises(ValueError, match="both samples"):
        distribution_shift([], same)


class _Router:
    def __init__(self) -> None:
        self.split = TrafficSplit("1", "2", 50.0)
        self._stats = {"1": VariantStats(), "2": VariantStats()}

    def stats(self, version: str) -> VariantStats:
        return self._stats[version]


async def test_the_metric_reads_both_versions_windows() -> None:
    clock, router = FakeClock(), _Router()
    source = PredictionShift(router, clock=clock, min_samples=50)
    with pytest.raises(MetricUnavailableError, match="0 prediction"):
        await source.value(METRIC, "2", 30)
    now = clock.monotonic()
    for i in range(100):
        router.stats("1").record_predictions(now, [i % 3])
        router.stats("2").record_predictions(now, [2])
    shift = await source.value(METRIC, "2", 30)
    assert shift > 0.5  # the canary always says 2
    clock.advance(120)  # the window has passed: nothing recent
    with pytest.raises(MetricUnavailableError, match="stable version '1'"):
        await source.value(METRIC, "2", 30)
    router.split.switch("2")  # "9" is asked about after "2", the stable version, has data
    for _ in range(60):
        router.stats("2").record_predictions(clock.monotonic(), [1])
    with pytest.raises(MetricUnavailableError, match="not routed"):
        await source.value(METRIC, "9", 30)


def test_a_call_keeps_at_most_a_few_predictions() -> None:
    stats = VariantStats()
    values: list[Any] = list(range(100))
    stats.record_predictions(10.0, values)
    assert len(stats.predictions(10.0, 5)) == 8
