"""Balancers: exact round-robin and smooth weighted shares, least-outstanding with fair ties."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.backends.balancer import Balancer, LeastOutstanding, RoundRobin, WeightedRoundRobin


def picks(
    balancer: Balancer,
    n: int,
    candidates: list[int],
    outstanding: list[int] | None = None,
    weights: list[int] | None = None,
) -> list[int]:
    size = max(candidates) + 1
    out = outstanding or [0] * size
    w = weights or [1] * size
    return [balancer.pick(candidates, out, w) for _ in range(n)]


def test_round_robin_takes_each_candidate_in_turn() -> None:
    assert picks(RoundRobin(), 7, [0, 1, 2]) == [0, 1, 2, 0, 1, 2, 0]
    assert Counter(picks(RoundRobin(), 3000, [0, 1, 2])) == {0: 1000, 1: 1000, 2: 1000}


def test_round_robin_skips_missing_candidates_without_restarting() -> None:
    balancer = RoundRobin()
    assert picks(balancer, 2, [0, 1, 2, 3]) == [0, 1]
    # Endpoint 2 drops out: the rotation continues after 1, not from 0.
    assert picks(balancer, 3, [0, 1, 3]) == [3, 0, 1]
    assert picks(balancer, 2, [0, 1, 2, 3]) == [2, 3]


def test_round_robin_ignores_outstanding_and_weights() -> None:
    assert picks(RoundRobin(), 4, [0, 1], outstanding=[9, 0], weights=[1, 9]) == [0, 1, 0, 1]


def test_least_outstanding_prefers_the_idlest_candidate() -> None:
    balancer = LeastOutstanding()
    assert balancer.pick([0, 1, 2], [3, 1, 2], [1, 1, 1]) == 1
    # An endpoint with fewer calls that is not a candidate (ejected) is not chosen.
    assert balancer.pick([0, 2], [3, 0, 2], [1, 1, 1]) == 2


def test_least_outstanding_breaks_ties_in_round_robin_order() -> None:
    balancer = LeastOutstanding()
    assert picks(balancer, 6, [0, 1, 2], outstanding=[0, 0, 0]) == [0, 1, 2, 0, 1, 2]
    assert picks(balancer, 4, [0, 1, 2], outstanding=[1, 0, 0]) == [1, 2, 1, 2]


def test_weighted_is_nginx_smooth_sequence() -> None:
    # nginx's documented example: weights 5, 1, 1 give a a b a c a a.
    assert picks(WeightedRoundRobin(), 7, [0, 1, 2], weights=[5, 1, 1]) == [0, 0, 1, 0, 2, 0, 0]


def test_weighted_shares_are_exact_over_whole_rounds() -> None:
    counts = Counter(picks(WeightedRoundRobin(), 6000, [0, 1, 2], weights=[3, 2, 1]))
    assert counts == {0: 3000, 1: 2000, 2: 1000}


def test_weighted_only_counts_the_candidates() -> None:
    counts = Counter(picks(WeightedRoundRobin(), 400, [0, 2], weights=[1, 50, 3]))
    assert counts == {0: 100, 2: 300}


@settings(max_examples=100, deadline=None)
@given(
    weights=st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=8),
    rounds=st.integers(min_value=1, max_value=5),
)
def test_weighted_gives_each_endpoint_exactly_its_weight_per_round(
    weights: list[int], rounds: int
) -> None:
    balancer = WeightedRoundRobin()
    candidates = list(range(len(weights)))
    for _ in range(rounds):
        chosen = [
            balancer.pick(candidates, [0] * len(weights), weights) for _ in range(sum(weights))
        ]
        assert Counter(chosen) == dict(enumerate(weights))
