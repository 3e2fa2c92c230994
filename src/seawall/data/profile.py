"""A snapshot's statistical profile: the reference that request-time checks and drift use.

Computed once, over every accepted row (no sampling), and kept as plain JSON in the snapshot's
metadata. Per column:

- all: `dtype`, `count` (present values), `null_count`, `distinct`;
- int and float: `min`, `max`, `mean`, `std` (sample, ddof=1), `percentiles` (101 values, the
  0th to the 100th, linear interpolation: an empirical CDF for Kolmogorov-Smirnov and for
  equal-mass PSI bins), `histogram` (`edges`, `counts`: 20 equal-width bins over [min, max]),
  over finite values, with `infinite_count` beside them;
- int, bool and string: `top` (the `TOP_K` most frequent values with their counts, most
  frequent first, ties by value) and `other_count` (the rest): categories for chi-squared;
- string: `length` (`min`, `max`, `mean` in characters);
- datetime: `min` and `max` (ISO 8601, UTC).

Every number is finite (a statistic with no values is null), so the profile is strict JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["HISTOGRAM_BINS", "PERCENTILES", "PROFILE_FORMAT", "TOP_K", "profile"]

#: Version of this layout, stored in the profile so readers can tell.
PROFILE_FORMAT = 1
#: The percentiles kept: 0, 1, ..., 100.
PERCENTILES = tuple(range(101))
#: Equal-width bins of a numeric column's histogram.
HISTOGRAM_BINS = 20
#: Most frequent values kept per categorical column.
TOP_K = 50


def profile(frame: pd.DataFrame, columns: Mapping[str, str]) -> dict[str, Any]:
    """The profile of `frame`, whose `columns` (name → contract dtype) are typed already."""
    return {
        "format": PROFILE_FORMAT,
        "rows": len(frame),
        "columns": {name: _column(frame[name], dtype) for name, dtype in columns.items()},
    }


def _column(series: pd.Series, dtype: str) -> dict[str, Any]:
    present = series.dropna()
    out: dict[str, Any] = {
        "dtype": dtype,
        "count": len(present),
        "null_count": len(series) - len(present),
        "distinct": int(present.nunique()),
    }
    if dtype in ("int", "float"):
        out.update(_numeric(present.to_numpy(dtype="float64")))
    if dtype in ("int", "bool", "string"):
        out.update(_top(present))
    if dtype == "string":
        lengths = present.str.len().to_numpy(dtype="float64")
        out["length"] = {
            "min": _int(lengths.min()) if len(lengths) else None,
            "max": _int(lengths.max()) if len(lengths) else None,
            "mean": float(lengths.mean()) if len(lengths) else None,
        }
    if dtype == "datetime":
        out["min"] = present.min().isoformat() if len(present) else None
        out["max"] = present.max().isoformat() if len(present) else None
    return out


def _numeric(values: np.ndarray[Any, np.dtype[np.float64]]) -> dict[str, Any]:
    finite = values[np.isfinite(values)]
    out: dict[str, Any] = {"infinite_count": len(values) - len(finite)}
    if not len(finite):
        return {**out, "min": None, "max": None, "mean": None, "std": None}
    low, high = float(finite.min()), float(finite.max())
    counts, edges = np.histogram(finite, bins=HISTOGRAM_BINS, range=(low, high))
    return {
        **out,
        "min": low,
        "max": high,
        "mean": float(finite.mean()),
        "std": float(finite.std(ddof=1)) if len(finite) > 1 else None,
        "percentiles": [float(p) for p in np.percentile(finite, PERCENTILES)],
        "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
    }


def _top(present: pd.Series) -> dict[str, Any]:
    counts = present.value_counts(sort=False)
    table = pd.DataFrame({"value": counts.index, "count": counts.to_numpy()})
    table = table.sort_values(["count", "value"], ascending=[False, True], kind="stable")
    top = table.head(TOP_K)
    return {
        "top": [[_plain(v), int(c)] for v, c in zip(top["value"], top["count"], strict=True)],
        "other_count": int(table["count"].iloc[TOP_K:].sum()),
    }


def _plain(value: Any) -> Any:
    """A JSON value: numpy and pandas scalars as Python ones."""
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _int(value: float) -> int:
    return int(value)
