"""Two-sample statistics of a live sample against a reference known only by its profile summary.

The reference is a training snapshot's profile (`seawall.data.profile`): 101 percentiles for a
numeric column, the most frequent values with their counts for a categorical one. Each test here
treats it as what it is, a second sample of `count` values, so its p-values account for the
reference's own sampling noise:

- `ks_test`: Kolmogorov-Smirnov distance between the live empirical CDF and the reference CDF
  interpolated linearly between the percentiles (steps where percentiles tie), with the two-sample
  p-value at the effective size n·m/(n+m) (Stephens' approximation, as Numerical Recipes' `kstwo`;
  within 3% of `scipy.stats.kstwo` from n = 50). A reference with repeated values (integers,
  rounded floats) is known only to within one percentile step, which the test allows for, so
  ties make it conservative rather than liberal.
- `chi2_test`: Pearson's chi-squared test of homogeneity over a 2-by-k table of counts.
- `fisher_test`: Fisher's exact test that two proportions are equal (two-sided, as
  `scipy.stats.fisher_exact`): exact for the rare counts where a z-test is far too liberal.
- `psi` and `js_distance`: population stability index and Jensen-Shannon distance (base 2,
  in [0, 1]) of two count vectors: effect sizes with fixed thresholds, not tests.
- `equal_mass_counts` and `merge_sparse` build the buckets those run over.

Everything is vectorized numpy; nothing here knows a feature's name or a threshold.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import special
from scipy.spatial.distance import jensenshannon

__all__ = [
    "PSI_EPSILON",
    "chi2_test",
    "equal_mass_counts",
    "fisher_test",
    "js_distance",
    "ks_p_value",
    "ks_test",
    "merge_sparse",
    "psi",
    "reference_cdf",
]

FloatArray = NDArray[np.float64]

#: Floor on a bucket's share in `psi`, so an empty bucket costs a bounded amount, not infinity.
PSI_EPSILON = 1e-4


def reference_cdf(percentiles: FloatArray, x: FloatArray, *, right: bool = True) -> FloatArray:
    """P(X <= x) (or P(X < x) with `right=False`) under the CDF the percentiles interpolate.

    Linear between consecutive percentiles, 0 below the first and 1 above the last; where
    percentiles tie the CDF steps, and `right=False` gives the value just before the step.
    """
    last = len(percentiles) - 1
    i = np.searchsorted(percentiles, x, side="right" if right else "left") - 1
    j = np.clip(i, 0, last - 1)
    low, high = percentiles[j], percentiles[j + 1]
    width = high - low
    # Inside the range q[j] <= x < q[j+1] (or q[j] < x <= q[j+1]), so width > 0 there.
    inside = (i >= 0) & (i < last)
    fraction = np.where(inside, (x - low) / np.where(width > 0, width, 1.0), 0.0)
    cdf = (j + np.clip(fraction, 0.0, 1.0)) / last
    return np.where(i < 0, 0.0, np.where(i >= last, 1.0, cdf))


def ks_p_value(distance: float, n_eff: float) -> float:
    """P(D >= distance) for the KS statistic at effective sample size `n_eff` (Stephens)."""
    root = math.sqrt(n_eff)
    return float(np.clip(special.kolmogorov((root + 0.12 + 0.11 / root) * distance), 0.0, 1.0))


def ks_test(
    sample: FloatArray, percentiles: FloatArray, reference_count: int, *, ties: bool = False
) -> tuple[float, float]:
    """(D, p-value): KS distance of `sample` from the percentiles' CDF, over `reference_count`.

    With `ties` (the reference repeats values), the p-value is taken at D less one percentile
    step: between two percentiles a discrete reference's CDF can sit anywhere within that step.
    """
    x = np.sort(sample)
    n = x.size
    upper = np.arange(1, n + 1, dtype=np.float64) / n
    d_plus = np.max(upper - reference_cdf(percentiles, x, right=True))
    d_minus = np.max(reference_cdf(percentiles, x, right=False) - (upper - 1.0 / n))
    distance = float(max(d_plus, d_minus, 0.0))
    slack = 1.0 / (len(percentiles) - 1) if ties else 0.0
    n_eff = n * reference_count / (n + reference_count)
    return distance, ks_p_value(max(distance - slack, 0.0), n_eff)


def equal_mass_counts(
    sample: FloatArray, percentiles: FloatArray, reference_count: int, bins: int
) -> tuple[FloatArray, FloatArray]:
    """(reference, live) counts over `bins` equal-mass bins cut at the reference's percentiles.

    Bins are right-closed; tied cut points collapse, so a point mass gets the share the
    percentiles give it. Reference counts are shares times `reference_count` (not integers).
    """
    step = (len(percentiles) - 1) // bins
    edges = np.unique(percentiles[step:-1:step])
    cumulative = np.concatenate(([0.0], reference_cdf(percentiles, edges), [1.0]))
    reference = np.diff(cumulative) * reference_count
    buckets = np.searchsorted(edges, sample, side="left")
    live = np.bincount(buckets, minlength=edges.size + 1).astype(np.float64)
    return reference, live


def merge_sparse(
    reference: FloatArray,
    live: FloatArray,
    *,
    min_expected: float,
    max_buckets: int | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Pool the buckets whose expected live count is under `min_expected` into one.

    Expected counts are those of the homogeneity test (pooled shares times the live total). If the
    pool itself falls short, the next smallest buckets join it; with `max_buckets`, all but the
    `max_buckets - 1` largest are pooled. The pool comes last.
    """
    pooled_share = (reference + live) / (reference.sum() + live.sum())
    expected = live.sum() * pooled_share
    order = np.argsort(-expected, kind="stable")
    ordered = expected[order]
    size = ordered.size
    fits = max_buckets is None or size <= max_buckets
    if fits and ordered[-1] >= min_expected:
        return reference, live
    cap = size - 1 if max_buckets is None else min(size - 1, max_buckets - 1)
    keep = min(cap, int(np.count_nonzero(ordered >= min_expected)))
    tail = np.cumsum(ordered[::-1])[::-1]
    while keep > 0 and tail[keep] < min_expected:
        keep -= 1
    kept, pool = order[:keep], order[keep:]
    return (
        np.append(reference[kept], reference[pool].sum()),
        np.append(live[kept], live[pool].sum()),
    )


