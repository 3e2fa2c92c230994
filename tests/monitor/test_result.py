"""Drift results: one rule decides every verdict; insufficient data never drifts."""

from __future__ import annotations

import json

import pytest

from seawall.monitor.result import DriftResult, Stat


def _result(
    stat: Stat, value: float | None, p_value: float | None, threshold: float | None
) -> DriftResult:
    return DriftResult("age", stat, value, p_value, threshold, 1.0, False, 500)


@pytest.mark.parametrize(
    ("value", "p_value", "threshold", "drifted"),
    [
        (0.3, 0.001, 0.2, True),  # above the bar and significant
        (0.3, 0.02, 0.2, False),  # above the bar, not significant
        (0.1, 1e-9, 0.2, False),  # significant, under the bar
        (0.05, 0.001, None, True),  # a pure test: significance alone
        (0.05, 0.01, None, False),  # p must be strictly under alpha
        (None, None, 0.2, False),  # insufficient data
    ],
)
def test_drifted_needs_significance_and_the_bar(
    value: float | None, p_value: float | None, threshold: float | None, drifted: bool
) -> None:
    judged = _result(Stat.PSI, value, p_value, threshold).at(0.01)

    assert judged.drifted is drifted
    assert judged.alpha == 0.01
    assert judged.insufficient is (value is None)


def test_rejudging_at_a_stricter_level_can_clear_a_verdict() -> None:
    loose = _result(Stat.KS, 0.08, 0.004, None).at(0.01)

    assert loose.drifted
    assert not loose.at(0.01 / 44).drifted


def test_the_result_is_plain_json() -> None:
    result = _result(Stat.NULL_RATE, 0.15, 1e-30, None).at(0.001)

    document = json.loads(json.dumps(result.to_json(), allow_nan=False))

    assert document == {
        "feature": "age",
        "stat": "null_rate",
        "value": 0.15,
        "p_value": 1e-30,
        "threshold": None,
        "alpha": 0.001,
        "drifted": True,
        "sample_size": 500,
    }


def test_the_stat_names_are_metric_labels() -> None:
    assert [str(s) for s in Stat] == ["ks", "psi", "js", "chi2", "null_rate", "new_category"]
