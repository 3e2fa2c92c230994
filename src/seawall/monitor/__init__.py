"""Monitors: drift and training/serving skew statistics over sampled live rows.

`WindowedReservoir` keeps a bounded uniform sample of the rows served in each time window;
`drift_report` tests a closed window's rows against the training snapshot's profile (per feature
and per model output: Kolmogorov-Smirnov, chi-squared, PSI, Jensen-Shannon, null rate, new
categories; Bonferroni-corrected) and says whether the version is drifting; `skew.skew` compares the
values training and serving saw for the same entities. Pure computation: no gateway, config or
storage. Imported on first use (PEP 562), so the request path's reservoir does not load scipy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seawall.monitor.drift import column_kind, evaluate_column
    from seawall.monitor.options import DriftOptions, DriftThresholds
    from seawall.monitor.report import DriftReport, Verdict, drift_report
    from seawall.monitor.reservoir import Reservoir, WindowedReservoir, WindowSample
    from seawall.monitor.result import DriftResult, Stat
    from seawall.monitor.skew import SkewOptions, SkewResult

__all__ = [
    "DriftOptions",
    "DriftReport",
    "DriftResult",
    "DriftThresholds",
    "Reservoir",
    "SkewOptions",
    "SkewResult",
    "Stat",
    "Verdict",
    "WindowSample",
    "WindowedReservoir",
    "column_kind",
    "drift_report",
    "evaluate_column",
]

_LAZY = {
    "column_kind": "drift",
    "evaluate_column": "drift",
    "DriftOptions": "options",
    "DriftThresholds": "options",
    "DriftReport": "report",
    "Verdict": "report",
    "drift_report": "report",
    "Reservoir": "reservoir",
    "WindowSample": "reservoir",
    "WindowedReservoir": "reservoir",
    "DriftResult": "result",
    "Stat": "result",
    "SkewOptions": "skew",
    "SkewResult": "skew",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
