"""TrafficSplit (validation, roles, blue-green, threads, stateful) and VariantStats windows."""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from seawall.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    BadResponseError,
    CircuitOpenError,
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    ModelExecutionError,
    ModelNotReadyError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    RateLimitedError,
    RejectedError,
    UnauthorizedError,
)
from seawall.policies.variants import (
    LatencySamples,
    SplitState,
    TrafficSplit,
    VariantStats,
    VariantWindow,
    is_server_error,
)

# -- TrafficSplit ---------------------------------------------------------------------------


def test_a_new_split_sends_everything_to_stable() -> None:
    split = TrafficSplit("1")
    assert split.snapshot() == SplitState("1", None, 0.0)
    assert (split.stable, split.canary, split.canary_weight) == ("1", None, 0.0)


def test_weights_move_and_snapshots_do_not() -> None:
    split = TrafficSplit("1", "2", 10)
    before = split.snapshot()
    assert split.set_canary_weight(50) == SplitState("1", "2", 50.0)
    assert before == SplitState("1", "2", 10.0)  # a snapshot is a value, not a live view
    assert split.set_canary_weight(0).canary_weight == 0.0
    assert split.set_canary_weight(100).canary_weight == 100.0
    assert split.set_canary_weight(12.5).canary_weight == 12.5


def test_a_new_canary_starts_at_zero_and_the_same_one_keeps_its_weight() -> None:
    split = TrafficSplit("1", "2", 30, versions=["1", "2", "3"])
    assert split.set_canary("2") == SplitState("1", "2", 30.0)
    assert split.set_canary("3") == SplitState("1", "3", 0.0)
    split.set_canary_weight(20)
    assert split.set_canary(None) == SplitState("1", None, 0.0)


def test_switch_is_blue_green() -> None:
    split = TrafficSplit("1", "2", 40)
    assert split.switch("2") == SplitState("2", None, 0.0)
    assert split.switch("1") == SplitState("1", None, 0.0)  # and back again


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: TrafficSplit(""), "stable"),
        (lambda: TrafficSplit("  "), "stable"),
        (lambda: TrafficSplit("1", ""), "canary"),
        (lambda: TrafficSplit("1", "1"), "canary"),
        (lambda: TrafficSplit("1", "2", -0.1), "canary_weight"),
        (lambda: TrafficSplit("1", "2", 100.5), "canary_weight"),
        (lambda: TrafficSplit("1", "2", math.nan), "canary_weight"),
        (lambda: TrafficSplit("1", "2", True), "canary_weight"),
        (lambda: TrafficSplit("1", None, 10), "canary_weight"),
        (lambda: TrafficSplit("1", versions=[]), "versions"),
        (lambda: TrafficSplit("9", versions=["1", "2"]), "stable"),
        (lambda: TrafficSplit("1", "9", versions=["1", "2"]), "canary"),
        (lambda: TrafficSplit("1").switch(""), "version"),
        (lambda: TrafficSplit("1", versions=["1"]).switch("2"), "version"),
        (lambda: TrafficSplit("1").set_canary_weight(5), "canary_weight"),
        (lambda: TrafficSplit("1", "2").set_canary_weight(-1), "canary_weight"),
        (lambda: TrafficSplit("1").set_canary("1"), "canary"),
    ],
)
def test_bad_input_names_the_field(build: object, field: str) -> None:
    assert callable(build)
    with pytest.raises(ValueError, match=rf"^{field}: "):
        build()


def test_a_refused_change_leaves_the_state_as_it_was() -> None:
    split = TrafficSplit("1", "2", 25, versions=["1", "2"])
    changes: list[Callable[[], object]] = [
        lambda: split.set_canary_weight(101),
        lambda: split.set_canary("7"),
        lambda: split.switch("7"),
    ]
    for change in changes:
        with pytest.raises(ValueError, match=r"^(canary_weight|canary|version): "):
            change()
        assert split.snapshot() == SplitState("1", "2", 25.0)


def test_role_of_names_stable_and_canary_only() -> None:
    state = SplitState("1", "2", 5.0)
    assert [state.role_of(v) for v in ("1", "2", "3")] == ["stable", "canary", None]


