"""The one error tree of seawall.

```
SeawallError                      anything seawall raises on purpose
├── ConfigError                   the configuration is invalid (path and reason)
├── RejectedError                 refused before a backend was called
│   ├── InvalidInputError         the request is malformed or does not fit the model (field, reason)
│   ├── PayloadTooLargeError      the body is over the configured limit
│   ├── NotFoundError             no such model or version
│   ├── ConflictError             clashes with the current state (a name in use, a stage rule)
│   ├── ModelNotReadyError        the model exists but is not loaded (reason)
│   ├── UnauthorizedError         no or unknown credentials
│   ├── ForbiddenError            credentials lack the role or scope
│   ├── RateLimitedError          a quota or rate limit was hit (retry_after_s)
│   ├── OverloadedError           load shedding, a full queue or bulkhead (retry_after_s)
│   └── CircuitOpenError          the breaker is open (retry_after_s)
└── BackendError                  the backend was called and failed
    ├── BackendTimeoutError       no answer within the deadline or timeout
    ├── BackendUnavailableError   could not be reached, or said it is unavailable
    ├── BadResponseError          answered with something that is not a valid response
    └── ModelExecutionError       in-process model code raised
```

Foreign exceptions are translated into this tree once, at the boundary where they enter
(`raise BackendUnavailableError(...) from exc`). The table mapping these classes to HTTP
status codes lives in `seawall.gateway`.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "BadResponseError",
    "CircuitOpenError",
    "ConfigError",
    "ConflictError",
    "ForbiddenError",
    "InvalidInputError",
    "ModelExecutionError",
    "ModelNotReadyError",
    "NotFoundError",
    "OverloadedError",
    "PayloadTooLargeError",
    "RateLimitedError",
    "RejectedError",
    "SeawallError",
    "UnauthorizedError",
]


class SeawallError(Exception):
    """Base class of every error seawall raises on purpose."""

    #: Stable machine-readable name, used in metrics labels and error bodies.
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(SeawallError):
    """The configuration is invalid; the message names each bad field and why."""

    code = "config_error"

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class RejectedError(SeawallError):
    """Refused before a backend was called; `retry_after_s` is set when retrying later helps."""

    code = "rejected"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class InvalidInputError(RejectedError):
    """The request is malformed or does not fit the model; `field` locates the problem."""

    code = "invalid_input"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class PayloadTooLargeError(RejectedError):
    """The request body is over the configured limit."""

    code = "payload_too_large"

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"body: larger than the limit of {limit_bytes} bytes")
        self.limit_bytes = limit_bytes


class NotFoundError(RejectedError):
    """No such model or version."""

    code = "not_found"


class ConflictError(RejectedError):
    """The request clashes with the current state: a name in use, a stage transition that is
    not allowed, a promotion without its approvals. Retrying the same request will not help."""

    code = "conflict"


class ModelNotReadyError(RejectedError):
    """The model exists but cannot serve (loading, failed to load, or unloading)."""

    code = "model_not_ready"


class UnauthorizedError(RejectedError):
    """No credentials, or credentials that match no known principal."""

    code = "unauthorized"


class ForbiddenError(RejectedError):
    """The principal is known but lacks the role or scope."""

    code = "forbidden"


class RateLimitedError(RejectedError):
    """A rate limit or quota was exhausted."""

    code = "rate_limited"


class OverloadedError(RejectedError):
    """Shed to protect the service: full queue, bulkhead or admission control."""

    code = "overloaded"


class CircuitOpenError(RejectedError):
    """The circuit breaker is open and short-circuits calls."""

    code = "circuit_open"


class BackendError(SeawallError):
    """The backend was called and failed; `retryable` says whether another attempt may help."""

    code = "backend_error"
    retryable = True

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BackendTimeoutError(BackendError):
    """No answer within the timeout or the request's deadline."""

    code = "timeout"


class BackendUnavailableError(BackendError):
    """Could not be reached, refused the connection, or said it is unavailable."""

    code = "unavailable"


class BadResponseError(BackendError):
    """Answered with something that is not a valid response."""

    code = "bad_response"


class ModelExecutionError(BackendError):
    """Model code running in process raised; retrying the same input will not help."""

    code = "model_error"
    retryable = False
