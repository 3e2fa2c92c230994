"""BoundedExecutor: off-loop execution, bounded backlog, deadlines and cancellation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest

from seawall.backends.executor import BoundedExecutor
from seawall.clock import FakeClock
from seawall.errors import BackendTimeoutError, OverloadedError

WAIT_S = 10.0  # generous bound on waiting for a worker thread; never reached when things work


class Gate:
    """Blocks worker threads until opened; tells the test when a blocked call has started."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.started = threading.Event()

    def block(self, value: int = 0) -> int:
        self.started.set()
        if not self.opened.wait(WAIT_S):
            raise RuntimeError("gate never opened")
        return value

    async def wait_started(self) -> None:
        assert await asyncio.to_thread(self.started.wait, WAIT_S)


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    gate.opened.set()  # never leave a worker blocked, even when a test fails


@pytest.fixture
def make_executor(gate: Gate) -> Iterator[Callable[..., BoundedExecutor]]:
    executors: list[BoundedExecutor] = []

    def make(
        *,
        workers: int = 1,
        max_queue: int = 64,
        retry_after_s: float = 1.0,
        clock: FakeClock | None = None,
    ) -> BoundedExecutor:
        executor = BoundedExecutor(
            "test", workers=workers, max_queue=max_queue, retry_after_s=retry_after_s, clock=clock
        )
        executors.append(executor)
        return executor

    yield make
    gate.opened.set()
    for executor in executors:
        executor.shutdown(wait=True)


async def wait_pending(executor: BoundedExecutor, count: int) -> None:
    """Let submitted tasks reach the executor (they submit on their first step)."""
    for _ in range(100):
        if executor.pending == count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"pending is {executor.pending}, expected {count}")


async def test_runs_the_function_on_a_worker_thread_not_the_loop(
    make_executor: Callable[..., BoundedExecutor],
) -> None:
    executor = make_executor()
    loop_thread = threading.get_ident()
    worker_thread = await executor.run(threading.get_ident, None)
    assert worker_thread != loop_thread


async def test_passes_positional_and_keyword_arguments(
    make_executor: Callable[..., BoundedExecutor],
) -> None:
    executor = make_executor()
    assert await executor.run(divmod, None, 17, 5) == (3, 2)
    assert await executor.run(int, None, "ff", base=16) == 255


async def test_refuses_at_once_when_workers_plus_queue_are_pending(
    make_executor: Callable[..., BoundedExecutor], gate: Gate
) -> None:
    executor = make_executor(workers=1, max_queue=2, retry_after_s=2.5)
    tasks = [asyncio.create_task(executor.run(gate.block, None, i)) for i in range(3)]
    await gate.wait_started()
    await wait_pending(executor, 3)
    ran: list[int] = []

    with pytest.raises(OverloadedError) as refused:
        await executor.run(ran.append, None, 99)

    assert refused.value.retry_after_s == 2.5
    assert "3 calls already pending" in str(refused.value)
    assert executor.pending == 3
    gate.opened.set()
    assert await asyncio.gather(*tasks) == [0, 1, 2]
    assert executor.pending == 0
    assert ran == []  # the refused call never ran


async def test_max_queue_zero_admits_only_as_many_calls_as_workers(
    make_executor: Callable[..., BoundedExecutor], gate: Gate
) -> None:
    executor = make_executor(workers=2, max_queue=0)
    tasks = [asyncio.create_task(executor.run(gate.block, None, i)) for i in range(2)]
    await wait_pending(executor, 2)
    with pytest.raises(OverloadedError):
        await executor.run(abs, None, -1)
    gate.opened.set()
    assert await asyncio.gather(*tasks) == [0, 1]
    assert await executor.run(abs, None, -1) == 1


async def test_pending_returns_to_zero_after_success_and_failure(
    make_executor: Callable[..., BoundedExecutor],
) -> None:
    executor = make_executor()
    assert executor.pending == 0
    assert await executor.run(abs, None, -3) == 3
    assert executor.pending == 0

    def broken() -> None:
        raise KeyError("model code failed")

    with pytest.raises(KeyError, match="model code failed"):
        await executor.run(broken, None)
    assert executor.pending == 0


async def test_caller_cancelled_before_its_call_starts_never_runs_it(
    make_executor: Callable[..., BoundedExecutor], gate: Gate
) -> None:
    executor = make_executor(workers=1, max_queue=1)
    running = asyncio.create_task(executor.run(gate.block, None, 1))
    await gate.wait_started()
    ran: list[str] = []
    queued = asyncio.create_task(executor.run(ran.append, None, "queued"))
    await wait_pending(executor, 2)

    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert executor.pending == 1  # the queued call gave its slot back at once

    gate.opened.set()
    assert await running == 1
    await executor.run(ran.append, None, "after")  # the worker is past the cancelled call
    assert ran == ["after"]
    assert executor.pending == 0


async def test_cancelled_running_call_holds_its_slot_until_the_thread_is_done(
    make_executor: Callable[..., BoundedExecutor], gate: Gate
) -> None:
    executor = make_executor(workers=1, max_queue=0)
    task = asyncio.create_task(executor.run(gate.block, None, 1))
    await gate.wait_started()

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    # The thread is still busy with the abandoned call: admitting another would exceed the bound.
    assert executor.pending == 1
    with pytest.raises(OverloadedError):
        await executor.run(abs, None, -1)
    gate.opened.set()
    await asyncio.to_thread(executor.shutdown, wait=True)  # the abandoned call has finished
    await wait_pending(executor, 0)


async def test_call_whose_deadline_has_passed_is_not_run(
    make_executor: Callable[..., BoundedExecutor],
) -> None:
    clock = FakeClock()
    executor = make_executor(clock=clock)
    ran: list[int] = []

    with pytest.raises(BackendTimeoutError, match="deadline passed"):
        await executor.run(ran.append, clock.monotonic(), 1)
    with pytest.raises(BackendTimeoutError):
        await executor.run(ran.append, clock.monotonic() - 5.0, 2)
    await executor.run(ran.append, clock.monotonic() + 0.001, 3)
    await executor.run(ran.append, None, 4)

    assert ran == [3, 4]
    assert executor.pending == 0


async def test_deadline_that_passes_while_queued_drops_the_call(
    make_executor: Callable[..., BoundedExecutor], gate: Gate
) -> None:
    clock = FakeClock()
    executor = make_executor(workers=1, max_queue=2, clock=clock)
    running = asyncio.create_task(executor.run(gate.block, None, 1))
    await gate.wait_started()
    ran: list[str] = []
    late = asyncio.create_task(executor.run(ran.append, clock.monotonic() + 1.0, "late"))
    on_time = asyncio.create_task(executor.run(ran.append, clock.monotonic() + 3.0, "on time"))
    await wait_pending(executor, 3)

    clock.advance(2.0)  # the first queued call's deadline passes while it waits for the thread
    gate.opened.set()

    assert await running == 1
    with pytest.raises(BackendTimeoutError):
        await late
    await on_time
    assert ran == ["on time"]
    assert executor.pending == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 0}, "workers: must be at least 1, got 0"),
        ({"workers": -2}, "workers: must be at least 1, got -2"),
        ({"max_queue": -1}, "max_queue: must be 0 or more, got -1"),
    ],
)
def test_constructor_rejects_invalid_sizes(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BoundedExecutor("bad", **kwargs)


def test_constructor_keeps_the_sizes(make_executor: Callable[..., BoundedExecutor]) -> None:
    executor = make_executor(workers=3, max_queue=0)
    assert (executor.name, executor.workers, executor.max_queue, executor.pending) == (
        "test",
        3,
        0,
        0,
    )
