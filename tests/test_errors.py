"""The error tree: the docstring's drawing is the class hierarchy, codes are unique."""

from __future__ import annotations

import inspect
import re

import pytest

import seawall.errors as errors_module
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


def _tree_from_docstring() -> dict[str, str | None]:
    """Each class drawn in the module docstring, mapped to the class drawn as its parent."""
    doc = errors_module.__doc__ or ""
    block = re.search(r"```\n(.*?)```", doc, re.DOTALL)
    assert block is not None, "the error tree drawing is missing from seawall.errors"
    parents: dict[str, str | None] = {}
    stack: list[str] = []
    for line in block.group(1).splitlines():
        match = re.search(r"[A-Z]\w*Error\b", line)
        if match is None:
            continue
        depth, remainder = divmod(match.start(), 4)
        assert remainder == 0, f"misaligned line in the drawing: {line!r}"
        assert depth <= len(stack), f"a level is skipped at {line!r}"
        del stack[depth:]
        parents[match.group()] = stack[-1] if stack else None
        stack.append(match.group())
    return parents


def _tree_from_classes() -> dict[str, str | None]:
    """Every SeawallError class defined in seawall.errors, mapped to its base class."""
    parents: dict[str, str | None] = {}
    for name, cls in inspect.getmembers(errors_module, inspect.isclass):
        if cls.__module__ != errors_module.__name__ or not issubclass(cls, SeawallError):
            continue
        (base,) = cls.__bases__
        parents[name] = None if cls is SeawallError else base.__name__
    return parents


def _error_classes() -> list[type[SeawallError]]:
    found: list[type[SeawallError]] = []
    pending: list[type[SeawallError]] = [SeawallError]
    while pending:
        cls = pending.pop()
        if cls.__module__ == errors_module.__name__:
            found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_the_docstring_tree_is_exactly_the_class_hierarchy() -> None:
    drawn, real = _tree_from_docstring(), _tree_from_classes()
    assert len(drawn) == 18
    assert drawn == real


def test_the_docstring_tree_has_the_designed_shape() -> None:
    drawn = _tree_from_docstring()
    assert drawn["SeawallError"] is None
    assert {n for n, p in drawn.items() if p == "SeawallError"} == {
        "ConfigError",
        "RejectedError",
        "BackendError",
    }
    assert drawn["InvalidInputError"] == "RejectedError"
    assert drawn["ModelExecutionError"] == "BackendError"


def test_every_public_name_is_an_error_in_the_tree() -> None:
    assert set(errors_module.__all__) == set(_tree_from_docstring())
    assert {cls.__name__ for cls in _error_classes()} == set(errors_module.__all__)


def test_codes_are_set_on_every_class_and_unique() -> None:
    classes = _error_classes()
    codes = [vars(cls).get("code") for cls in classes]
    assert all(isinstance(code, str) and code for code in codes), codes
    assert len(set(codes)) == len(classes)


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (SeawallError, "error"),
        (ConfigError, "config_error"),
        (RejectedError, "rejected"),
        (InvalidInputError, "invalid_input"),
        (PayloadTooLargeError, "payload_too_large"),
        (NotFoundError, "not_found"),
        (ConflictError, "conflict"),
        (ModelNotReadyError, "model_not_ready"),
        (UnauthorizedError, "unauthorized"),
        (ForbiddenError, "forbidden"),
        (RateLimitedError, "rate_limited"),
        (OverloadedError, "overloaded"),
        (CircuitOpenError, "circuit_open"),
        (BackendError, "backend_error"),
        (BackendTimeoutError, "timeout"),
        (BackendUnavailableError, "unavailable"),
        (BadResponseError, "bad_response"),
        (ModelExecutionError, "model_error"),
    ],
)
def test_stable_codes(cls: type[SeawallError], code: str) -> None:
    # Codes are metric labels and error-body fields: changing one breaks dashboards and clients.
    assert cls.code == code


def test_seawall_error_message_is_its_str() -> None:
    error = SeawallError("something broke")
    assert error.message == "something broke"
    assert str(error) == "something broke"
    assert error.args == ("something broke",)


def test_invalid_input_error_keeps_field_and_reason_and_joins_them() -> None:
    error = InvalidInputError("inputs[0].shape", "expected rank 2")
    assert error.field == "inputs[0].shape"
    assert error.reason == "expected rank 2"
    assert error.message == "inputs[0].shape: expected rank 2"
    assert str(error) == "inputs[0].shape: expected rank 2"
    assert error.retry_after_s is None
    assert isinstance(error, RejectedError)
    assert error.code == "invalid_input"


def test_payload_too_large_names_the_limit() -> None:
    error = PayloadTooLargeError(1024)
    assert error.limit_bytes == 1024
    assert str(error) == "body: larger than the limit of 1024 bytes"
    assert isinstance(error, RejectedError)


@pytest.mark.parametrize(
    "cls",
    [RejectedError, RateLimitedError, OverloadedError, CircuitOpenError, NotFoundError],
)
def test_rejections_carry_retry_after(cls: type[RejectedError]) -> None:
    assert cls("slow down").retry_after_s is None
    error = cls("slow down", retry_after_s=2.5)
    assert error.retry_after_s == 2.5
    assert str(error) == "slow down"


@pytest.mark.parametrize(
    ("cls", "retryable"),
    [
        (BackendError, True),
        (BackendTimeoutError, True),
        (BackendUnavailableError, True),
        (BadResponseError, True),
        (ModelExecutionError, False),
    ],
)
def test_backend_errors_say_whether_a_retry_may_help(
    cls: type[BackendError], retryable: bool
) -> None:
    error = cls("failed", retry_after_s=1.0)
    assert error.retryable is retryable
    assert error.retry_after_s == 1.0
    assert cls("failed").retry_after_s is None


def test_config_error_lists_its_problems() -> None:
    single = ConfigError("server.port: too big")
    assert single.problems == ["server.port: too big"]
    several = ConfigError("2 problems", ["a: bad", "b: worse"])
    assert several.problems == ["a: bad", "b: worse"]
    assert str(several) == "2 problems"


def test_the_branches_do_not_overlap() -> None:
    # A policy catches RejectedError and BackendError separately; no class may be both.
    for cls in _error_classes():
        assert not (issubclass(cls, RejectedError) and issubclass(cls, BackendError)), cls
        assert not (issubclass(cls, ConfigError) and cls is not ConfigError), cls
