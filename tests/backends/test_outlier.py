"""OutlierDetector: Envoy's consecutive-5xx ejection, growing ejection times, bounded share."""

from __future__ import annotations

import math

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from seawall.backends.outlier import (
    EjectionSkipped,
    EndpointEjected,
    EndpointReturned,
    OutlierDetector,
    OutlierOptions,
)
from seawall.clock import FakeClock


def detector(
    n: int, clock: FakeClock, events: list[object] | None = None, **options: float
) -> OutlierDetector:
    sink = events.append if events is not None else (lambda event: None)
    return OutlierDetector(
        [f"e{i}" for i in range(n)],
        OutlierOptions(**options),  # type: ignore[arg-type]
        clock=clock,
        on_event=sink,
        target="iris:1",
    )


def last_ejection_s(events: list[object]) -> float:
    ejections = [e for e in events if isinstance(e, EndpointEjected)]
    return ejections[-1].ejection_s


def fail(d: OutlierDetector, index: int, times: int) -> None:
    for _ in range(times):
        d.record_failure(index)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("consecutive_5xx", 0, "consecutive_5xx: must be at least 1"),
        ("base_ejection_time_s", 0.0, "base_ejection_time_s: must be more than 0"),
        ("max_ejection_time_s", 10.0, "max_ejection_time_s: must be at least base"),
        ("max_ejection_percent", 101.0, "max_ejection_percent: must be between 0 and 100"),
        ("max_ejection_percent", -1.0, "max_ejection_percent: must be between 0 and 100"),
        ("decay_interval_s", 0.0, "decay_interval_s: must be more than 0"),
    ],
)
def test_options_are_validated(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OutlierOptions(**{field: value})  # type: ignore[arg-type]


def test_defaults_are_envoys() -> None:
    opts = OutlierOptions()
    assert (opts.consecutive_5xx, opts.base_ejection_time_s, opts.max_ejection_time_s) == (
        5,
        30.0,
        300.0,
    )
    assert (opts.max_ejection_percent, opts.decay_interval_s) == (10.0, 10.0)


def test_an_empty_pool_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one endpoint"):
        OutlierDetector([])


def test_five_consecutive_failures_eject_for_the_base_time() -> None:
    clock = FakeClock()
    events: list[object] = []
    d = detector(4, clock, events)
    fail(d, 1, 4)
    assert not d.is_ejected(1)
    assert d.consecutive_failures(1) == 4
    d.record_failure(1)
    assert d.is_ejected(1)
    assert d.in_service() == [0, 2, 3]
    assert events == [EndpointEjected("iris:1", "e1", 1, 5, 30.0, 1)]
    clock.advance(29.999)
    assert d.is_ejected(1)
    clock.advance(0.001)
    assert not d.is_ejected(1)
    assert d.consecutive_failures(1) == 0  # returns with a clean count
    assert events[1:] == [EndpointReturned("iris:1", "e1", 1, 30.0)]


def test_an_ejected_endpoint_can_be_returned_early() -> None:
    clock = FakeClock()
    events: list[object] = []
    d = detector(4, clock, events)
    assert d.return_early(1) is False  # in service: nothing to do
    fail(d, 1, 5)
    clock.advance(12.0)
    assert d.return_early(1) is True
    assert not d.is_ejected(1)
    assert d.ejected_total == 0
    assert d.consecutive_failures(1) == 0
    assert events[1:] == [EndpointReturned("iris:1", "e1", 1, 12.0)]
    fail(d, 1, 5)  # ejected again at once: the second ejection lasts twice as long
    assert last_ejection_s(events) == 60.0
    clock.advance(30.0)  # past its first ejection's end: that one no longer counts
    assert d.is_ejected(1)
    clock.advance(30.0)
    assert not d.is_ejected(1)
    assert [type(e).__name__ for e in events].count("EndpointReturned") == 2


def test_a_success_resets_the_count() -> None:
    d = detector(4, FakeClock())
    fail(d, 0, 4)
    d.record_success(0)
    fail(d, 0, 4)
    assert not d.is_ejected(0)
    d.record_failure(0)
    assert d.is_ejected(0)


def test_results_of_calls_in_flight_at_ejection_are_ignored() -> None:
    clock = FakeClock()
    events: list[object] = []
    d = detector(4, clock, events)
    fail(d, 0, 5)
    fail(d, 0, 20)  # late failures of calls sent before the ejection
    d.record_success(0)
    assert len(events) == 1
    clock.advance(30.0)
    assert not d.is_ejected(0)
    assert d.consecutive_failures(0) == 0


def test_each_ejection_lasts_longer_up_to_the_maximum() -> None:
    clock = FakeClock()
    events: list[object] = []
    d = detector(4, clock, events, max_ejection_time_s=100.0)
    durations = []
    for _ in range(5):
        fail(d, 2, 5)  # fails again right after returning: no time to decay
        durations.append(last_ejection_s(events))
        clock.advance(durations[-1])
        assert not d.is_ejected(2)
    assert durations == [30.0, 60.0, 90.0, 100.0, 100.0]


def test_time_in_service_brings_the_ejection_time_back_down() -> None:
    clock = FakeClock()
    events: list[object] = []
    d = detector(4, clock, events)
    for _ in range(3):
        fail(d, 0, 5)
        clock.advance(last_ejection_s(events))
    assert [e.ejection_s for e in events if isinstance(e, EndpointEjected)] == [30, 60, 90]
    clock.advance(25.0)  # two full decay intervals in service: the multiplier drops from 3 to 1
    fail(d, 0, 5)
    assert last_ejection_s(events) == 60.0
    clock.advance(60.0 + 1000.0)
    fail(d, 0, 5)
    assert last_ejection_s(events) == 30.0


def test_ejection_never_exceeds_the_maximum_percentage() -> None:
    """Envoy-style acceptance: a pool of 10 allowing 20%, four endpoints failing: two ejected."""
    clock = FakeClock()
    events: list[object] = []
    d = detector(10, clock, events, max_ejection_percent=20.0)
    for index in (3, 5, 7, 9):
        fail(d, index, 5)
    assert d.ejected_total == 2
    assert d.in_service() == [0, 1, 2, 4, 6, 7, 8, 9]
    ejected = [e for e in events if isinstance(e, EndpointEjected)]
    assert [(e.index, e.ejected_total) for e in ejected] == [(3, 1), (5, 2)]
    assert [(e.index, e.ejected_total) for e in events if isinstance(e, EjectionSkipped)] == [
        (7, 2),
        (9, 2),
    ]


def test_a_skipped_endpoint_is_ejected_once_there_is_room() -> None:
    clock = FakeClock()
    events: list[object] = []
    d = detector(10, clock, events, max_ejection_percent=10.0)
    fail(d, 0, 5)
    fail(d, 1, 7)  # over the threshold, but the pool is at its maximum
    assert d.in_service() == list(range(1, 10))
    clock.advance(30.0)  # endpoint 0 returns
    d.record_failure(1)
    assert d.is_ejected(1)
    assert events[-1] == EndpointEjected("iris:1", "e1", 1, 8, 30.0, 1)


def test_the_first_ejection_is_always_allowed_in_a_pool_of_two_or_more() -> None:
    d = detector(3, FakeClock(), max_ejection_percent=10.0)  # 1 of 3 is 33% > 10%: Envoy allows
    fail(d, 0, 5)
    fail(d, 1, 5)
    assert d.in_service() == [1, 2]


def test_a_pool_of_one_never_ejects() -> None:
    events: list[object] = []
    d = detector(1, FakeClock(), events, max_ejection_percent=100.0)
    fail(d, 0, 50)
    assert d.in_service() == [0]
    assert all(isinstance(e, EjectionSkipped) for e in events)
    assert len(events) == 46


def test_the_last_endpoint_in_service_is_never_ejected() -> None:
    d = detector(3, FakeClock(), max_ejection_percent=100.0)
    for index in range(3):
        fail(d, index, 5)
    assert d.in_service() == [2]


def test_zero_percent_turns_ejection_off() -> None:
    d = detector(10, FakeClock(), max_ejection_percent=0.0)
    fail(d, 0, 100)
    assert d.ejected_total == 0


def test_repr_shows_the_ejected_share() -> None:
    d = detector(3, FakeClock())
    fail(d, 0, 5)
    assert repr(d) == "OutlierDetector('iris:1', ejected=1/3)"


# --- state machine ---------------------------------------------------------------------------


class Reference:
    """The rules of the module docstring, written out plainly, with no lazy bookkeeping."""

    def __init__(self, n: int, opts: OutlierOptions) -> None:
        self.n, self.opts = n, opts
        self.fails = [0] * n
        self.until: list[float | None] = [None] * n
        self.multiplier = [0] * n
        self.back: list[float | None] = [None] * n

    def refresh(self, now: float) -> None:
        for i, until in enumerate(self.until):
            if until is not None and until <= now:
                self.until[i], self.back[i], self.fails[i] = None, until, 0

    def ejected(self) -> int:
        return sum(u is not None for u in self.until)

    def allowed(self) -> bool:
        e, pct = self.ejected(), self.opts.max_ejection_percent
        return pct > 0 and e + 1 < self.n and (e == 0 or (e + 1) * 100 <= pct * self.n)

    def fail(self, i: int, now: float) -> float | None:
        """The ejection time if this failure ejects endpoint `i`."""
        self.refresh(now)
        if self.until[i] is not None:
            return None
        self.fails[i] += 1
        if self.fails[i] < self.opts.consecutive_5xx or not self.allowed():
            return None
        o = self.opts
        m, back = self.multiplier[i], self.back[i]
        if back is not None:
            m = max(0, m - int((now - back) // o.decay_interval_s))
        m = min(m + 1, math.ceil(o.max_ejection_time_s / o.base_ejection_time_s))
        self.multiplier[i] = m
        ejection_s = min(o.base_ejection_time_s * m, o.max_ejection_time_s)
        self.until[i] = now + ejection_s
        return ejection_s

    def succeed(self, i: int) -> None:
        if self.until[i] is None:
            self.fails[i] = 0


class DetectorMachine(RuleBasedStateMachine):
    """Random failures, successes and time steps against the reference rules."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.events: list[object] = []

    @initialize(
        n=st.integers(min_value=1, max_value=8),
        percent=st.sampled_from([0.0, 10.0, 20.0, 34.0, 50.0, 100.0]),
        threshold=st.integers(min_value=1, max_value=3),
    )
    def build(self, n: int, percent: float, threshold: int) -> None:
        opts = OutlierOptions(
            consecutive_5xx=threshold,
            base_ejection_time_s=10.0,
            max_ejection_time_s=35.0,
            max_ejection_percent=percent,
            decay_interval_s=20.0,
        )
        self.n = n
        self.detector = OutlierDetector(
            [f"e{i}" for i in range(n)], opts, clock=self.clock, on_event=self.events.append
        )
        self.model = Reference(n, opts)

    @rule(data=st.data())
    def failure(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(min_value=0, max_value=self.n - 1))
        before = len(self.events)
        expected = self.model.fail(index, self.clock.monotonic())
        self.detector.record_failure(index)
        ejections = [e for e in self.events[before:] if isinstance(e, EndpointEjected)]
        assert [e.ejection_s for e in ejections] == ([] if expected is None else [expected])

    @rule(data=st.data())
    def success(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(min_value=0, max_value=self.n - 1))
        self.model.succeed(index)
        self.detector.record_success(index)

    @rule(seconds=st.sampled_from([0.5, 5.0, 10.0, 25.0, 60.0]))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def same_endpoints_ejected(self) -> None:
        self.model.refresh(self.clock.monotonic())
        expected = [i for i, u in enumerate(self.model.until) if u is None]
        assert self.detector.in_service() == expected

    @invariant()
    def share_is_bounded_and_someone_serves(self) -> None:
        ejected = self.detector.ejected_total
        percent = self.detector.options.max_ejection_percent
        bound = 0 if percent == 0 else max(1, math.floor(percent * self.n / 100))
        assert ejected <= min(bound, self.n - 1)
        assert len(self.detector.in_service()) >= 1


TestDetectorMachine = DetectorMachine.TestCase
TestDetectorMachine.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
