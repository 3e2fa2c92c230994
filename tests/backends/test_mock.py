"""MockBackend: scripted steps, latency on the injected clock, injected errors and statistics."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from seawall.backends.mock import Fail, Hang, MockBackend, Respond
from seawall.clock import FakeClock
from seawall.context import CallContext
from seawall.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ModelNotReadyError,
)
from seawall.types import Datatype, InferenceRequest, RequestedOutput, Tensor, TensorSpec


def request(
    rows: list[list[float]] | None = None, *, outputs: list[str] | None = None
) -> InferenceRequest:
    data = np.asarray(rows if rows is not None else [[1.0, 2.0]], dtype=np.float32)
    return InferenceRequest(
        model="m",
        version="7",
        id="req-1",
        inputs=[Tensor.from_numpy("input-0", data)],
        outputs=None if outputs is None else [RequestedOutput(n) for n in outputs],
    )


async def loaded(backend: MockBackend) -> MockBackend:
    await backend.load()
    return backend


async def settle() -> None:
    """Let tasks run until they block on the fake clock."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_follows_the_script_then_the_default_step() -> None:
    backend = await loaded(
        MockBackend(
            script=[Respond(outputs={"n": [1]}), Fail(BackendUnavailableError("down"))],
            default=Respond(outputs={"n": [9]}),
        )
    )
    ctx = CallContext.new()

    first = await backend.infer(request(), ctx)
    with pytest.raises(BackendUnavailableError, match="down"):
        await backend.infer(request(), ctx)
    third = await backend.infer(request(), ctx)
    backend.push(Respond(outputs={"n": [5]}))
    fourth = await backend.infer(request(), ctx)
    fifth = await backend.infer(request(), ctx)

    values = [r.outputs[0].data.tolist() for r in (first, third, fourth, fifth)]
    assert values == [[1], [9], [5], [9]]
    assert (backend.stats.calls, backend.stats.completed, backend.stats.failed) == (5, 4, 1)


async def test_respond_echoes_the_inputs_as_the_outputs() -> None:
    backend = await loaded(MockBackend("echo"))
    req = request([[1.5, 2.5], [3.0, 4.0]])

    response = await backend.infer(req, CallContext.new())

    assert (response.model, response.version, response.id) == ("m", "7", "req-1")
    [out] = response.outputs
    assert (out.name, out.datatype, out.shape) == ("output-0", Datatype.FP32, (2, 2))
    np.testing.assert_array_equal(out.data, [[1.5, 2.5], [3.0, 4.0]])


async def test_respond_echo_honours_the_outputs_filter() -> None:
    signature = (
        (TensorSpec("a", Datatype.FP32, (-1,)), TensorSpec("b", Datatype.FP32, (-1,))),
        (TensorSpec("x", Datatype.FP32, (-1,)), TensorSpec("y", Datatype.FP32, (-1,))),
    )
    backend = await loaded(MockBackend(signature=signature))
    req = InferenceRequest(
        model="m",
        inputs=[
            Tensor.from_numpy("a", np.array([1.0], dtype=np.float32)),
            Tensor.from_numpy("b", np.array([2.0], dtype=np.float32)),
        ],
        outputs=[RequestedOutput("y")],
    )

    response = await backend.infer(req, CallContext.new())

    assert [(t.name, t.data.tolist()) for t in response.outputs] == [("y", [2.0])]
    assert backend.metadata().inputs == signature[0]


async def test_respond_returns_fixed_outputs() -> None:
    backend = await loaded(
        MockBackend(
            default=Respond(
                outputs={"label": np.array([3, 4], dtype=np.int64), "text": ["ok", "no"]}
            )
        )
    )

    response = await backend.infer(request(), CallContext.new())

    label, text = response.outputs
    assert (label.name, label.datatype, label.shape, label.data.tolist()) == (
        "label",
        Datatype.INT64,
        (2,),
        [3, 4],
    )
    assert (text.datatype, text.data.tolist()) == (Datatype.BYTES, [b"ok", b"no"])


async def test_fail_raises_the_given_error() -> None:
    error = BackendTimeoutError("took too long")
    backend = await loaded(MockBackend(script=[Fail(error)]))

    with pytest.raises(BackendTimeoutError) as raised:
        await backend.infer(request(), CallContext.new())

    assert raised.value is error
    stats = backend.stats
    assert (stats.calls, stats.failed, stats.completed, stats.in_flight) == (1, 1, 0, 0)


async def test_hang_ends_only_when_cancelled() -> None:
    clock = FakeClock()
    backend = await loaded(MockBackend(script=[Hang()], clock=clock))
    task = asyncio.create_task(backend.infer(request(), CallContext.new()))
    await settle()

    for _ in range(3):
        clock.advance(10_000.0)
        await settle()
    assert not task.done()
    assert backend.stats.in_flight == 1

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stats = backend.stats
    assert (stats.cancelled, stats.failed, stats.completed, stats.in_flight) == (1, 0, 0, 0)
    assert clock.sleepers == 0


