"""SystemClock and FakeClock: time as an injected dependency."""

from __future__ import annotations

import asyncio
import time

import pytest

from seawall.clock import Clock, FakeClock, SystemClock


def test_both_clocks_satisfy_the_clock_protocol() -> None:
    assert isinstance(SystemClock(), Clock)
    assert isinstance(FakeClock(), Clock)
    assert not isinstance(object(), Clock)


def test_system_clock_reads_the_real_clocks() -> None:
    clock = SystemClock()
    before_mono, before_wall = time.monotonic(), time.time()
    mono, wall = clock.monotonic(), clock.time()
    after_mono, after_wall = time.monotonic(), time.time()
    assert before_mono <= mono <= after_mono
    assert before_wall <= wall <= after_wall
    assert repr(clock) == "SystemClock()"


async def test_system_clock_sleep_waits_real_time_and_not_for_negative_durations() -> None:
    clock = SystemClock()
    start = time.monotonic()
    await clock.sleep(0.02)
    assert time.monotonic() - start >= 0.019  # a lower bound only: never flaky under load
    start = time.monotonic()
    await clock.sleep(-5.0)
    assert time.monotonic() - start < 1.0


def test_fake_clock_starts_where_told_and_keeps_wall_and_monotonic_apart() -> None:
    clock = FakeClock(start=50.0, wall_start=1_234_567_890.0)
    assert clock.monotonic() == 50.0
    assert clock.time() == 1_234_567_890.0
    clock.advance(2.5)
    assert clock.monotonic() == 52.5
    assert clock.time() == 1_234_567_892.5
    assert repr(clock) == "FakeClock(monotonic=52.500000)"


def test_fake_clock_defaults() -> None:
    clock = FakeClock()
    assert clock.monotonic() == 1_000.0
    assert clock.time() == 1_700_000_000.0


def test_advance_refuses_to_go_backwards() -> None:
    clock = FakeClock(start=10.0)
    with pytest.raises(ValueError, match="cannot go backwards"):
        clock.advance(-0.001)
    assert clock.monotonic() == 10.0
    clock.advance(0.0)
    assert clock.monotonic() == 10.0


async def test_sleepers_wake_only_when_their_time_has_come() -> None:
    clock = FakeClock(start=0.0)
    task = asyncio.create_task(clock.sleep(5.0))
    await asyncio.sleep(0)
    assert clock.sleepers == 1
    clock.advance(4.999)
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(0.001)
    await asyncio.sleep(0)
    assert task.done()
    assert clock.sleepers == 0


async def test_advance_wakes_sleepers_in_order_of_their_deadlines() -> None:
    clock = FakeClock(start=0.0)
    woken: list[str] = []

    async def sleeper(label: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woken.append(label)

    # Started out of order; "b1" and "b2" share a deadline and keep their start order.
    tasks = [
        asyncio.create_task(sleeper(label, seconds))
        for label, seconds in [("c", 3.0), ("a", 1.0), ("b1", 2.0), ("b2", 2.0), ("late", 9.0)]
    ]
    for _ in range(2):
        await asyncio.sleep(0)
    assert clock.sleepers == 5
    clock.advance(3.0)
    for _ in range(3):
        await asyncio.sleep(0)
    assert woken == ["a", "b1", "b2", "c"]
    assert clock.sleepers == 1
    clock.advance(6.0)
    await asyncio.gather(*tasks)
    assert woken == ["a", "b1", "b2", "c", "late"]


async def test_a_cancelled_sleeper_is_not_counted_and_not_woken() -> None:
    clock = FakeClock(start=0.0)
    cancelled = asyncio.create_task(clock.sleep(1.0))
    kept = asyncio.create_task(clock.sleep(2.0))
    await asyncio.sleep(0)
    assert clock.sleepers == 2
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert clock.sleepers == 1
    clock.advance(5.0)  # must skip the cancelled future instead of setting its result
    await kept
    assert kept.done()
    assert clock.sleepers == 0


async def test_zero_and_negative_sleeps_return_without_advancing() -> None:
    clock = FakeClock(start=0.0)
    await asyncio.wait_for(clock.sleep(0.0), timeout=5.0)
    await asyncio.wait_for(clock.sleep(-1.0), timeout=5.0)
    assert clock.sleepers == 0
    assert clock.monotonic() == 0.0


async def test_run_for_lets_a_looping_task_run_between_steps() -> None:
    clock = FakeClock(start=0.0)
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            await clock.sleep(0.25)
            ticks.append(clock.monotonic())

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    await clock.run_for(2.0, step=0.0625)  # binary fractions: no rounding drift
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.monotonic() == 2.0
    # A single advance(2.0) would wake the ticker once; run_for wakes it every 0.25 s.
    assert ticks == [0.25 * i for i in range(1, 9)]


async def test_run_for_ends_exactly_at_the_target_with_a_step_that_does_not_divide_it() -> None:
    clock = FakeClock(start=0.0)
    await clock.run_for(0.25, step=0.1)
    assert clock.monotonic() == pytest.approx(0.25, abs=1e-12)


async def test_advance_by_one_large_step_wakes_a_looping_sleeper_only_once() -> None:
    clock = FakeClock(start=0.0)
    count = 0

    async def ticker() -> None:
        nonlocal count
        while True:
            await clock.sleep(0.1)
            count += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    clock.advance(1.0)
    for _ in range(3):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert count == 1


async def test_fake_timeout_cancels_the_block_when_the_clock_passes_it() -> None:
    clock = FakeClock()
    cancelled = asyncio.Event()

    async def hang() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def guarded() -> None:
        async with clock.timeout(0.2):
            await hang()

    task = asyncio.create_task(guarded())
    await asyncio.sleep(0)
    clock.advance(0.199)
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(0.001)
    with pytest.raises(TimeoutError):
        await task
    assert cancelled.is_set()
    assert clock.sleepers == 0


async def test_fake_timeout_that_does_not_fire_leaves_no_timer() -> None:
    clock = FakeClock()
    async with clock.timeout(5.0):
        await asyncio.sleep(0)
    assert clock.sleepers == 0
    async with clock.timeout(None):
        await asyncio.sleep(0)


async def test_an_outer_cancellation_is_not_mistaken_for_the_timeout() -> None:
    clock = FakeClock()

    async def guarded() -> None:
        async with clock.timeout(1.0):
            await asyncio.Event().wait()

    task = asyncio.create_task(guarded())
    await asyncio.sleep(0)
    task.cancel()
    clock.advance(2.0)
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_zero_timeout_fires_on_the_next_loop_iteration() -> None:
    clock = FakeClock()
    with pytest.raises(TimeoutError):
        async with clock.timeout(0):
            await asyncio.Event().wait()


async def test_system_clock_timeout_is_asyncio_timeout() -> None:
    with pytest.raises(TimeoutError):
        async with SystemClock().timeout(0.001):
            await asyncio.Event().wait()
