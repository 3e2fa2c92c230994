"""Drift reports: Bonferroni across features keeps a 10-feature model's false alarms under alpha."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from seawall.data.profile import profile
from seawall.monitor.options import DEFAULT_ALPHA, DriftOptions
from seawall.monitor.report import PROFILE_FORMAT, DriftReport, Verdict, drift_report
from seawall.monitor.result import Stat

FEATURES = {f"x{i}": "float" for i in range(6)} | {f"c{i}": "string" for i in range(4)}
COLORS = np.array(["red", "green", "blue", "black", "white"])
WINDOW = (1_700_000_000.0, 1_700_000_300.0)


def _frame(rng: np.random.Generator, rows: int, shift: float = 0.0) -> pd.DataFrame:
    data: dict[str, Any] = {f"x{i}": rng.normal(i, 1.0 + i, rows) for i in range(6)}
    data["x0"] = data["x0"] + shift
    data |= {f"c{i}": rng.choice(COLORS, rows, p=[0.4, 0.3, 0.15, 0.1, 0.05]) for i in range(4)}
    return pd.DataFrame(data)


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = frame.to_dict("records")
    return rows


def _report(reference: dict[str, Any], frame: pd.DataFrame, **kwargs: Any) -> DriftReport:
    return drift_report(
        reference, _rows(frame), model="churn", version="3", window=WINDOW, **kwargs
    )


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    return profile(_frame(np.random.default_rng(7), 5000), FEATURES)


def test_every_result_is_judged_at_alpha_over_the_number_of_tests(
    reference: dict[str, Any],
) -> None:
    report = _report(reference, _frame(np.random.default_rng(8), 1000))

    # Numeric: null_rate, ks, psi, js; categorical: null_rate, chi2, psi, js, new_category.
    assert report.tests == 6 * 4 + 4 * 5 == len(report.results)
    assert all(r.alpha == pytest.approx(DEFAULT_ALPHA / 44) for r in report.results)
    assert report.verdict is Verdict.STABLE
    assert not report.drifting
    assert report.rows == 1000


def test_a_shifted_feature_is_named_and_drives_the_score(reference: dict[str, Any]) -> None:
    report = _report(reference, _frame(np.random.default_rng(9), 1000, shift=1.0))

    assert report.verdict is Verdict.DRIFTING
    assert report.drifted_features == ("x0",)
    by_stat = {r.stat: r for r in report.feature("x0")}
    assert by_stat[Stat.KS].drifted
    assert by_stat[Stat.PSI].drifted
    assert report.score == by_stat[Stat.PSI].value
    assert report.score > 0.2


def test_too_few_rows_is_insufficient_data(reference: dict[str, Any]) -> None:
    report = _report(reference, _frame(np.random.default_rng(10), 50, shift=5.0))

    assert report.verdict is Verdict.INSUFFICIENT_DATA
    assert report.tests == 0
    assert report.score == 0.0
    assert all(r.insufficient for r in report.results)


def test_prediction_drift_is_reported_for_the_output_columns(reference: dict[str, Any]) -> None:
    rng = np.random.default_rng(11)
    outputs = profile(pd.DataFrame({"churn_score": rng.beta(2, 5, 5000)}), {"churn_score": "float"})
    frame = _frame(rng, 1000).assign(churn_score=rng.beta(3, 3, 1000))

    report = _report(reference, frame, outputs=outputs)

    assert report.outputs == ("churn_score",)
    assert report.prediction_drifting
    assert report.drifted_features == ("churn_score",)
    assert report.tests == 44 + 4


def test_a_column_missing_from_the_rows_is_null(reference: dict[str, Any]) -> None:
    frame = _frame(np.random.default_rng(12), 1000).drop(columns=["c3"])

    report = _report(reference, frame)

    nulls = next(r for r in report.feature("c3") if r.stat is Stat.NULL_RATE)
    assert nulls.value == 1.0
    assert nulls.drifted
    assert report.drifted_features == ("c3",)


def test_excluded_columns_are_not_checked(reference: dict[str, Any]) -> None:
    frame = _frame(np.random.default_rng(13), 1000, shift=1.0)

    report = _report(reference, frame, options=DriftOptions(exclude=frozenset({"x0"})))

    assert report.feature("x0") == ()
    assert report.verdict is Verdict.STABLE


def test_the_report_is_strict_json(reference: dict[str, Any]) -> None:
    report = _report(reference, _frame(np.random.default_rng(14), 1000, shift=1.0))

    document = json.loads(json.dumps(report.to_json(), allow_nan=False))

    assert document["model"] == "churn"
    assert document["version"] == "3"
    assert document["window"] == {"start": WINDOW[0], "end": WINDOW[1]}
    assert document["verdict"] == "drifting"
    assert document["drifting"] is True
    assert document["drifted_features"] == ["x0"]
    assert document["score"] == report.score
    assert len(document["results"]) == 44
    first = document["results"][0]
    assert set(first) == {
        "feature",
        "stat",
        "value",
        "p_value",
        "threshold",
        "alpha",
        "drifted",
        "sample_size",
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": 2}, "reference: must be a profile of format 1, got 2"),
        ({"columns": [1]}, "reference: columns must map each column name to its profile"),
    ],
)
def test_a_bad_reference_is_refused(
    reference: dict[str, Any], change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _report({**reference, **change}, _frame(np.random.default_rng(0), 10))


def test_outputs_may_not_shadow_features(reference: dict[str, Any]) -> None:
    outputs = {**reference, "columns": {"x1": reference["columns"]["x1"]}}

    with pytest.raises(ValueError, match=r"outputs: columns \['x1'\] are in the reference"):
        _report(reference, _frame(np.random.default_rng(0), 10), outputs=outputs)


def test_a_backwards_window_is_refused(reference: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="window: must be finite"):
        drift_report(reference, [], model="m", version="1", window=(2.0, 1.0))


def test_the_profile_format_is_the_data_guards() -> None:
    from seawall.data.profile import PROFILE_FORMAT as DATA_FORMAT

    assert PROFILE_FORMAT == DATA_FORMAT


TRIALS = 200


def test_a_ten_feature_model_raises_false_alarms_within_alpha_and_catches_a_shift() -> None:
    """Bonferroni over 44 tests: the family-wise rate stays under alpha; a 0.5 sd shift shows."""
    rng = np.random.default_rng(2024)
    false_alarms = caught = 0
    for _ in range(TRIALS):
        reference = profile(_frame(rng, 5000), FEATURES)
        false_alarms += _report(reference, _frame(rng, 1000)).drifting
        shifted = _report(reference, _frame(rng, 1000, shift=0.5))
        caught += shifted.drifted_features == ("x0",)

    assert false_alarms <= scipy_stats.binom.ppf(0.999, TRIALS, DEFAULT_ALPHA)
    assert caught >= 0.95 * TRIALS
