"""Training/serving skew: the same entities' feature values as training saw them and as served.

Rows logged at serving time are joined to training rows on a key (an entity or request id). For
every feature, `skew` reports the share of joined entities whose two values differ (numbers
within a tolerance count as equal; a null on one side only differs; nulls on both do not) and
the mean absolute difference over the pairs where both values are numbers. A key seen more than
once on a side is represented by its last row there; rows without the key are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from seawall.monitor.drift import is_null

__all__ = [
    "DEFAULT_ABS_TOL",
    "DEFAULT_MAX_MISMATCH_SHARE",
    "DEFAULT_REL_TOL",
    "SkewOptions",
    "SkewResult",
    "skew",
]

#: Relative tolerance under which two numbers are the same value.
DEFAULT_REL_TOL = 1e-6
#: Absolute tolerance under which two numbers are the same value (for values near 0).
DEFAULT_ABS_TOL = 1e-9
#: Share of joined entities with differing values above which a feature is skewed.
DEFAULT_MAX_MISMATCH_SHARE = 0.01


@dataclass(frozen=True, slots=True)
class SkewOptions:
    """When two values are the same, and how many may differ before a feature is skewed."""

    #: Numbers a and b are equal when |a - b| <= abs_tol + rel_tol · |b| (numpy's isclose).
    rel_tol: float = DEFAULT_REL_TOL
    #: See `rel_tol`.
    abs_tol: float = DEFAULT_ABS_TOL
    #: A feature is skewed when more than this share, in [0, 1), of its pairs differ.
    max_mismatch_share: float = DEFAULT_MAX_MISMATCH_SHARE

    def __post_init__(self) -> None:
        checks = (
            ("rel_tol", 0 <= self.rel_tol < math.inf, "must be 0 or more"),
            ("abs_tol", 0 <= self.abs_tol < math.inf, "must be 0 or more"),
            ("max_mismatch_share", 0 <= self.max_mismatch_share < 1, "must be in [0, 1)"),
        )
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"{name}: {rule}, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class SkewResult:
    """How often one feature's training and serving values of the same entity differ."""

    feature: str
    #: Entities whose key is on both sides.
    matched: int
    #: Entities whose two values differ.
    mismatches: int
    #: mismatches / matched.
    mismatch_share: float
    #: Mean |training - serving| over the pairs where both are numbers (None: no such pair).
    mean_abs_diff: float | None
    #: The `max_mismatch_share` it was judged against.
    threshold: float
    skewed: bool

    def to_json(self) -> dict[str, Any]:
        """The result in plain JSON types."""
        return {
            "feature": self.feature,
            "matched": self.matched,
            "mismatches": self.mismatches,
            "mismatch_share": self.mismatch_share,
            "mean_abs_diff": self.mean_abs_diff,
            "threshold": self.threshold,
            "skewed": self.skewed,
        }


def skew(
    training_rows: Iterable[Mapping[str, Any]],
    serving_rows: Iterable[Mapping[str, Any]],
    key: str,
    options: SkewOptions | None = None,
) -> tuple[SkewResult, ...]:
    """Per feature (sorted by name), how training and serving values of the same keys differ.

    Features are the columns of the joined rows other than `key`; none when no key matches.
    """
    opts = options or SkewOptions()
    training, serving = (
        _by_key(training_rows, key, "training_rows"),
        _by_key(serving_rows, key, "serving_rows"),
    )
    keys = [k for k in serving if k in training]
    if not keys:
        return ()
    pairs = [(training[k], serving[k]) for k in keys]
    features = sorted({f for t, s in pairs for f in (*t, *s)} - {key})
    return tuple(
        _feature(f, [t.get(f) for t, _ in pairs], [s.get(f) for _, s in pairs], opts)
        for f in features
    )


def _by_key(
    rows: Iterable[Mapping[str, Any]], key: str, what: str
) -> dict[Hashable, Mapping[str, Any]]:
    out: dict[Hashable, Mapping[str, Any]] = {}
    for row in rows:
        value = row.get(key)
        if is_null(value):
            continue
        if not isinstance(value, Hashable):
            raise ValueError(f"{what}: key {key!r} must be hashable, got {value!r}")
        out[value] = row
    return out


def _feature(name: str, left: list[Any], right: list[Any], opts: SkewOptions) -> SkewResult:
    numeric = np.fromiter(
        (_number(a) and _number(b) for a, b in zip(left, right, strict=True)), bool, len(left)
    )
    a = np.asarray([v for v, n in zip(left, numeric, strict=True) if n], dtype=np.float64)
    b = np.asarray([v for v, n in zip(right, numeric, strict=True) if n], dtype=np.float64)
    close = np.isclose(a, b, rtol=opts.rel_tol, atol=opts.abs_tol, equal_nan=True)
    other = [_same(x, y) for x, y, n in zip(left, right, numeric, strict=True) if not n]
    mismatches = int(np.count_nonzero(~close)) + other.count(False)
    finite = np.isfinite(a) & np.isfinite(b)
    mean_abs_diff = float(np.mean(np.abs(a[finite] - b[finite]))) if finite.any() else None
    share = mismatches / len(left)
    skewed = share > opts.max_mismatch_share
    return SkewResult(
        name, len(left), mismatches, share, mean_abs_diff, opts.max_mismatch_share, skewed
    )


def _number(value: object) -> bool:
    """An int or float (not a bool): compared with a tolerance."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def _same(a: object, b: object) -> bool:
    if is_null(a) or is_null(b):
        return is_null(a) and is_null(b)
    return bool(a == b)