def test_writers_on_threads_never_leave_an_inconsistent_state() -> None:
    split = TrafficSplit("1", versions=["1", "2", "3"])
    seen: list[SplitState] = []
    stop = threading.Event()

    def write(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(2_000):
            try:
                match rng.randrange(3):
                    case 0:
                        split.set_canary(rng.choice(["2", "3", None]))
                    case 1:
                        split.set_canary_weight(rng.uniform(0, 100))
                    case _:
                        split.switch(rng.choice(["1", "2", "3"]))
            except ValueError:
                pass  # naming the stable as canary, or weighting a missing canary

    def read() -> None:
        while not stop.is_set():
            seen.append(split.snapshot())

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(seed,)) for seed in range(4)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    reader.join()
    assert len(seen) > 0
    for state in [*seen, split.snapshot()]:
        assert state.canary != state.stable
        assert 0 <= state.canary_weight <= 100
        assert state.canary is not None or state.canary_weight == 0


VERSIONS = ["1", "2", "3", "4"]


class SplitMachine(RuleBasedStateMachine):
    """A TrafficSplit against a three-field model: every change, valid or refused."""

    def __init__(self) -> None:
        super().__init__()
        self.split = TrafficSplit("1", versions=VERSIONS)
        self.model: tuple[str, str | None, float] = ("1", None, 0.0)

    @rule(
        percent=st.floats(min_value=-50, max_value=150)
        | st.sampled_from([0.0, 100.0, math.nan, math.inf])
    )
    def set_weight(self, percent: float) -> None:
        stable, canary, _ = self.model
        valid = (canary is not None and 0 <= percent <= 100) or percent == 0
        if not valid:
            with pytest.raises(ValueError, match=r"^canary_weight: "):
                self.split.set_canary_weight(percent)
            return
        self.split.set_canary_weight(percent)
        self.model = (stable, canary, percent)

    @rule(version=st.sampled_from([*VERSIONS, "9", None]))
    def set_canary(self, version: str | None) -> None:
        stable, canary, _ = self.model
        if version is not None and (version == stable or version not in VERSIONS):
            with pytest.raises(ValueError, match=r"^canary: "):
                self.split.set_canary(version)
            return
        self.split.set_canary(version)
        if version is None:
            self.model = (stable, None, 0.0)
        elif version != canary:
            self.model = (stable, version, 0.0)

    @rule(version=st.sampled_from([*VERSIONS, "9"]))
    def switch(self, version: str) -> None:
        if version not in VERSIONS:
            with pytest.raises(ValueError, match=r"^version: "):
                self.split.switch(version)
            return
        self.split.switch(version)
        self.model = (version, None, 0.0)
        assert self.split.snapshot() == SplitState(version)

    @precondition(lambda self: self.model[1] is not None)
    @rule()
    def promote_canary(self) -> None:
        canary = self.model[1]
        assert canary is not None
        self.switch(canary)

    @invariant()
    def matches_the_model(self) -> None:
        state = self.split.snapshot()
        assert (state.stable, state.canary, state.canary_weight) == self.model
        assert state.stable in VERSIONS
        assert state.canary != state.stable
        assert 0 <= state.canary_weight <= 100
        assert state.canary is not None or state.canary_weight == 0


SplitMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_split_state_machine = SplitMachine.TestCase

# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "counts"),
    [
        (BackendUnavailableError("down"), True),
        (BackendTimeoutError("slow"), True),
        (BadResponseError("garbage"), True),
        (ModelExecutionError("bug"), True),
        (OverloadedError("full"), True),
        (CircuitOpenError("open"), True),
        (ModelNotReadyError("loading"), True),
        (RuntimeError("foreign"), True),
        (TimeoutError(), True),
        (InvalidInputError("inputs", "bad"), False),
        (PayloadTooLargeError(10), False),
        (NotFoundError("no such model"), False),
        (ConflictError("clash"), False),
        (UnauthorizedError("who"), False),
        (ForbiddenError("no"), False),
        (RateLimitedError("quota"), False),
        (RejectedError("refused"), False),
    ],
)
def test_only_server_side_failures_are_errors(error: Exception, counts: bool) -> None:
    assert is_server_error(error) is counts


# -- VariantStats ---------------------------------------------------------------------------


def test_an_empty_window_has_no_rates_or_latencies() -> None:
    assert VariantStats(10).snapshot(1_000.0) == VariantWindow(0, 0, 0.0, None, None, None)


