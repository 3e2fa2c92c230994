"""Reservoirs: uniform, bounded, reproducible; windows roll over on the clock, never sleeping."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from collections import Counter

import pytest
from scipy import stats as scipy_stats

from seawall.clock import FakeClock
from seawall.monitor.reservoir import Reservoir, WindowedReservoir, WindowSample


class CountingRandom(random.Random):
    """A seeded Random that counts the draws made from it."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.draws = 0

    def random(self) -> float:
        self.draws += 1
        return super().random()

    def randrange(self, *args: int) -> int:  # type: ignore[override]
        self.draws += 1
        return super().randrange(*args)


def test_every_item_is_equally_likely_to_be_kept() -> None:
    rng = random.Random(1)
    kept: Counter[int] = Counter()
    trials, items, capacity = 4000, 100, 10
    for _ in range(trials):
        reservoir: Reservoir[int] = Reservoir(capacity, rng)
        for item in range(items):
            reservoir.offer(item)
        kept.update(reservoir.items())

    observed = [kept[i] for i in range(items)]
    assert sum(observed) == trials * capacity
    # Expected 400 each; a reservoir favouring early or late items fails this at once.
    assert scipy_stats.chisquare(observed).pvalue > 0.001


def test_a_long_stream_is_sampled_evenly_along_its_length() -> None:
    rng = random.Random(2)
    kept: Counter[int] = Counter()
    for _ in range(20):
        reservoir: Reservoir[int] = Reservoir(100, rng)
        for item in range(100_000):
            reservoir.offer(item)
        kept.update(item // 10_000 for item in reservoir.items())

    observed = [kept[d] for d in range(10)]
    assert scipy_stats.chisquare(observed).pvalue > 0.001


def test_the_sample_never_outgrows_its_capacity() -> None:
    reservoir: Reservoir[int] = Reservoir(5, random.Random(3))

    kept_flags = [reservoir.offer(i) for i in range(1000)]

    assert kept_flags[:5] == [True] * 5
    assert reservoir.kept == len(reservoir.items()) == 5
    assert reservoir.offered == 1000
    assert len(set(reservoir.items())) == 5
    assert 5 < sum(kept_flags) < 100  # about 5 · ln(1000 / 5) ≈ 26 replacements + 5


def test_fewer_items_than_capacity_are_all_kept() -> None:
    reservoir: Reservoir[str] = Reservoir(10, random.Random(4))
    for item in "abc":
        reservoir.offer(item)

    assert sorted(reservoir.items()) == ["a", "b", "c"]


def test_most_offers_draw_no_random_number() -> None:
    rng = CountingRandom(5)
    reservoir: Reservoir[int] = Reservoir(10, rng)

    for item in range(100_000):
        reservoir.offer(item)

    # Algorithm L: about 3 draws per replacement, 10 · ln(10^4) ≈ 92 replacements.
    assert rng.draws < 1000


def test_a_seed_reproduces_the_sample() -> None:
    def sample(seed: int) -> list[int]:
        reservoir: Reservoir[int] = Reservoir(20, random.Random(seed))
        for item in range(10_000):
            reservoir.offer(item)
        return reservoir.items()

    assert sample(6) == sample(6)
    assert sample(6) != sample(7)


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity: must be at least 1, got 0"):
        Reservoir(0, random.Random())


# --- windows ---------------------------------------------------------------------------------


def _windowed(clock: FakeClock, capacity: int = 3, max_closed: int = 16) -> WindowedReservoir[int]:
    return WindowedReservoir(
        capacity, 60.0, clock=clock, rng=random.Random(8), max_closed=max_closed
    )


def test_a_window_is_handed_out_once_its_time_has_passed() -> None:
    clock = FakeClock(start=1_000.0, wall_start=1_700_000_000.0)
    windows = _windowed(clock)
    for row in range(10):
        windows.offer(row)
    clock.advance(59.9)

    assert windows.take_closed() == []
    assert windows.current_offered == 10

    clock.advance(0.1)
    (closed,) = windows.take_closed()

    assert (closed.start, closed.end) == (1_700_000_000.0, 1_700_000_060.0)
    assert (closed.offered, closed.kept) == (10, 3)
    assert set(closed.rows) <= set(range(10))
    assert windows.take_closed() == []  # handed out once
    assert windows.current_offered == 0


def test_an_offer_after_the_window_starts_the_next_one() -> None:
    clock = FakeClock()
    windows = _windowed(clock)
    windows.offer(1)
    clock.advance(61.0)
    windows.offer(2)
    windows.offer(3)

    (first,) = windows.take_closed()

    assert first.rows == (1,)
    assert windows.current_offered == 2
    assert windows.offered_total == 3


def test_idle_windows_are_skipped_and_boundaries_stay_aligned() -> None:
    clock = FakeClock(start=0.0, wall_start=600.0)
    windows = _windowed(clock)
    windows.offer(1)
    clock.advance(200.0)  # into the 4th window (180-240): three windows passed, two idle
    windows.offer(2)
    clock.advance(40.0)

    closed = windows.take_closed()

    assert [(w.start, w.end, w.rows) for w in closed] == [
        (600.0, 660.0, (1,)),
        (780.0, 840.0, (2,)),
    ]


def test_unread_windows_beyond_the_limit_drop_the_oldest() -> None:
    clock = FakeClock(start=0.0, wall_start=0.0)
    windows = _windowed(clock, max_closed=3)
    for row in range(5):
        windows.offer(row)
        clock.advance(60.0)

    closed = windows.take_closed()

    assert [w.rows for w in closed] == [(2,), (3,), (4,)]
    assert windows.dropped_windows == 2
    assert windows.offered_total == 5


def test_one_producer_and_one_consumer_thread_lose_no_count() -> None:
    clock = FakeClock()
    windows: WindowedReservoir[dict[str, int]] = WindowedReservoir(
        50, 1.0, clock=clock, rng=random.Random(9), max_closed=10_000
    )
    taken: list[WindowSample[dict[str, int]]] = []
    done = threading.Event()

    def produce() -> None:
        for i in range(20_000):
            if i % 500 == 0:
                clock.advance(1.0)
            windows.offer({"i": i})
        done.set()

    def consume() -> None:
        while not done.is_set():
            taken.extend(windows.take_closed())

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    taken.extend(windows.take_closed())

    assert sum(w.offered for w in taken) + windows.current_offered == 20_000
    assert len(taken) == 39  # 40 windows, the last still open
    assert all(w.kept == 50 for w in taken)
    assert [w.start for w in taken] == sorted(w.start for w in taken)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window_s": 0.0}, "window_s: must be positive, got 0.0"),
        ({"window_s": float("inf")}, "window_s: must be positive, got inf"),
        ({"max_closed": 0}, "max_closed: must be at least 1, got 0"),
        ({"capacity": 0}, "capacity: must be at least 1, got 0"),
    ],
)
def test_bad_window_settings_name_the_field(kwargs: dict[str, float], message: str) -> None:
    settings = {"capacity": 10, "window_s": 60.0, "max_closed": 4} | kwargs
    with pytest.raises(ValueError, match=message):
        WindowedReservoir(
            int(settings["capacity"]),
            settings["window_s"],
            clock=FakeClock(),
            rng=random.Random(),
            max_closed=int(settings["max_closed"]),
        )


def test_the_request_path_does_not_load_scipy() -> None:
    code = (
        "import sys; from seawall.monitor import WindowedReservoir; print('scipy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "False"
