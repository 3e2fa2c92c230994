"""Profiles: exact statistics over every row, strict JSON, enough for drift tests later."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from seawall.data.profile import HISTOGRAM_BINS, PERCENTILES, PROFILE_FORMAT, TOP_K, profile


def _strict_json(value: object) -> object:
    return json.loads(json.dumps(value, allow_nan=False))


def test_numeric_columns_have_exact_moments_percentiles_and_a_histogram(
    diabetes: pd.DataFrame,
) -> None:
    columns = dict.fromkeys(diabetes.columns, "float")

    result = profile(diabetes, columns)

    assert result["format"] == PROFILE_FORMAT == 1
    assert result["rows"] == 442
    bmi = result["columns"]["bmi"]
    values = diabetes["bmi"].to_numpy()
    assert bmi["count"] == 442
    assert bmi["null_count"] == 0
    assert bmi["min"] == values.min()
    assert bmi["max"] == values.max()
    assert bmi["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert bmi["std"] == pytest.approx(values.std(ddof=1), rel=1e-12)
    assert len(bmi["percentiles"]) == len(PERCENTILES) == 101
    assert bmi["percentiles"][50] == pytest.approx(np.median(values))
    assert bmi["percentiles"][0] == bmi["min"]
    assert bmi["percentiles"][100] == bmi["max"]
    histogram = bmi["histogram"]
    assert len(histogram["edges"]) == HISTOGRAM_BINS + 1
    assert sum(histogram["counts"]) == 442
    assert histogram["edges"][0] == bmi["min"]
    assert histogram["edges"][-1] == bmi["max"]
    assert _strict_json(result) == result


def test_the_percentiles_are_an_empirical_cdf_a_ks_test_can_use(diabetes: pd.DataFrame) -> None:
    reference = profile(diabetes, {"bmi": "float"})["columns"]["bmi"]["percentiles"]
    same = diabetes["bmi"].to_numpy()
    shifted = same + 0.5 * same.std()

    # KS distance of a sample against the reference CDF interpolated from its percentiles.
    def distance(sample: np.ndarray) -> float:
        cdf = np.interp(np.sort(sample), reference, np.linspace(0, 1, 101), left=0, right=1)
        ranks = np.arange(1, len(sample) + 1) / len(sample)
        return float(np.max(np.abs(cdf - ranks)))

    assert distance(same) < 0.02
    assert distance(shifted) > 0.15
    assert stats.ks_2samp(same, shifted).statistic == pytest.approx(distance(shifted), abs=0.02)


def test_integer_and_text_columns_have_their_categories(iris: pd.DataFrame) -> None:
    frame = iris.assign(
        species=iris["species"].astype("string"),
        plant_id=pd.array(iris["plant_id"] % 4, dtype="Int64"),
    )

    result = profile(frame, {"species": "string", "plant_id": "int"})["columns"]

    assert result["species"]["top"] == [["setosa", 50], ["versicolor", 50], ["virginica", 50]]
    assert result["species"]["other_count"] == 0
    assert result["species"]["distinct"] == 3
    assert result["species"]["length"] == {"min": 6, "max": 10, "mean": pytest.approx(25 / 3)}
    assert result["plant_id"]["top"] == [[1, 38], [2, 38], [0, 37], [3, 37]]
    assert result["plant_id"]["mean"] == pytest.approx(np.mean(iris["plant_id"] % 4))


def test_only_the_top_k_values_are_kept_and_the_rest_is_counted() -> None:
    values = [f"v{i:03d}" for i in range(TOP_K + 10) for _ in range(1 + i % 3)]
    frame = pd.DataFrame({"s": pd.array(values, dtype="string")})

    top = profile(frame, {"s": "string"})["columns"]["s"]

    assert len(top["top"]) == TOP_K
    assert [count for _, count in top["top"]] == sorted((c for _, c in top["top"]), reverse=True)
    assert sum(c for _, c in top["top"]) + top["other_count"] == len(values)
    assert top["top"][0] == ["v002", 3]  # ties broken by value


def test_missing_infinite_and_empty_columns_stay_strict_json() -> None:
    frame = pd.DataFrame(
        {
            "x": [1.0, np.nan, np.inf, 3.0],
            "empty": [np.nan] * 4,
            "flag": pd.array([True, None, True, False], dtype="boolean"),
            "at": pd.to_datetime(["2026-01-01", None, "2026-03-01", "2026-02-01"], utc=True),
        }
    )
    columns = {"x": "float", "empty": "float", "flag": "bool", "at": "datetime"}

    result = profile(frame, columns)["columns"]

    assert (result["x"]["count"], result["x"]["null_count"]) == (3, 1)
    assert result["x"]["infinite_count"] == 1
    assert result["x"]["mean"] == 2.0
    assert result["empty"] == {
        "dtype": "float",
        "count": 0,
        "null_count": 4,
        "distinct": 0,
        "infinite_count": 0,
        "min": None,
        "max": None,
        "mean": None,
        "std": None,
    }
    assert result["flag"]["top"] == [[True, 2], [False, 1]]
    assert result["at"]["min"] == "2026-01-01T00:00:00+00:00"
    assert result["at"]["max"] == "2026-03-01T00:00:00+00:00"
    assert _strict_json(result) == result


def test_a_single_value_has_no_sample_std_and_one_full_bin() -> None:
    result = profile(pd.DataFrame({"x": [2.5]}), {"x": "float"})["columns"]["x"]

    assert result["std"] is None
    assert sum(result["histogram"]["counts"]) == 1
