"""`CallHeaders`: the request headers that shape a call — deadline, priority and credentials.

- `x-seawall-timeout-ms`: end-to-end deadline in ms, capped by `server.max_timeout_ms`
  (without it: `server.default_timeout_ms`);
- `x-seawall-priority`: `critical`, `normal` (default) or `batch`; lower classes are shed first;
- `authorization: Bearer <key>` or `x-api-key`: the API key the auth policy checks.
"""

from __future__ import annotations

from seawall.clock import Clock
from seawall.config import ServerSettings
from seawall.context import CallContext, Priority
from seawall.errors import InvalidInputError

__all__ = ["PRIORITY_HEADER", "TIMEOUT_HEADER", "CallHeaders", "credentials_of"]

TIMEOUT_HEADER = "x-seawall-timeout-ms"
PRIORITY_HEADER = "x-seawall-priority"


class CallHeaders:
    """Reads the call-shaping headers into a `CallContext`; a bad value is a 400 naming it."""

    def __init__(self, settings: ServerSettings, clock: Clock, *, llm: bool = False) -> None:
        self._clock = clock
        default_ms = settings.llm_default_timeout_ms if llm else settings.default_timeout_ms
        self._default_s = None if default_ms is None else default_ms / 1000
        self._max_ms = settings.max_timeout_ms

    def apply(self, ctx: CallContext, headers: dict[str, str]) -> None:
        """Set `ctx`'s deadline, priority and credentials from `headers`."""
        timeout_s = self._timeout_s(headers.get(TIMEOUT_HEADER))
        if timeout_s is not None:
            ctx.deadline = self._clock.monotonic() + timeout_s
        priority = headers.get(PRIORITY_HEADER)
        if priority is not None:
            try:
                ctx.priority = Priority.parse(priority)
            except ValueError as exc:
                raise InvalidInputError(PRIORITY_HEADER, str(exc)) from None
        ctx.credentials = credentials_of(headers)

    def _timeout_s(self, value: str | None) -> float | None:
        if value is None:
            return self._default_s
        text = value.strip()
        if not (text.isascii() and text.isdigit()) or int(text) == 0:
            raise InvalidInputError(
                TIMEOUT_HEADER, f"expected a positive whole number of milliseconds, got {value!r}"
            )
        return min(int(text), self._max_ms) / 1000


def credentials_of(headers: dict[str, str]) -> str | None:
    """The API key in `Authorization: Bearer` or `x-api-key` (lower-cased header names)."""
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = headers.get("x-api-key")
    return key.strip() or None if key is not None else None
