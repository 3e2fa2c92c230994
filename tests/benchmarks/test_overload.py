"""benchmarks/overload.py: the issue's targets and the report, from made-up measurements."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from seawall.context import Priority
from seawall.policies.admission import AdmissionOptions, AdmissionPolicy

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str) -> ModuleType:
    """A benchmark module, imported as the scripts import each other (benchmarks/ on the path)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


overload = load("overload")
loadgen = load("loadgen")
testbed = load("testbed")

CAPACITY = testbed.WrkResult(
    requests=5000, duration_s=10, p50_ms=30, p95_ms=40, p99_ms=50, errors=0, non2xx=0
)
CPU = {"gateway": 100.0, "client": 5.0, "machine": 110.0, "others": 5.0}


def phase(target: float, goodput: float, p99_ms: float, **extra: Any) -> Any:
    refused = round((target - goodput) * 15)
    fields: dict[str, Any] = {
        "statuses": {200: round(goodput * 15), 503: refused} if refused else {200: 7500},
        "refused": refused,
        "refused_with_retry_after": refused,
    }
    fields.update(extra)
    return loadgen.PhaseSummary(target, target, goodput, p99_ms / 4, p99_ms / 2, p99_ms, **fields)


def run(half: Any, double: Any) -> Any:
    spec = testbed.ModelSpec(description="a model", backend={}, body=b"")
    own = testbed.WrkResult(4000, 10, 1, 2, 3, 0, 0)
    storm = testbed.WrkResult(50000, 5, 1, 2, 3, 0, 49000)
    return overload.Run(
        spec,
        overload.Closed("capacity (closed loop c=32, no admission)", CAPACITY, CPU),
        overload.Closed("same process, closed loop c=3", own, CPU),
        (overload.Phase("50%", half, CPU), overload.Phase("200%", double, {**CPU, "gateway": 90})),
        overload.Closed("storm", storm, CPU),
    )


def met(checks: list[tuple[str, str, str, bool]]) -> list[bool]:
    return [ok for *_, ok in checks]


def test_all_targets_met() -> None:
    checks = overload.checks(500, phase(250, 250, 10), phase(1000, 460, 29), 400)
    assert met(checks) == [True, True, True]
    assert checks[0][2] == "2.90 (29.0 / 10.0 ms)"
    assert checks[2][2] == ("0.92 (460 / 500 2xx/s; 1.15 of the same process's closed-loop 400)")


def test_each_target_can_fail_on_its_own() -> None:
    half = phase(250, 250, 10)
    assert met(overload.checks(500, half, phase(1000, 460, 31), 500)) == [False, True, True]
    assert met(overload.checks(500, half, phase(1000, 440, 20), 500)) == [True, True, False]
    timeouts = phase(1000, 460, 20, timeouts=1)
    assert met(overload.checks(500, half, timeouts, 500)) == [True, False, True]
    no_retry_after = phase(1000, 460, 20, refused_with_retry_after=0)
    assert met(overload.checks(500, half, no_retry_after, 500)) == [True, False, True]


def test_the_cost_of_a_refusal_is_the_cpu_left_after_the_admitted_calls() -> None:
    # 500 calls/s took 100% at capacity: 2 ms each; at 200%, 400 calls/s (80%) and 600 refusals
    # in 90% of a core: 10% / 600 per second = 0.167 ms each.
    result = run(phase(250, 250, 10), phase(1000, 400, 20))
    assert overload.refusal_cost_ms(result) == pytest.approx(0.1 / 600 * 1000)


def test_the_report_has_a_section_per_model_with_its_checks() -> None:
    args = overload.parse_args(["--duration", "5"])
    runs = {"gb": run(phase(250, 250, 10), phase(1000, 400, 20))}
    text = overload.report(runs, {"max_in_flight": 4}, args, ["benchmarks/overload.py"])
    assert text.startswith("# Overload")
    assert "## `gb`: a model" in text
    assert "- admission: {max_in_flight: 4}" in text
    assert "| capacity (closed loop c=32, no admission) | 500 | 500 | 1.00 |" in text
    assert "| same process, closed loop c=3 | 400 | 400 | 0.80 |" in text
    assert "| 200% (target 1000 rps) | 1000 | 400 | 0.80 |" in text
    assert "| storm | 10000 | 200 | 0.40 |" in text
    assert "| goodput at 200% ÷ capacity | ≥ 0.90 | 0.80 (400 / 500 2xx/s; 1.00 of" in text


@pytest.mark.parametrize("max_in_flight", [1, 2, 3, 4, 10, 128])
def test_the_slots_for_normal_calls_are_those_admission_control_gives(max_in_flight: int) -> None:
    policy = AdmissionPolicy(AdmissionOptions(max_in_flight=max_in_flight))
    assert overload.normal_slots(max_in_flight) == policy.limit(Priority.NORMAL)


def test_unknown_models_are_refused() -> None:
    assert overload.parse_args([]).models == "gb,onnx"
    with pytest.raises(SystemExit):
        overload.parse_args(["--models", "gb,nope"])
