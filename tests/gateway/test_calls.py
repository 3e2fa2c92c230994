"""`CallHeaders`: deadline, priority and credentials from request headers; bad values are 400s."""

from __future__ import annotations

import pytest

from seawall.clock import FakeClock
from seawall.config import ServerSettings
from seawall.context import CallContext, Priority
from seawall.errors import InvalidInputError
from seawall.gateway.calls import PRIORITY_HEADER, TIMEOUT_HEADER, CallHeaders


def apply(headers: dict[str, str], **settings: object) -> tuple[CallContext, FakeClock]:
    clock = FakeClock()
    ctx = CallContext.new()
    CallHeaders(ServerSettings.model_validate(settings), clock).apply(ctx, headers)
    return ctx, clock


def test_without_headers_the_default_deadline_applies() -> None:
    ctx, clock = apply({}, default_timeout_ms=2500)
    assert ctx.deadline == pytest.approx(clock.monotonic() + 2.5)
    assert ctx.priority is Priority.NORMAL
    assert ctx.credentials is None


def test_no_default_means_no_deadline() -> None:
    ctx, _ = apply({}, default_timeout_ms=None)
    assert ctx.deadline is None


def test_the_client_timeout_sets_the_deadline() -> None:
    ctx, clock = apply({TIMEOUT_HEADER: "200"})
    assert ctx.deadline == pytest.approx(clock.monotonic() + 0.2)


def test_the_client_timeout_is_capped() -> None:
    ctx, clock = apply({TIMEOUT_HEADER: "999999999"}, max_timeout_ms=5000)
    assert ctx.deadline == pytest.approx(clock.monotonic() + 5.0)


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "abc", "", "²"])
def test_a_bad_timeout_is_a_400_naming_the_header(value: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        apply({TIMEOUT_HEADER: value})
    assert info.value.field == TIMEOUT_HEADER
    assert "milliseconds" in info.value.reason


@pytest.mark.parametrize(
    ("value", "priority"),
    [("critical", Priority.CRITICAL), ("Normal", Priority.NORMAL), (" batch ", Priority.BATCH)],
)
def test_priority_classes(value: str, priority: Priority) -> None:
    ctx, _ = apply({PRIORITY_HEADER: value})
    assert ctx.priority is priority


def test_an_unknown_priority_is_a_400() -> None:
    with pytest.raises(InvalidInputError) as info:
        apply({PRIORITY_HEADER: "urgent"})
    assert info.value.field == PRIORITY_HEADER
    assert "critical, normal or batch" in info.value.reason


@pytest.mark.parametrize(
    ("headers", "credentials"),
    [
        ({"authorization": "Bearer sk-1"}, "sk-1"),
        ({"authorization": "bearer  sk-2 "}, "sk-2"),
        ({"x-api-key": "sk-3"}, "sk-3"),
        ({"authorization": "Basic dXNlcjpwYXNz", "x-api-key": "sk-4"}, "sk-4"),
        ({"authorization": "Bearer "}, None),
        ({"x-api-key": "  "}, None),
    ],
)
def test_credentials(headers: dict[str, str], credentials: str | None) -> None:
    ctx, _ = apply(headers)
    assert ctx.credentials == credentials
