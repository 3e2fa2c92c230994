"""Sliding windows: the last N calls, or the last N whole seconds in 1-second buckets."""

from __future__ import annotations

import pytest

from seawall.policies.window import CountWindow, TimeWindow, WindowCounts


def test_counts_and_rates() -> None:
    assert WindowCounts(8, 2, 6).failure_rate == 0.25
    assert WindowCounts(8, 2, 6).slow_call_rate == 0.75
    assert WindowCounts().failure_rate == WindowCounts().slow_call_rate == 0.0


def test_count_window_keeps_the_last_n_calls() -> None:
    window = CountWindow(size_calls=3).new()
    window.record(0.0, failed=True, slow=True)
    window.record(0.0, failed=True, slow=False)
    assert window.counts(0.0) == WindowCounts(2, 2, 1)
    window.record(0.0, failed=False, slow=False)
    window.record(0.0, failed=False, slow=True)  # pushes out the first call (failed and slow)
    assert window.counts(0.0) == WindowCounts(3, 1, 1)
    for _ in range(3):
        window.record(0.0, failed=False, slow=False)
    assert window.counts(0.0) == WindowCounts(3, 0, 0)


def test_count_window_ignores_time() -> None:
    window = CountWindow(size_calls=2).new()
    window.record(1000.0, failed=True, slow=False)
    assert window.counts(1_000_000.0) == WindowCounts(1, 1, 0)


def test_time_window_keeps_the_current_second_and_the_n_minus_1_before() -> None:
    window = TimeWindow(duration_s=10).new()
    window.record(1000.9, failed=True, slow=False)  # bucket 1000
    window.record(1001.0, failed=False, slow=True)  # bucket 1001
    window.record(1001.5, failed=True, slow=True)  # bucket 1001
    assert window.counts(1009.999) == WindowCounts(3, 2, 2)
    assert window.counts(1010.0) == WindowCounts(2, 1, 2)  # bucket 1000 is 10 seconds old
    assert window.counts(1010.999) == WindowCounts(2, 1, 2)
    assert window.counts(1011.0) == WindowCounts(0, 0, 0)


def test_time_window_expires_on_record_too() -> None:
    window = TimeWindow(duration_s=2).new()
    window.record(1000.0, failed=True, slow=False)
    window.record(1002.0, failed=False, slow=False)
    assert window.counts(1002.0) == WindowCounts(1, 0, 0)


def test_time_window_memory_is_one_bucket_per_second() -> None:
    window = TimeWindow(duration_s=3).new()
    for i in range(1000):
        window.record(1000.0 + i / 100, failed=i % 2 == 0, slow=False)
    assert len(window._buckets) == 3  # type: ignore[attr-defined]  # bounded memory
    assert window.counts(1009.99) == WindowCounts(300, 150, 0)  # seconds 1007, 1008, 1009


@pytest.mark.parametrize("spec", [CountWindow(size_calls=4), TimeWindow(duration_s=4)])
def test_clear_forgets_everything(spec: CountWindow | TimeWindow) -> None:
    window = spec.new()
    window.record(1000.0, failed=True, slow=True)
    window.clear()
    assert window.counts(1000.0) == WindowCounts()
    window.record(1000.0, failed=False, slow=False)
    assert window.counts(1000.0) == WindowCounts(1, 0, 0)


def test_each_spec_builds_a_fresh_window() -> None:
    spec = CountWindow(size_calls=2)
    first, second = spec.new(), spec.new()
    first.record(0.0, failed=True, slow=False)
    assert second.counts(0.0) == WindowCounts()


def test_invalid_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^size_calls: must be at least 1, got 0$"):
        CountWindow(size_calls=0)
    with pytest.raises(ValueError, match=r"^duration_s: must be at least 1, got 0$"):
        TimeWindow(duration_s=0)
    for bad in (2.5, True):
        with pytest.raises(ValueError, match=r"^duration_s: must be a whole number of seconds"):
            TimeWindow(duration_s=bad)  # type: ignore[arg-type]
