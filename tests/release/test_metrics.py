"""Metric sources: static, pushed (with staleness), Python functions, drift reports, routing."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from seawall.clock import FakeClock
from seawall.monitor.report import DriftReport
from seawall.monitor.result import DriftResult, Stat
from seawall.release.errors import MetricUnavailableError
from seawall.release.metrics import (
    CallableSource,
    DriftSource,
    MetricRouter,
    PushedSource,
    StaticSource,
    drift_score,
    finite,
    resolve_function,
)
from seawall.release.plan import MetricKind, MetricRef

ERRORS = MetricRef(MetricKind.ERROR_RATE)
SALES = MetricRef(MetricKind.BUSINESS, "sales", pushed=True)


@pytest.mark.parametrize("value", [True, "0.1", None, float("nan"), float("-inf")])
def test_only_finite_real_numbers_are_values(value: object) -> None:
    with pytest.raises(MetricUnavailableError, match=r"error_rate: not a (finite )?number"):
        finite(ERRORS, value)


def test_ints_are_values_as_floats() -> None:
    assert finite(ERRORS, 3) == 3.0
    assert isinstance(finite(ERRORS, 3), float)


async def test_static_source_answers_what_was_set_per_version() -> None:
    source = StaticSource({("error_rate", "2"): 0.25})
    assert await source.value(ERRORS, "2", 30.0) == 0.25
    with pytest.raises(MetricUnavailableError, match="error_rate: no value for version '1'"):
        await source.value(ERRORS, "1", 30.0)
    source.set("error_rate", "2", None)
    with pytest.raises(MetricUnavailableError):
        await source.value(ERRORS, "2", 30.0)


async def test_pushed_values_are_available_within_the_window_only() -> None:
    clock = FakeClock()
    source = PushedSource(clock=clock)
    source.push("sales", "2", 12.5)
    clock.advance(30.0)
    assert await source.value(SALES, "2", 30.0) == 12.5
    clock.advance(0.5)
    with pytest.raises(MetricUnavailableError, match=r"last pushed 30.5 s ago, before the window"):
        await source.value(SALES, "2", 30.0)
    with pytest.raises(MetricUnavailableError, match="sales: nothing pushed for '1'"):
        await source.value(SALES, "1", 30.0)


async def test_an_older_push_does_not_replace_a_newer_one() -> None:
    clock = FakeClock()
    source = PushedSource(clock=clock)
    source.push("sales", "2", 10.0)
    source.push("sales", "2", 99.0, at=clock.time() - 5.0)
    assert await source.value(SALES, "2", 60.0) == 10.0
    source.push("sales", "2", 11.0, at=clock.time())
    assert await source.value(SALES, "2", 60.0) == 11.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", "2", 1.0), "name/version: must not be empty"),
        (("sales", "2", float("nan")), "value: must be a finite number"),
        (("sales", "2", "1"), "value: must be a number, got str"),
    ],
)
def test_bad_pushes_are_refused(args: tuple[str, str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PushedSource(clock=FakeClock()).push(*args)


def test_pushed_series_are_bounded() -> None:
    source = PushedSource(clock=FakeClock(), max_series=2)
    source.push("a", "1", 1.0)
    source.push("b", "1", 1.0)
    source.push("a", "1", 2.0)  # an existing series may always be updated
    with pytest.raises(ValueError, match=r"already 2 series pushed; refusing \('c', '1'\)"):
        source.push("c", "1", 1.0)


@pytest.fixture
def functions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module of metric functions, importable under a unique name; returns the name."""
    name = f"metricfns_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            import math
            calls = []

            def rate(model, version, window_s):
                calls.append((model, version, window_s))
                return {"1": 0.5, "2": 2}[version]

            async def conversion(model, version, window_s):
                return 0.031

            def broken(model, version, window_s):
                raise ZeroDivisionError("no traffic")

            def nothing(model, version, window_s):
                return None

            def nan(model, version, window_s):
                return math.nan

            class Holder:
                @staticmethod
                def nested(model, version, window_s):
                    return 7

            constant = 42
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def business(function: str) -> MetricRef:
    return MetricRef(MetricKind.BUSINESS, "m", function=function)


