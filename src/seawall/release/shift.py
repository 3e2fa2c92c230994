"""`prediction_shift`: how far a canary's predictions are from the stable version's, live.

Both versions' recent predictions come from the router (the first output's values, a few per
call, over the analysis window). Their distance is the Jensen-Shannon distance (base 2, in
[0, 1]): over the categories seen when the predictions are labels (integers, booleans, text),
else over equal-mass bins of the stable version's values (deciles). Same-distribution samples
of a few hundred calls give about 0.05-0.1; a guardrail such as `max: 0.2` leaves room for that.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from seawall.clock import Clock
from seawall.release.errors import MetricUnavailableError
from seawall.release.plan import MetricRef

__all__ = ["DEFAULT_BINS", "PredictionShift", "distribution_shift"]

#: Equal-mass bins of numeric predictions.
DEFAULT_BINS = 10


def distribution_shift(
    reference: Sequence[Any], live: Sequence[Any], bins: int = DEFAULT_BINS
) -> float:
    """Jensen-Shannon distance (base 2) between two samples of predictions."""
    from scipy.spatial.distance import jensenshannon

    if not reference or not live:
        raise ValueError("both samples need values")
    if all(isinstance(v, float) for v in (*reference[:50], *live[:50])):
        ref = np.asarray(reference, dtype=np.float64)
        edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1))[1:-1])
        p = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1)
        q = np.bincount(
            np.searchsorted(edges, np.asarray(live, dtype=np.float64), side="right"),
            minlength=len(edges) + 1,
        )
    else:
        left, right = Counter(map(str, reference)), Counter(map(str, live))
        keys = sorted(set(left) | set(right))
        p = np.array([left[k] for k in keys], dtype=np.float64)
        q = np.array([right[k] for k in keys], dtype=np.float64)
    return float(jensenshannon(p, q, base=2))


class _Stats(Protocol):
    def predictions(self, now: float, window_s: float) -> list[Any]: ...


class _Split(Protocol):
    @property
    def stable(self) -> str: ...


class _Router(Protocol):
    @property
    def split(self) -> _Split: ...

    def stats(self, version: str) -> _Stats: ...


class PredictionShift:
    """The `prediction_shift` metric of a version against the router's stable version."""

    def __init__(self, router: _Router, *, clock: Clock, min_samples: int) -> None:
        self._router = router
        self._clock = clock
        self._min_samples = min_samples

    async def value(self, metric: MetricRef, variant_version: str, window_s: float) -> float:
        now = self._clock.monotonic()
        stable = self._router.split.stable
        samples = {}
        for role, version in (("stable", stable), ("canary", variant_version)):
            try:
                values = self._router.stats(version).predictions(now, window_s)
            except KeyError:
                raise MetricUnavailableError(
                    f"{metric.name}: version {version!r} is not routed by the gateway"
                ) from None
            if len(values) < self._min_samples:
                raise MetricUnavailableError(
                    f"{metric.name}: {len(values)} prediction(s) of the {role} version "
                    f"{version!r} in the last {window_s:g} s, fewer than {self._min_samples}"
                )
            samples[role] = values
        return distribution_shift(samples["stable"], samples["canary"])
