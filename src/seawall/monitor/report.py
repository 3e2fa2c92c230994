"""A drift report: one window's live rows, every feature and model output, against the reference.

Multiple testing: a model with 30 features runs some 150 statistics per window, and at 1% each
would alarm on noise most of the time. The report therefore applies the Bonferroni correction
over all its results with enough data: with m of them, each is judged at its feature's alpha / m,
so the chance that same-distribution data makes the report `drifting` is at most alpha (1% by
default), however many features there are. Bonferroni rather than Holm or Benjamini-Hochberg
because a result's verdict then depends on nothing but its own p-value and m, and it is
conservative where results are correlated (a feature's PSI and JS share one p-value).

CPU-bound (numpy, scipy): run it off the event loop (`asyncio.to_thread`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from seawall.monitor.drift import evaluate_column
from seawall.monitor.options import DriftOptions
from seawall.monitor.result import DriftResult, Stat

__all__ = ["PROFILE_FORMAT", "DriftReport", "Verdict", "drift_report"]

#: The profile layout this module reads (`seawall.data.profile.PROFILE_FORMAT`).
PROFILE_FORMAT = 1


class Verdict(StrEnum):
    """What a report says about its window; the values are metric labels."""

    DRIFTING = "drifting"
    STABLE = "stable"
    INSUFFICIENT_DATA = "insufficient_data"


@dataclass(frozen=True, slots=True)
class DriftReport:
    """Every drift statistic of one model version over one window, and the verdict."""

    model: str
    version: str
    #: Wall-clock seconds (Unix) the window began and ended.
    window_start: float
    window_end: float
    #: Live rows the statistics were computed over.
    rows: int
    results: tuple[DriftResult, ...]
    #: Which of the checked columns are the model's outputs (prediction drift).
    outputs: tuple[str, ...]
    #: Results with enough data: each was judged at its alpha divided by this (Bonferroni).
    tests: int

    @property
    def drifting(self) -> bool:
        """Some statistic of some feature or output drifted."""
        return any(r.drifted for r in self.results)

    @property
    def prediction_drifting(self) -> bool:
        """Some statistic of a model output drifted."""
        return any(r.drifted for r in self.results if r.feature in self.outputs)

    @property
    def score(self) -> float:
        """The largest PSI of any feature or output (0 when none had enough data)."""
        return max(
            (r.value for r in self.results if r.stat is Stat.PSI and r.value is not None),
            default=0.0,
        )

    @property
    def verdict(self) -> Verdict:
        """Drifting, stable, or insufficient data when no result had enough."""
        if self.drifting:
            return Verdict.DRIFTING
        return Verdict.STABLE if self.tests else Verdict.INSUFFICIENT_DATA

    @property
    def drifted_features(self) -> tuple[str, ...]:
        """Features and outputs with at least one drifted statistic, in report order."""
        return tuple(dict.fromkeys(r.feature for r in self.results if r.drifted))

    def feature(self, name: str) -> tuple[DriftResult, ...]:
        """The results of feature (or output) `name`."""
        return tuple(r for r in self.results if r.feature == name)

    def to_json(self) -> dict[str, Any]:
        """The report in plain JSON types (every number finite)."""
        return {
            "model": self.model,
            "version": self.version,
            "window": {"start": self.window_start, "end": self.window_end},
            "rows": self.rows,
            "verdict": str(self.verdict),
            "drifting": self.drifting,
            "prediction_drifting": self.prediction_drifting,
            "score": self.score,
            "tests": self.tests,
            "outputs": list(self.outputs),
            "drifted_features": list(self.drifted_features),
            "results": [r.to_json() for r in self.results],
        }


def drift_report(
    reference: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    *,
    model: str,
    version: str,
    window: tuple[float, float],
    options: DriftOptions | None = None,
    outputs: Mapping[str, Any] | None = None,
) -> DriftReport:
    """The drift of `rows` (feature → value) against profile `reference`, Bonferroni-corrected.

    `outputs` is a profile of the model's outputs on reference data (same layout); the rows then
    carry those columns too. A column missing from a row counts as null there.
    """
    opts = options or DriftOptions()
    columns = dict(_columns(reference, "reference"))
    output_columns = _columns(outputs, "outputs") if outputs is not None else {}
    clash = sorted(set(columns) & set(output_columns))
    if clash:
        raise ValueError(f"outputs: columns {clash} are in the reference profile too")
    columns.update(output_columns)
    start, end = window
    if not (math.isfinite(start) and math.isfinite(end) and start <= end):
        raise ValueError(f"window: must be finite (start, end) with start <= end, got {window}")
    raw = [
        result
        for name, column in columns.items()
        if name not in opts.exclude
        for result in evaluate_column(name, column, [row.get(name) for row in rows], opts)
    ]
    tests = sum(not r.insufficient for r in raw)
    results = tuple(r.at(opts.for_feature(r.feature).alpha / max(tests, 1)) for r in raw)
    names = tuple(n for n in output_columns if n not in opts.exclude)
    return DriftReport(model, version, start, end, len(rows), results, names, tests)


def _columns(profile: Mapping[str, Any], what: str) -> Mapping[str, Mapping[str, Any]]:
    if not isinstance(profile, Mapping) or profile.get("format") != PROFILE_FORMAT:
        found = profile.get("format") if isinstance(profile, Mapping) else type(profile).__name__
        raise ValueError(f"{what}: must be a profile of format {PROFILE_FORMAT}, got {found!r}")
    columns = profile.get("columns")
    if not isinstance(columns, Mapping) or not all(
        isinstance(c, Mapping) for c in columns.values()
    ):
        raise ValueError(f"{what}: columns must map each column name to its profile")
    return columns
