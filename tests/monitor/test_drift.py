"""Per-feature drift: same-distribution data alarms at most at the nominal rate; shifts are caught.

References are real profiles (`seawall.data.profile`) of fresh data in every trial, so the
false-alarm rates include the reference's own sampling noise and its quantile summary.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from seawall.data.profile import profile
from seawall.monitor.drift import column_kind, evaluate_column, is_null
from seawall.monitor.options import DEFAULT_ALPHA, DriftOptions, DriftThresholds
from seawall.monitor.result import DriftResult, Stat

REFERENCE_ROWS = 5000
LIVE_ROWS = 1000
TRIALS = 500
#: Alarm counts above this, out of TRIALS at level DEFAULT_ALPHA, happen by chance < 0.1%.
ALARM_BOUND = int(scipy_stats.binom.ppf(0.999, TRIALS, DEFAULT_ALPHA))

CITIES = np.array([f"city{i:02d}" for i in range(80)])  # more than TOP_K: a truncated top
CITY_WEIGHTS = (w := 1 / np.arange(1, 81) ** 1.1) / w.sum()
PLANS = np.array(["free", "basic", "pro", "team"])
DTYPES = {"score": "float", "age": "int", "city": "string", "plan": "string", "active": "bool"}

Draw = Callable[[np.random.Generator, int], pd.DataFrame]


def _same(rng: np.random.Generator, rows: int) -> pd.DataFrame:
    score = rng.normal(0.0, 1.0, rows)
    score[rng.random(rows) < 0.05] = np.nan
    city = rng.choice(CITIES, rows, p=CITY_WEIGHTS).astype(object)
    city[rng.random(rows) < 0.02] = None
    return pd.DataFrame(
        {
            "score": score,
            "age": np.clip(rng.normal(40, 12, rows).round(), 18, 90).astype(np.int64),
            "city": city,
            "plan": rng.choice(PLANS, rows, p=[0.6, 0.25, 0.1, 0.05]),
            "active": rng.random(rows) < 0.3,
        }
    )


def _shifted_mean(rng: np.random.Generator, rows: int) -> pd.DataFrame:
    frame = _same(rng, rows)
    frame["score"] += 0.5  # half a standard deviation
    return frame


def _new_categories(rng: np.random.Generator, rows: int) -> pd.DataFrame:
    frame = _same(rng, rows)
    new = rng.random(rows) < 0.10
    frame.loc[new, "city"] = "atlantis"
    frame.loc[rng.random(rows) < 0.10, "plan"] = "enterprise"
    return frame


def _more_nulls(rng: np.random.Generator, rows: int) -> pd.DataFrame:
    frame = _same(rng, rows)
    frame.loc[rng.random(rows) < 0.20, "score"] = np.nan  # 5% before
    frame["age"] = frame["age"].astype(object)
    frame.loc[rng.random(rows) < 0.20, "age"] = None  # none before
    return frame


#: Each scenario's draw and the columns it is checked on (those it changes, or all).
SCENARIOS: dict[str, tuple[Draw, tuple[str, ...]]] = {
    "same": (_same, tuple(DTYPES)),
    "mean": (_shifted_mean, ("score",)),
    "new": (_new_categories, ("city", "plan")),
    "nulls": (_more_nulls, ("score", "age")),
}


@dataclass
class Tally:
    """Alarms (and p-values under 5%) per scenario, column and statistic, over the trials."""

    alarms: Counter[tuple[str, str, Stat]] = field(default_factory=Counter)
    below_5_percent: Counter[tuple[str, str, Stat]] = field(default_factory=Counter)


def _live(frame: pd.DataFrame, name: str) -> list[Any]:
    values: list[Any] = frame[name].tolist()
    return values


@pytest.fixture(scope="module")
def tally() -> Tally:
    """TRIALS fresh references, each checked against one live sample per scenario."""
    rng = np.random.default_rng(20240601)
    out = Tally()
    for _ in range(TRIALS):
        columns = profile(_same(rng, REFERENCE_ROWS), DTYPES)["columns"]
        for scenario, (draw, names) in SCENARIOS.items():
            live = draw(rng, LIVE_ROWS)
            for name in names:
                for result in evaluate_column(name, columns[name], _live(live, name)):
                    key = (scenario, name, result.stat)
                    out.alarms[key] += result.drifted
                    out.below_5_percent[key] += (result.p_value or 1.0) < 0.05
    return out


def _rate(counter: Counter[tuple[str, str, Stat]], scenario: str, name: str, stat: Stat) -> float:
    return counter[(scenario, name, stat)] / TRIALS


PER_COLUMN_STATS = [
    ("score", (Stat.NULL_RATE, Stat.KS, Stat.PSI, Stat.JS)),
    ("age", (Stat.NULL_RATE, Stat.KS, Stat.PSI, Stat.JS)),
    ("city", (Stat.NULL_RATE, Stat.CHI2, Stat.PSI, Stat.JS, Stat.NEW_CATEGORY)),
    ("plan", (Stat.NULL_RATE, Stat.CHI2, Stat.PSI, Stat.JS, Stat.NEW_CATEGORY)),
    ("active", (Stat.NULL_RATE, Stat.CHI2, Stat.PSI, Stat.JS, Stat.NEW_CATEGORY)),
]


@pytest.mark.parametrize(("name", "expected"), PER_COLUMN_STATS)
def test_each_column_kind_runs_its_statistics(
    tally: Tally, name: str, expected: tuple[Stat, ...]
) -> None:
    seen = {stat for (scenario, column, stat) in tally.below_5_percent if column == name}
    seen |= {stat for (scenario, column, stat) in tally.alarms if column == name}
    assert seen == set(expected)


@pytest.mark.parametrize(("name", "stats"), PER_COLUMN_STATS)
def test_same_distribution_alarms_within_the_nominal_rate(
    tally: Tally, name: str, stats: tuple[Stat, ...]
) -> None:
    rates = {stat: tally.alarms[("same", name, stat)] for stat in stats}

    assert all(count <= ALARM_BOUND for count in rates.values()), (rates, ALARM_BOUND)


@pytest.mark.parametrize(
    ("name", "stat"),
    [
        ("score", Stat.KS),
        ("score", Stat.NULL_RATE),
        ("city", Stat.CHI2),
        ("plan", Stat.CHI2),
        ("active", Stat.CHI2),
        ("age", Stat.KS),
    ],
)
def test_p_values_are_not_liberal_at_5_percent_either(tally: Tally, name: str, stat: Stat) -> None:
    bound = scipy_stats.binom.ppf(0.999, TRIALS, 0.05)

    assert tally.below_5_percent[("same", name, stat)] <= bound


@pytest.mark.parametrize(
    ("scenario", "name", "stat"),
    [
        ("mean", "score", Stat.KS),
        ("mean", "score", Stat.JS),
        ("new", "city", Stat.NEW_CATEGORY),
        ("new", "plan", Stat.CHI2),
        ("new", "plan", Stat.NEW_CATEGORY),
        ("nulls", "score", Stat.NULL_RATE),
        ("nulls", "age", Stat.NULL_RATE),
    ],
)
def test_injected_shifts_are_caught_by_the_statistic_meant_for_them(
    tally: Tally, scenario: str, name: str, stat: Stat
) -> None:
    assert _rate(tally.alarms, scenario, name, stat) >= 0.95


# --- single cases ----------------------------------------------------------------------------


def _column(values: list[Any], dtype: str) -> Mapping[str, Any]:
    frame = pd.DataFrame({"x": pd.Series(values, dtype=object)})
    if dtype == "float":
        frame["x"] = frame["x"].astype("float64")
    result: Mapping[str, Any] = profile(frame, {"x": dtype})["columns"]["x"]
    return result


def _by_stat(results: tuple[DriftResult, ...]) -> dict[Stat, DriftResult]:
    return {r.stat: r for r in results}


def test_column_kinds_follow_the_profile() -> None:
    few_ints = _column([1, 2, 3, 2, 1] * 20, "int")
    many_ints = _column(list(range(200)), "int")

    assert column_kind("x", few_ints) == "categorical"  # `top` lists every value
    assert column_kind("x", many_ints) == "numeric"
    assert column_kind("x", _column([0.5, 1.5], "float")) == "numeric"
    assert column_kind("x", _column(["a", "b"], "string")) == "categorical"
    assert column_kind("x", _column([True, False], "bool")) == "categorical"
    assert column_kind("x", _column([None, None], "float")) == "nulls_only"
    assert column_kind("x", {"dtype": "datetime", "count": 5, "null_count": 0}) == "nulls_only"


def test_a_small_sample_is_insufficient_data_not_drift() -> None:
    column = _column(list(np.random.default_rng(0).normal(0, 1, 1000)), "float")

    results = evaluate_column("x", column, [50.0] * 99)  # wildly off, but 99 < 100

    assert {r.stat for r in results} == {Stat.NULL_RATE, Stat.KS, Stat.PSI, Stat.JS}
    assert all(r.insufficient and not r.drifted for r in results)
    assert all(r.value is None and r.p_value is None and r.sample_size == 99 for r in results)
    assert all(
        r.drifted
        for r in evaluate_column("x", column, [50.0] * 100)
        if r.stat is not Stat.NULL_RATE
    )


def test_nulls_count_as_present_rows_but_not_as_values() -> None:
    column = _column(list(np.random.default_rng(0).normal(0, 1, 1000)), "float")
    live: list[Any] = [0.1] * 150 + [None] * 30 + [math.nan] * 20

    by_stat = _by_stat(evaluate_column("x", column, live))

    assert by_stat[Stat.NULL_RATE].sample_size == 200
    assert by_stat[Stat.NULL_RATE].value == pytest.approx(0.25)
    assert by_stat[Stat.KS].sample_size == 150


def test_an_effect_size_above_its_bar_but_not_significant_is_not_drift() -> None:
    column = _column([True, False] * 5000, "bool")
    options = DriftOptions(min_samples=20)

    psi = _by_stat(evaluate_column("x", column, [True] * 15 + [False] * 5, options))[Stat.PSI]

    assert psi.value == pytest.approx(0.25 * math.log(1.5) + 0.25 * math.log(2))  # 0.27 > 0.2
    assert psi.p_value is not None
    assert 0.01 < psi.p_value < 0.05
    assert not psi.drifted


def test_thresholds_apply_per_feature() -> None:
    column = _column(list(np.random.default_rng(0).normal(0, 1, 5000)), "float")
    live = list(np.random.default_rng(1).normal(0.3, 1, 2000))
    strict = DriftOptions(per_feature={"x": DriftThresholds(psi=0.01, js=0.01)})

    default = _by_stat(evaluate_column("x", column, live))
    tuned = _by_stat(evaluate_column("x", column, live, strict))

    assert not default[Stat.PSI].drifted
    assert tuned[Stat.PSI].drifted
    assert tuned[Stat.PSI].threshold == 0.01
    assert tuned[Stat.PSI].value == default[Stat.PSI].value


def test_prediction_drift_of_a_class_label() -> None:
    reference = _column(["approve"] * 700 + ["deny"] * 300, "string")
    live = ["approve"] * 250 + ["deny"] * 250

    by_stat = _by_stat(evaluate_column("label", reference, live))

    assert by_stat[Stat.CHI2].drifted
    assert by_stat[Stat.PSI].value == pytest.approx(
        (0.5 - 0.7) * math.log(0.5 / 0.7) + (0.5 - 0.3) * math.log(0.5 / 0.3)
    )
    # Significant, but a PSI of 0.17 is under the 0.2 bar.
    assert not by_stat[Stat.PSI].drifted
    assert (by_stat[Stat.PSI].p_value or 1.0) < 1e-10
    assert by_stat[Stat.JS].drifted
    assert by_stat[Stat.NEW_CATEGORY].value == 0.0


def test_prediction_drift_of_a_score() -> None:
    rng = np.random.default_rng(5)
    reference = _column(list(rng.beta(2, 5, 5000)), "float")

    stable = _by_stat(evaluate_column("score", reference, list(rng.beta(2, 5, 1000))))
    drifted = _by_stat(evaluate_column("score", reference, list(rng.beta(3, 4, 1000))))

    assert not stable[Stat.KS].drifted
    assert drifted[Stat.KS].drifted
    assert drifted[Stat.PSI].drifted


def test_a_string_in_a_numeric_column_names_the_feature() -> None:
    column = _column([0.5, 1.5, 2.5], "float")

    with pytest.raises(ValueError, match="feature 'x': live values must be numbers"):
        evaluate_column("x", column, ["abc"] * 200)


def test_an_unhashable_category_names_the_feature() -> None:
    column = _column(["a", "b"] * 100, "string")

    with pytest.raises(ValueError, match="feature 'x': live values must be hashable"):
        evaluate_column("x", column, [["a"]] * 200)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"percentiles": [0.0, 1.0]}, "reference column 'x': percentiles must be 101 numbers"),
        ({"percentiles": [math.nan] * 101}, "reference column 'x': percentiles must be finite"),
        ({"count": -1}, "reference column 'x': count must be a count, got -1"),
        ({"null_count": "3"}, "reference column 'x': null_count must be a count, got '3'"),
    ],
)
def test_a_malformed_numeric_reference_names_column_and_field(
    change: dict[str, Any], message: str
) -> None:
    column = {**_column(list(range(300)), "float"), **change}

    with pytest.raises(ValueError, match=message):
        evaluate_column("x", column, [1.0] * 200)


def test_a_malformed_top_names_column_and_field() -> None:
    column = {**_column(["a", "b"] * 100, "string"), "top": [["a"]]}

    with pytest.raises(ValueError, match="reference column 'x': top must be a list of"):
        evaluate_column("x", column, ["a"] * 200)


def test_is_null_knows_none_and_nan_only() -> None:
    assert is_null(None)
    assert is_null(math.nan)
    assert is_null(np.float32("nan"))
    assert not any(is_null(v) for v in (0, 0.0, "", False, "nan"))
