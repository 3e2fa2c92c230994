"""A drift statistic's outcome: the figure, its p-value, the bars it is held to, the verdict."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

__all__ = ["DriftResult", "Stat"]


class Stat(StrEnum):
    """The statistics; the values are metric labels."""

    KS = "ks"
    PSI = "psi"
    JS = "js"
    CHI2 = "chi2"
    NULL_RATE = "null_rate"
    NEW_CATEGORY = "new_category"


@dataclass(frozen=True, slots=True)
class DriftResult:
    """One statistic of one feature, and whether it says the feature drifted.

    `value`: the KS distance, PSI, JS distance or chi-squared statistic; for `null_rate`, the
    live share of nulls minus the reference's; for `new_category`, the estimated share of live
    values in categories the reference lacks. `threshold` is the bar `value` must pass (None
    for pure tests), `alpha` the level `p_value` must be under:
    `drifted = p_value < alpha and (threshold is None or value > threshold)`. `value` and
    `p_value` are None when there were fewer live values than the minimum (`insufficient`).
    """

    feature: str
    stat: Stat
    value: float | None
    p_value: float | None
    threshold: float | None
    alpha: float
    drifted: bool
    sample_size: int

    @property
    def insufficient(self) -> bool:
        """Too few live values to judge."""
        return self.value is None

    def at(self, alpha: float) -> DriftResult:
        """This result judged at significance level `alpha`."""
        drifted = (
            self.value is not None
            and self.p_value is not None
            and self.p_value < alpha
            and (self.threshold is None or self.value > self.threshold)
        )
        return replace(self, alpha=alpha, drifted=drifted)

    def to_json(self) -> dict[str, Any]:
        """The result in plain JSON types."""
        return {
            "feature": self.feature,
            "stat": str(self.stat),
            "value": self.value,
            "p_value": self.p_value,
            "threshold": self.threshold,
            "alpha": self.alpha,
            "drifted": self.drifted,
            "sample_size": self.sample_size,
        }
