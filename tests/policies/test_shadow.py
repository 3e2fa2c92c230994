"""ShadowMirror: sampled, bounded, fire-and-forget copies; compared, counted, never in the way."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import numpy as np
import pytest

from seawall.clock import FakeClock
from seawall.context import CallContext, Priority
from seawall.errors import BackendTimeoutError, BackendUnavailableError
from seawall.policies.routing import RouterPolicy
from seawall.policies.shadow import (
    OutputsMatch,
    ShadowDisagreed,
    ShadowFailed,
    ShadowMirror,
    ShadowOptions,
    ShadowSkipped,
    ShadowSnapshot,
)
from seawall.policies.variants import TrafficSplit
from seawall.types import Datatype, InferenceRequest, InferenceResponse, RequestedOutput, Tensor


def request(values: Any = ((1.0, 2.0),)) -> InferenceRequest:
    return InferenceRequest(
        "iris",
        [Tensor.from_numpy("x", np.asarray(values, np.float32))],
        id="client-1",
        parameters={"tag": ["a"]},
        outputs=[RequestedOutput("y", {"binary_data": False})],
    )


def answer(req: InferenceRequest, values: Any) -> InferenceResponse:
    return InferenceResponse(req.model, [Tensor.from_numpy("y", values)], req.version, req.id)


class Primary:
    """The stable version: doubles the input; may convert it in place, as validation does."""

    def __init__(self, *, mutate: bool = False, clock: FakeClock | None = None) -> None:
        self.mutate = mutate
        self.clock = clock
        self.seen: list[InferenceRequest] = []

    async def __call__(self, req: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        self.seen.append(req)
        if self.clock is not None:
            self.clock.advance(0.010)
        if self.mutate:
            req.inputs[0].data *= 10  # in place: the shadow must not see it
        return answer(req, req.inputs[0].data * 2)


class Shadow:
    """The shadow version: doubles (or `offset`s) the input, after `gate` opens if given."""

    def __init__(
        self,
        *,
        gate: asyncio.Event | None = None,
        error: Exception | None = None,
        offset: float = 0.0,
        sleep_s: float = 0.0,
        clock: FakeClock | None = None,
    ) -> None:
        self.gate = gate
        self.error = error
        self.offset = offset
        self.sleep_s = sleep_s
        self.clock = clock
        self.entered = 0
        self.cancelled = 0
        self.seen: list[tuple[InferenceRequest, CallContext]] = []

    async def __call__(self, req: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        self.entered += 1
        self.seen.append((req, ctx))
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.clock is not None and self.sleep_s:
                await self.clock.sleep(self.sleep_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.error is not None:
            raise self.error
        return answer(req, req.inputs[0].data * 2 + self.offset)


async def never_called(req: InferenceRequest, ctx: CallContext) -> InferenceResponse:
    raise AssertionError("the router must not call call_next")


def setup(
    shadow: Shadow,
    options: ShadowOptions | None = None,
    *,
    primary: Primary | None = None,
    clock: FakeClock | None = None,
    events: list[object] | None = None,
    seed: int = 3,
) -> tuple[RouterPolicy, ShadowMirror, Primary]:
    clock = clock or FakeClock()
    sink = events.append if events is not None else lambda e: None
    mirror = ShadowMirror(
        shadow,
        options,
        clock=clock,
        rng=random.Random(seed),
        on_event=sink,
        target="iris",
        version="3",
    )
    primary = primary or Primary()
    router = RouterPolicy(
        {"1": primary, "3": shadow}, TrafficSplit("1"), clock=clock, shadow=mirror, target="iris"
    )
    return router, mirror, primary


async def call(router: RouterPolicy, req: InferenceRequest | None = None) -> InferenceResponse:
    return await router(req or request(), CallContext.new("rid-9"), never_called)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def snapshot(**counts: Any) -> ShadowSnapshot:
    names = ShadowSnapshot.__dataclass_fields__
    fields: dict[str, Any] = {
        n: None if n == "agreement_rate" or n.endswith("_s") else 0 for n in names
    }
    return ShadowSnapshot(**(fields | counts))


async def test_an_agreeing_shadow_is_counted_with_both_latencies() -> None:
    clock = FakeClock()
    shadow = Shadow(clock=clock, sleep_s=0.3)
    router, mirror, _ = setup(shadow, primary=Primary(clock=clock), clock=clock)
    response = await call(router)
    np.testing.assert_array_equal(response.outputs[0].data, [[2.0, 4.0]])
    await settle()
    clock.advance(0.3)
    await mirror.drain()
    stats = mirror.stats.snapshot()
    assert (stats.mirrored, stats.agreed, stats.disagreed, stats.agreement_rate) == (1, 1, 0, 1.0)
    assert stats.shadow_p50_s == pytest.approx(0.3)
    assert stats.shadow_p95_s == pytest.approx(0.3)
    assert stats.primary_p50_s == pytest.approx(0.010)


async def test_the_shadow_gets_a_fresh_context_and_its_own_address() -> None:
    shadow = Shadow()
    router, mirror, _ = setup(shadow)
    parent = CallContext.new("rid-9", credentials="sk-secret", traceparent=None)
    await router(request(), parent, never_called)
    await mirror.drain()
    req, ctx = shadow.seen[0]
    assert ctx.request_id == "rid-9-shadow"
    assert ctx.credentials is None
    assert ctx.principal is None
    assert ctx.priority is Priority.BATCH
    assert ctx.deadline == pytest.approx(1_000.0 + 5.0)  # its own timeout_s on the clock
    assert (req.model, req.version, req.id) == ("iris", "3", "client-1")
    assert "x-seawall-variant" not in ctx.response_headers  # not the primary's headers


async def test_the_primary_returns_before_the_shadow_starts_and_while_it_hangs() -> None:
    gate = asyncio.Event()  # never set: the shadow hangs until its timeout
    clock = FakeClock()
    events: list[object] = []
    shadow = Shadow(gate=gate)
    router, mirror, _ = setup(shadow, ShadowOptions(timeout_s=2.0), clock=clock, events=events)
    response = await call(router)
    assert shadow.entered == 0  # started only after the primary's response was handed back
    np.testing.assert_array_equal(response.outputs[0].data, [[2.0, 4.0]])
    await settle()
    assert (shadow.entered, mirror.in_flight) == (1, 1)  # blocked, and the primary is done
    second = await call(router)  # a hanging shadow does not hold up the next call either
    np.testing.assert_array_equal(second.outputs[0].data, [[2.0, 4.0]])
    await settle()
    clock.advance(2.0)
    await mirror.drain()
    assert mirror.stats.snapshot() == snapshot(mirrored=2, timed_out=2)
    assert (
        events
        == [ShadowFailed("iris", "3", "rid-9-shadow", "timeout", "no answer within 2.0 s")] * 2
    )
    assert shadow.cancelled == 2


async def test_when_every_slot_is_busy_the_copy_is_skipped_never_queued() -> None:
    gate = asyncio.Event()
    events: list[object] = []
    shadow = Shadow(gate=gate)
    router, mirror, _ = setup(shadow, ShadowOptions(max_concurrency=2), events=events)
    for _ in range(5):
        await call(router)
        await settle()
    assert (shadow.entered, mirror.in_flight) == (2, 2)
    assert events == [ShadowSkipped("iris", "3", "rid-9")] * 3
    gate.set()
    await mirror.drain()
    await settle()
    assert shadow.entered == 2  # the skipped three never ran later
    assert mirror.stats.snapshot() == snapshot(
        mirrored=2,
        skipped_busy=3,
        agreed=2,
        agreement_rate=1.0,
        shadow_p50_s=0.0,
        shadow_p95_s=0.0,
        primary_p50_s=0.0,
        primary_p95_s=0.0,
    )
    await call(router)  # a slot is free again
    await mirror.drain()
    assert mirror.stats.mirrored == 3


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (BackendUnavailableError("shadow down"), "unavailable"),
        (RuntimeError("boom"), "RuntimeError"),
    ],
)
async def test_a_failing_shadow_is_counted_and_never_reaches_the_client(
    error: Exception, code: str
) -> None:
    events: list[object] = []
    router, mirror, _ = setup(Shadow(error=error), events=events)
    response = await call(router)
    np.testing.assert_array_equal(response.outputs[0].data, [[2.0, 4.0]])
    await settle()
    await mirror.drain()
    assert mirror.stats.snapshot() == snapshot(mirrored=1, failed=1)
    assert events == [ShadowFailed("iris", "3", "rid-9-shadow", code, str(error))]


async def test_a_backend_timeout_in_the_shadow_counts_as_timed_out() -> None:
    router, mirror, _ = setup(Shadow(error=BackendTimeoutError("upstream slow")))
    await call(router)
    await mirror.drain()
    assert (mirror.stats.timed_out, mirror.stats.failed) == (1, 0)


async def test_disagreement_is_counted_and_reported() -> None:
    events: list[object] = []
    shadow = Shadow(offset=0.5)
    router, mirror, _ = setup(shadow, events=events)
    await call(router)
    await mirror.drain()
    shadow.offset = 1e-9  # within the default tolerance
    await call(router)
    await mirror.drain()
    stats = mirror.stats.snapshot()
    assert (stats.agreed, stats.disagreed, stats.agreement_rate) == (1, 1, 0.5)
    assert events == [ShadowDisagreed("iris", "3", "rid-9-shadow")]


async def test_copies_are_sampled_at_the_rate() -> None:
    router, mirror, _ = setup(Shadow(), ShadowOptions(sample_rate=0.25), seed=11)
    for _ in range(4_000):
        await call(router)
        await mirror.drain()
    n, p = 4_000, 0.25
    assert abs(mirror.stats.mirrored - n * p) <= 5 * (n * p * (1 - p)) ** 0.5
    assert mirror.stats.agreed == mirror.stats.mirrored


async def test_rate_zero_copies_nothing_and_a_failed_primary_is_not_mirrored() -> None:
    shadow = Shadow()
    router, mirror, _ = setup(shadow, ShadowOptions(sample_rate=0.0))
    for _ in range(50):
        await call(router)
    await settle()
    assert (shadow.entered, mirror.stats.mirrored) == (0, 0)

    class Failing(Primary):
        async def __call__(self, req: InferenceRequest, ctx: CallContext) -> InferenceResponse:
            raise BackendUnavailableError("primary down")

    shadow = Shadow()
    router, mirror, _ = setup(shadow, primary=Failing())
    with pytest.raises(BackendUnavailableError):
        await call(router)
    await settle()
    assert (shadow.entered, mirror.stats.mirrored) == (0, 0)


async def test_calls_sent_to_the_shadow_version_are_not_mirrored_to_it() -> None:
    shadow = Shadow()
    router, mirror, _ = setup(shadow)
    ctx = CallContext.new("r", headers={"x-seawall-variant": "3"})
    await router(request(), ctx, never_called)
    await settle()
    assert ctx.response_headers["x-seawall-variant"] == "shadow"
    assert (shadow.entered, mirror.stats.mirrored) == (1, 0)  # the override call itself only


async def test_the_shadow_cannot_change_the_primarys_request_or_response() -> None:
    class Vandal(Shadow):
        async def __call__(self, req: InferenceRequest, ctx: CallContext) -> InferenceResponse:
            req.inputs[0].data[:] = -1
            req.parameters["tag"].append("shadow")
            assert req.outputs is not None
            req.outputs[0].parameters["binary_data"] = True
            return await super().__call__(req, ctx)

    def scribbling_compare(primary: InferenceResponse, shadow: InferenceResponse) -> bool:
        primary.outputs[0].data[0, 0] = 99.0  # read-only view: raises
        return True

    original = request()
    primary = Primary()
    router, mirror, _ = setup(Vandal(), ShadowOptions(compare=scribbling_compare), primary=primary)
    response = await call(router, original)
    await mirror.drain()
    np.testing.assert_array_equal(original.inputs[0].data, [[1.0, 2.0]])
    assert original.parameters == {"tag": ["a"]}
    assert original.outputs == [RequestedOutput("y", {"binary_data": False})]
    np.testing.assert_array_equal(primary.seen[0].inputs[0].data, [[1.0, 2.0]])
    np.testing.assert_array_equal(response.outputs[0].data, [[2.0, 4.0]])
    assert response.outputs[0].data.flags.writeable  # the client's own array is untouched
    assert mirror.stats.failed == 1  # the scribbling comparison failed, not the call


async def test_the_shadow_sees_the_request_as_sent_not_as_the_primary_changed_it() -> None:
    shadow = Shadow()
    router, mirror, _ = setup(shadow, primary=Primary(mutate=True))
    await call(router)
    await mirror.drain()
    np.testing.assert_array_equal(shadow.seen[0][0].inputs[0].data, [[1.0, 2.0]])
    assert mirror.stats.disagreed == 1  # the primary answered from its converted input


async def test_close_cancels_running_shadows_and_starts_no_more() -> None:
    gate = asyncio.Event()
    shadow = Shadow(gate=gate)
    router, mirror, _ = setup(shadow)
    await call(router)
    await settle()
    assert mirror.in_flight == 1
    await router.close()
    assert (mirror.in_flight, shadow.cancelled) == (0, 1)
    await call(router)
    await settle()
    assert (shadow.entered, mirror.stats.mirrored) == (1, 1)


def tensor(values: Any, datatype: Datatype | None = None) -> InferenceResponse:
    return InferenceResponse("m", [Tensor.from_numpy("y", values, datatype)])


@pytest.mark.parametrize(
    ("a", "b", "agree"),
    [
        (tensor([1.0, 2.0]), tensor([1.0, 2.0 + 1e-7]), True),
        (tensor([1.0, 2.0]), tensor([1.0, 2.001]), False),
        (tensor([0.0]), tensor([1e-10]), True),  # atol
        (tensor([0.0]), tensor([1e-8]), False),
        (tensor([np.nan]), tensor([np.nan]), True),
        (tensor([1.0], Datatype.FP32), tensor([1.0], Datatype.FP64), True),
        (tensor([1, 2]), tensor([1, 2]), True),
        (tensor([1, 2]), tensor([1, 3]), False),
        (tensor([2**53]), tensor([2**53 + 1]), False),  # integers exactly
        (tensor(["cat"]), tensor(["cat"]), True),
        (tensor(["cat"]), tensor(["dog"]), False),
        (tensor(["1"]), tensor([1.0]), False),
        (tensor([[1.0, 2.0]]), tensor([1.0, 2.0]), False),  # shape
        (tensor([1.0]), InferenceResponse("m", [Tensor.from_numpy("z", [1.0])]), False),
        (
            tensor([1.0]),
            InferenceResponse("m", [Tensor.from_numpy("y", [1.0]), Tensor.from_numpy("z", [1.0])]),
            False,
        ),
    ],
)
def test_outputs_match(a: InferenceResponse, b: InferenceResponse, agree: bool) -> None:
    assert OutputsMatch()(a, b) is agree
    assert OutputsMatch()(b, a) is agree


def test_outputs_match_tolerances_are_options() -> None:
    assert OutputsMatch(rtol=0.01)(tensor([100.0]), tensor([100.5]))
    with pytest.raises(ValueError, match=r"^atol: "):
        OutputsMatch(atol=-1)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sample_rate": 1.5}, "sample_rate"),
        ({"sample_rate": -0.1}, "sample_rate"),
        ({"sample_rate": True}, "sample_rate"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": float("inf")}, "timeout_s"),
        ({"compare": "exact"}, "compare"),
        ({"latency_samples": 0}, "latency_samples"),
    ],
)
def test_bad_options_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: "):
        ShadowOptions(**kwargs)
