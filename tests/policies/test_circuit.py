"""CircuitBreakerPolicy: trips, windows, open durations, probes, forced modes, events (FakeClock).

The last part is the acceptance test: a Hypothesis state machine that drives the breaker and a
plain reference model of its rules side by side, and checks that they always agree.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from seawall.backends.mock import Fail, Hang, MockBackend, Respond, Step
from seawall.clock import FakeClock
from seawall.context import CallContext
from seawall.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    CircuitOpenError,
    InvalidInputError,
    OverloadedError,
    RateLimitedError,
)
from seawall.policies.circuit import (
    HALF_OPEN_RETRY_AFTER_S,
    CircuitBreakerOptions,
    CircuitBreakerPolicy,
    CircuitClosed,
    CircuitForced,
    CircuitHalfOpened,
    CircuitMode,
    CircuitOpened,
    CircuitRejected,
    CircuitSnapshot,
    CircuitState,
    TripReason,
    counts_as_failure,
)
from seawall.policies.window import CountWindow, TimeWindow
from seawall.types import InferenceRequest, InferenceResponse, Tensor

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
AUTOMATIC = CircuitMode.AUTOMATIC
FORCED_OPEN, FORCED_CLOSED = CircuitMode.FORCED_OPEN, CircuitMode.FORCED_CLOSED
TARGET = "iris:1"
DOWN = BackendUnavailableError("connection refused")
OK = Respond()
#: Isolates one trigger: rates over the last 10 calls from 4 on, no consecutive-failure trigger.
RATES_ONLY = CircuitBreakerOptions(
    window=CountWindow(size_calls=10), minimum_calls=4, consecutive_failures=0
)
#: Opens at the first failure, for 10 s, doubling up to 30 s, with one probe.
ONE_STRIKE = CircuitBreakerOptions(
    consecutive_failures=1, open_duration_s=10.0, max_open_duration_s=30.0
)


def inference_request() -> InferenceRequest:
    return InferenceRequest("iris", [Tensor.from_numpy("input-0", np.ones((1, 2), np.float32))])


class Harness:
    """A breaker in front of a MockBackend, both on one FakeClock, and the events it emitted."""

    def __init__(self, options: CircuitBreakerOptions) -> None:
        self.clock = FakeClock()
        self.events: list[object] = []
        self.backend = MockBackend("iris", clock=self.clock)
        self.breaker: CircuitBreakerPolicy[InferenceRequest, InferenceResponse] = (
            CircuitBreakerPolicy(
                options, clock=self.clock, on_event=self.events.append, target=TARGET
            )
        )

    async def start(self, step: Step = OK) -> asyncio.Task[InferenceResponse]:
        """Start a call that plays `step` and let it run until it waits on the clock."""
        self.backend.push(step)
        ctx = CallContext.new("r")
        task = asyncio.create_task(self.breaker(inference_request(), ctx, self.backend.infer))
        for _ in range(3):
            await asyncio.sleep(0)
        return task

    async def call(self, step: Step = OK) -> InferenceResponse:
        """One call that plays `step` to the end, its latency spent on the clock."""
        task = await self.start(step)
        self.clock.advance(getattr(step, "latency_s", 0.0))
        return await task

    async def fail(self, error: Exception = DOWN, latency_s: float = 0.0) -> None:
        with pytest.raises(type(error)) as info:
            await self.call(Fail(error, latency_s))
        assert info.value is error

    async def refused(self) -> CircuitOpenError:
        """A call that the breaker refuses without calling the backend."""

        async def unreachable(request: InferenceRequest, ctx: CallContext) -> InferenceResponse:
            raise AssertionError("a refused call reached the backend")

        with pytest.raises(CircuitOpenError) as info:
            await self.breaker(inference_request(), CallContext.new("r"), unreachable)
        return info.value

    def opened(self) -> list[CircuitOpened]:
        return [e for e in self.events if isinstance(e, CircuitOpened)]

    def changes(self) -> list[object]:
        """The events without the refusals."""
        return [e for e in self.events if not isinstance(e, CircuitRejected)]


async def harness(options: CircuitBreakerOptions = RATES_ONLY) -> Harness:
    h = Harness(options)
    await h.backend.load()
    return h


async def tripped(options: CircuitBreakerOptions = ONE_STRIKE) -> Harness:
    """A harness whose breaker has just opened on one failure."""
    h = await harness(options)
    await h.fail()
    assert h.breaker.state is OPEN
    return h


# Options


def test_defaults() -> None:
    options = CircuitBreakerOptions()
    assert options.window == CountWindow(size_calls=100)
    assert (options.minimum_calls, options.consecutive_failures) == (20, 5)
    assert (options.failure_rate_threshold, options.slow_call_rate_threshold) == (0.5, 1.0)
    assert options.slow_call_duration_s == 60.0
    assert (options.open_duration_s, options.backoff_multiplier) == (30.0, 2.0)
    assert (options.max_open_duration_s, options.half_open_max_calls) == (300.0, 1)
    assert options.is_failure is counts_as_failure


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"minimum_calls": 0}, "minimum_calls: must be at least 1, got 0"),
        ({"minimum_calls": 101}, "minimum_calls: must be at most the window's 100, got 101"),
        ({"failure_rate_threshold": 0.0}, "failure_rate_threshold: must be in (0, 1], got 0.0"),
        ({"failure_rate_threshold": 1.5}, "failure_rate_threshold: must be in (0, 1], got 1.5"),
        ({"slow_call_rate_threshold": -1}, "slow_call_rate_threshold: must be in (0, 1], got -1"),
        ({"slow_call_duration_s": 0.0}, "slow_call_duration_s: must be positive, got 0.0"),
        ({"slow_call_duration_s": math.inf}, "slow_call_duration_s: must be positive, got inf"),
        ({"consecutive_failures": -1}, "consecutive_failures: must be 0 or more, got -1"),
        ({"open_duration_s": 0}, "open_duration_s: must be positive, got 0"),
        ({"backoff_multiplier": 0.5}, "backoff_multiplier: must be at least 1, got 0.5"),
        (
            {"max_open_duration_s": 10.0},
            "max_open_duration_s: must be at least open_duration_s (30.0), got 10.0",
        ),
        (
            {"max_open_duration_s": math.inf},
            "max_open_duration_s: must be at least open_duration_s (30.0), got inf",
        ),
        ({"half_open_max_calls": 0}, "half_open_max_calls: must be at least 1, got 0"),
    ],
)
def test_invalid_options_name_the_field_and_the_rule(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        replace(CircuitBreakerOptions(), **changes)


def test_a_time_window_allows_any_minimum_and_slow_calls_may_be_off() -> None:
    options = CircuitBreakerOptions(
        window=TimeWindow(duration_s=5), minimum_calls=1000, slow_call_duration_s=None
    )
    assert options.minimum_calls == 1000


# Trip conditions


async def test_failure_rate_trips_only_once_minimum_calls_are_in_the_window() -> None:
    h = await harness()
    for _ in range(3):
        await h.fail()
    assert h.breaker.state is CLOSED  # 100% failed, but 3 calls < minimum_calls 4
    await h.call()
    assert h.breaker.state is OPEN
    assert h.events == [CircuitOpened(TARGET, 0.75, 0.0, 4, 30.0, TripReason.FAILURE_RATE)]


async def test_the_failure_rate_threshold_is_inclusive() -> None:
    h = await harness()
    for _ in range(3):
        await h.call()
    await h.fail()
    await h.fail()
    assert h.breaker.state is CLOSED  # 2 of 5 = 40% < 50%
    await h.fail()
    assert h.breaker.state is OPEN  # 3 of 6 = 50%
    assert h.opened()[0].failure_rate == 0.5


async def test_a_count_window_forgets_calls_older_than_its_size() -> None:
    options = replace(RATES_ONLY, window=CountWindow(size_calls=4))
    h = await harness(options)
    await h.fail()
    for _ in range(5):
        await h.call()
    await h.fail()
    assert h.breaker.snapshot().failures == 1  # the first failure fell out of the window
    await h.fail()
    # 3 failures of 8 calls is 37.5%, but of the last 4 it is 50%.
    assert h.breaker.state is OPEN
    assert h.opened()[0].calls == 4


@pytest.mark.parametrize(("wait_s", "state"), [(9.0, OPEN), (9.5, CLOSED)])
async def test_a_time_window_forgets_failures_as_the_clock_moves(
    wait_s: float, state: CircuitState
) -> None:
    options = replace(RATES_ONLY, window=TimeWindow(duration_s=10))
    h = await harness(options)
    h.clock.advance(0.5)  # 1000.5: bucket 1000
    for _ in range(3):
        await h.fail()
    h.clock.advance(wait_s)  # 1009.5: bucket 1000 still counts; 1010.0: it has expired
    await h.call()
    assert h.breaker.state is state
    snapshot = h.breaker.snapshot()
    assert (snapshot.calls, snapshot.failures) == ((4, 3) if state is OPEN else (1, 0))


async def test_slow_calls_are_measured_on_the_clock_and_trip_the_slow_call_rate() -> None:
    options = replace(RATES_ONLY, slow_call_duration_s=2.0, slow_call_rate_threshold=0.5)
    h = await harness(options)
    await h.call(Respond(latency_s=1.999))
    await h.call(Respond(latency_s=2.0))  # slow from exactly slow_call_duration_s
    await h.call(Respond())
    assert (h.breaker.snapshot().slow_calls, h.breaker.state) == (1, CLOSED)
    await h.call(Respond(latency_s=5.0))
    assert h.breaker.state is OPEN
    assert h.events == [CircuitOpened(TARGET, 0.0, 0.5, 4, 30.0, TripReason.SLOW_CALL_RATE)]


async def test_a_slow_failure_counts_as_failed_and_slow() -> None:
    options = replace(RATES_ONLY, slow_call_duration_s=1.0)
    h = await harness(options)
    await h.fail(BackendTimeoutError("no answer in 3 s"), latency_s=3.0)
    snapshot = h.breaker.snapshot()
    assert (snapshot.calls, snapshot.failures, snapshot.slow_calls) == (1, 1, 1)
    assert (snapshot.failure_rate, snapshot.slow_call_rate) == (1.0, 1.0)


async def test_consecutive_failures_trip_below_minimum_calls_and_a_success_resets_them() -> None:
    options = CircuitBreakerOptions(consecutive_failures=3)  # minimum_calls is 20
    h = await harness(options)
    await h.fail()
    await h.fail()
    await h.call()
    await h.fail()
    await h.fail()
    assert (h.breaker.state, h.breaker.snapshot().consecutive_failures) == (CLOSED, 2)
    with pytest.raises(InvalidInputError):  # a rejection neither breaks nor extends the run
        await h.call(Fail(InvalidInputError("inputs", "bad")))
    assert h.breaker.snapshot().consecutive_failures == 2
    await h.fail()
    assert h.breaker.state is OPEN
    assert h.events == [CircuitOpened(TARGET, 5 / 6, 0.0, 6, 30.0, TripReason.CONSECUTIVE_FAILURES)]
    assert "the last 3 calls failed" in str(await h.refused())


# What counts


@pytest.mark.parametrize(
    "error",
    [
        InvalidInputError("inputs[0].shape", "wrong"),
        OverloadedError("bulkhead full", retry_after_s=1.0),
        RateLimitedError("quota", retry_after_s=2.0),
    ],
)
async def test_rejections_are_neither_successes_nor_failures(error: Exception) -> None:
    h = await harness(replace(RATES_ONLY, consecutive_failures=1, minimum_calls=1))
    for _ in range(10):
        with pytest.raises(type(error)) as info:
            await h.call(Fail(error))
        assert info.value is error
    assert h.breaker.state is CLOSED
    assert h.breaker.snapshot().calls == 0


async def test_every_other_exception_is_a_failure_by_default() -> None:
    h = await harness(replace(RATES_ONLY, consecutive_failures=2))
    await h.fail(BackendTimeoutError("timed out"))
    await h.fail(RuntimeError("a bug below the breaker"))
    assert h.breaker.state is OPEN


async def test_is_failure_chooses_what_counts() -> None:
    def timeouts(exc: Exception) -> bool:
        return isinstance(exc, BackendTimeoutError)

    h = await harness(replace(RATES_ONLY, consecutive_failures=2, is_failure=timeouts))
    for _ in range(3):
        await h.fail(DOWN)
    assert (h.breaker.state, h.breaker.snapshot().calls) == (CLOSED, 0)
    await h.fail(BackendTimeoutError("timed out"))
    await h.fail(BackendTimeoutError("timed out"))
    assert h.breaker.state is OPEN


async def test_a_cancelled_call_is_not_recorded() -> None:
    h = await harness(replace(RATES_ONLY, consecutive_failures=1))
    task = await h.start(Hang())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert h.backend.stats.cancelled == 1
    assert (h.breaker.state, h.breaker.snapshot().calls) == (CLOSED, 0)


async def test_a_call_admitted_before_a_change_of_state_does_not_count_after_it() -> None:
    options = replace(ONE_STRIKE, consecutive_failures=2, open_duration_s=2.0)
    h = await harness(options)
    straggler = await h.start(Fail(DOWN, latency_s=5.0))  # admitted while CLOSED
    await h.fail()
    await h.fail()
    h.clock.advance(2.0)
    probe = await h.start(Respond(latency_s=10.0))
    assert h.breaker.state is HALF_OPEN
    h.clock.advance(3.0)
    with pytest.raises(BackendUnavailableError):
        await straggler
    snapshot = h.breaker.snapshot()  # the straggler did not pass for a probe
    assert (snapshot.state, snapshot.calls, snapshot.probes_in_flight) == (HALF_OPEN, 0, 1)
    h.clock.advance(7.0)
    await probe
    assert h.breaker.state is CLOSED


async def test_a_call_from_before_the_breaker_opened_does_not_count_once_it_closes() -> None:
    h = await harness(replace(ONE_STRIKE, consecutive_failures=2, open_duration_s=2.0))
    straggler = await h.start(Fail(DOWN, latency_s=5.0))
    await h.fail()
    await h.fail()
    h.clock.advance(2.0)
    await h.call()
    assert h.breaker.state is CLOSED
    h.clock.advance(3.0)
    with pytest.raises(BackendUnavailableError):
        await straggler
    snapshot = h.breaker.snapshot()
    assert (snapshot.calls, snapshot.failures, snapshot.consecutive_failures) == (0, 0, 0)


# Open


async def test_open_refuses_at_once_with_the_time_left_as_retry_after() -> None:
    h = await harness()
    for _ in range(4):
        await h.fail()
    h.clock.advance(12.5)
    error = await h.refused()
    assert error.retry_after_s == 17.5
    assert str(error) == (
        "model 'iris:1': the circuit breaker is open: 4 of the last 4 calls failed (100%); "
        "retry in 17.5 s"
    )
    assert h.events[-1] == CircuitRejected(TARGET, OPEN, AUTOMATIC, 17.5)
    snapshot = h.breaker.snapshot()
    assert (snapshot.open_until, snapshot.retry_after_s) == (1030.0, 17.5)


async def test_open_lasts_until_a_call_arrives_after_the_open_duration() -> None:
    h = await tripped()
    h.clock.advance(9.999)
    assert (await h.refused()).retry_after_s == pytest.approx(0.001)
    h.clock.advance(0.001)
    assert h.breaker.state is OPEN  # the move to HALF_OPEN waits for a call
    await h.call()
    assert h.breaker.state is CLOSED
    assert h.changes()[1:] == [CircuitHalfOpened(TARGET, 1), CircuitClosed(TARGET, 1, 0.0, 0.0)]


async def test_the_open_duration_grows_on_each_reopening_up_to_the_cap_and_resets_on_close() -> (
    None
):
    h = await tripped()  # 10 s
    for expected_s in (20.0, 30.0, 30.0):  # a failed probe re-opens for twice as long, capped
        h.clock.advance(h.opened()[-1].open_for_s)
        await h.fail()
        assert h.breaker.state is OPEN
        assert (await h.refused()).retry_after_s == expected_s
    h.clock.advance(30.0)
    await h.call()
    assert (h.breaker.state, h.breaker.snapshot().open_for_s) == (CLOSED, 10.0)
    await h.fail()
    assert [e.open_for_s for e in h.opened()] == [10.0, 20.0, 30.0, 30.0, 10.0]
    reasons = [e.reason for e in h.opened()]
    first, again = TripReason.CONSECUTIVE_FAILURES, TripReason.PROBE_FAILURE_RATE
    assert reasons == [first, again, again, again, first]


# Half-open


async def test_half_open_admits_at_most_half_open_max_calls_probes() -> None:
    h = await tripped(replace(ONE_STRIKE, half_open_max_calls=3))
    h.clock.advance(10.0)
    probes = [await h.start(Respond(latency_s=1.0)) for _ in range(3)]
    assert h.breaker.state is HALF_OPEN
    error = await h.refused()
    assert error.retry_after_s == HALF_OPEN_RETRY_AFTER_S
    assert "is half-open and its 3 probes are taken" in str(error)
    assert h.events[-1] == CircuitRejected(TARGET, HALF_OPEN, AUTOMATIC, 1.0)
    assert h.backend.stats.max_in_flight == 3
    h.clock.advance(1.0)
    await asyncio.gather(*probes)
    assert h.breaker.state is CLOSED
    assert h.changes()[-1] == CircuitClosed(TARGET, 3, 0.0, 0.0)


async def test_a_finished_probe_does_not_free_its_slot() -> None:
    h = await tripped(replace(ONE_STRIKE, half_open_max_calls=2))
    h.clock.advance(10.0)
    quick = await h.start(Respond(latency_s=1.0))
    slow = await h.start(Respond(latency_s=5.0))
    h.clock.advance(1.0)
    await quick
    assert h.breaker.snapshot().calls == 1
    await h.refused()  # one probe done, one in flight: both slots are spent
    h.clock.advance(4.0)
    await slow
    assert h.breaker.state is CLOSED


@pytest.mark.parametrize(
    ("max_calls", "failing", "state"),
    [
        (1, 1, OPEN),
        (2, 1, OPEN),  # 50% failed: at the threshold
        (3, 1, CLOSED),  # 33% failed: below the threshold, as resilience4j
        (3, 2, OPEN),
        (4, 0, CLOSED),
    ],
)
async def test_probes_close_the_breaker_only_below_the_failure_rate_threshold(
    max_calls: int, failing: int, state: CircuitState
) -> None:
    h = await tripped(replace(ONE_STRIKE, half_open_max_calls=max_calls))
    h.clock.advance(10.0)
    steps: list[Step] = [Fail(DOWN, 1.0)] * failing + [Respond(latency_s=1.0)] * (
        max_calls - failing
    )
    probes = [await h.start(step) for step in steps]
    assert h.breaker.state is HALF_OPEN
    h.clock.advance(1.0)
    await asyncio.gather(*probes, return_exceptions=True)
    assert h.breaker.state is state
    rate = failing / max_calls
    if state is OPEN:
        assert h.changes()[-1] == CircuitOpened(
            TARGET, rate, 0.0, max_calls, 20.0, TripReason.PROBE_FAILURE_RATE
        )
    else:
        assert h.changes()[-1] == CircuitClosed(TARGET, max_calls, rate, 0.0)


async def test_a_slow_probe_reopens() -> None:
    h = await tripped(replace(ONE_STRIKE, slow_call_duration_s=2.0))
    h.clock.advance(10.0)
    await h.call(Respond(latency_s=2.0))
    assert h.breaker.state is OPEN
    assert h.changes()[-1] == CircuitOpened(
        TARGET, 0.0, 1.0, 1, 20.0, TripReason.PROBE_SLOW_CALL_RATE
    )
    assert str(await h.refused()).startswith(
        "model 'iris:1': the circuit breaker is open: 1 of 1 probe calls were slow;"
    )


async def test_a_cancelled_probe_frees_its_slot() -> None:
    h = await tripped()
    h.clock.advance(10.0)
    probe = await h.start(Hang())
    await h.refused()
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert h.breaker.snapshot().probes_in_flight == 0
    await h.call()
    assert h.breaker.state is CLOSED


async def test_a_rejected_probe_frees_its_slot() -> None:
    h = await tripped()
    h.clock.advance(10.0)
    with pytest.raises(OverloadedError):
        await h.call(Fail(OverloadedError("full", retry_after_s=1.0)))
    assert (h.breaker.state, h.breaker.snapshot().calls) == (HALF_OPEN, 0)
    await h.call()
    assert h.breaker.state is CLOSED


async def test_closing_empties_the_window() -> None:
    h = await harness(replace(RATES_ONLY, open_duration_s=10.0, max_open_duration_s=10.0))
    for _ in range(4):
        await h.fail()
    assert h.breaker.state is OPEN
    h.clock.advance(10.0)
    await h.call()
    assert h.breaker.snapshot().calls == 0
    for _ in range(3):
        await h.fail()
    assert h.breaker.state is CLOSED  # the old failures are gone: 3 calls < minimum_calls


# Forced modes


async def test_forced_open_refuses_everything_until_reset() -> None:
    h = await harness()
    h.breaker.force_open()
    for _ in range(2):
        error = await h.refused()
        assert error.retry_after_s == 30.0
        assert str(error) == (
            "model 'iris:1': the circuit breaker is forced open by an operator; retry in 30.0 s"
        )
        h.clock.advance(1000.0)
    assert (h.breaker.state, h.breaker.mode) == (OPEN, FORCED_OPEN)
    assert h.breaker.snapshot().open_until is None
    h.breaker.reset()
    await h.call()
    assert h.events == [
        CircuitForced(TARGET, FORCED_OPEN),
        CircuitRejected(TARGET, OPEN, FORCED_OPEN, 30.0),
        CircuitRejected(TARGET, OPEN, FORCED_OPEN, 30.0),
        CircuitForced(TARGET, AUTOMATIC),
    ]


async def test_forced_closed_passes_everything_and_records_but_never_trips() -> None:
    h = await tripped(replace(ONE_STRIKE, window=CountWindow(size_calls=4), minimum_calls=1))
    h.breaker.force_closed()
    for _ in range(6):
        await h.fail()
    snapshot = h.breaker.snapshot()
    assert (snapshot.state, snapshot.mode) == (CLOSED, FORCED_CLOSED)
    assert (snapshot.calls, snapshot.failures, snapshot.consecutive_failures) == (4, 4, 6)
    assert len(h.opened()) == 1
    h.breaker.reset()
    snapshot = h.breaker.snapshot()
    assert (snapshot.state, snapshot.mode, snapshot.calls) == (CLOSED, AUTOMATIC, 0)
    await h.fail()
    assert h.breaker.state is OPEN


async def test_reset_returns_to_the_base_open_duration() -> None:
    h = await tripped()
    h.clock.advance(10.0)
    await h.fail()
    assert h.opened()[-1].open_for_s == 20.0
    h.breaker.reset()
    await h.fail()
    assert h.opened()[-1].open_for_s == 10.0


# Events, snapshot, types


async def test_events_tell_the_whole_story_in_order() -> None:
    h = await harness(replace(RATES_ONLY, open_duration_s=5.0, half_open_max_calls=2))
    for _ in range(4):
        await h.fail()
    await h.refused()
    h.clock.advance(5.0)
    await h.fail()
    await h.call()
    h.clock.advance(10.0)
    await h.call()
    await h.call()
    h.breaker.force_open()
    h.breaker.reset()
    assert h.events == [
        CircuitOpened(TARGET, 1.0, 0.0, 4, 5.0, TripReason.FAILURE_RATE),
        CircuitRejected(TARGET, OPEN, AUTOMATIC, 5.0),
        CircuitHalfOpened(TARGET, 2),
        CircuitOpened(TARGET, 0.5, 0.0, 2, 10.0, TripReason.PROBE_FAILURE_RATE),
        CircuitHalfOpened(TARGET, 2),
        CircuitClosed(TARGET, 2, 0.0, 0.0),
        CircuitForced(TARGET, FORCED_OPEN),
        CircuitForced(TARGET, AUTOMATIC),
    ]


async def test_snapshot_reports_the_window_while_open_and_the_probes_while_half_open() -> None:
    h = await harness(replace(RATES_ONLY, half_open_max_calls=2))
    await h.call()
    for _ in range(3):
        await h.fail()
    assert h.breaker.snapshot() == CircuitSnapshot(
        state=OPEN,
        mode=AUTOMATIC,
        calls=4,
        failures=3,
        slow_calls=0,
        failure_rate=0.75,
        slow_call_rate=0.0,
        consecutive_failures=0,
        probes_in_flight=0,
        open_for_s=30.0,
        open_until=1030.0,
        retry_after_s=30.0,
    )
    h.clock.advance(30.0)
    probe = await h.start(Hang())
    await h.call()
    assert h.breaker.snapshot() == CircuitSnapshot(
        HALF_OPEN, AUTOMATIC, 1, 0, 0, 0.0, 0.0, 0, 1, 30.0, None, None
    )
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe


async def test_the_breaker_is_generic_over_requests_and_responses() -> None:
    clock = FakeClock()
    breaker: CircuitBreakerPolicy[str, str] = CircuitBreakerPolicy(
        CircuitBreakerOptions(consecutive_failures=1), clock=clock
    )

    async def shout(text: str, ctx: CallContext) -> str:
        return text.upper()

    async def broken(text: str, ctx: CallContext) -> str:
        raise BackendError("down")

    assert await breaker("hi", CallContext.new(), shout) == "HI"
    with pytest.raises(BackendError):
        await breaker("hi", CallContext.new(), broken)
    with pytest.raises(CircuitOpenError) as info:
        await breaker("hi", CallContext.new(), shout)
    assert str(info.value).startswith("the circuit breaker is open: the last 1 calls failed;")
    assert breaker.name == "circuit_breaker"


# The acceptance test: the breaker against a reference model of its rules.


class Model:
    """The breaker's rules written plainly: lists instead of windows, formulas instead of state."""

    def __init__(self, options: CircuitBreakerOptions) -> None:
        self.o = options
        self.mode, self.state = AUTOMATIC, CLOSED
        self.period = 0  # a call counts only if no change of state came between its start and end
        self.outcomes: list[tuple[float, bool, bool]] = []  # (ended at, failed, slow)
        self.streak = 0
        self.reopens = 0
        self.open_until = 0.0
        self.probes: list[tuple[bool, bool]] = []  # (failed, slow) of the ended probes
        self.probing = 0
        self.log: list[object] = []  # state changes, as the breaker's events should tell them

    def open_for_s(self) -> float:
        o = self.o
        return min(o.open_duration_s * o.backoff_multiplier**self.reopens, o.max_open_duration_s)

    def window(self, now: float) -> list[tuple[bool, bool]]:
        w = self.o.window
        if isinstance(w, CountWindow):
            return [(f, s) for _, f, s in self.outcomes[-w.size_calls :]]
        return [
            (f, s) for t, f, s in self.outcomes if math.floor(t) > math.floor(now) - w.duration_s
        ]

    def counts(self, now: float) -> list[tuple[bool, bool]]:
        return self.probes if self.state is HALF_OPEN else self.window(now)

    def admit(self, now: float) -> tuple[int, bool] | float:
        """(period, is a probe) for an admitted call, or the `Retry-After` of a refusal."""
        if self.mode is FORCED_OPEN:
            return self.o.open_duration_s
        if self.state is OPEN:
            if now < self.open_until:
                return self.open_until - now
            self.outcomes = []
            self.move(HALF_OPEN, ("half-opened",))
        if self.state is HALF_OPEN:
            if self.probing + len(self.probes) >= self.o.half_open_max_calls:
                return HALF_OPEN_RETRY_AFTER_S
            self.probing += 1
        return (self.period, self.state is HALF_OPEN)

    def finish(self, permit: tuple[int, bool], started: float, now: float, outcome: str) -> None:
        period, probe = permit
        if period != self.period:
            return
        if outcome in ("ignored", "cancelled"):
            self.probing -= probe
            return
        failed, limit_s = outcome == "fail", self.o.slow_call_duration_s
        slow = limit_s is not None and now - started >= limit_s
        if probe:
            self.probing -= 1
            self.probes.append((failed, slow))
            if len(self.probes) == self.o.half_open_max_calls:
                if self.trips(self.probes):
                    self.reopens += 1
                    self.trip(now)
                else:
                    self.reopens, self.outcomes = 0, []
                    self.move(CLOSED, ("closed",))
            return
        self.outcomes.append((now, failed, slow))
        self.streak = self.streak + 1 if failed else 0
        if self.mode is AUTOMATIC:
            streak, window = self.o.consecutive_failures, self.window(now)
            rates = len(window) >= self.o.minimum_calls and self.trips(window)
            if rates or (streak and self.streak >= streak):
                self.trip(now)

    def trips(self, outcomes: list[tuple[bool, bool]]) -> bool:
        n = len(outcomes)
        failures, slow = sum(f for f, _ in outcomes), sum(s for _, s in outcomes)
        o = self.o
        return failures / n >= o.failure_rate_threshold or slow / n >= o.slow_call_rate_threshold

    def trip(self, now: float) -> None:
        self.open_until = now + self.open_for_s()
        self.move(OPEN, ("opened", self.open_for_s()))

    def force(self, mode: CircuitMode) -> None:
        if mode is AUTOMATIC:
            self.outcomes, self.reopens = [], 0
        self.mode = mode
        self.move(OPEN if mode is FORCED_OPEN else CLOSED, ("forced", mode))

    def move(self, state: CircuitState, change: object) -> None:
        self.state, self.period, self.streak = state, self.period + 1, 0
        self.probes, self.probing = [], 0
        self.log.append(change)


