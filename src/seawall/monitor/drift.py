"""Per-feature drift: a live sample of one column against its reference profile column.

The reference is one column of a snapshot profile (`seawall.data.profile`, read as plain JSON).
How a column is tested follows from its profile (`column_kind`):

- numeric (`float`, and `int` with more distinct values than its `top` lists): `ks`
  (Kolmogorov-Smirnov against the CDF the percentiles interpolate), `psi` and `js` over
  equal-mass bins cut at the reference percentiles (deciles by default);
- categorical (`string`, `bool`, and `int` whose `top` lists every value): `chi2` (homogeneity
  over the `top` values plus an "other" bucket, which also takes values the reference never
  saw; buckets expecting fewer than 5 live values merged), `psi` and `js` over the same buckets
  with at most `bins` of them (the rarest merged), and `new_category` (the share of live
  values in categories the reference lacks, estimated from the growth of "other"). When `top`
  is truncated (`other_count` > 0), the listed values whose counts are near the cut go to
  "other" too (`TOP_MARGIN_SD`): their counts are biased up;
- every column, `datetime` and empty ones included: `null_rate` (Fisher's exact test).

A model's output column (score or class label) is tested the same way: prediction drift is the
drift of the output column against a profile of reference outputs.

Every result has a p-value and is judged at a significance level (`DriftResult.at`); a report
divides alpha among all its results (Bonferroni). `psi`, `js` and `new_category` are effect sizes
with fixed thresholds, which sampling noise alone crosses in small samples, so they must also be
significant: the chi-squared test over their own buckets, Fisher's test for `new_category`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from seawall.monitor import stats
from seawall.monitor.options import MIN_EXPECTED, DriftOptions, DriftThresholds
from seawall.monitor.result import DriftResult, Stat

__all__ = ["TOP_MARGIN_SD", "ColumnKind", "column_kind", "evaluate_column", "is_null"]

ColumnKind = Literal["numeric", "categorical", "nulls_only"]

#: Percentiles a numeric profile column holds (0th to 100th).
_PERCENTILES = 101
#: Listed categories this many standard deviations clear of a truncated `top`'s cut are kept.
TOP_MARGIN_SD = 5.0


def is_null(value: object) -> bool:
    """None or a floating-point NaN: a missing value."""
    return value is None or (isinstance(value, float | np.floating) and math.isnan(value))


def column_kind(name: str, column: Mapping[str, Any]) -> ColumnKind:
    """How profile `column` is tested: as numbers, as categories, or for nulls only."""
    dtype = column.get("dtype")
    count = _count(name, column, "count")
    if count - _count(name, column, "infinite_count") <= 0:
        return "nulls_only"
    every_value_listed = "top" in column and _count(name, column, "other_count") == 0
    if dtype in ("string", "bool") or (dtype == "int" and every_value_listed):
        return "categorical"
    if dtype in ("int", "float"):
        return "numeric"
    return "nulls_only"


def evaluate_column(
    name: str,
    column: Mapping[str, Any],
    values: Sequence[Any],
    options: DriftOptions | None = None,
) -> tuple[DriftResult, ...]:
    """Every statistic of live `values` (None or NaN for nulls) against profile `column`.

    Judged at the feature's own alpha, uncorrected; `drift_report` re-judges at its level.
    """
    opts = options or DriftOptions()
    limits = opts.for_feature(name)
    kind = column_kind(name, column)
    results: list[DriftResult] = []
    if kind == "numeric":
        numbers = _floats(name, values)
        sample = numbers[~np.isnan(numbers)]
        results += _numeric(name, column, sample, limits, opts)
        present = int(sample.size)
    else:
        # `v == v` is False only for NaN: is_null, at a third of the cost.
        listed = [v for v in values if v is not None and v == v]
        if kind == "categorical":
            results += _categorical(name, column, listed, limits, opts)
        present = len(listed)
    null_rate = _null_rate(name, column, len(values), len(values) - present, opts)
    return tuple(r.at(limits.alpha) for r in (null_rate, *results))


def _null_rate(
    name: str, column: Mapping[str, Any], rows: int, nulls: int, opts: DriftOptions
) -> DriftResult:
    if rows < opts.min_samples:
        return _result(name, Stat.NULL_RATE, None, None, None, rows)
    reference_nulls = _count(name, column, "null_count")
    reference_rows = _count(name, column, "count") + reference_nulls
    reference_share = reference_nulls / reference_rows if reference_rows else 0.0
    p_value = stats.fisher_test(nulls, rows, reference_nulls, reference_rows)
    return _result(name, Stat.NULL_RATE, nulls / rows - reference_share, p_value, None, rows)


def _numeric(
    name: str,
    column: Mapping[str, Any],
    sample: stats.FloatArray,
    limits: DriftThresholds,
    opts: DriftOptions,
) -> list[DriftResult]:
    n = int(sample.size)
    if n < opts.min_samples:
        return [
            _result(name, stat, None, None, bar, n)
            for stat, bar in ((Stat.KS, None), (Stat.PSI, limits.psi), (Stat.JS, limits.js))
        ]
    percentiles = _percentiles(name, column)
    finite = _count(name, column, "count") - _count(name, column, "infinite_count")
    ties = _count(name, column, "distinct") < _count(name, column, "count")
    distance, p_value = stats.ks_test(sample, percentiles, finite, ties=ties)
    reference, live = stats.equal_mass_counts(sample, percentiles, finite, opts.bins)
    ks = _result(name, Stat.KS, distance, p_value, None, n)
    return [ks, *_effect_sizes(name, reference, live, limits, opts.bins)]


def _categorical(
    name: str,
    column: Mapping[str, Any],
    present: list[Any],
    limits: DriftThresholds,
    opts: DriftOptions,
) -> list[DriftResult]:
    n = len(present)
    if n < opts.min_samples:
        bars = (
            (Stat.CHI2, None),
            (Stat.PSI, limits.psi),
            (Stat.JS, limits.js),
            (Stat.NEW_CATEGORY, limits.new_category_share),
        )
        return [_result(name, stat, None, None, bar, n) for stat, bar in bars]
    reference, live = _clear_of_cut(
        _reference_counts(name, column), _category_counts(name, column, present)
    )
    statistic, p_value = stats.chi2_test(
        *stats.merge_sparse(reference, live, min_expected=MIN_EXPECTED)
    )
    chi2 = _result(name, Stat.CHI2, statistic, p_value, None, n)
    return [
        chi2,
        *_effect_sizes(name, reference, live, limits, opts.bins),
        _new(name, reference, live, limits),
    ]


def _clear_of_cut(
    reference: stats.FloatArray, live: stats.FloatArray
) -> tuple[stats.FloatArray, stats.FloatArray]:
    """Fold into "other" the listed categories whose reference count is near the top-K cut.

    A truncated `top` lists the values that happened to be frequent in the reference, so the
    counts of those near the cut are biased up (the winner's curse), and a test against them
    would alarm on same-distribution data. Within `TOP_MARGIN_SD` standard deviations
    (Poisson) of the smallest listed count, a category is pooled with the rest.
    """
    listed, other = reference[:-1], reference[-1]
    if other == 0 or listed.size == 0:
        return reference, live
    cut = float(listed.min())
    keep = listed >= cut + TOP_MARGIN_SD * math.sqrt(cut)
    return (
        np.append(listed[keep], reference.sum() - listed[keep].sum()),
        np.append(live[:-1][keep], live.sum() - live[:-1][keep].sum()),
    )


def _effect_sizes(
    name: str,
    reference: stats.FloatArray,
    live: stats.FloatArray,
    limits: DriftThresholds,
    bins: int,
) -> list[DriftResult]:
    """PSI and JS over at most `bins` buckets, significant by the chi-squared test over them."""
    reference, live = stats.merge_sparse(
        reference, live, min_expected=MIN_EXPECTED, max_buckets=bins
    )
    _, p_value = stats.chi2_test(reference, live)
    n = int(live.sum())
    return [
        _result(name, Stat.PSI, stats.psi(reference, live), p_value, limits.psi, n),
        _result(name, Stat.JS, stats.js_distance(reference, live), p_value, limits.js, n),
    ]


def _new(
    name: str, reference: stats.FloatArray, live: stats.FloatArray, limits: DriftThresholds
) -> DriftResult:
    """The share of live values in categories the reference lacks, estimated from "other".

    New categories at share s grow the "other" bucket from the reference's o to o + s(1 - o),
    so s = (live share - o) / (1 - o); with a complete reference list (o = 0) it is the share
    of unseen values. Nothing is listed when o = 1, and then nothing can be new.
    """
    n, m = int(live.sum()), int(reference.sum())
    unseen, other = int(live[-1]), int(reference[-1])
    if other >= m:
        return _result(name, Stat.NEW_CATEGORY, 0.0, 1.0, limits.new_category_share, n)
    share = (unseen / n - other / m) / (1.0 - other / m)
    p_value = stats.fisher_test(unseen, n, other, m)
    return _result(name, Stat.NEW_CATEGORY, share, p_value, limits.new_category_share, n)


def _result(
    name: str,
    stat: Stat,
    value: float | None,
    p_value: float | None,
    threshold: float | None,
    n: int,
) -> DriftResult:
    return DriftResult(
        name, stat, value, p_value, threshold, alpha=1.0, drifted=False, sample_size=n
    )


def _floats(name: str, values: Sequence[Any]) -> stats.FloatArray:
    """The values as floats, NaN for nulls (numpy converts None to NaN)."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"feature {name!r}: live values must be numbers ({exc})") from exc


def _category_counts(name: str, column: Mapping[str, Any], present: list[Any]) -> stats.FloatArray:
    """Live counts of each `top` value, then of every other value (the last bucket)."""
    index = {value: i for i, (value, _) in enumerate(column["top"])}
    other = len(index)
    try:
        buckets = np.fromiter((index.get(v, other) for v in present), np.intp, len(present))
    except TypeError as exc:
        raise ValueError(f"feature {name!r}: live values must be hashable ({exc})") from exc
    return np.bincount(buckets, minlength=other + 1).astype(np.float64)


def _reference_counts(name: str, column: Mapping[str, Any]) -> stats.FloatArray:
    top = column.get("top")
    if not isinstance(top, list) or not all(isinstance(p, list) and len(p) == 2 for p in top):
        raise ValueError(f"reference column {name!r}: top must be a list of [value, count]")
    counts = [_as_count(name, "top", c) for _, c in top]
    return np.asarray([*counts, _count(name, column, "other_count")], dtype=np.float64)


def _percentiles(name: str, column: Mapping[str, Any]) -> stats.FloatArray:
    raw = column.get("percentiles")
    if not isinstance(raw, list) or len(raw) != _PERCENTILES:
        raise ValueError(f"reference column {name!r}: percentiles must be {_PERCENTILES} numbers")
    percentiles = np.asarray(raw, dtype=np.float64)
    if not np.all(np.isfinite(percentiles)):
        raise ValueError(f"reference column {name!r}: percentiles must be finite")
    # Interpolated percentiles never decrease; this only guards against rounding.
    return np.maximum.accumulate(percentiles)


def _count(name: str, column: Mapping[str, Any], field: str) -> int:
    return _as_count(name, field, column.get(field, 0))


def _as_count(name: str, field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"reference column {name!r}: {field} must be a count, got {value!r}")
    return value
