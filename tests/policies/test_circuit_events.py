"""The breaker's vocabulary: states, modes and reasons are stable labels; events are immutable."""

from __future__ import annotations

import dataclasses
import json

import pytest

from seawall.policies import circuit
from seawall.policies.circuit_events import (
    CircuitClosed,
    CircuitForced,
    CircuitHalfOpened,
    CircuitMode,
    CircuitOpened,
    CircuitRejected,
    CircuitSnapshot,
    CircuitState,
    TripReason,
)


def test_values_are_the_metric_and_api_labels() -> None:
    assert [s.value for s in CircuitState] == ["closed", "open", "half_open"]
    assert [m.value for m in CircuitMode] == ["automatic", "forced_open", "forced_closed"]
    assert [r.value for r in TripReason] == [
        "failure_rate",
        "slow_call_rate",
        "consecutive_failures",
        "probe_failure_rate",
        "probe_slow_call_rate",
    ]


def test_events_are_frozen_and_name_their_target() -> None:
    events = [
        CircuitOpened("iris:1", 0.5, 0.0, 20, 30.0, TripReason.FAILURE_RATE),
        CircuitHalfOpened("iris:1", 1),
        CircuitClosed("iris:1", 1, 0.0, 0.0),
        CircuitRejected("iris:1", CircuitState.OPEN, CircuitMode.AUTOMATIC, 12.5),
        CircuitForced("iris:1", CircuitMode.FORCED_OPEN),
    ]
    for event in events:
        assert event.target == "iris:1"
        with pytest.raises(dataclasses.FrozenInstanceError):
            event.target = "other"  # type: ignore[misc]


def test_a_snapshot_serialises_to_json_for_the_admin_api() -> None:
    snapshot = CircuitSnapshot(
        CircuitState.OPEN, CircuitMode.AUTOMATIC, 20, 12, 0, 0.6, 0.0, 0, 0, 30.0, 1030.0, 25.0
    )
    body = json.loads(json.dumps(dataclasses.asdict(snapshot)))
    assert body["state"] == "open"
    assert body["mode"] == "automatic"
    assert (body["calls"], body["failures"], body["failure_rate"]) == (20, 12, 0.6)
    assert (body["open_until"], body["retry_after_s"]) == (1030.0, 25.0)


def test_the_policy_module_re_exports_them() -> None:
    assert circuit.CircuitOpened is CircuitOpened
    assert circuit.CircuitSnapshot is CircuitSnapshot
    assert {"CircuitOpened", "CircuitState", "TripReason"} <= set(circuit.__all__)
