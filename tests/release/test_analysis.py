"""Analysis runs: judging guardrails, the run's verdict, unavailable and slow metrics."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.clock import FakeClock
from seawall.release.analysis import (
    AnalysisRun,
    GuardrailResult,
    Verdict,
    judge,
    run_analysis,
    verdict_of,
)
from seawall.release.metrics import StaticSource
from seawall.release.plan import (
    Analysis,
    Guardrail,
    MetricKind,
    MetricRef,
    Pause,
    RolloutPlan,
    SetWeight,
)

ERRORS = Guardrail("errors", MetricRef(MetricKind.ERROR_RATE), max=0.01)
LATENCY = Guardrail(
    "latency", MetricRef(MetricKind.LATENCY_P95_S), max=1.2, relative_to_stable=True
)
SALES = Guardrail(
    "sales",
    MetricRef(MetricKind.BUSINESS, "sales", pushed=True),
    min=0.8,
    max=1.5,
    relative_to_stable=True,
)


def test_a_value_at_the_bound_passes_and_above_it_fails() -> None:
    at_bound = judge(ERRORS, 0.01)
    assert (at_bound.verdict, at_bound.threshold, at_bound.threshold_min) == (
        Verdict.PASS,
        0.01,
        None,
    )
    assert at_bound.reason == "error_rate 0.01 within <= 0.01"
    above = judge(ERRORS, 0.0101)
    assert (above.verdict, above.value, above.reason) == (
        Verdict.FAIL,
        0.0101,
        "error_rate 0.0101 > 0.01",
    )


def test_relative_bounds_are_recorded_as_absolute_thresholds() -> None:
    result = judge(LATENCY, 0.3, 0.2)
    assert result.verdict is Verdict.FAIL
    assert (result.value, result.stable_value) == (0.3, 0.2)
    assert result.threshold == pytest.approx(0.24)
    assert result.reason == "latency_p95_s 0.3 > 0.24 (<= 1.2 x stable 0.2)"
    assert judge(LATENCY, 0.24, 0.2).verdict is Verdict.PASS


def test_a_lower_bound_fails_values_below_it() -> None:
    low = judge(SALES, 70.0, 100.0)
    assert (low.verdict, low.threshold_min, low.threshold) == (Verdict.FAIL, 80.0, 150.0)
    assert low.reason == "sales 70 < 80 (0.8..1.5 x stable 100)"
    assert judge(SALES, 120.0, 100.0).verdict is Verdict.PASS


def result(verdict: Verdict) -> GuardrailResult:
    return GuardrailResult("g", None, None, None, verdict, "")


@given(st.lists(st.sampled_from(list(Verdict)), max_size=6))
def test_a_run_fails_if_any_failed_errors_if_any_errored_else_passes(
    verdicts: list[Verdict],
) -> None:
    expected = (
        Verdict.FAIL
        if Verdict.FAIL in verdicts
        else Verdict.ERROR
        if Verdict.ERROR in verdicts
        else Verdict.PASS
    )
    assert verdict_of([result(v) for v in verdicts]) is expected


def plan(*guardrails: Guardrail, metric_timeout_s: float = 10.0) -> RolloutPlan:
    step = Analysis(
        interval_s=30.0, count=3, guardrails=guardrails, metric_timeout_s=metric_timeout_s
    )
    return RolloutPlan("iris", "1", "2", (SetWeight(10), step))


async def test_a_run_measures_every_guardrail_against_canary_and_stable() -> None:
    clock = FakeClock()
    source = StaticSource(
        {("error_rate", "2"): 0.002, ("latency_p95_s", "1"): 0.2, ("latency_p95_s", "2"): 0.5}
    )
    run = await run_analysis(plan(ERRORS, LATENCY), 1, metrics=source, clock=clock)
    assert (run.step_index, run.at, run.verdict) == (1, clock.time(), Verdict.FAIL)
    assert [(r.name, r.verdict, r.value, r.stable_value) for r in run.results] == [
        ("errors", Verdict.PASS, 0.002, None),
        ("latency", Verdict.FAIL, 0.5, 0.2),
    ]


async def test_an_unavailable_value_is_an_error_with_what_was_measured() -> None:
    source = StaticSource({("latency_p95_s", "2"): 0.5})  # stable's latency is missing
    run = await run_analysis(plan(ERRORS, LATENCY), 1, metrics=source, clock=FakeClock())
    assert run.verdict is Verdict.ERROR
    errors, latency = run.results
    assert (errors.verdict, errors.value, errors.threshold) == (Verdict.ERROR, None, 0.01)
    assert errors.reason == "unavailable: error_rate: no value for version '2'"
    assert (latency.verdict, latency.value, latency.stable_value, latency.threshold) == (
        Verdict.ERROR,
        0.5,
        None,
        None,
    )
    assert latency.reason == "unavailable: latency_p95_s: no value for version '1'"


async def test_a_failure_outweighs_an_error_in_the_same_run() -> None:
    source = StaticSource({("error_rate", "2"): 0.5})
    run = await run_analysis(plan(ERRORS, LATENCY), 1, metrics=source, clock=FakeClock())
    assert run.verdict is Verdict.FAIL
    assert [r.verdict for r in run.results] == [Verdict.FAIL, Verdict.ERROR]


class Hanging:
    """A source that never answers for the canary, and answers NaN for the stable version."""

    async def value(self, metric: MetricRef, variant_version: str, window_s: float) -> float:
        if variant_version == "2":
            await asyncio.Event().wait()
        return float("nan")


async def test_a_source_slower_than_the_metric_timeout_is_unavailable() -> None:
    clock = FakeClock()
    task = asyncio.create_task(
        run_analysis(plan(LATENCY, metric_timeout_s=5.0), 1, metrics=Hanging(), clock=clock)
    )
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done()
    clock.advance(5.0)
    run = await task
    assert run.verdict is Verdict.ERROR
    assert run.results[0].reason == (
        "unavailable: no value within 5 s; latency_p95_s: not a finite number (nan)"
    )


class Broken:
    async def value(self, metric: MetricRef, variant_version: str, window_s: float) -> float:
        raise KeyError("a bug, not a missing value")


async def test_a_bug_in_a_source_is_not_hidden_as_unavailable() -> None:
    with pytest.raises(KeyError, match="a bug"):
        await run_analysis(plan(ERRORS), 1, metrics=Broken(), clock=FakeClock())


async def test_only_analysis_steps_can_be_run() -> None:
    rollout = RolloutPlan("iris", "1", "2", (SetWeight(10), Pause(5)))
    with pytest.raises(ValueError, match=r"step_index: steps\[1\] is not an analysis"):
        await run_analysis(rollout, 1, metrics=StaticSource(), clock=FakeClock())


def test_runs_survive_a_json_round_trip_exactly() -> None:
    run = AnalysisRun(
        3,
        1_700_000_123.456789,
        Verdict.FAIL,
        (
            judge(LATENCY, 0.30000000000000004, 0.1),
            GuardrailResult("errors", None, None, 0.01, Verdict.ERROR, "unavailable: x"),
            judge(SALES, 70.0, 100.0),
        ),
    )
    assert AnalysisRun.from_json(json.loads(json.dumps(run.to_json()))) == run


def test_a_result_with_a_non_number_value_is_refused() -> None:
    data = result(Verdict.PASS).to_json() | {"value": "0.1"}
    with pytest.raises(ValueError, match=r"expected a number or null, got '0\.1'"):
        GuardrailResult.from_json(data)