def _as_change(event: object) -> object:
    if isinstance(event, CircuitOpened):
        return ("opened", event.open_for_s)
    if isinstance(event, CircuitHalfOpened):
        return ("half-opened",)
    if isinstance(event, CircuitClosed):
        return ("closed",)
    assert isinstance(event, CircuitForced)
    return ("forced", event.mode)


@dataclass
class Call:
    """A call in flight: its task, the answer its backend is waiting for, the model's permit."""

    task: asyncio.Task[str]
    answer: asyncio.Future[str]
    permit: tuple[int, bool]
    started: float


OUTCOMES = st.sampled_from(["ok", "fail", "ignored", "cancelled"])
THRESHOLDS = st.sampled_from([0.25, 0.5, 0.75, 1.0])


@st.composite
def breaker_options(draw: st.DrawFn) -> CircuitBreakerOptions:
    window = draw(
        st.one_of(
            st.builds(CountWindow, st.integers(1, 6)), st.builds(TimeWindow, st.integers(1, 5))
        )
    )
    size = window.size_calls if isinstance(window, CountWindow) else 6
    base_s = draw(st.sampled_from([1.0, 2.0, 5.0]))
    return CircuitBreakerOptions(
        window=window,
        minimum_calls=draw(st.integers(1, size)),
        failure_rate_threshold=draw(THRESHOLDS),
        slow_call_rate_threshold=draw(THRESHOLDS),
        slow_call_duration_s=draw(st.sampled_from([None, 1.0, 2.5])),
        consecutive_failures=draw(st.integers(0, 3)),
        open_duration_s=base_s,
        backoff_multiplier=draw(st.sampled_from([1.0, 1.5, 2.0, 3.0])),
        max_open_duration_s=base_s * draw(st.sampled_from([1, 4, 10])),
        half_open_max_calls=draw(st.integers(1, 3)),
    )