def chi2_test(reference: FloatArray, live: FloatArray) -> tuple[float, float]:
    """(statistic, p-value) of Pearson's chi-squared homogeneity test of two count vectors."""
    table = np.vstack((reference, live))
    columns = table.sum(axis=0)
    table = table[:, columns > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return statistic, float(special.chdtrc(table.shape[1] - 1, statistic))


def psi(reference: FloatArray, live: FloatArray) -> float:
    """Population stability index: sum of (live - ref) · ln(live / ref) over bucket shares."""
    expected = np.maximum(reference / reference.sum(), PSI_EPSILON)
    actual = np.maximum(live / live.sum(), PSI_EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def js_distance(reference: FloatArray, live: FloatArray) -> float:
    """Jensen-Shannon distance (base 2) of two count vectors: 0 when equal, 1 when disjoint."""
    with np.errstate(invalid="ignore"):
        # Rounding can leave the divergence a hair below 0, whose square root is NaN.
        distance = float(jensenshannon(reference, live, base=2))
    return 0.0 if math.isnan(distance) else min(distance, 1.0)


def fisher_test(hits_a: int, size_a: int, hits_b: int, size_b: int) -> float:
    """Two-sided p-value of Fisher's exact test that hits_a/size_a and hits_b/size_b are equal."""
    hits, total = hits_a + hits_b, size_a + size_b
    if hits in (0, total):
        return 1.0
    low, high = max(0, size_a - (total - hits)), min(size_a, hits)
    support = np.arange(low, high + 1, dtype=np.float64)
    log_pmf = (
        _log_choose(hits, support)
        + _log_choose(total - hits, size_a - support)
        - _log_choose(total, np.float64(size_a))
    )
    observed = log_pmf[hits_a - low]
    # A relative tolerance, as scipy's, so outcomes as likely as the observed one count in full.
    extreme = log_pmf <= observed + 1e-7
    return float(min(1.0, np.exp(log_pmf[extreme]).sum()))


def _log_choose(n: float, k: Any) -> Any:
    """ln C(n, k), vectorized over `k`."""
    return special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
