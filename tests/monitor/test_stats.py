"""The statistics against scipy's own implementations, and their invariants as properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats
from scipy.spatial.distance import jensenshannon

from seawall.monitor.stats import (
    PSI_EPSILON,
    chi2_test,
    equal_mass_counts,
    fisher_test,
    js_distance,
    ks_p_value,
    ks_test,
    merge_sparse,
    psi,
    reference_cdf,
)

PROPERTY = settings(max_examples=200, deadline=None)

UNIFORM = np.linspace(0.0, 1.0, 101)

counts = st.lists(st.integers(0, 500), min_size=2, max_size=30)


def _array(values: list[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def test_the_cdf_interpolates_between_percentiles_and_is_flat_outside() -> None:
    x = np.array([-1.0, 0.0, 0.005, 0.25, 0.999, 1.0, 2.0, np.inf, -np.inf])

    cdf = reference_cdf(UNIFORM, x)

    np.testing.assert_allclose(cdf, [0, 0, 0.005, 0.25, 0.999, 1, 1, 1, 0], atol=1e-12)


def test_tied_percentiles_make_a_step_with_both_limits() -> None:
    # 30% of the mass sits exactly at 5: percentiles 40..70 are all 5.
    percentiles = np.concatenate((np.linspace(0, 4, 40), np.full(31, 5.0), np.linspace(6, 10, 30)))

    at, before = (
        reference_cdf(percentiles, np.array([5.0])),
        reference_cdf(percentiles, np.array([5.0]), right=False),
    )

    assert at[0] == pytest.approx(0.70)
    assert before[0] == pytest.approx(0.40)


def test_ks_distance_equals_scipys_one_sample_statistic() -> None:
    sample = np.random.default_rng(1).random(500)

    distance, _ = ks_test(sample, UNIFORM, 10**12)

    expected = scipy_stats.kstest(sample, "uniform")
    assert distance == pytest.approx(expected.statistic, abs=1e-12)


@pytest.mark.parametrize("n", [50, 200, 1000, 5000])
@pytest.mark.parametrize("level", [0.3, 0.05, 0.01, 1e-3, 1e-4])
def test_ks_p_value_is_within_3_percent_of_scipys_exact_distribution(n: int, level: float) -> None:
    distance = float(scipy_stats.kstwo.isf(level, n))

    assert ks_p_value(distance, n) == pytest.approx(level, rel=0.03)


def test_ks_p_value_counts_the_reference_as_a_second_sample() -> None:
    sample = np.random.default_rng(2).random(1000) * 0.97

    _, huge_reference = ks_test(sample, UNIFORM, 10**9)
    _, small_reference = ks_test(sample, UNIFORM, 1000)

    # n_eff = 500 instead of 1000: the same distance is weaker evidence.
    assert small_reference > huge_reference
    distance, _ = ks_test(sample, UNIFORM, 1000)
    assert small_reference == pytest.approx(ks_p_value(distance, 500.0))


def test_ties_allow_one_percentile_step() -> None:
    sample = np.random.default_rng(3).random(1000)

    distance, loose = ks_test(sample, UNIFORM, 5000, ties=True)
    _, strict = ks_test(sample, UNIFORM, 5000)

    assert loose > strict
    assert loose == pytest.approx(ks_p_value(max(distance - 0.01, 0.0), 1000 * 5000 / 6000))


def test_bins_hold_equal_reference_mass() -> None:
    sample = np.array([0.05, 0.1, 0.15, 0.55, 0.95, 2.0, -1.0])

    reference, live = equal_mass_counts(sample, UNIFORM, 1000, 10)

    np.testing.assert_allclose(reference, np.full(10, 100.0))
    # Right-closed bins: 0.1 belongs to the first; outliers to the end bins.
    np.testing.assert_array_equal(live, [3, 1, 0, 0, 0, 1, 0, 0, 0, 2])


def test_a_point_mass_collapses_bins_and_keeps_its_share() -> None:
    percentiles = np.concatenate((np.zeros(61), np.linspace(0.1, 4, 40)))  # 60% zeros

    reference, live = equal_mass_counts(np.array([0.0, 0.0, 3.5]), percentiles, 100, 10)

    assert reference.size == 5  # edges 0 (q10..q60), q70, q80, q90
    assert reference[0] == pytest.approx(60.0)
    assert reference.sum() == pytest.approx(100.0)
    assert live.tolist() == [2, 0, 0, 0, 1]


def test_merge_pools_sparse_buckets_last() -> None:
    # Expected live counts 1000 · (r + l) / 11000: 500, 300, 190, 5, 3, 2.
    reference = _array([5000, 3000, 1900, 50, 30, 20])
    live = _array([500, 300, 190, 5, 3, 2])

    merged_reference, merged_live = merge_sparse(reference, live, min_expected=5.0)

    assert merged_reference.tolist() == [5000, 3000, 1900, 50, 50]
    assert merged_live.tolist() == [500, 300, 190, 5, 5]


def test_a_pool_still_short_takes_the_next_smallest_bucket() -> None:
    reference = _array([500, 300, 190, 5, 3, 2])
    live = _array([50, 30, 19, 1, 0, 0])

    merged_reference, merged_live = merge_sparse(reference, live, min_expected=5.0)

    # 190 + 19 expects 19 live values; the three small ones 1: not enough alone.
    assert merged_reference.tolist() == [500, 300, 200]
    assert merged_live.tolist() == [50, 30, 20]


def test_merge_caps_the_bucket_count() -> None:
    reference = _array([40, 30, 20, 10])
    live = _array([40, 30, 20, 10])

    merged_reference, _ = merge_sparse(reference, live, min_expected=1.0, max_buckets=3)

    assert merged_reference.tolist() == [40, 30, 30]


@PROPERTY
@given(counts, counts, st.integers(2, 12))
def test_merge_keeps_totals_and_leaves_no_sparse_bucket(
    reference_counts: list[int], live_counts: list[int], cap: int
) -> None:
    size = min(len(reference_counts), len(live_counts))
    reference, live = _array(reference_counts[:size]), _array(live_counts[:size])
    if reference.sum() == 0 or live.sum() == 0:
        return

    merged_reference, merged_live = merge_sparse(reference, live, min_expected=5.0, max_buckets=cap)

    assert merged_reference.sum() == reference.sum()
    assert merged_live.sum() == live.sum()
    assert merged_reference.size <= cap
    expected = live.sum() * (merged_reference + merged_live) / (reference.sum() + live.sum())
    if merged_reference.size > 1:
        assert expected.min() >= 5.0 - 1e-9


@PROPERTY
@given(counts, counts)
def test_chi2_equals_scipys_contingency_test(
    reference_counts: list[int], live_counts: list[int]
) -> None:
    size = min(len(reference_counts), len(live_counts))
    table = np.array([reference_counts[:size], live_counts[:size]], dtype=np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return

    statistic, p_value = chi2_test(table[0], table[1])

    expected = scipy_stats.chi2_contingency(table, correction=False)
    assert statistic == pytest.approx(expected.statistic, rel=1e-9, abs=1e-9)
    assert p_value == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-12)


def test_chi2_with_one_occupied_bucket_has_nothing_to_test() -> None:
    assert chi2_test(_array([10, 0]), _array([5, 0])) == (0.0, 1.0)


@PROPERTY
@given(counts, counts)
def test_psi_is_non_negative_and_zero_for_equal_shares(
    reference_counts: list[int], live_counts: list[int]
) -> None:
    size = min(len(reference_counts), len(live_counts))
    reference, live = _array(reference_counts[:size]), _array(live_counts[:size])
    if reference.sum() == 0 or live.sum() == 0:
        return

    assert psi(reference, live) >= 0.0
    assert psi(reference, 3 * reference) == pytest.approx(0.0, abs=1e-12)


def test_psi_matches_the_textbook_formula() -> None:
    reference, live = _array([25, 25, 25, 25]), _array([10, 20, 30, 40])
    p, q = live / live.sum(), reference / reference.sum()

    assert psi(reference, live) == pytest.approx(float(np.sum((p - q) * np.log(p / q))))


def test_an_empty_bucket_costs_a_bounded_amount() -> None:
    value = psi(_array([50, 50]), _array([100, 0]))

    expected = (1 - 0.5) * np.log(1 / 0.5) + (PSI_EPSILON - 0.5) * np.log(PSI_EPSILON / 0.5)
    assert value == pytest.approx(expected)


@PROPERTY
@given(counts, counts)
def test_js_is_in_unit_interval_and_equals_scipys(
    reference_counts: list[int], live_counts: list[int]
) -> None:
    size = min(len(reference_counts), len(live_counts))
    reference, live = _array(reference_counts[:size]), _array(live_counts[:size])
    if reference.sum() == 0 or live.sum() == 0:
        return

    distance = js_distance(reference, live)

    assert 0.0 <= distance <= 1.0
    assert js_distance(reference, 7 * reference) == pytest.approx(0.0, abs=1e-6)
    assert distance == pytest.approx(float(jensenshannon(reference, live, base=2)), abs=1e-7)


def test_js_of_disjoint_distributions_is_one() -> None:
    assert js_distance(_array([10, 0]), _array([0, 3])) == pytest.approx(1.0)


@PROPERTY
@given(st.integers(1, 400), st.integers(1, 400), st.data())
def test_fisher_equals_scipys_exact_test(size_a: int, size_b: int, data: st.DataObject) -> None:
    hits_a = data.draw(st.integers(0, size_a))
    hits_b = data.draw(st.integers(0, size_b))

    p_value = fisher_test(hits_a, size_a, hits_b, size_b)

    expected = scipy_stats.fisher_exact([[hits_a, size_a - hits_a], [hits_b, size_b - hits_b]])
    assert p_value == pytest.approx(expected.pvalue, rel=1e-7, abs=1e-12)


def test_fisher_with_no_hits_or_all_hits_has_nothing_to_test() -> None:
    assert fisher_test(0, 100, 0, 1000) == 1.0
    assert fisher_test(100, 100, 1000, 1000) == 1.0


def test_fisher_flags_nulls_where_the_reference_had_none() -> None:
    assert fisher_test(2, 1000, 0, 10_000) > 0.001  # two stray nulls: not evidence
    assert fisher_test(200, 1000, 0, 10_000) < 1e-100
