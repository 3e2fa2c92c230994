"""What counts as drift: thresholds per feature and statistic, the sample-size floor, the bins."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_BINS",
    "DEFAULT_JS",
    "DEFAULT_MIN_SAMPLES",
    "DEFAULT_NEW_CATEGORY_SHARE",
    "DEFAULT_PSI",
    "MIN_EXPECTED",
    "DriftOptions",
    "DriftThresholds",
]

#: Population stability index above which a feature has drifted (the usual "major shift").
DEFAULT_PSI = 0.2
#: Jensen-Shannon distance (base 2) above which a feature has drifted.
DEFAULT_JS = 0.1
#: Significance level of a whole report, shared among its results (Bonferroni).
DEFAULT_ALPHA = 0.01
#: Estimated share of live values in categories the reference lacks that is drift.
DEFAULT_NEW_CATEGORY_SHARE = 0.05
#: Live values (rows, for null rates) below which a result is insufficient data.
DEFAULT_MIN_SAMPLES = 100
#: Equal-mass bins for numeric PSI and JS, and the most buckets for categorical ones.
DEFAULT_BINS = 10
#: Expected live count under which chi-squared buckets are merged (Cochran's rule).
MIN_EXPECTED = 5.0


@dataclass(frozen=True, slots=True)
class DriftThresholds:
    """What counts as drift for one feature."""

    #: PSI above this (and significant) is drift.
    psi: float = DEFAULT_PSI
    #: JS distance above this, in (0, 1] (and significant), is drift.
    js: float = DEFAULT_JS
    #: Significance level in (0, 1), before a report divides it among its results.
    alpha: float = DEFAULT_ALPHA
    #: Share of live values in new categories, in (0, 1], above which (if significant) is drift.
    new_category_share: float = DEFAULT_NEW_CATEGORY_SHARE

    def __post_init__(self) -> None:
        checks = (
            ("psi", self.psi > 0, "must be positive"),
            ("js", 0 < self.js <= 1, "must be in (0, 1]"),
            ("alpha", 0 < self.alpha < 1, "must be in (0, 1)"),
            ("new_category_share", 0 < self.new_category_share <= 1, "must be in (0, 1]"),
        )
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"{name}: {rule}, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class DriftOptions:
    """Thresholds (per feature where given), sample-size floor and binning of a drift check."""

    #: Thresholds of every feature not in `per_feature`.
    thresholds: DriftThresholds = DriftThresholds()
    #: Thresholds of particular features (or output columns), by name.
    per_feature: Mapping[str, DriftThresholds] = field(default_factory=dict)
    #: Live values below which a result is insufficient data (at least 1).
    min_samples: int = DEFAULT_MIN_SAMPLES
    #: Equal-mass numeric bins (divides 100); also the most buckets of categorical PSI and JS.
    bins: int = DEFAULT_BINS
    #: Columns of the reference not to check.
    exclude: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "per_feature", MappingProxyType(dict(self.per_feature)))
        object.__setattr__(self, "exclude", frozenset(self.exclude))
        if self.min_samples < 1:
            raise ValueError(f"min_samples: must be at least 1, got {self.min_samples}")
        if not 2 <= self.bins <= 100 or 100 % self.bins:
            raise ValueError(f"bins: must divide 100 (2, 4, 5, 10, 20, ...), got {self.bins}")
        for name, limits in self.per_feature.items():
            if not isinstance(limits, DriftThresholds):
                raise ValueError(f"per_feature.{name}: must be DriftThresholds, got {limits!r}")

    def for_feature(self, name: str) -> DriftThresholds:
        """The thresholds of feature `name`."""
        return self.per_feature.get(name, self.thresholds)
