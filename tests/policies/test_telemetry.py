"""`PolicyTelemetry`: events become counters by target and kind; state changes are logged."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from seawall.errors import BackendUnavailableError
from seawall.policies.batching import BatchExecuted
from seawall.policies.telemetry import PolicyTelemetry


@dataclass(frozen=True)
class RetryAttempted:
    target: str
    attempt: int


@dataclass(frozen=True)
class CircuitOpened:
    target: str
    failure_rate: float
    error: BaseException
    name: str = "clash"  # a LogRecord attribute name: must not break logging


def count(registry: CollectorRegistry, target: str, event: str) -> float:
    value = registry.get_sample_value(
        "seawall_policy_events_total", {"target": target, "event": event}
    )
    return value or 0.0


def test_events_are_counted_by_target_and_kind() -> None:
    registry = CollectorRegistry()
    telemetry = PolicyTelemetry(registry)
    for attempt in range(3):
        telemetry(RetryAttempted("iris:1", attempt))
    telemetry(RetryAttempted("other:2", 1))
    assert count(registry, "iris:1", "RetryAttempted") == 3
    assert count(registry, "other:2", "RetryAttempted") == 1


def test_routine_events_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    telemetry = PolicyTelemetry(CollectorRegistry())
    with caplog.at_level(logging.INFO, logger="seawall.policies"):
        telemetry(RetryAttempted("iris:1", 1))
    assert caplog.records == []


def test_state_changes_are_logged_with_their_fields(caplog: pytest.LogCaptureFixture) -> None:
    telemetry = PolicyTelemetry(CollectorRegistry())
    with caplog.at_level(logging.INFO, logger="seawall.policies"):
        telemetry(CircuitOpened("iris:1", 0.75, BackendUnavailableError("refused")))
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "CircuitOpened"
    assert record.failure_rate == 0.75  # type: ignore[attr-defined]
    assert record.error == "BackendUnavailableError: refused"  # type: ignore[attr-defined]
    assert record.event_name == "clash"  # type: ignore[attr-defined]


def test_non_dataclass_events_are_counted_without_target() -> None:
    registry = CollectorRegistry()
    PolicyTelemetry(registry)(object())
    assert count(registry, "", "object") == 1


def test_batch_sizes_fill_histograms_by_target() -> None:
    registry = CollectorRegistry()
    telemetry = PolicyTelemetry(registry)
    for requests, rows in ((1, 4), (5, 5), (12, 40)):
        telemetry(BatchExecuted("iris:1", requests, rows, wait_s=0.001, duration_s=0.01))

    def bucket(name: str, le: str) -> float | None:
        return registry.get_sample_value(f"{name}_bucket", {"target": "iris:1", "le": le})

    assert [bucket("seawall_batch_requests", le) for le in ("1.0", "4.0", "8.0", "16.0")] == [
        1,
        1,
        2,
        3,
    ]
    assert registry.get_sample_value("seawall_batch_rows_sum", {"target": "iris:1"}) == 49
    assert count(registry, "iris:1", "BatchExecuted") == 3
