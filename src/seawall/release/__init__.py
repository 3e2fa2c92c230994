"""Release safety: rollout plans, guardrail analysis, metric sources and the rollout controller.

A `RolloutPlan` (steps: `SetWeight`, `Pause`, `Analysis` with `Guardrail`s) is walked by a
`RolloutController` on an injected clock; it reads metrics through a `MetricSource`, moves traffic
through a `TrafficTarget`, asks an `ApprovalGate` at approval pauses, and reports every change as
a `Decision`. No gateway, config or storage here: those wire it in. Imported on first use
(PEP 562), so reading a plan does not load aiohttp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seawall.release.analysis import AnalysisRun, GuardrailResult, Verdict, run_analysis
    from seawall.release.controller import (
        ApprovalGate,
        DecisionHook,
        RolloutController,
        TrafficTarget,
    )
    from seawall.release.errors import MetricUnavailableError, RolloutStateError
    from seawall.release.metrics import (
        CallableSource,
        DriftSource,
        MetricRouter,
        MetricSource,
        PushedSource,
        StaticSource,
        drift_score,
    )
    from seawall.release.plan import (
        Analysis,
        Guardrail,
        Inconclusive,
        MetricKind,
        MetricRef,
        Origin,
        Pause,
        RolloutPlan,
        SetWeight,
        Step,
    )
    from seawall.release.prometheus import PrometheusSource
    from seawall.release.state import Decision, DecisionKind, RolloutState, Status

__all__ = [
    "Analysis",
    "AnalysisRun",
    "ApprovalGate",
    "CallableSource",
    "Decision",
    "DecisionHook",
    "DecisionKind",
    "DriftSource",
    "Guardrail",
    "GuardrailResult",
    "Inconclusive",
    "MetricKind",
    "MetricRef",
    "MetricRouter",
    "MetricSource",
    "MetricUnavailableError",
    "Origin",
    "Pause",
    "PrometheusSource",
    "PushedSource",
    "RolloutController",
    "RolloutPlan",
    "RolloutState",
    "RolloutStateError",
    "SetWeight",
    "StaticSource",
    "Status",
    "Step",
    "TrafficTarget",
    "Verdict",
    "drift_score",
    "run_analysis",
]

_LAZY = {
    "AnalysisRun": "analysis",
    "GuardrailResult": "analysis",
    "Verdict": "analysis",
    "run_analysis": "analysis",
    "ApprovalGate": "controller",
    "DecisionHook": "controller",
    "RolloutController": "controller",
    "TrafficTarget": "controller",
    "MetricUnavailableError": "errors",
    "RolloutStateError": "errors",
    "CallableSource": "metrics",
    "DriftSource": "metrics",
    "MetricRouter": "metrics",
    "MetricSource": "metrics",
    "PushedSource": "metrics",
    "StaticSource": "metrics",
    "drift_score": "metrics",
    "Analysis": "plan",
    "Guardrail": "plan",
    "Inconclusive": "plan",
    "MetricKind": "plan",
    "MetricRef": "plan",
    "Origin": "plan",
    "Pause": "plan",
    "RolloutPlan": "plan",
    "SetWeight": "plan",
    "Step": "plan",
    "PrometheusSource": "prometheus",
    "Decision": "state",
    "DecisionKind": "state",
    "RolloutState": "state",
    "Status": "state",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