def test_counts_errors_and_latency_quantiles() -> None:
    stats = VariantStats(60)
    for i in range(1, 101):
        stats.record(1_000.0, i / 1000)  # 1 ms .. 100 ms
    stats.record(1_000.0, 5.0, error=BackendUnavailableError("down"))
    stats.record(1_000.0, 0.001, error=InvalidInputError("inputs", "bad"))
    window = stats.snapshot(1_000.5)
    assert (window.requests, window.errors) == (102, 1)
    assert window.error_rate == pytest.approx(1 / 102)
    # Quantiles are of the successful calls only: the slow failure is not among them.
    assert (window.p50_s, window.p95_s, window.p99_s) == (0.050, 0.095, 0.099)


def test_old_samples_leave_the_window() -> None:
    stats = VariantStats(window_s=10)
    stats.record(1_000.9, 0.9, error=BackendUnavailableError("down"))
    stats.record(1_005.0, 0.2)
    stats.record(1_009.5, 0.1)
    assert stats.snapshot(1_009.99) == VariantWindow(3, 1, 1 / 3, 0.1, 0.2, 0.2)
    # The second 1000 leaves at 1010.0: its failure goes, the other two stay.
    assert stats.snapshot(1_010.0) == VariantWindow(2, 0, 0.0, 0.1, 0.2, 0.2)
    assert stats.snapshot(1_015.0) == VariantWindow(1, 0, 0.0, 0.1, 0.1, 0.1)
    assert stats.snapshot(1_019.0) == VariantWindow(0, 0, 0.0, None, None, None)


def test_a_snapshot_can_look_at_a_shorter_span_but_not_a_longer_one() -> None:
    stats = VariantStats(window_s=60)
    stats.record(1_000.0, 0.5, error=BackendUnavailableError("down"))
    stats.record(1_050.2, 0.3)
    stats.record(1_055.7, 0.1)
    # The last 10 s at 1059.5 are the seconds 1050..1059: the failure at 1000 is older.
    assert stats.snapshot(1_059.5, window_s=10) == VariantWindow(2, 0, 0.0, 0.1, 0.3, 0.3)
    assert stats.snapshot(1_059.5, window_s=5) == VariantWindow(1, 0, 0.0, 0.1, 0.1, 0.1)
    assert stats.snapshot(1_059.5, window_s=4.5) == stats.snapshot(1_059.5, window_s=5)
    assert stats.snapshot(1_059.5, window_s=600) == stats.snapshot(1_059.5)  # clipped to 60
    assert stats.snapshot(1_059.5).requests == 3
    for bad in (0, -1, math.nan, math.inf):
        with pytest.raises(ValueError, match=r"^window_s: "):
            stats.snapshot(1_059.5, window_s=bad)


def test_latencies_are_bounded_but_counts_stay_exact() -> None:
    stats = VariantStats(60, latency_samples=10)
    for i in range(100):
        stats.record(1_000.0, float(i))
    window = stats.snapshot(1_000.0)
    assert window.requests == 100
    assert window.p50_s == 94.0  # of the last ten: 90..99


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"window_s": 0}, "window_s"),
        ({"window_s": 1.5}, "window_s"),
        ({"latency_samples": 0}, "latency_samples"),
    ],
)
def test_stats_options_are_checked(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: "):
        VariantStats(**kwargs)


def test_latency_samples_quantiles() -> None:
    samples = LatencySamples(5)
    assert samples.quantiles((0.5,)) == (None,)
    for now, value in enumerate([3.0, 1.0, 2.0]):
        samples.add(float(now), value)
    assert samples.quantiles((0.0, 0.5, 1.0)) == (1.0, 2.0, 3.0)
    samples.expire(2)  # taken before second 2: the first two go
    assert len(samples) == 1
    assert samples.quantiles((0.5,)) == (2.0,)


def test_a_short_window_covers_at_least_its_length_whatever_the_fraction_of_the_second() -> None:
    stats = VariantStats(window_s=60)
    for i in range(100):  # 100 calls spread over 99.00 .. 100.01
        stats.record(99.0 + i * 0.0101, 0.001)
    assert stats.snapshot(100.02, 1.0).requests == 100  # not just the one call in second 100
    assert stats.snapshot(100.02, 2.0).requests == 100
    assert stats.snapshot(101.5, 1.0).requests == 0  # at most a second more than asked