class BreakerMachine(RuleBasedStateMachine):
    """Calls that succeed, fail, are slow, are rejected below or cancelled, in any interleaving."""

    calls = Bundle("calls")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.events: list[object] = []
        self.in_flight: list[Call] = []
        self.breaker: CircuitBreakerPolicy[str, str] = CircuitBreakerPolicy(clock=self.clock)
        self.model = Model(CircuitBreakerOptions())

    def teardown(self) -> None:
        for call in self.in_flight:
            call.task.cancel()
        self._settle()
        self.loop.close()

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coro)

    def _settle(self) -> None:
        async def yield_a_few_times() -> None:
            for _ in range(3):
                await asyncio.sleep(0)

        self._run(yield_a_few_times())

    @initialize(options=breaker_options())
    def configure(self, options: CircuitBreakerOptions) -> None:
        self.breaker = CircuitBreakerPolicy(options, clock=self.clock, on_event=self.events.append)
        self.model = Model(options)

    def _start(self) -> Call | None:
        """Start a call whose backend waits for an answer; None if the breaker refused it."""
        answer: asyncio.Future[str] = self.loop.create_future()

        async def backend(request: str, ctx: CallContext) -> str:
            return await answer

        task = self.loop.create_task(self.breaker("request", CallContext.new(), backend))
        self._settle()
        now = self.clock.monotonic()
        expected = self.model.admit(now)
        if isinstance(expected, float):
            assert task.done(), "the model refuses a call that the breaker admitted"
            error = task.exception()
            assert isinstance(error, CircuitOpenError), error
            assert error.retry_after_s == expected
            return None
        assert not task.done(), f"the breaker refused a call the model admits: {task!r}"
        call = Call(task, answer, expected, now)
        self.in_flight.append(call)
        return call

    def _finish(self, call: Call, outcome: str) -> None:
        errors: dict[str, Exception] = {"fail": DOWN, "ignored": OverloadedError("full")}
        if outcome == "cancelled":
            call.task.cancel()
        elif outcome == "ok":
            call.answer.set_result("response")
        else:
            call.answer.set_exception(errors[outcome])
        self._settle()
        assert call.task.done()
        self.in_flight.remove(call)
        if outcome == "cancelled":
            assert call.task.cancelled()
        elif outcome == "ok":
            assert call.task.result() == "response"
        else:
            assert call.task.exception() is errors[outcome]
        self.model.finish(call.permit, call.started, self.clock.monotonic(), outcome)

    def _call(self, outcome: str, latency_s: float = 0.0) -> None:
        call = self._start()
        if call is not None:
            self.clock.advance(latency_s)
            self._finish(call, outcome)

    @rule()
    def successful_call(self) -> None:
        self._call("ok")

    @rule()
    def failing_call(self) -> None:
        self._call("fail")

    @rule(failed=st.booleans(), latency_s=st.sampled_from([1.0, 2.5, 4.0]))
    def slow_call(self, failed: bool, latency_s: float) -> None:
        self._call("fail" if failed else "ok", latency_s)

    @rule()
    def rejected_below_call(self) -> None:
        self._call("ignored")

    @rule(target=calls)
    def start_call(self) -> object:
        call = self._start()
        return multiple() if call is None else call

    @rule(call=consumes(calls), outcome=OUTCOMES)
    def finish_call(self, call: Call, outcome: str) -> None:
        self._finish(call, outcome)

    @precondition(lambda self: self.model.mode is AUTOMATIC and self.model.state is not CLOSED)
    @rule(data=st.data(), count=st.integers(1, 4))
    def concurrent_probes(self, data: st.DataObject, count: int) -> None:
        if self.model.state is OPEN:
            self.clock.advance(max(0.0, self.model.open_until - self.clock.monotonic()))
        started = [c for c in (self._start() for _ in range(count)) if c is not None]
        self.clock.advance(data.draw(st.sampled_from([0.0, 1.0, 3.0]), label="latency_s"))
        for call in data.draw(st.permutations(started), label="order"):
            self._finish(call, data.draw(OUTCOMES, label="outcome"))

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.5, 7.0]))
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def force_open(self) -> None:
        self.breaker.force_open()
        self.model.force(FORCED_OPEN)

    @rule()
    def force_closed(self) -> None:
        self.breaker.force_closed()
        self.model.force(FORCED_CLOSED)

    @rule()
    def reset(self) -> None:
        self.breaker.reset()
        self.model.force(AUTOMATIC)

    @invariant()
    def agrees_with_the_model(self) -> None:
        model, now = self.model, self.clock.monotonic()
        snapshot = self.breaker.snapshot()
        assert (snapshot.state, snapshot.mode) == (model.state, model.mode)
        outcomes = model.counts(now)
        counts = (len(outcomes), sum(f for f, _ in outcomes), sum(s for _, s in outcomes))
        assert (snapshot.calls, snapshot.failures, snapshot.slow_calls) == counts
        assert snapshot.consecutive_failures == model.streak
        assert snapshot.probes_in_flight == model.probing
        assert snapshot.open_for_s == model.open_for_s()
        timed = model.state is OPEN and model.mode is AUTOMATIC
        assert snapshot.open_until == (model.open_until if timed else None)

    @invariant()
    def events_tell_the_models_changes(self) -> None:
        changes = [_as_change(e) for e in self.events if not isinstance(e, CircuitRejected)]
        assert changes == self.model.log


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


def test_the_reference_model_follows_the_documented_rules() -> None:
    """The oracle itself, on one open / half-open / re-open cycle worked out by hand."""
    model = Model(ONE_STRIKE)
    permit = model.admit(1000.0)
    assert permit == (0, False)
    model.finish(permit, 1000.0, 1000.0, "fail")
    assert (model.state, model.open_until, model.log) == (OPEN, 1010.0, [("opened", 10.0)])
    assert model.admit(1005.0) == 5.0
    probe = model.admit(1010.0)
    assert (model.state, probe, model.admit(1010.0)) == (HALF_OPEN, (2, True), 1.0)
    model.finish(probe, 1010.0, 1011.0, "fail")
    assert (model.state, model.open_for_s(), model.open_until) == (OPEN, 20.0, 1031.0)