async def test_latency_is_spent_on_the_injected_clock() -> None:
    clock = FakeClock()
    backend = await loaded(MockBackend(default=Respond(latency_s=0.5), clock=clock))
    task = asyncio.create_task(backend.infer(request(), CallContext.new()))
    await settle()
    assert clock.sleepers == 1

    clock.advance(0.4)
    await settle()
    assert not task.done()

    clock.advance(0.1)
    await settle()
    assert task.done()
    assert task.result().outputs[0].name == "output-0"


async def test_fail_waits_its_latency_before_raising() -> None:
    clock = FakeClock()
    backend = await loaded(MockBackend(script=[Fail(BackendError("late"), 2.0)], clock=clock))
    task = asyncio.create_task(backend.infer(request(), CallContext.new()))
    await settle()
    assert not task.done()

    clock.advance(2.0)
    with pytest.raises(BackendError, match="late"):
        await task


async def failures(backend: MockBackend, calls: int) -> list[bool]:
    """For each call, whether it failed."""
    outcome = []
    for _ in range(calls):
        try:
            await backend.infer(request(), CallContext.new())
        except BackendError:
            outcome.append(True)
        else:
            outcome.append(False)
    return outcome


async def test_error_rate_with_a_seed_is_reproducible() -> None:
    first = await failures(await loaded(MockBackend(error_rate=0.3, seed=11)), 200)
    again = await failures(await loaded(MockBackend(error_rate=0.3, seed=11)), 200)
    other = await failures(await loaded(MockBackend(error_rate=0.3, seed=12)), 200)

    assert first == again
    assert first != other


async def test_error_rate_fails_roughly_that_share_of_calls() -> None:
    backend = await loaded(MockBackend(error_rate=0.25, seed=3))

    failed = sum(await failures(backend, 1000))

    assert 200 <= failed <= 300  # 0.25 ± 3.6 standard deviations
    assert backend.stats.failed == failed
    assert backend.stats.completed == 1000 - failed


async def test_error_rate_raises_the_configured_error() -> None:
    error = BackendUnavailableError("injected outage")
    backend = await loaded(MockBackend(error_rate=1.0, error=error))
    with pytest.raises(BackendUnavailableError) as raised:
        await backend.infer(request(), CallContext.new())
    assert raised.value is error

    default = await loaded(MockBackend(error_rate=1.0))
    with pytest.raises(BackendError, match="injected failure"):
        await default.infer(request(), CallContext.new())


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_error_rate_outside_zero_to_one_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="error_rate: must be between 0 and 1"):
        MockBackend(error_rate=rate)


async def test_load_error_is_raised_and_leaves_the_backend_not_ready() -> None:
    error = OSError("weights missing")
    backend = MockBackend(load_error=error)

    with pytest.raises(OSError, match="weights missing") as raised:
        await backend.load()

    assert raised.value is error
    assert not backend.ready()
    with pytest.raises(ModelNotReadyError):
        await backend.infer(request(), CallContext.new())


async def test_load_latency_is_spent_on_the_injected_clock() -> None:
    clock = FakeClock()
    backend = MockBackend(load_latency_s=3.0, clock=clock)
    task = asyncio.create_task(backend.load())
    await settle()
    assert not backend.ready()

    clock.advance(3.0)
    await task
    assert backend.ready()


async def test_not_ready_before_load_and_after_close() -> None:
    backend = MockBackend("named")
    assert not backend.ready()
    with pytest.raises(ModelNotReadyError, match="mock:named: not loaded"):
        backend.metadata()
    with pytest.raises(ModelNotReadyError):
        await backend.infer(request(), CallContext.new())
    assert backend.stats.calls == 0

    await backend.load()
    assert backend.ready()
    metadata = backend.metadata()
    assert (metadata.name, metadata.platform) == ("named", "mock")
    assert metadata.inputs == (TensorSpec("input-0", Datatype.FP32, (-1, -1)),)

    await backend.close()
    assert not backend.ready()


async def test_stats_count_the_most_concurrent_calls() -> None:
    clock = FakeClock()
    backend = await loaded(MockBackend(default=Respond(latency_s=1.0), clock=clock))
    tasks = [asyncio.create_task(backend.infer(request(), CallContext.new())) for _ in range(3)]
    await settle()
    assert backend.stats.in_flight == 3

    clock.advance(1.0)
    await asyncio.gather(*tasks)
    backend.push(Respond())
    await backend.infer(request(), CallContext.new())  # alone: does not lower the maximum

    stats = backend.stats
    assert (stats.max_in_flight, stats.in_flight, stats.completed, stats.calls) == (3, 0, 4, 4)


async def test_record_requests_keeps_every_request_in_order() -> None:
    backend = await loaded(MockBackend(record_requests=True))
    first, second = request([[1.0, 1.0]]), request([[2.0, 2.0]])
    await backend.infer(first, CallContext.new())
    await backend.infer(second, CallContext.new())
    assert backend.stats.requests == [first, second]
    assert backend.stats.requests[0] is first

    silent = await loaded(MockBackend())
    await silent.infer(first, CallContext.new())
    assert silent.stats.requests == []


def test_name_and_repr() -> None:
    backend = MockBackend("iris")
    assert backend.name == "mock:iris"
    assert repr(backend) == "MockBackend('iris', calls=0)"
