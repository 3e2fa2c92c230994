"""EndpointPool: balancing, Envoy-style outlier ejection, active health checks, panic routing."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.backends.balancer import LeastOutstanding, WeightedRoundRobin
from seawall.backends.base import Backend, HealthChecked
from seawall.backends.mock import Fail, Hang, MockBackend, Respond
from seawall.backends.outlier import EndpointEjected, EndpointReturned, OutlierOptions
from seawall.backends.pool import (
    Endpoint,
    EndpointHealthy,
    EndpointLoaded,
    EndpointLoadFailed,
    EndpointPool,
    EndpointUnhealthy,
    HealthCheckOptions,
)
from seawall.clock import FakeClock
from seawall.context import CallContext
from seawall.errors import (
    BackendError,
    BackendUnavailableError,
    InvalidInputError,
    ModelNotReadyError,
)
from seawall.types import InferenceRequest, Tensor

DOWN = BackendUnavailableError("connection refused")


def request() -> InferenceRequest:
    data = np.ones((1, 2), np.float32)
    return InferenceRequest("m", [Tensor.from_numpy("input-0", data)], id="r1")


def mocks(n: int, clock: FakeClock, failing: tuple[int, ...] = ()) -> list[MockBackend]:
    return [
        MockBackend(f"e{i}", clock=clock, error_rate=1.0 if i in failing else 0.0, error=DOWN)
        for i in range(n)
    ]


async def started(pool: EndpointPool) -> EndpointPool:
    await pool.load()
    return pool


async def call(pool: EndpointPool, n: int = 1) -> list[BaseException | None]:
    """Make `n` calls one after another; the error of each failed call, None for a success."""
    outcomes: list[BaseException | None] = []
    for _ in range(n):
        try:
            await pool.infer(request(), CallContext.new())
        except BackendError as exc:
            outcomes.append(exc)
        else:
            outcomes.append(None)
    return outcomes


def calls(endpoints: list[MockBackend]) -> list[int]:
    return [e.stats.calls for e in endpoints]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


# --- lifecycle -------------------------------------------------------------------------------


async def test_is_a_backend_that_loads_every_endpoint() -> None:
    clock = FakeClock()
    endpoints = mocks(3, clock)
    pool = EndpointPool(endpoints, clock=clock)
    assert isinstance(pool, Backend)
    assert pool.name == "pool[mock:e0, mock:e1, mock:e2]"
    assert not pool.ready()
    await pool.load()
    assert pool.ready()
    assert [e.ready() for e in endpoints] == [True, True, True]
    assert pool.metadata().name == "e0"
    await pool.close()
    assert [e.ready() for e in endpoints] == [False, False, False]


async def test_serves_with_the_endpoints_that_loaded() -> None:
    clock = FakeClock()
    events: list[object] = []
    endpoints = [
        MockBackend("e0", clock=clock, load_error=RuntimeError("no such file")),
        MockBackend("e1", clock=clock),
    ]
    pool = await started(EndpointPool(endpoints, clock=clock, on_event=events.append, target="m"))
    assert events == [EndpointLoadFailed("m", "mock:e0", 0, "RuntimeError: no such file")]
    assert pool.metadata().name == "e1"  # the first endpoint that loaded
    assert await call(pool, 4) == [None] * 4
    assert calls(endpoints) == [0, 4]


async def test_fails_to_load_when_no_endpoint_loads() -> None:
    endpoints = [MockBackend(f"e{i}", load_error=RuntimeError(f"bad {i}")) for i in range(2)]
    pool = EndpointPool(endpoints)
    with pytest.raises(RuntimeError, match="bad 0"):
        await pool.load()
    with pytest.raises(ModelNotReadyError, match="no endpoint is loaded"):
        pool.metadata()
    await pool.close()  # safe after a failed load


def test_refuses_an_empty_pool_and_bad_weights() -> None:
    with pytest.raises(ValueError, match="at least one endpoint"):
        EndpointPool([])
    with pytest.raises(ValueError, match="weight: must be at least 1"):
        Endpoint(MockBackend(), weight=0)


# --- balancing -------------------------------------------------------------------------------


async def test_round_robin_by_default_exactly() -> None:
    clock = FakeClock()
    endpoints = mocks(4, clock)
    pool = await started(EndpointPool(endpoints, clock=clock))
    await call(pool, 400)
    assert calls(endpoints) == [100, 100, 100, 100]


async def test_weighted_endpoints_get_their_share_exactly() -> None:
    clock = FakeClock()
    endpoints = mocks(3, clock)
    weighted = [Endpoint(e, weight=w) for e, w in zip(endpoints, (5, 3, 2), strict=True)]
    pool = await started(EndpointPool(weighted, balancer=WeightedRoundRobin(), clock=clock))
    await call(pool, 1000)
    assert calls(endpoints) == [500, 300, 200]


async def test_least_outstanding_sends_calls_to_the_idle_endpoint() -> None:
    clock = FakeClock()
    endpoints = mocks(3, clock)
    endpoints[0].push(Respond(latency_s=10.0))
    endpoints[1].push(Respond(latency_s=10.0))
    pool = await started(EndpointPool(endpoints, balancer=LeastOutstanding(), clock=clock))
    slow = [asyncio.create_task(pool.infer(request(), CallContext.new())) for _ in range(2)]
    await settle()
    assert pool.outstanding == (1, 1, 0)
    await call(pool, 5)  # each finishes at once: endpoint 2 stays the idlest
    assert calls(endpoints) == [1, 1, 5]
    clock.advance(10.0)
    await asyncio.gather(*slow)
    assert pool.outstanding == (0, 0, 0)


async def test_a_cancelled_call_is_no_longer_outstanding_and_not_a_failure() -> None:
    clock = FakeClock()
    endpoints = mocks(2, clock)
    endpoints[0].push(Hang())
    pool = await started(EndpointPool(endpoints, clock=clock))
    task = asyncio.create_task(pool.infer(request(), CallContext.new()))
    await settle()
    assert pool.outstanding == (1, 0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.outstanding == (0, 0)
    assert endpoints[0].stats.cancelled == 1
    assert pool.detector.consecutive_failures(0) == 0


# --- outlier ejection ------------------------------------------------------------------------


async def test_five_consecutive_5xx_eject_an_endpoint_for_the_base_ejection_time() -> None:
    clock = FakeClock()
    events: list[object] = []
    endpoints = mocks(2, clock, failing=(0,))
    pool = await started(EndpointPool(endpoints, clock=clock, on_event=events.append, target="m"))
    outcomes = await call(pool, 10)  # alternating: the 5th failure of endpoint 0 is call 9
    assert [o is None for o in outcomes] == [False, True] * 5
    assert events == [EndpointEjected("m", "mock:e0", 0, 5, 30.0, 1)]
    await call(pool, 50)
    assert calls(endpoints) == [5, 55]  # no traffic while ejected
    clock.advance(29.9)
    await call(pool, 10)
    assert calls(endpoints) == [5, 65]
    clock.advance(0.1)
    assert pool.detector.in_service() == [0, 1]
    assert events[-1] == EndpointReturned("m", "mock:e0", 0, 30.0)
    await call(pool, 10)
    assert calls(endpoints) == [10, 70]  # back in the rotation


async def test_a_second_ejection_lasts_twice_as_long() -> None:
    clock = FakeClock()
    events: list[object] = []
    endpoints = mocks(2, clock, failing=(0,))
    pool = await started(EndpointPool(endpoints, clock=clock, on_event=events.append))
    await call(pool, 10)
    clock.advance(30.0)
    await call(pool, 10)  # fails five more times right after its return
    ejections = [e for e in events if isinstance(e, EndpointEjected)]
    assert [e.ejection_s for e in ejections] == [30.0, 60.0]
    clock.advance(59.0)
    assert pool.detector.is_ejected(0)
    clock.advance(1.0)
    assert not pool.detector.is_ejected(0)


async def test_ejection_never_exceeds_the_maximum_percentage() -> None:
    """Envoy acceptance: 10 endpoints, at most 20% ejected, 4 failing: 2 ejected, 2 keep serving."""
    clock = FakeClock()
    events: list[object] = []
    endpoints = mocks(10, clock, failing=(1, 4, 6, 8))
    options = OutlierOptions(max_ejection_percent=20.0)
    pool = await started(
        EndpointPool(endpoints, outlier=options, clock=clock, on_event=events.append)
    )
    await call(pool, 1000)
    ejected = [e.index for e in events if isinstance(e, EndpointEjected)]
    assert ejected == [1, 4]
    assert pool.detector.ejected_total == 2
    assert pool.detector.in_service() == [0, 2, 3, 5, 6, 7, 8, 9]
    # The ejected ones took 5 calls each; the eight in service shared the rest evenly.
    took = calls(endpoints)
    assert (took[1], took[4]) == (5, 5)
    in_service = [took[i] for i in pool.detector.in_service()]
    assert max(in_service) - min(in_service) <= 1
    assert sum(took) == 1000


async def test_a_pool_of_one_never_ejects() -> None:
    clock = FakeClock()
    events: list[object] = []
    endpoints = mocks(1, clock, failing=(0,))
    options = OutlierOptions(max_ejection_percent=100.0)
    pool = await started(
        EndpointPool(endpoints, outlier=options, clock=clock, on_event=events.append)
    )
    assert all(o is not None for o in await call(pool, 100))
    assert calls(endpoints) == [100]
    assert not any(isinstance(e, EndpointEjected) for e in events)


async def test_refusals_count_as_neither_failure_nor_success() -> None:
    clock = FakeClock()
    endpoints = mocks(2, clock)
    pool = await started(EndpointPool(endpoints, clock=clock))
    bad_input = InvalidInputError("inputs", "wrong shape")
    endpoints[0].push(Fail(DOWN), Fail(bad_input), Fail(DOWN))
    await call(pool, 1)
    with pytest.raises(InvalidInputError):
        await call(pool, 2)  # second call goes to endpoint 1, third to endpoint 0
    await call(pool, 2)
    assert pool.detector.consecutive_failures(0) == 2


async def test_successes_reset_the_count() -> None:
    clock = FakeClock()
    endpoints = mocks(2, clock)
    endpoints[0].push(*[Fail(DOWN)] * 4, Respond(), *[Fail(DOWN)] * 4)
    pool = await started(EndpointPool(endpoints, clock=clock))
    await call(pool, 18)
    assert pool.detector.ejected_total == 0
    assert pool.detector.consecutive_failures(0) == 4


# --- panic routing ---------------------------------------------------------------------------


async def test_unready_endpoints_get_no_traffic() -> None:
    clock = FakeClock()
    endpoints = mocks(3, clock)
    pool = await started(EndpointPool(endpoints, clock=clock))
    await endpoints[1].close()  # not ready any more
    assert await call(pool, 6) == [None] * 6
    assert calls(endpoints) == [3, 0, 3]


async def test_an_ejected_endpoint_serves_when_no_other_is_ready() -> None:
    clock = FakeClock()
    endpoints = mocks(2, clock, failing=(0,))
    pool = await started(EndpointPool(endpoints, clock=clock))
    await call(pool, 10)
    assert pool.detector.is_ejected(0)
    await endpoints[1].close()
    assert pool.ready()  # ejected, but it can still answer
    outcomes = await call(pool, 3)
    assert calls(endpoints) == [8, 5]
    assert all(isinstance(o, BackendUnavailableError) for o in outcomes)


async def test_with_no_ready_endpoint_the_caller_gets_the_endpoints_own_error() -> None:
    clock = FakeClock()
    endpoints = mocks(2, clock)
    pool = await started(EndpointPool(endpoints, clock=clock))
    for endpoint in endpoints:
        await endpoint.close()
    assert not pool.ready()
    with pytest.raises(ModelNotReadyError, match="mock:e0: not loaded"):
        await pool.infer(request(), CallContext.new())


async def test_an_endpoint_that_failed_to_load_is_never_called() -> None:
    clock = FakeClock()
    broken = MockBackend("e0", clock=clock, load_error=RuntimeError("corrupt"))
    healthy = MockBackend("e1", clock=clock)
    pool = await started(EndpointPool([broken, healthy], clock=clock))
    await healthy.close()
    with pytest.raises(ModelNotReadyError, match="mock:e1: not loaded"):
        await pool.infer(request(), CallContext.new())
    assert broken.stats.calls == 0


async def test_a_pool_that_is_not_loaded_refuses_calls() -> None:
    pool = EndpointPool(mocks(2, FakeClock()))
    assert not pool.ready()
    with pytest.raises(
        ModelNotReadyError, match=r"pool\[mock:e0, mock:e1\]: no endpoint is loaded"
    ):
        await pool.infer(request(), CallContext.new())


# --- property --------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    rates=st.lists(st.sampled_from([0.0, 0.3, 0.7, 1.0]), min_size=1, max_size=10),
    percent=st.sampled_from([0.0, 10.0, 20.0, 50.0, 100.0]),
    steps=st.lists(
        st.tuples(st.integers(min_value=1, max_value=20), st.sampled_from([0.0, 1.0, 15.0, 40.0])),
        min_size=1,
        max_size=15,
    ),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_ejected_share_stays_bounded_and_traffic_always_flows(
    rates: list[float], percent: float, steps: list[tuple[int, float]], seed: int
) -> None:
    asyncio.run(_bounded_share(rates, percent, steps, seed))


async def _bounded_share(
    rates: list[float], percent: float, steps: list[tuple[int, float]], seed: int
) -> None:
    clock = FakeClock()
    n = len(rates)
    endpoints = [
        MockBackend(f"e{i}", clock=clock, error_rate=rate, error=DOWN, seed=seed + i)
        for i, rate in enumerate(rates)
    ]
    options = OutlierOptions(
        consecutive_5xx=3, base_ejection_time_s=10.0, max_ejection_percent=percent
    )
    pool = await started(EndpointPool(endpoints, outlier=options, clock=clock))
    bound = 0 if percent == 0 else min(n - 1, max(1, math.floor(percent * n / 100)))
    for count, seconds in steps:
        for _ in range(count):
            in_service = set(pool.detector.in_service())
            before = calls(endpoints)
            await call(pool, 1)
            took = [
                i for i, (b, a) in enumerate(zip(before, calls(endpoints), strict=True)) if a > b
            ]
            assert len(took) == 1  # every call reached exactly one endpoint...
            assert took[0] in in_service  # ...one in service
            assert pool.detector.ejected_total <= bound
            assert pool.detector.in_service()
        clock.advance(seconds)


# --- active health checks --------------------------------------------------------------------

#: A health check that never answers.
HANG = "hang"
Probe = bool | str | Exception


class Checked(MockBackend):
    """A MockBackend with a health check (the next scripted result, else `health`) and a load
    that fails while `load_failure` is set (hangs while `load_hangs`); counts probes and loads."""

    def __init__(self, name: str, clock: FakeClock, *, health: Probe = True) -> None:
        super().__init__(name, clock=clock)
        self.health: Probe = health
        self.results: list[Probe] = []
        self.load_failure: Exception | None = None
        self.load_hangs = False
        self.probes = 0
        self.loads = 0
        self._fake_clock = clock

    async def load(self) -> None:
        self.loads += 1
        if self.load_failure is not None:
            raise self.load_failure
        if self.load_hangs:
            await self._fake_clock.sleep(3600.0)
        await super().load()

    async def check_health(self) -> bool:
        self.probes += 1
        result = self.results.pop(0) if self.results else self.health
        if isinstance(result, Exception):
            raise result
        if result == HANG:
            await self._fake_clock.sleep(3600.0)
        return result is True


def checked(n: int, clock: FakeClock) -> list[Checked]:
    return [Checked(f"e{i}", clock) for i in range(n)]


async def tick(clock: FakeClock, seconds: float, times: int = 1) -> None:
    """Advance the clock `times` times by `seconds`, letting the probes run after each step."""
    for _ in range(times):
        clock.advance(seconds)
        for _ in range(10):
            await asyncio.sleep(0)


async def health_pool(
    endpoints: list[Backend], clock: FakeClock, events: list[object] | None = None, **options: Any
) -> EndpointPool:
    sink = events.append if events is not None else (lambda event: None)
    pool = EndpointPool(
        endpoints,
        health=HealthCheckOptions(**options),
        clock=clock,
        on_event=sink,
        target="m:1",
    )
    await pool.load()
    await settle()  # the check loop starts and waits for its first interval
    return pool


def test_health_check_options_defaults_and_validation() -> None:
    options = HealthCheckOptions()
    assert (options.interval_s, options.timeout_s) == (5.0, 1.0)
    assert (options.unhealthy_threshold, options.healthy_threshold) == (3, 2)
    for field, value, reason in [
        ("interval_s", 0.0, "must be more than 0"),
        ("timeout_s", -1.0, "must be more than 0"),
        ("unhealthy_threshold", 0, "must be at least 1"),
        ("healthy_threshold", 0, "must be at least 1"),
    ]:
        with pytest.raises(ValueError, match=f"^{field}: {reason}"):
            HealthCheckOptions(**{field: value})


async def test_probes_run_every_interval_on_the_clock_once_loaded() -> None:
    clock = FakeClock()
    endpoints = checked(2, clock)
    plain = MockBackend("plain", clock=clock)
    pool = EndpointPool([*endpoints, plain], health=HealthCheckOptions(interval_s=5.0), clock=clock)
    assert isinstance(endpoints[0], HealthChecked)
    assert not isinstance(plain, HealthChecked)
    await tick(clock, 5.0)
    assert [e.probes for e in endpoints] == [0, 0]  # nothing before load()
    await pool.load()
    await settle()
    await tick(clock, 4.9)
    assert [e.probes for e in endpoints] == [0, 0]
    await tick(clock, 0.1)
    assert [e.probes for e in endpoints] == [1, 1]
    await tick(clock, 5.0, times=3)
    assert [e.probes for e in endpoints] == [4, 4]
    assert await call(pool, 3) == [None] * 3  # the endpoint without a check serves too
    assert calls([*endpoints, plain]) == [1, 1, 1]
    await pool.close()


async def test_failing_the_unhealthy_threshold_in_a_row_takes_an_endpoint_out() -> None:
    clock = FakeClock()
    events: list[object] = []
    endpoints = checked(2, clock)
    pool = await health_pool(endpoints, clock, events)
    endpoints[0].health = False
    await tick(clock, 5.0, times=2)
    assert pool.is_healthy(0)  # two failures of three
    assert await call(pool, 2) == [None, None]
    assert calls(endpoints) == [1, 1]
    await tick(clock, 5.0)
    assert not pool.is_healthy(0)
    assert events == [EndpointUnhealthy("m:1", "mock:e0", 0, 3, "the health check failed")]
    assert await call(pool, 6) == [None] * 6
    assert calls(endpoints) == [1, 7]
    assert pool.ready()  # health steers traffic; the model stays up
    await pool.close()


async def test_passing_the_healthy_threshold_in_a_row_puts_it_back() -> None:
    clock = FakeClock()
    events: list[object] = []
    endpoints = checked(2, clock)
    pool = await health_pool(endpoints, clock, events)
    endpoints[0].health = False
    await tick(clock, 5.0, times=3)  # unhealthy at t+15
    endpoints[0].health = True
    endpoints[0].results = [True, False, True]  # a failure restarts the count
    await tick(clock, 5.0, times=3)
    assert not pool.is_healthy(0)
    await tick(clock, 5.0)
    assert pool.is_healthy(0)
    assert events[-1] == EndpointHealthy("m:1", "mock:e0", 0, 2, 20.0)
    await call(pool, 4)
    assert calls(endpoints) == [2, 2]
    await pool.close()


async def test_a_passed_probe_resets_the_failure_count() -> None:
    clock = FakeClock()
    endpoints = checked(2, clock)
    pool = await health_pool(endpoints, clock, unhealthy_threshold=2)
    endpoints[0].results = [False, True, False, True, False]
    await tick(clock, 5.0, times=5)
    assert pool.is_healthy(0)
    await pool.close()


async def test_a_probe_that_hangs_fails_at_the_timeout() -> None:
    clock = FakeClock()
    events: list[object] = []
    endpoints = checked(2, clock)
    pool = await health_pool(endpoints, clock, events, timeout_s=1.0, unhealthy_threshold=2)
    endpoints[0].health = HANG
    await tick(clock, 5.0)
    assert clock.sleepers == 2  # the hanging check and its timeout
    await tick(clock, 0.9)
    assert pool.is_healthy(0)
    await tick(clock, 0.1)
    assert endpoints[0].probes == 1
    # the next round starts an interval after the slow one ended
    await tick(clock, 5.0)
    assert endpoints[0].probes == 2
    await tick(clock, 1.0)
    assert not pool.is_healthy(0)
    assert events == [EndpointUnhealthy("m:1", "mock:e0", 0, 2, "no answer within 1 s")]
    assert endpoints[1].probes == 2
    await pool.close()


async def test_a_probe_that_raises_has_failed_and_the_checks_go_on() -> None:
    clock = FakeClock()
    events: list[object] = []
    endpoints = checked(2, clock)
    pool = await health_pool(endpoints, clock, events, unhealthy_threshold=1)
    endpoints[1].results = [RuntimeError("boom")]
    await tick(clock, 5.0)
    assert events == [EndpointUnhealthy("m:1", "mock:e1", 1, 1, "RuntimeError: boom")]
    await tick(clock, 5.0, times=2)
    assert pool.is_healthy(1)
    assert endpoints[1].probes == 3
    await pool.close()


async def test_an_endpoint_must_be_both_in_service_and_healthy() -> None:
    clock = FakeClock()
    endpoints = checked(3, clock)
    endpoints[0].push(*[Fail(DOWN)] * 5)
    pool = await health_pool(endpoints, clock, unhealthy_threshold=1)
    await call(pool, 15)
    assert pool.detector.is_ejected(0)
    endpoints[1].health = False
    await tick(clock, 5.0)
    assert pool.is_healthy(0)
    assert not pool.is_healthy(1)
    before = calls(endpoints)
    assert await call(pool, 6) == [None] * 6
    assert [a - b for a, b in zip(calls(endpoints), before, strict=True)] == [0, 0, 6]
    await pool.close()


async def test_recovering_its_health_returns_an_endpoint_from_ejection() -> None:
    clock = FakeClock()
    events: list[object] = []
    endpoints = checked(2, clock)
    endpoints[0].push(*[Fail(DOWN)] * 5)
    pool = await health_pool(endpoints, clock, events, unhealthy_threshold=1, healthy_threshold=2)
    await call(pool, 10)  # five failures of endpoint 0 eject it
    assert pool.detector.is_ejected(0)  # for 30 s
    endpoints[0].results = [False, True, True]
    await tick(clock, 5.0, times=2)
    assert pool.detector.is_ejected(0)  # unhealthy, then one pass of two
    await tick(clock, 5.0)
    assert not pool.detector.is_ejected(0)
    assert pool.is_healthy(0)
    assert [type(e).__name__ for e in events] == [
        "EndpointEjected",
        "EndpointUnhealthy",
        "EndpointHealthy",
        "EndpointReturned",
    ]
    assert events[-1] == EndpointReturned("m:1", "mock:e0", 0, 15.0)
    await call(pool, 4)
    assert calls(endpoints) == [7, 7]
    await pool.close()


async def test_an_endpoint_ejected_while_passing_its_checks_stays_ejected() -> None:
    clock = FakeClock()
    endpoints = checked(2, clock)
    endpoints[0].push(*[Fail(DOWN)] * 5)
    pool = await health_pool(endpoints, clock)
    await call(pool, 10)
    await tick(clock, 5.0, times=5)  # every probe passes
    assert pool.detector.is_ejected(0)
    await tick(clock, 5.0)  # 30 s: its ejection time is up
    assert not pool.detector.is_ejected(0)
    await pool.close()


async def test_when_no_endpoint_is_healthy_calls_spread_over_the_ready_ones() -> None:
    clock = FakeClock()
    endpoints = checked(3, clock)
    pool = await health_pool(endpoints, clock, unhealthy_threshold=1)
    for endpoint in endpoints:
        endpoint.health = False
    await endpoints[2].close()
    await tick(clock, 5.0)
    assert not any(pool.is_healthy(i) for i in range(3))
    assert pool.ready()
    assert await call(pool, 6) == [None] * 6  # panic routing: the unhealthy still answer
    assert calls(endpoints) == [3, 3, 0]
    await pool.close()


async def test_a_pool_of_one_keeps_serving_from_its_unhealthy_endpoint() -> None:
    clock = FakeClock()
    events: list[object] = []
    (only,) = checked(1, clock)
    pool = await health_pool([only], clock, events, unhealthy_threshold=1)
    only.health = False
    await tick(clock, 5.0)
    assert not pool.is_healthy(0)
    assert await call(pool, 3) == [None] * 3
    assert isinstance(events[0], EndpointUnhealthy)
    await pool.close()


async def test_an_endpoint_that_failed_to_load_is_retried_each_round_until_it_loads() -> None:
    clock = FakeClock()
    events: list[object] = []
    endpoints = checked(2, clock)
    endpoints[1].load_failure = BackendUnavailableError("connection refused")
    plain = MockBackend("plain", clock=clock, load_error=RuntimeError("corrupt"))
    pool = await health_pool([*endpoints, plain], clock, events)
    assert pool.loaded == (True, False, False)
    await tick(clock, 5.0, times=2)
    assert endpoints[1].loads == 3  # at load(), then once a round
    assert endpoints[1].probes == 0  # a load is its probe
    assert await call(pool, 4) == [None] * 4
    assert calls([*endpoints, plain]) == [4, 0, 0]

    endpoints[1].load_failure = None
    await tick(clock, 5.0)
    assert pool.loaded == (True, True, False)
    assert events[-1] == EndpointLoaded("m:1", "mock:e1", 1, 3)
    assert await call(pool, 4) == [None] * 4
    assert calls([*endpoints, plain]) == [6, 2, 0]
    await tick(clock, 5.0)
    assert (endpoints[1].loads, endpoints[1].probes) == (4, 1)  # probed, not loaded, from now on
    await pool.close()


async def test_a_load_retry_that_hangs_fails_at_the_timeout() -> None:
    clock = FakeClock()
    late = Checked("late", clock)
    late.load_failure = RuntimeError("not yet")
    pool = await health_pool([Checked("e0", clock), late], clock, timeout_s=1.0)
    late.load_failure = None
    late.load_hangs = True  # the next load never finishes in time
    await tick(clock, 5.0)
    await tick(clock, 1.0)
    assert pool.loaded == (True, False)
    late.load_hangs = False
    await tick(clock, 5.0)
    assert pool.loaded == (True, True)
    await pool.close()


async def test_close_stops_the_checks_and_leaves_no_task() -> None:
    clock = FakeClock()
    tasks = len(asyncio.all_tasks())
    endpoints = checked(2, clock)
    endpoints[0].health = HANG
    pool = await health_pool(endpoints, clock)
    assert len(asyncio.all_tasks()) == tasks + 1
    await tick(clock, 5.0)  # a probe is hanging now
    await pool.close()
    assert len(asyncio.all_tasks()) == tasks
    assert clock.sleepers == 0
    probes = [e.probes for e in endpoints]
    await tick(clock, 5.0, times=3)
    assert [e.probes for e in endpoints] == probes


async def test_no_check_task_without_options_or_checked_endpoints() -> None:
    clock = FakeClock()
    tasks = len(asyncio.all_tasks())
    unchecked = EndpointPool(checked(2, clock), clock=clock)
    plain = EndpointPool(mocks(2, clock), health=HealthCheckOptions(), clock=clock)
    await unchecked.load()
    await plain.load()
    await settle()
    assert len(asyncio.all_tasks()) == tasks
    await tick(clock, 60.0)
    assert unchecked.endpoints[0].probes == 0  # type: ignore[attr-defined]
    await unchecked.close()
    await plain.close()


async def test_a_pool_that_fails_to_load_starts_no_checks() -> None:
    clock = FakeClock()
    tasks = len(asyncio.all_tasks())
    endpoints = checked(2, clock)
    for endpoint in endpoints:
        endpoint.load_failure = RuntimeError("down")
    pool = EndpointPool(endpoints, health=HealthCheckOptions(), clock=clock)
    with pytest.raises(RuntimeError, match="down"):
        await pool.load()
    assert len(asyncio.all_tasks()) == tasks
    await pool.close()


# --- property: the health of an endpoint follows its probe results ---------------------------


def _reference_health(results: list[bool], unhealthy: int, healthy: int) -> list[bool]:
    """Envoy's rule: `unhealthy` failures in a row take it out, `healthy` passes bring it back."""
    state, failures, passes, out = True, 0, 0, []
    for passed in results:
        if state:
            failures = 0 if passed else failures + 1
            if failures >= unhealthy:
                state, failures = False, 0
        else:
            passes = passes + 1 if passed else 0
            if passes >= healthy:
                state, passes = True, 0
        out.append(state)
    return out


@settings(max_examples=60, deadline=None)
@given(
    results=st.lists(st.booleans(), min_size=1, max_size=30),
    unhealthy=st.integers(min_value=1, max_value=4),
    healthy=st.integers(min_value=1, max_value=4),
)
def test_health_follows_the_probe_results_like_the_reference(
    results: list[bool], unhealthy: int, healthy: int
) -> None:
    asyncio.run(_follow(results, unhealthy, healthy))


async def _follow(results: list[bool], unhealthy: int, healthy: int) -> None:
    clock = FakeClock()
    endpoints = checked(2, clock)
    endpoints[0].results = list(results)
    pool = await health_pool(
        endpoints, clock, unhealthy_threshold=unhealthy, healthy_threshold=healthy
    )
    seen = []
    for _ in results:
        await tick(clock, 5.0)
        seen.append(pool.is_healthy(0))
    assert seen == _reference_health(results, unhealthy, healthy)
    await pool.close()
