"""`CallContext`: what travels with one request through the pipeline, beside the request itself."""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

__all__ = ["CallContext", "Priority", "TraceIds", "new_request_id"]

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_MAX_REQUEST_ID = 128


def new_request_id() -> str:
    """A random 128-bit id in hex (unique, not secret: no system call per request)."""
    return f"{random.getrandbits(128):032x}"  # the module's generator: reseeded after fork


class Priority(IntEnum):
    """How important a call is; under overload, higher values are shed first."""

    CRITICAL = 0
    NORMAL = 1
    BATCH = 2

    @classmethod
    def parse(cls, value: str) -> Priority:
        """`critical`, `normal` or `batch` (any case); `ValueError` for anything else."""
        try:
            return cls[value.strip().upper()]
        except KeyError:
            raise ValueError(f"expected critical, normal or batch, got {value!r}") from None


@dataclass(frozen=True, slots=True)
class TraceIds:
    """W3C trace context: the trace this call belongs to and the caller's span."""

    trace_id: str
    parent_span_id: str | None = None
    sampled: bool = False

    @classmethod
    def from_traceparent(cls, header: str | None) -> TraceIds:
        """Parse a `traceparent` header; an absent or invalid one starts a new trace."""
        if header:
            match = _TRACEPARENT.match(header.strip().lower())
            if match and match.group(1) != "0" * 32 and match.group(2) != "0" * 16:
                return cls(match.group(1), match.group(2), int(match.group(3), 16) & 1 == 1)
        return cls(os.urandom(16).hex())


@dataclass(slots=True)
class CallContext:
    """Per-call state: identity, deadline, trace and what policies learn on the way.

    `deadline` is an absolute time on the pipeline's clock (`Clock.monotonic()`), or None for no
    deadline. Policies read it to size their timeouts, so retries and fallbacks all spend the same
    budget.
    """

    request_id: str
    deadline: float | None = None
    #: Who is calling: set by the auth policy from `credentials` (an API key's name).
    principal: str | None = None
    #: The secret the client presented (API key), if any; never logged.
    credentials: str | None = field(default=None, repr=False)
    priority: Priority = Priority.NORMAL
    trace: TraceIds | None = None
    #: Request headers, lower-cased (for policies that route on a header, such as sticky keys).
    headers: dict[str, str] = field(default_factory=dict)
    #: Headers policies add to the response, success or error (rate-limit state, served-by...).
    response_headers: dict[str, str] = field(default_factory=dict)
    #: Facts policies record for telemetry (attempts, fallback reason, cache hit...).
    annotations: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(
        cls,
        request_id: str | None = None,
        *,
        deadline: float | None = None,
        principal: str | None = None,
        credentials: str | None = None,
        priority: Priority = Priority.NORMAL,
        traceparent: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> CallContext:
        """A context for an incoming call; a missing or unusable request id is replaced."""
        rid = request_id if request_id and _valid_request_id(request_id) else new_request_id()
        return cls(
            request_id=rid,
            deadline=deadline,
            principal=principal,
            credentials=credentials,
            priority=priority,
            trace=TraceIds.from_traceparent(traceparent) if traceparent else None,
            headers=headers or {},
        )

    def time_left(self, now: float) -> float | None:
        """Seconds until the deadline at monotonic time `now` (may be negative), or None."""
        return None if self.deadline is None else self.deadline - now

    def expired(self, now: float) -> bool:
        """True if the deadline has passed at monotonic time `now`."""
        return self.deadline is not None and now >= self.deadline


def _valid_request_id(value: str) -> bool:
    # Echoed back in a header and written to logs: printable ASCII only, bounded length.
    return len(value) <= _MAX_REQUEST_ID and value.isascii() and value.isprintable()
