"""RetryPolicy and RetryBudget: what is retried, backoff, Retry-After, deadline, budget bounds."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from seawall.backends.mock import Fail, MockBackend, Respond, Step
from seawall.clock import FakeClock
from seawall.context import CallContext
from seawall.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    BadResponseError,
    CircuitOpenError,
    ForbiddenError,
    InvalidInputError,
    ModelExecutionError,
    OverloadedError,
    RateLimitedError,
    UnauthorizedError,
)
from seawall.pipeline import Policy
from seawall.policies.retry import (
    TRANSIENT,
    RetriesExhausted,
    RetryAttempted,
    RetryBudget,
    RetryBudgetExhausted,
    RetryBudgetOptions,
    RetryOptions,
    RetryPolicy,
    backoff_s,
    error_types,
)
from seawall.types import InferenceRequest, InferenceResponse, Tensor


def request() -> InferenceRequest:
    return InferenceRequest("iris", [Tensor.from_numpy("input-0", np.ones((1, 2), np.float32))])


def unavailable(message: str = "down", retry_after_s: float | None = None) -> Fail:
    return Fail(BackendUnavailableError(message, retry_after_s=retry_after_s))


class MaxJitter(random.Random):
    """A 'random' source that always waits the whole cap: makes backoff deterministic."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Harness:
    """A retry policy on a FakeClock in front of a MockBackend; records events and call times."""

    def __init__(
        self,
        *steps: Step,
        default: Step | None = None,
        rng: random.Random | None = None,
        budget: RetryBudget | None = None,
        **options: Any,
    ) -> None:
        self.clock = FakeClock()
        self.events: list[object] = []
        self.call_times: list[float] = []
        self.backend = MockBackend("iris", script=steps, default=default, clock=self.clock)
        options.setdefault("budget", None)
        self.policy: RetryPolicy[InferenceRequest, InferenceResponse] = RetryPolicy(
            RetryOptions(**options),
            clock=self.clock,
            on_event=self.events.append,
            target="iris:1",
            budget=budget,
            rng=rng or random.Random(1),
        )

    async def infer(self, req: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        self.call_times.append(self.clock.monotonic())
        return await self.backend.infer(req, ctx)

    async def run(self, ctx: CallContext | None = None, *, step_s: float = 0.001) -> Any:
        """Call the policy, moving the clock until it returns; the response or the error."""
        await self.backend.load()
        task = asyncio.create_task(self.policy(request(), ctx or CallContext.new(), self.infer))
        for _ in range(3):
            await asyncio.sleep(0)  # the first attempt starts before the clock moves
        while not task.done():
            await self.clock.run_for(step_s, step_s)
        return task.exception() or task.result()

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.call_times, self.call_times[1:], strict=False)]


async def test_a_success_is_returned_at_once_and_counted_as_one_attempt() -> None:
    harness = Harness()
    ctx = CallContext.new()
    response = await harness.run(ctx)
    assert isinstance(response, InferenceResponse)
    assert harness.backend.stats.calls == 1
    assert ctx.annotations["attempts"] == 1
    assert ctx.response_headers["x-seawall-attempts"] == "1"
    assert harness.events == []


async def test_transient_failures_are_retried_until_a_success() -> None:
    first, second = BackendTimeoutError("slow"), BadResponseError("garbled")
    harness = Harness(Fail(first), Fail(second), Respond(), attempts=3)
    ctx = CallContext.new()

    response = await harness.run(ctx)

    assert isinstance(response, InferenceResponse)
    assert harness.backend.stats.calls == 3
    assert ctx.annotations["attempts"] == 3
    assert ctx.response_headers["x-seawall-attempts"] == "3"
    retries = [e for e in harness.events if isinstance(e, RetryAttempted)]
    assert [(e.target, e.attempt, e.error) for e in retries] == [
        ("iris:1", 2, first),
        ("iris:1", 3, second),
    ]
    # The clock time between attempts is the announced delay (the fake clock moves in 1 ms steps).
    for gap, event in zip(harness.gaps(), retries, strict=True):
        assert gap == pytest.approx(event.delay_s, abs=0.0011)


async def test_when_attempts_run_out_the_last_error_is_raised() -> None:
    errors = [BackendUnavailableError(f"down {i}") for i in range(3)]
    harness = Harness(*(Fail(e) for e in errors), attempts=3)
    ctx = CallContext.new()

    raised = await harness.run(ctx)

    assert raised is errors[2]
    assert harness.backend.stats.calls == 3
    assert ctx.annotations["attempts"] == 3
    assert ctx.response_headers["x-seawall-attempts"] == "3"
    assert harness.events[-1] == RetriesExhausted("iris:1", 3, False, errors[2])


