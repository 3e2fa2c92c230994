"""The error -> HTTP status table and the `Retry-After` value."""

from __future__ import annotations

import pytest

from seawall import errors
from seawall.assemble.control import RolloutsUnavailableError
from seawall.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    BadResponseError,
    CircuitOpenError,
    ConfigError,
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    ModelExecutionError,
    ModelNotReadyError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    RateLimitedError,
    RejectedError,
    SeawallError,
    UnauthorizedError,
)
from seawall.gateway.status import error_status, retry_after_header
from seawall.store.errors import StoreUnavailableError

#: Every class of the error tree, an instance of it and the status it must map to.
TABLE: list[tuple[SeawallError, int]] = [
    (SeawallError("x"), 500),
    (ConfigError("models: bad"), 500),
    (RejectedError("x"), 400),
    (InvalidInputError("inputs", "missing"), 400),
    (PayloadTooLargeError(10), 413),
    (NotFoundError("model 'm' not found"), 404),
    (ConflictError("stage: not allowed"), 409),
    (ModelNotReadyError("loading"), 503),
    (UnauthorizedError("no key"), 401),
    (ForbiddenError("no role"), 403),
    (RateLimitedError("slow down", retry_after_s=1.0), 429),
    (OverloadedError("queue full"), 503),
    (CircuitOpenError("open"), 503),
    (BackendError("x"), 502),
    (BackendTimeoutError("late"), 504),
    (BackendUnavailableError("down"), 503),
    (BadResponseError("garbage"), 502),
    (ModelExecutionError("raised"), 500),
]


@pytest.mark.parametrize(("error", "status"), TABLE, ids=lambda v: type(v).__name__)
def test_each_error_class_has_its_status(error: SeawallError, status: int) -> None:
    assert error_status(error) == status


def test_the_table_covers_every_class_of_the_error_tree() -> None:
    tree = {getattr(errors, name) for name in errors.__all__}
    assert {type(error) for error, _ in TABLE} == tree


@pytest.mark.parametrize(
    ("base", "status"),
    [(BackendTimeoutError, 504), (OverloadedError, 503), (RejectedError, 400), (SeawallError, 500)],
)
def test_a_subclass_takes_the_status_of_its_nearest_listed_ancestor(
    base: type[SeawallError], status: int
) -> None:
    subclass = type("CustomError", (base,), {})
    assert error_status(subclass("x")) == status


@pytest.mark.parametrize(
    ("delay_s", "header"),
    [(0.0, "1"), (0.001, "1"), (0.5, "1"), (1.0, "1"), (1.01, "2"), (2.5, "3"), (30.0, "30")],
)
def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one(
    delay_s: float, header: str
) -> None:
    assert retry_after_header(OverloadedError("full", retry_after_s=delay_s)) == header
    assert retry_after_header(BackendUnavailableError("down", retry_after_s=delay_s)) == header


@pytest.mark.parametrize(
    "error",
    [SeawallError("x"), OverloadedError("full"), InvalidInputError("a", "b"), BackendError("x")],
    ids=lambda e: type(e).__name__,
)
def test_no_retry_after_without_a_delay(error: SeawallError) -> None:
    assert retry_after_header(error) is None


def test_an_unavailable_store_is_503_with_retry_after() -> None:
    error = StoreUnavailableError("database sqlite:///x.db: locked")
    assert error_status(error) == 503
    assert retry_after_header(error) == "1"


def test_a_gateway_without_a_rollout_controller_is_503_without_retry_after() -> None:
    error = RolloutsUnavailableError("this gateway runs no rollout controller")
    assert (error_status(error), retry_after_header(error)) == (503, None)
