"""Training/serving skew: the same entity's values compared, numbers within a tolerance."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from seawall.monitor.skew import DEFAULT_MAX_MISMATCH_SHARE, SkewOptions, SkewResult, skew


def _by_feature(results: tuple[SkewResult, ...]) -> dict[str, SkewResult]:
    return {r.feature: r for r in results}


def test_mismatches_and_mean_absolute_difference_per_feature() -> None:
    training = [{"id": i, "age": 30 + i, "plan": "pro", "income": 1000.0} for i in range(100)]
    serving = [
        {
            "id": i,
            "age": 30 + i + (1 if i < 10 else 0),
            "plan": "pro" if i % 2 else "free",
            "income": 1000.0 * (1 + 1e-9),
        }
        for i in range(100)
    ]

    results = _by_feature(skew(training, serving, "id"))

    assert sorted(results) == ["age", "income", "plan"]
    age, plan, income = results["age"], results["plan"], results["income"]
    assert (age.matched, age.mismatches, age.mismatch_share) == (100, 10, 0.1)
    assert age.mean_abs_diff == pytest.approx(0.1)
    assert age.skewed
    assert (plan.mismatches, plan.mean_abs_diff, plan.skewed) == (50, None, True)
    # 1e-9 relative is within the default 1e-6 tolerance, but still a difference of 1e-6.
    assert (income.mismatches, income.skewed) == (0, False)
    assert income.mean_abs_diff == pytest.approx(1e-6)
    assert age.threshold == DEFAULT_MAX_MISMATCH_SHARE


def test_only_keys_on_both_sides_are_compared() -> None:
    training: list[dict[str, Any]] = [{"id": "a", "x": 1}, {"id": "b", "x": 2}, {"x": 3}]
    serving: list[dict[str, Any]] = [{"id": "b", "x": 2}, {"id": "c", "x": 9}, {"id": None, "x": 9}]

    (result,) = skew(training, serving, "id")

    assert (result.feature, result.matched, result.mismatches) == ("x", 1, 0)


def test_no_common_key_gives_no_results() -> None:
    assert skew([{"id": 1, "x": 1}], [{"id": 2, "x": 1}], "id") == ()


def test_nulls_match_nulls_only() -> None:
    training: list[dict[str, Any]] = [
        {"id": 1, "x": None},
        {"id": 2, "x": math.nan},
        {"id": 3, "x": None},
        {"id": 4, "x": 5.0},
        {"id": 5, "x": "a"},
    ]
    serving: list[dict[str, Any]] = [
        {"id": 1, "x": math.nan},
        {"id": 2, "x": math.nan},
        {"id": 3, "x": 0.0},
        {"id": 4},
        {"id": 5, "x": None},
    ]

    (result,) = skew(training, serving, "id")

    assert result.mismatches == 3  # 3: null vs 0; 4: 5 vs missing; 5: "a" vs null
    assert result.mean_abs_diff is None  # no pair of two finite numbers


def test_a_bool_is_compared_exactly_not_as_a_number() -> None:
    training = [{"id": 1, "flag": True}, {"id": 2, "flag": 1}]
    serving = [{"id": 1, "flag": 1.0000001}, {"id": 2, "flag": 1.0000001}]

    (result,) = skew(training, serving, "id")

    assert result.mismatches == 1  # True vs 1.0000001 differs; 1 vs 1.0000001 is within tolerance


def test_the_tolerance_is_configurable() -> None:
    training = [{"id": 1, "x": 100.0}]
    serving = [{"id": 1, "x": 100.5}]

    (default,) = skew(training, serving, "id")
    (loose,) = skew(training, serving, "id", SkewOptions(abs_tol=1.0))

    assert default.mismatches == 1
    assert loose.mismatches == 0
    assert loose.mean_abs_diff == pytest.approx(0.5)


def test_a_repeated_key_is_represented_by_its_last_row() -> None:
    training = [{"id": 1, "x": 1}, {"id": 1, "x": 2}]
    serving = [{"id": 1, "x": 2}]

    (result,) = skew(training, serving, "id")

    assert result.mismatches == 0


def test_an_unhashable_key_names_the_side_and_key() -> None:
    with pytest.raises(ValueError, match="serving_rows: key 'id' must be hashable"):
        skew([{"id": 1}], [{"id": [1]}], "id")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rel_tol": -1.0}, "rel_tol: must be 0 or more, got -1.0"),
        ({"abs_tol": math.inf}, "abs_tol: must be 0 or more, got inf"),
        ({"max_mismatch_share": 1.0}, r"max_mismatch_share: must be in \[0, 1\), got 1.0"),
    ],
)
def test_bad_options_name_the_field(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SkewOptions(**kwargs)


def test_the_result_is_plain_json() -> None:
    (result,) = skew([{"id": 1, "x": 1.0}], [{"id": 1, "x": 3.0}], "id")

    assert json.loads(json.dumps(result.to_json(), allow_nan=False)) == {
        "feature": "x",
        "matched": 1,
        "mismatches": 1,
        "mismatch_share": 1.0,
        "mean_abs_diff": 2.0,
        "threshold": DEFAULT_MAX_MISMATCH_SHARE,
        "skewed": True,
    }