@pytest.mark.parametrize(
    "error",
    [
        ModelExecutionError("the model raised"),
        InvalidInputError("inputs[0].shape", "wrong"),
        CircuitOpenError("open", retry_after_s=1.0),
        OverloadedError("full", retry_after_s=1.0),
        RateLimitedError("slow down", retry_after_s=1.0),
        UnauthorizedError("who?"),
        ForbiddenError("no"),
        ValueError("a foreign error"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_rejections_and_permanent_failures_are_never_retried(error: Exception) -> None:
    harness = Harness(Fail(error), attempts=5)
    ctx = CallContext.new()
    assert await harness.run(ctx) is error
    assert harness.backend.stats.calls == 1
    assert ctx.annotations["attempts"] == 1
    assert harness.events == []


@pytest.mark.parametrize(
    "error",
    [
        BackendError("generic"),
        BackendTimeoutError("slow"),
        BackendUnavailableError("down"),
        BadResponseError("garbled"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_transient_backend_errors_are_retried(error: Exception) -> None:
    harness = Harness(default=Fail(error), attempts=4)
    assert await harness.run() is error
    assert harness.backend.stats.calls == 4


async def test_retry_after_is_waited_at_least() -> None:
    harness = Harness(unavailable(retry_after_s=1.5), Respond(), base_delay_s=0.1)
    await harness.run(step_s=0.01)
    [retry] = [e for e in harness.events if isinstance(e, RetryAttempted)]
    assert retry.delay_s == 1.5  # the jittered 0-100 ms backoff is shorter: Retry-After wins
    [gap] = harness.gaps()
    assert 1.5 - 1e-9 <= gap < 1.5 + 0.011


async def test_a_longer_backoff_than_retry_after_is_kept() -> None:
    harness = Harness(unavailable(retry_after_s=0.05), Respond(), rng=MaxJitter(), base_delay_s=0.3)
    await harness.run()
    assert harness.gaps() == [pytest.approx(0.3, abs=0.0011)]


async def test_a_retry_after_beyond_max_delay_is_passed_to_the_caller_without_retrying() -> None:
    harness = Harness(unavailable(retry_after_s=30.0), Respond(), max_delay_s=2.0)
    raised = await harness.run()
    assert isinstance(raised, BackendUnavailableError)
    assert raised.retry_after_s == 30.0
    assert harness.backend.stats.calls == 1


async def test_the_deadline_stops_the_retries_without_sleeping_past_it() -> None:
    # Waits are 0.2 s then 0.4 s; the deadline is 0.5 s away: the second wait would end after it.
    harness = Harness(
        default=unavailable(),
        rng=MaxJitter(),
        attempts=5,
        base_delay_s=0.2,
        multiplier=2.0,
        max_delay_s=10.0,
    )
    start = harness.clock.monotonic()
    ctx = CallContext.new(deadline=start + 0.5)

    raised = await harness.run(ctx)

    assert isinstance(raised, BackendUnavailableError)
    assert harness.backend.stats.calls == 2
    assert harness.call_times == [start, pytest.approx(start + 0.2, abs=0.0011)]
    assert harness.clock.monotonic() < start + 0.5  # gave up at once, did not wait it out
    assert ctx.annotations["attempts"] == 2
    assert harness.events[-1] == RetriesExhausted("iris:1", 2, True, raised)


async def test_cancelled_during_the_backoff_nothing_more_is_called() -> None:
    harness = Harness(default=unavailable(), rng=MaxJitter(), base_delay_s=1.0)
    await harness.backend.load()
    ctx = CallContext.new()
    task = asyncio.create_task(harness.policy(request(), ctx, harness.infer))
    await harness.clock.run_for(0.5, 0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    harness.clock.advance(5.0)
    assert harness.backend.stats.calls == 1
    assert ctx.annotations["attempts"] == 1
    assert harness.clock.sleepers == 0


async def test_the_same_seed_gives_the_same_delays() -> None:
    first = Harness(default=unavailable(), rng=random.Random(42), attempts=6)
    second = Harness(default=unavailable(), rng=random.Random(42), attempts=6)
    await first.run()
    await second.run()
    first_delays = [e.delay_s for e in first.events if isinstance(e, RetryAttempted)]
    second_delays = [e.delay_s for e in second.events if isinstance(e, RetryAttempted)]
    assert len(first_delays) == 5
    assert first_delays == second_delays
    assert len(set(first_delays)) == 5  # jittered: no two waits alike


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    retry=st.integers(1, 2000),
    base=st.floats(0.0, 5.0),
    multiplier=st.floats(1.0, 10.0),
    max_delay=st.floats(0.0, 60.0),
)
def test_full_jitter_stays_between_zero_and_the_capped_exponential(
    seed: int, retry: int, base: float, multiplier: float, max_delay: float
) -> None:
    options = RetryOptions(base_delay_s=base, multiplier=multiplier, max_delay_s=max_delay)
    delay = backoff_s(options, retry, random.Random(seed))
    try:
        cap = min(max_delay, base * multiplier ** (retry - 1))
    except OverflowError:
        cap = max_delay
    assert 0.0 <= delay <= cap


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), attempts=st.integers(2, 7))
def test_the_policy_waits_full_jitter_before_each_retry(seed: int, attempts: int) -> None:
    async def scenario() -> Harness:
        harness = Harness(
            default=unavailable(),
            rng=random.Random(seed),
            attempts=attempts,
            base_delay_s=0.05,
            multiplier=3.0,
            max_delay_s=0.5,
        )
        await harness.run()
        return harness

    loop = asyncio.new_event_loop()
    try:
        harness = loop.run_until_complete(scenario())
    finally:
        loop.close()
    retries = [e for e in harness.events if isinstance(e, RetryAttempted)]
    assert [e.attempt for e in retries] == list(range(2, attempts + 1))
    for n, (event, gap) in enumerate(zip(retries, harness.gaps(), strict=True), start=1):
        assert 0.0 <= event.delay_s <= min(0.5, 0.05 * 3.0 ** (n - 1))
        assert gap == pytest.approx(event.delay_s, abs=0.0011)


async def test_predicates_combine_with_or_and_and() -> None:
    timeouts_only = TRANSIENT & error_types(BackendTimeoutError)
    also_value_errors = TRANSIENT | error_types(ValueError)
    assert timeouts_only(BackendTimeoutError("slow"))
    assert not timeouts_only(BackendUnavailableError("down"))
    assert also_value_errors(ValueError("x"))
    assert also_value_errors(BackendUnavailableError("down"))
    assert not also_value_errors(ModelExecutionError("raised"))
    assert repr(timeouts_only) == "(transient & error_types(BackendTimeoutError))"

    def is_key_error(error: Exception) -> bool:
        return isinstance(error, KeyError)

    assert repr(TRANSIENT | is_key_error) == "(transient | is_key_error)"

    harness = Harness(Fail(ValueError("flaky")), Respond(), retry_on=also_value_errors)
    assert isinstance(await harness.run(), InferenceResponse)
    assert harness.backend.stats.calls == 2


async def test_a_plain_function_is_accepted_as_the_predicate() -> None:
    harness = Harness(
        default=Fail(ModelExecutionError("raised")), attempts=3, retry_on=lambda e: True
    )
    await harness.run()
    assert harness.backend.stats.calls == 3


# --- the retry budget ------------------------------------------------------------------------


def call_request(policy: RetryPolicy[InferenceRequest, InferenceResponse]) -> Any:
    async def one(infer: Any) -> None:
        with contextlib.suppress(BackendUnavailableError):
            await policy(request(), CallContext.new(), infer)

    return one


async def outage(budget: RetryBudgetOptions | None, requests: int, rate_per_s: float) -> Any:
    """Offer `requests` at `rate_per_s` to a backend that always fails; (calls, elapsed_s)."""
    clock = FakeClock()
    backend = MockBackend("iris", default=unavailable(), clock=clock)
    await backend.load()
    times: list[float] = []

    async def infer(req: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        times.append(clock.monotonic())
        return await backend.infer(req, ctx)

    options = RetryOptions(attempts=3, base_delay_s=0.01, max_delay_s=0.02, budget=budget)
    policy: RetryPolicy[InferenceRequest, InferenceResponse] = RetryPolicy(
        options, clock=clock, rng=random.Random(3)
    )
    one = call_request(policy)
    start = clock.monotonic()
    tasks = []
    for _ in range(requests):
        tasks.append(asyncio.create_task(one(infer)))
        await clock.run_for(1 / rate_per_s, 0.01)
    await clock.run_for(1.0, 0.01)
    await asyncio.gather(*tasks)
    assert backend.stats.calls == len(times)
    return len(times), times[-1] - start


@pytest.mark.parametrize(
    ("rate_per_s", "ratio", "min_per_s"),
    [(20.0, 0.2, 1.0), (100.0, 0.1, 5.0), (7.0, 0.2, 1.0)],
)
async def test_under_a_full_outage_the_budget_bounds_the_load_on_the_backend(
    rate_per_s: float, ratio: float, min_per_s: float
) -> None:
    requests = 2000
    budget = RetryBudgetOptions(ratio=ratio, window_s=10.0, min_per_s=min_per_s)
    calls, elapsed_s = await outage(budget, requests, rate_per_s)
    # The reserve is an allowance per window, there in full from the start: count whole windows.
    windows = math.ceil(elapsed_s / budget.window_s)
    assert calls <= (1 + ratio) * requests + min_per_s * budget.window_s * windows
    # ... and the budget is spent, not hoarded: close to the steady-state load.
    assert calls >= 0.97 * ((1 + ratio) * requests + min_per_s * elapsed_s)


async def test_without_a_budget_every_request_makes_every_attempt() -> None:
    calls, _ = await outage(None, 2000, 20.0)
    assert calls == 3 * 2000


async def test_an_empty_budget_raises_the_original_error_and_says_so() -> None:
    clock = FakeClock()
    budget = RetryBudget(RetryBudgetOptions(ratio=0.0, min_per_s=0.0), clock=clock)
    error = BackendUnavailableError("down")
    harness = Harness(Fail(error), Respond(), budget=budget)
    raised = await harness.run()
    assert raised is error
    assert harness.backend.stats.calls == 1
    assert harness.events == [RetryBudgetExhausted("iris:1", 2, error)]


async def test_policies_share_a_budget_passed_to_them() -> None:
    clock = FakeClock()
    budget = RetryBudget(RetryBudgetOptions(ratio=0.5, min_per_s=0.0), clock=clock)
    first = Harness(default=unavailable(), budget=budget, attempts=2)
    second = Harness(default=unavailable(), budget=budget, attempts=2)
    assert first.policy.budget is second.policy.budget is budget
    budget.deposit()  # with the two requests below: 1.5 tokens, so one retry between them
    await first.run()
    await second.run()
    assert first.backend.stats.calls + second.backend.stats.calls == 3


def test_the_policy_makes_its_own_budget_from_the_options_by_default() -> None:
    policy: RetryPolicy[object, object] = RetryPolicy(clock=FakeClock())
    assert policy.budget is not None
    assert policy.budget.options == RetryBudgetOptions(ratio=0.2, window_s=10.0, min_per_s=10.0)
    assert RetryPolicy(RetryOptions(budget=None)).budget is None


def test_budget_deposits_earn_a_ratio_of_a_retry_and_expire_after_the_window() -> None:
    clock = FakeClock()
    budget = RetryBudget(RetryBudgetOptions(ratio=0.5, window_s=10.0, min_per_s=0.0), clock=clock)
    assert not budget.try_withdraw()
    budget.deposit()
    assert budget.available == 0
    budget.deposit()
    assert budget.available == 1
    clock.advance(9.99)
    assert budget.available == 1  # never expires before the window has passed
    clock.advance(1.01)
    assert budget.available == 0  # gone within one bucket (1 s) after it
    assert not budget.try_withdraw()


def test_budget_withdrawals_are_returned_when_they_expire() -> None:
    clock = FakeClock()
    budget = RetryBudget(RetryBudgetOptions(ratio=1.0, window_s=2.0, min_per_s=0.0), clock=clock)
    for _ in range(3):
        budget.deposit()
    assert [budget.try_withdraw() for _ in range(4)] == [True, True, True, False]
    assert budget.available == 0
    clock.advance(100.0)  # a jump past every bucket at once
    assert budget.available == 0
    budget.deposit()
    assert budget.try_withdraw()


def test_budget_reserve_allows_min_per_s_over_each_window_without_requests() -> None:
    clock = FakeClock()
    budget = RetryBudget(RetryBudgetOptions(ratio=0.0, window_s=5.0, min_per_s=2.0), clock=clock)
    assert budget.available == 10  # min_per_s * window_s, from the start
    assert sum(budget.try_withdraw() for _ in range(12)) == 10
    clock.advance(4.99)
    assert budget.available == 0
    clock.advance(0.51)  # window_s plus at most one bucket (0.5 s here) later: given back
    assert budget.available == 10
    assert repr(budget) == "RetryBudget(ratio=0.0, window_s=5.0, min_per_s=2.0)"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ratio": -0.1}, "ratio: must be a number >= 0"),
        ({"ratio": math.inf}, "ratio: must be a number >= 0"),
        ({"window_s": 0.0}, "window_s: must be a positive number of seconds"),
        ({"min_per_s": math.nan}, "min_per_s: must be a number >= 0"),
    ],
)
def test_budget_options_refuse_bad_values(fields: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}"):
        RetryBudgetOptions(**fields)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"attempts": 0}, "attempts: must be at least 1"),
        ({"base_delay_s": -1.0}, "base_delay_s: must be a number of seconds >= 0"),
        ({"max_delay_s": math.inf}, "max_delay_s: must be a number of seconds >= 0"),
        ({"multiplier": 0.5}, "multiplier: must be a number >= 1"),
        ({"retry_on": "transient"}, "retry_on: must be callable"),
    ],
)
def test_options_refuse_bad_values(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}"):
        RetryOptions(**fields)


