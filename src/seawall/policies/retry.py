"""Retries: exponential backoff with full jitter, `Retry-After`, the deadline and a retry budget.

A failed call is tried again when `retry_on(error)` says the failure is transient (by default a
`BackendError` whose `retryable` is True: timeouts, unavailable, bad responses; never a
rejection, never a model that raised), up to `attempts` calls in all. Before retry n the policy
sleeps a random time in [0, min(max_delay_s, base_delay_s * multiplier ** (n - 1))] ("full
jitter", AWS Architecture Blog, *Exponential Backoff And Jitter*), and at least the error's
`retry_after_s`. It never sleeps past `ctx.deadline`: when the next attempt could not start
before it, the last error is raised at once.

Every retry also needs a token from a `RetryBudget` (Finagle's `RetryBudget`, Envoy's retry
budgets): over a sliding window, retries stay below `ratio` of the requests plus a small
reserve, so a backend that is down receives at most about (1 + ratio) times the offered load
instead of `attempts` times.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from seawall.clock import Clock, SystemClock
from seawall.context import CallContext
from seawall.errors import BackendError
from seawall.pipeline import EventSink, Handler, discard

__all__ = [
    "ATTEMPTS_HEADER",
    "TRANSIENT",
    "RetriesExhausted",
    "RetryAttempted",
    "RetryBudget",
    "RetryBudgetExhausted",
    "RetryBudgetOptions",
    "RetryOptions",
    "RetryPolicy",
    "Retryable",
    "backoff_s",
    "error_types",
]

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")

#: Response header with the number of calls made for the request.
ATTEMPTS_HEADER = "x-seawall-attempts"


class Retryable:
    """Whether a failed attempt may be retried, as a predicate; combine with `|` and `&`."""

    __slots__ = ("_test", "description")

    def __init__(self, test: Callable[[Exception], bool], description: str = "") -> None:
        self._test = test
        self.description = description or getattr(test, "__name__", repr(test))

    def __call__(self, error: Exception) -> bool:
        return self._test(error)

    def __or__(self, other: Callable[[Exception], bool]) -> Retryable:
        return Retryable(lambda e: self(e) or other(e), f"({self} | {_describe(other)})")

    def __and__(self, other: Callable[[Exception], bool]) -> Retryable:
        return Retryable(lambda e: self(e) and other(e), f"({self} & {_describe(other)})")

    def __repr__(self) -> str:
        return self.description


def _describe(predicate: Callable[[Exception], bool]) -> str:
    if isinstance(predicate, Retryable):
        return repr(predicate)
    return str(getattr(predicate, "__name__", repr(predicate)))


def _transient(error: Exception) -> bool:
    return isinstance(error, BackendError) and error.retryable


#: The default: a `BackendError` whose `retryable` is True (not rejections, not model errors).
TRANSIENT = Retryable(_transient, "transient")


def error_types(*types: type[Exception]) -> Retryable:
    """Retry errors of these classes (and their subclasses)."""
    return Retryable(
        lambda e: isinstance(e, types), f"error_types({', '.join(t.__name__ for t in types)})"
    )


#: Fixed-point unit of the budget's balance: one retry costs this much (exact integer sums).
_UNIT = 1_000_000
#: Buckets are a second long, or a tenth of the window if that is shorter.
_MAX_BUCKET_S = 1.0

DEFAULT_BUDGET_RATIO = 0.2
DEFAULT_BUDGET_WINDOW_S = 10.0
DEFAULT_BUDGET_MIN_PER_S = 10.0


@dataclass(frozen=True, slots=True)
class RetryBudgetOptions:
    """Retries allowed: `ratio` of the requests over `window_s`, plus `min_per_s` whatever the load.

    The defaults are Finagle's: 20% over 10 s, plus 10 retries a second.
    """

    #: Retries earned per request (0.2: one retry for every five requests).
    ratio: float = DEFAULT_BUDGET_RATIO
    #: Seconds a request's deposit, and a retry's withdrawal, count for.
    window_s: float = DEFAULT_BUDGET_WINDOW_S
    #: Retries per second allowed even without requests, so that quiet targets can retry.
    min_per_s: float = DEFAULT_BUDGET_MIN_PER_S

    def __post_init__(self) -> None:
        if not (math.isfinite(self.ratio) and self.ratio >= 0):
            raise ValueError(f"ratio: must be a number >= 0, got {self.ratio}")
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            raise ValueError(f"window_s: must be a positive number of seconds, got {self.window_s}")
        if not (math.isfinite(self.min_per_s) and self.min_per_s >= 0):
            raise ValueError(f"min_per_s: must be a number >= 0, got {self.min_per_s}")


class RetryBudget:
    """Tokens for retries, shared by every call to one target (Finagle's `RetryBudget`).

    Each request deposits `ratio` of a token and each retry withdraws one whole token; a retry is
    allowed only while the tokens in the window plus a reserve of `min_per_s * window_s` cover it.
    Deposits and withdrawals are summed in buckets of at most a second and expire between
    `window_s` and `window_s` + one bucket after they were made, never sooner: so over any window,
    retries <= ratio * requests + min_per_s * window_s. Each call costs O(1).
    """

    __slots__ = (
        "_bucket_s",
        "_clock",
        "_deposit",
        "_index",
        "_reserve",
        "_slots",
        "_sum",
        "options",
    )

    def __init__(
        self, options: RetryBudgetOptions | None = None, *, clock: Clock | None = None
    ) -> None:
        self.options = options = options or RetryBudgetOptions()
        self._clock = clock or SystemClock()
        self._deposit = round(options.ratio * _UNIT)
        self._reserve = math.floor(options.min_per_s * options.window_s * _UNIT)
        self._bucket_s = min(_MAX_BUCKET_S, options.window_s / 10)
        # One bucket more than the window holds, so nothing expires before `window_s` has passed.
        self._slots = [0] * (math.ceil(options.window_s / self._bucket_s) + 1)
        self._sum = 0
        self._index = self._bucket_index()

    def deposit(self) -> None:
        """Record a request (its first attempt)."""
        self._add(self._deposit)

    def try_withdraw(self) -> bool:
        """Take the token for one retry; False (and nothing taken) if there is none."""
        self._advance()
        if self._sum + self._reserve < _UNIT:
            return False
        self._add(-_UNIT)
        return True

    @property
    def available(self) -> int:
        """Retries that would be allowed right now."""
        self._advance()
        return max(0, (self._sum + self._reserve) // _UNIT)

    def _add(self, units: int) -> None:
        self._advance()
        self._slots[self._index % len(self._slots)] += units
        self._sum += units

    def _bucket_index(self) -> int:
        return math.floor(self._clock.monotonic() / self._bucket_s)

    def _advance(self) -> None:
        index = self._bucket_index()
        if index <= self._index:
            return
        slots = self._slots
        if index - self._index >= len(slots):
            slots[:] = [0] * len(slots)
            self._sum = 0
        else:
            for i in range(self._index + 1, index + 1):
                self._sum -= slots[i % len(slots)]
                slots[i % len(slots)] = 0
        self._index = index

    def __repr__(self) -> str:
        o = self.options
        return f"RetryBudget(ratio={o.ratio}, window_s={o.window_s}, min_per_s={o.min_per_s})"


DEFAULT_ATTEMPTS = 3
DEFAULT_BASE_DELAY_S = 0.1
DEFAULT_MULTIPLIER = 2.0
DEFAULT_MAX_DELAY_S = 2.0
DEFAULT_RETRY_ON: Callable[[Exception], bool] = TRANSIENT
DEFAULT_BUDGET: RetryBudgetOptions | None = RetryBudgetOptions()


@dataclass(frozen=True, slots=True)
class RetryOptions:
    """How often, after how long and on which errors a call is tried again."""

    #: Calls in all, the first one included (1: never retry).
    attempts: int = DEFAULT_ATTEMPTS
    #: Seconds: the cap of the random wait before the first retry; it grows by `multiplier`.
    base_delay_s: float = DEFAULT_BASE_DELAY_S
    #: Growth factor of the wait cap from one retry to the next.
    multiplier: float = DEFAULT_MULTIPLIER
    #: Seconds: the largest wait cap; a `Retry-After` longer than this ends the retries.
    max_delay_s: float = DEFAULT_MAX_DELAY_S
    #: Which errors are worth another attempt (a plain function works too).
    retry_on: Callable[[Exception], bool] = DEFAULT_RETRY_ON
    #: The retry budget of this policy; None: retries are limited by `attempts` only.
    budget: RetryBudgetOptions | None = DEFAULT_BUDGET

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts: must be at least 1, got {self.attempts}")
        for name in ("base_delay_s", "max_delay_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: must be a number of seconds >= 0, got {value}")
        if not (math.isfinite(self.multiplier) and self.multiplier >= 1):
            raise ValueError(f"multiplier: must be a number >= 1, got {self.multiplier}")
        if not callable(self.retry_on):
            raise ValueError(f"retry_on: must be callable, got {self.retry_on!r}")


def backoff_s(options: RetryOptions, retry: int, rng: random.Random) -> float:
    """The full-jitter wait before retry number `retry` (1 = the first retry)."""
    try:
        cap_s = min(options.max_delay_s, options.base_delay_s * options.multiplier ** (retry - 1))
    except OverflowError:
        cap_s = options.max_delay_s
    return rng.uniform(0.0, cap_s)


@dataclass(frozen=True, slots=True)
class RetryAttempted:
    """A call failed and is tried again after `delay_s`; `attempt` is the one about to start."""

    target: str
    attempt: int
    delay_s: float
    error: Exception


@dataclass(frozen=True, slots=True)
class RetryBudgetExhausted:
    """A retry was not made because the budget had no token left."""

    target: str
    #: The attempt that would have been made.
    attempt: int
    error: Exception


@dataclass(frozen=True, slots=True)
class RetriesExhausted:
    """A retryable failure was returned: attempts used up, or the deadline too close to wait."""

    target: str
    #: Calls made.
    attempts: int
    #: True if the request's deadline stopped the retries, False if `attempts` did.
    by_deadline: bool
    error: Exception


class RetryPolicy(Generic[RequestT, ResponseT]):
    """Calls again on transient failures, with jittered backoff, within the deadline and budget.

    `budget` overrides the options' budget so that several policies (every pipeline that calls
    one backend) can share one; `rng` makes the jitter reproducible in tests.
    """

    name = "retry"

    def __init__(
        self,
        options: RetryOptions | None = None,
        *,
        clock: Clock | None = None,
        on_event: EventSink = discard,
        target: str = "",
        budget: RetryBudget | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.options = options or RetryOptions()
        self._clock = clock or SystemClock()
        self._on_event = on_event
        self._target = target
        if budget is None and self.options.budget is not None:
            budget = RetryBudget(self.options.budget, clock=self._clock)
        self.budget = budget
        self._rng = rng or random.Random()

    async def __call__(
        self, request: RequestT, ctx: CallContext, call_next: Handler[RequestT, ResponseT]
    ) -> ResponseT:
        if self.budget is not None:
            self.budget.deposit()
        attempt = 1
        try:
            while True:
                try:
                    return await call_next(request, ctx)
                except Exception as exc:
                    delay_s = self._delay_before_retry(exc, attempt, ctx)
                    if delay_s is None:
                        raise
                    self._on_event(RetryAttempted(self._target, attempt + 1, delay_s, exc))
                await self._clock.sleep(delay_s)
                attempt += 1
        finally:
            ctx.annotations["attempts"] = attempt
            ctx.response_headers[ATTEMPTS_HEADER] = str(attempt)

    def _delay_before_retry(self, error: Exception, attempt: int, ctx: CallContext) -> float | None:
        """Seconds to wait before the next attempt, or None to give up and raise `error`."""
        options = self.options
        if not options.retry_on(error):
            return None
        if attempt >= options.attempts:
            self._on_event(RetriesExhausted(self._target, attempt, False, error))
            return None
        delay_s = backoff_s(options, attempt, self._rng)
        retry_after_s = getattr(error, "retry_after_s", None)
        if retry_after_s is not None:
            if retry_after_s > options.max_delay_s:
                return None  # the caller gets the error, and its Retry-After, at once
            delay_s = max(delay_s, retry_after_s)
        if ctx.deadline is not None and self._clock.monotonic() + delay_s >= ctx.deadline:
            self._on_event(RetriesExhausted(self._target, attempt, True, error))
            return None
        if self.budget is not None and not self.budget.try_withdraw():
            self._on_event(RetryBudgetExhausted(self._target, attempt + 1, error))
            return None
        return delay_s

    def __repr__(self) -> str:
        return f"RetryPolicy({self._target!r}, attempts={self.options.attempts})"
