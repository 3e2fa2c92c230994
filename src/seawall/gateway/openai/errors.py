"""seawall's errors as OpenAI error objects, so OpenAI clients raise their usual exceptions.

```
status  type                    code                 seawall error
400     invalid_request_error   null                 InvalidInputError (param: the field path)
401     authentication_error    invalid_api_key      UnauthorizedError
403     permission_error        null                 ForbiddenError
404     invalid_request_error   model_not_found      NotFoundError (param: model)
405     invalid_request_error   method_not_allowed   (a route's wrong method)
413     invalid_request_error   request_too_large    PayloadTooLargeError
429     rate_limit_error        rate_limit_exceeded  RateLimitedError
429     insufficient_quota      insufficient_quota   RateLimitedError with code budget_exceeded
5xx     server_error            seawall's code       BackendError, OverloadedError, CircuitOpen...
```

The status is the gateway's one table (`seawall.gateway.status`); `Retry-After` is sent on 429
and 503 as on every other route. The body is `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from seawall.errors import (
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    SeawallError,
    UnauthorizedError,
)
from seawall.gateway.status import error_status, retry_after_header

__all__ = ["QUOTA_CODES", "OpenAiError", "unknown_model"]

#: `SeawallError.code` values of a spent budget or quota (429 `insufficient_quota`, not a rate).
QUOTA_CODES = frozenset({"budget_exceeded", "insufficient_quota", "quota_exceeded"})
INVALID = "invalid_request_error"


@dataclass(frozen=True, slots=True)
class OpenAiError:
    """An OpenAI error object with its HTTP status and `Retry-After` (whole seconds)."""

    status: int
    message: str
    type: str
    param: str | None = None
    code: str | None = None
    retry_after: str | None = None

    @classmethod
    def of(cls, exc: SeawallError) -> OpenAiError:
        """The OpenAI form of a seawall error."""
        status = error_status(exc)
        retry_after = retry_after_header(exc) or ("1" if status in (429, 503) else None)
        kind, param, code = _classify(exc, status)
        return cls(status, exc.message, kind, param, code, retry_after)

    @classmethod
    def internal(cls, request_id: str) -> OpenAiError:
        """A bug in seawall: 500, naming the request id to find in the logs."""
        return cls(500, f"internal error (request id {request_id})", "server_error", None, "error")

    @classmethod
    def unknown_path(cls, method: str, path: str) -> OpenAiError:
        return cls(404, f"path {path!r} not found (method {method})", INVALID)

    def document(self) -> dict[str, Any]:
        """`{"error": {...}}`: the body of an error response, and of a stream's error event."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def body(self) -> bytes:
        return orjson.dumps(self.document())

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [] if self.retry_after is None else [(b"retry-after", self.retry_after.encode())]


def unknown_model(name: str) -> NotFoundError:
    """The error for a model name that is not one of the model groups."""
    return NotFoundError(f"model {name!r} does not exist (see GET /v1/models)")


def _classify(exc: SeawallError, status: int) -> tuple[str, str | None, str | None]:
    """OpenAI `type`, `param` and `code` of an error."""
    if isinstance(exc, InvalidInputError):
        return INVALID, None if exc.field == "body" else exc.field, None
    if isinstance(exc, UnauthorizedError):
        return "authentication_error", None, "invalid_api_key"
    if isinstance(exc, ForbiddenError):
        return "permission_error", None, None
    if isinstance(exc, NotFoundError):
        return INVALID, "model", "model_not_found"
    if isinstance(exc, PayloadTooLargeError):
        return INVALID, None, "request_too_large"
    if isinstance(exc, RateLimitedError):
        if exc.code in QUOTA_CODES:
            return "insufficient_quota", None, "insufficient_quota"
        return "rate_limit_error", None, "rate_limit_exceeded"
    if status >= 500:
        return "server_error", None, exc.code
    return INVALID, None, exc.code