async def test_generic_over_request_and_response_types() -> None:
    clock = FakeClock()
    policy: RetryPolicy[str, int] = RetryPolicy(RetryOptions(base_delay_s=0.0), clock=clock)
    failures = [BackendUnavailableError("down")]

    async def length(req: str, ctx: CallContext) -> int:
        if failures:
            raise failures.pop()
        return len(req)

    assert isinstance(policy, Policy)
    assert await policy("four", CallContext.new(), length) == 4


class BudgetMachine(RuleBasedStateMachine):
    """RetryBudget against a reference: a plain list of dated deposits and withdrawals."""

    @initialize(
        ratio=st.sampled_from([0.0, 0.1, 0.25, 1.0, 3.0]),
        window_s=st.sampled_from([0.5, 2.0, 10.0, 30.0]),
        min_per_s=st.sampled_from([0.0, 0.5, 2.0]),
    )
    def start(self, ratio: float, window_s: float, min_per_s: float) -> None:
        self.clock = FakeClock()
        self.options = RetryBudgetOptions(ratio=ratio, window_s=window_s, min_per_s=min_per_s)
        self.budget = RetryBudget(self.options, clock=self.clock)
        self.bucket_s = min(1.0, window_s / 10)
        self.entries: list[tuple[float, float]] = []  # (time, tokens): +ratio or -1

    def reference_balance(self) -> float:
        now = self.clock.monotonic()
        kept = math.ceil(self.options.window_s / self.bucket_s) + 1
        index = math.floor(now / self.bucket_s)
        live = sum(v for t, v in self.entries if index - math.floor(t / self.bucket_s) < kept)
        return live + self.options.min_per_s * self.options.window_s

    @rule(seconds=st.one_of(st.floats(0.0, 2.0), st.sampled_from([0.1, 1.0, 10.0, 100.0])))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(count=st.integers(1, 20))
    def deposit(self, count: int) -> None:
        for _ in range(count):
            self.budget.deposit()
            self.entries.append((self.clock.monotonic(), self.options.ratio))

    @rule()
    def withdraw(self) -> None:
        expected = self.reference_balance()
        allowed = self.budget.try_withdraw()
        if abs(expected - 1.0) > 1e-6:  # at the exact edge, fixed-point rounding may decide
            assert allowed == (expected >= 1.0)
        if allowed:
            self.entries.append((self.clock.monotonic(), -1.0))
            self.check_the_window_limit()

    def check_the_window_limit(self) -> None:
        # Whenever a retry is allowed: retries in the last window <= ratio * the requests that
        # can still count (a bucket longer ago at most) + the reserve.
        now, window = self.clock.monotonic(), self.options.window_s
        retries = sum(1 for t, v in self.entries if v < 0 and t > now - window)
        earned = sum(v for t, v in self.entries if v > 0 and t > now - window - self.bucket_s)
        assert retries <= earned + self.options.min_per_s * window + 1e-6

    @invariant()
    def available_matches_the_reference(self) -> None:
        if not hasattr(self, "budget"):
            return
        expected = self.reference_balance()
        if abs(expected - round(expected)) > 1e-6:
            assert self.budget.available == max(0, math.floor(expected))


TestBudgetMachine = BudgetMachine.TestCase
TestBudgetMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