async def test_callable_source_calls_sync_and_async_functions(functions: str) -> None:
    paths = [f"{functions}:{f}" for f in ("rate", "conversion", "Holder.nested")]
    source = CallableSource(paths, model="iris")
    assert await source.value(business(paths[0]), "2", 30.0) == 2.0
    assert await source.value(business(paths[1]), "2", 30.0) == 0.031
    assert await source.value(business(paths[2]), "1", 30.0) == 7.0
    assert sys.modules[functions].calls == [("iris", "2", 30.0)]


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("broken", r"m: .*:broken raised ZeroDivisionError\('no traffic'\)"),
        ("nothing", "m: .*:nothing has no data"),
        ("nan", r"m: not a finite number \(nan\)"),
    ],
)
async def test_callable_failures_are_unavailable_values(
    functions: str, function: str, message: str
) -> None:
    path = f"{functions}:{function}"
    source = CallableSource([path], model="iris")
    with pytest.raises(MetricUnavailableError, match=message):
        await source.value(business(path), "2", 30.0)


async def test_a_function_not_loaded_is_unavailable(functions: str) -> None:
    source = CallableSource([], model="iris")
    with pytest.raises(MetricUnavailableError, match=r"function '.*:rate' not loaded"):
        await source.value(business(f"{functions}:rate"), "2", 30.0)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("no_colon", "function: expected 'module.path:function'"),
        ("seawall_no_such_module:f", "function: cannot import 'seawall_no_such_module'"),
        ("{mod}:missing", "function: '.*' has no attribute 'missing'"),
        ("{mod}:constant", "function: '.*:constant' is not callable"),
    ],
)
def test_functions_are_resolved_once_when_the_source_is_built(
    functions: str, path: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        CallableSource([path.format(mod=functions)], model="iris")


def test_resolve_function_returns_the_function(functions: str) -> None:
    assert resolve_function(f"{functions}:rate") is sys.modules[functions].rate


def report(*, drifting: bool, psi: float, tests: int = 1) -> DriftReport:
    result = DriftResult("x", Stat.PSI, psi, 0.001 if drifting else 0.5, 0.2, 0.01, drifting, 400)
    return DriftReport("iris", "2", 0.0, 60.0, 400, (result,), (), tests)


@pytest.mark.parametrize(
    ("drifting", "psi", "score"),
    [(True, 0.3, 1.0), (False, 0.3, 0.3), (False, 2.5, 1.0), (False, 0.0, 0.0)],
)
def test_drift_score_is_1_when_drifting_else_the_psi_capped_at_1(
    drifting: bool, psi: float, score: float
) -> None:
    assert drift_score(report(drifting=drifting, psi=psi)) == score


async def test_drift_source_reads_the_latest_report_of_each_version() -> None:
    reports = {"2": report(drifting=True, psi=0.4), "3": report(drifting=False, psi=0.1, tests=0)}

    async def latest(version: str) -> DriftReport | None:
        return reports.get(version)

    source = DriftSource(latest)
    drift = MetricRef(MetricKind.DRIFT_SCORE)
    assert await source.value(drift, "2", 30.0) == 1.0
    with pytest.raises(MetricUnavailableError, match="drift_score: no drift report for '1'"):
        await source.value(drift, "1", 30.0)
    with pytest.raises(MetricUnavailableError, match=r"too little data \(400 rows\)"):
        await source.value(drift, "3", 30.0)


async def test_the_router_picks_the_source_by_origin_then_kind() -> None:
    builtin, prom, calls, pushed = (StaticSource() for _ in range(4))
    for source, value in ((builtin, 1.0), (prom, 2.0), (calls, 3.0), (pushed, 4.0)):
        for name in ("error_rate", "m"):
            source.set(name, "2", value)
    router = MetricRouter(
        builtin={MetricKind.ERROR_RATE: builtin}, prometheus=prom, callables=calls, pushed=pushed
    )
    assert await router.value(ERRORS, "2", 30.0) == 1.0
    assert await router.value(MetricRef(MetricKind.ERROR_RATE, query="q"), "2", 30.0) == 2.0
    assert await router.value(MetricRef(MetricKind.BUSINESS, "m", function="a:b"), "2", 30.0) == 3.0
    assert await router.value(MetricRef(MetricKind.BUSINESS, "m", pushed=True), "2", 30.0) == 4.0


async def test_the_router_says_which_source_is_missing() -> None:
    router = MetricRouter()
    with pytest.raises(MetricUnavailableError, match="latency_p95_s: no latency_p95_s source"):
        await router.value(MetricRef(MetricKind.LATENCY_P95_S), "2", 30.0)
    with pytest.raises(MetricUnavailableError, match="m: no promql source is configured"):
        await router.value(MetricRef(MetricKind.BUSINESS, "m", query="q"), "2", 30.0)
