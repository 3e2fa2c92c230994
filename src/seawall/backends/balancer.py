"""Load balancers for a pool of endpoints: which endpoint takes the next call.

A balancer is any object with `pick(candidates, outstanding, weights) -> index`. `candidates`
holds the indices (into the pool, ascending, never empty) of the endpoints that may take the call
now; `outstanding` and `weights` are indexed by pool position. Balancers keep their own rotation
state and are not shared between pools.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Protocol

__all__ = ["Balancer", "LeastOutstanding", "RoundRobin", "WeightedRoundRobin"]


class Balancer(Protocol):
    """Chooses the endpoint for the next call among `candidates`."""

    def pick(
        self, candidates: Sequence[int], outstanding: Sequence[int], weights: Sequence[int]
    ) -> int: ...


class RoundRobin:
    """Each candidate in turn, in pool order; an endpoint that leaves and returns keeps its turn."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def pick(
        self, candidates: Sequence[int], outstanding: Sequence[int], weights: Sequence[int]
    ) -> int:
        # The first candidate at or after the cursor, wrapping: a changed candidate set does
        # not restart the rotation from the first endpoint.
        position = bisect_left(candidates, self._next)
        chosen = candidates[position] if position < len(candidates) else candidates[0]
        self._next = chosen + 1
        return chosen

    def __repr__(self) -> str:
        return "RoundRobin()"


class LeastOutstanding:
    """The candidate with the fewest calls in flight; ties taken in round-robin order."""

    __slots__ = ("_ties",)

    def __init__(self) -> None:
        self._ties = RoundRobin()

    def pick(
        self, candidates: Sequence[int], outstanding: Sequence[int], weights: Sequence[int]
    ) -> int:
        fewest = min(outstanding[i] for i in candidates)
        idle = [i for i in candidates if outstanding[i] == fewest]
        return idle[0] if len(idle) == 1 else self._ties.pick(idle, outstanding, weights)

    def __repr__(self) -> str:
        return "LeastOutstanding()"


class WeightedRoundRobin:
    """nginx's smooth weighted round-robin: over any run of `sum(weights)` calls with the same
    candidates, each gets exactly its weight, spread out rather than in bursts.

    Every pick adds each candidate's weight to its running score, takes the highest score (the
    first on a tie) and subtracts the candidates' total weight from it.
    """

    __slots__ = ("_scores",)

    def __init__(self) -> None:
        self._scores: list[int] = []

    def pick(
        self, candidates: Sequence[int], outstanding: Sequence[int], weights: Sequence[int]
    ) -> int:
        if len(self._scores) != len(weights):
            self._scores = [0] * len(weights)
        scores = self._scores
        total = 0
        best = candidates[0]
        for i in candidates:
            scores[i] += weights[i]
            total += weights[i]
            if scores[i] > scores[best]:
                best = i
        scores[best] -= total
        return best

    def __repr__(self) -> str:
        return "WeightedRoundRobin()"
