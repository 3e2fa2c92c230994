"""The one table that maps seawall's errors to HTTP status codes and headers."""

from __future__ import annotations

import math

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
from seawall.store.errors import StoreError, StoreUnavailableError

__all__ = ["error_status", "retry_after_header"]

_STATUS: dict[type[SeawallError], int] = {
    InvalidInputError: 400,
    UnauthorizedError: 401,
    ForbiddenError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    PayloadTooLargeError: 413,
    RateLimitedError: 429,
    ModelNotReadyError: 503,
    OverloadedError: 503,
    CircuitOpenError: 503,
    RejectedError: 400,
    ModelExecutionError: 500,
    BadResponseError: 502,
    BackendUnavailableError: 503,
    BackendTimeoutError: 504,
    BackendError: 502,
    ConfigError: 500,
    StoreUnavailableError: 503,
    RolloutsUnavailableError: 503,
    StoreError: 500,
    SeawallError: 500,
}


def error_status(exc: SeawallError) -> int:
    """HTTP status for `exc`: the entry of its nearest class in the table."""
    for cls in type(exc).__mro__:
        status = _STATUS.get(cls)
        if status is not None:
            return status
    return 500  # pragma: no cover - SeawallError is always in the MRO


def retry_after_header(exc: SeawallError) -> str | None:
    """`Retry-After` value (whole seconds, at least 1) if the error carries a retry delay."""
    delay = getattr(exc, "retry_after_s", None)
    if delay is None:
        return None
    return str(max(1, math.ceil(delay)))
