"""seawall's errors as OpenAI error objects: status, type, param, code and Retry-After."""

from __future__ import annotations

import orjson
import pytest

from seawall.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    BadResponseError,
    CircuitOpenError,
    ConfigError,
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
from seawall.gateway.openai.errors import QUOTA_CODES, OpenAiError, unknown_model


class BudgetExceededError(RateLimitedError):
    """What a spend budget raises (its `code` marks a quota, not a rate)."""

    code = "budget_exceeded"


@pytest.mark.parametrize(
    ("error", "status", "kind", "param", "code", "retry_after"),
    [
        (InvalidInputError("messages[0].role", "bad"), 400, "invalid_request_error",
         "messages[0].role", None, None),
        (InvalidInputError("body", "invalid JSON"), 400, "invalid_request_error", None, None, None),
        (RejectedError("no"), 400, "invalid_request_error", None, "rejected", None),
        (UnauthorizedError("no key"), 401, "authentication_error", None, "invalid_api_key", None),
        (ForbiddenError("not yours"), 403, "permission_error", None, None, None),
        (NotFoundError("model 'x'"), 404, "invalid_request_error", "model", "model_not_found",
         None),
        (PayloadTooLargeError(10), 413, "invalid_request_error", None, "request_too_large", None),
        (RateLimitedError("slow down", retry_after_s=2.2), 429, "rate_limit_error", None,
         "rate_limit_exceeded", "3"),
        (RateLimitedError("slow down"), 429, "rate_limit_error", None, "rate_limit_exceeded",
         "1"),
        (BudgetExceededError("spent", retry_after_s=60), 429, "insufficient_quota", None,
         "insufficient_quota", "60"),
        (OverloadedError("full", retry_after_s=0.2), 503, "server_error", None, "overloaded",
         "1"),
        (CircuitOpenError("open", retry_after_s=4), 503, "server_error", None, "circuit_open",
         "4"),
        (ModelNotReadyError("loading"), 503, "server_error", None, "model_not_ready", "1"),
        (BackendUnavailableError("down"), 503, "server_error", None, "unavailable", "1"),
        (BackendTimeoutError("slow"), 504, "server_error", None, "timeout", None),
        (BadResponseError("junk"), 502, "server_error", None, "bad_response", None),
        (BackendError("odd"), 502, "server_error", None, "backend_error", None),
        (ModelExecutionError("raised"), 500, "server_error", None, "model_error", None),
        (ConfigError("bad"), 500, "server_error", None, "config_error", None),
        (SeawallError("?"), 500, "server_error", None, "error", None),
    ],
)  # fmt: skip
def test_each_error_class_maps_to_its_openai_form(
    error: SeawallError,
    status: int,
    kind: str,
    param: str | None,
    code: str | None,
    retry_after: str | None,
) -> None:
    mapped = OpenAiError.of(error)
    assert (mapped.status, mapped.type, mapped.param, mapped.code) == (status, kind, param, code)
    assert mapped.message == error.message
    assert mapped.retry_after == retry_after
    expected = [] if retry_after is None else [(b"retry-after", retry_after.encode())]
    assert mapped.headers() == expected


def test_the_body_is_one_error_object_with_the_four_openai_keys() -> None:
    mapped = OpenAiError.of(InvalidInputError("temperature", "must be between 0 and 2, got 3"))
    assert orjson.loads(mapped.body()) == {
        "error": {
            "message": "temperature: must be between 0 and 2, got 3",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": None,
        }
    }
    assert orjson.loads(mapped.body()) == mapped.document()


@pytest.mark.parametrize("code", sorted(QUOTA_CODES))
def test_every_quota_code_is_insufficient_quota(code: str) -> None:
    error = RateLimitedError("spent")
    error.code = code
    assert OpenAiError.of(error).type == "insufficient_quota"


def test_an_internal_error_names_the_request_id() -> None:
    mapped = OpenAiError.internal("abc123")
    assert (mapped.status, mapped.type) == (500, "server_error")
    assert mapped.message == "internal error (request id abc123)"


def test_an_unknown_path_is_a_404_without_a_model_code() -> None:
    mapped = OpenAiError.unknown_path("GET", "/v1/nope")
    assert (mapped.status, mapped.type, mapped.code, mapped.param) == (
        404,
        "invalid_request_error",
        None,
        None,
    )
    assert mapped.message == "path '/v1/nope' not found (method GET)"


def test_an_unknown_model_points_to_the_model_list() -> None:
    mapped = OpenAiError.of(unknown_model("gpt-9"))
    assert mapped.message == "model 'gpt-9' does not exist (see GET /v1/models)"
    assert (mapped.status, mapped.code, mapped.param) == (404, "model_not_found", "model")
