"""RouterPolicy: weighted and sticky splits, header override, blue-green, per-version stats."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter

import numpy as np
import pytest

from seawall.clock import FakeClock
from seawall.context import CallContext
from seawall.errors import (
    BackendUnavailableError,
    InvalidInputError,
    ModelNotReadyError,
    OverloadedError,
    RateLimitedError,
)
from seawall.gateway.status import error_status
from seawall.pipeline import Pipeline
from seawall.policies.routing import RouterPolicy, RoutingOptions, VariantOverridden
from seawall.policies.variants import TrafficSplit, VariantWindow
from seawall.types import InferenceRequest, InferenceResponse, Tensor

CALLS = 10_000


def request() -> InferenceRequest:
    return InferenceRequest("iris", [Tensor.from_numpy("x", np.ones((1, 2), np.float32))], id="r")


class Variant:
    """A version's handler: answers with its own name, or raises `error`; records what it saw."""

    def __init__(self, name: str, clock: FakeClock | None = None, latency_s: float = 0.0) -> None:
        self.name = name
        self.error: Exception | None = None
        self.seen: list[InferenceRequest] = []
        self._clock = clock
        self._latency_s = latency_s

    async def __call__(self, req: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        self.seen.append(req)
        if self._clock is not None:
            self._clock.advance(self._latency_s)  # the call "takes" latency_s on the clock
        if self.error is not None:
            raise self.error
        out = Tensor.from_numpy("served_by", np.array([self.name.encode()], dtype=object))
        return InferenceResponse(req.model, [out], req.version, req.id)


async def never_called(req: InferenceRequest, ctx: CallContext) -> InferenceResponse:
    raise AssertionError("the router must not call call_next")


def router(
    split: TrafficSplit,
    options: RoutingOptions | None = None,
    *,
    versions: tuple[str, ...] = ("1", "2", "3"),
    seed: int = 7,
    clock: FakeClock | None = None,
    events: list[object] | None = None,
) -> tuple[RouterPolicy, dict[str, Variant]]:
    variants = {v: Variant(v, clock) for v in versions}
    policy = RouterPolicy(
        variants,
        split,
        options,
        clock=clock or FakeClock(),
        rng=random.Random(seed),
        on_event=events.append if events is not None else lambda e: None,
        target="iris",
    )
    return policy, variants


async def route(policy: RouterPolicy, headers: dict[str, str] | None = None) -> CallContext:
    ctx = CallContext.new("r", headers=headers or {})
    response = await policy(request(), ctx, never_called)
    assert response.outputs[0].data[0] == ctx.annotations["version"].encode()
    return ctx


def within_binomial(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    return bool(abs(count - n * p) <= sigmas * (n * p * (1 - p)) ** 0.5)


async def test_weighted_split_over_ten_thousand_calls() -> None:
    policy, variants = router(TrafficSplit("1", "2", 30))
    roles = Counter(
        [(await route(policy)).response_headers["x-seawall-variant"] for _ in range(CALLS)]
    )
    assert set(roles) == {"stable", "canary"}
    assert within_binomial(roles["canary"], CALLS, 0.30), roles
    assert len(variants["2"].seen) == roles["canary"]
    assert len(variants["1"].seen) == roles["stable"]
    assert policy.stats("2").snapshot(1_000.0).requests == roles["canary"]
    assert policy.stats("3").snapshot(1_000.0).requests == 0


@pytest.mark.parametrize(("weight", "canary_share"), [(0, 0.0), (100, 1.0)])
async def test_weights_zero_and_hundred_are_exact(weight: float, canary_share: float) -> None:
    policy, variants = router(TrafficSplit("1", "2", weight))
    for _ in range(500):
        await route(policy)
    assert len(variants["2"].seen) == 500 * canary_share


async def test_the_router_calls_the_variant_readdressed_and_never_call_next() -> None:
    policy, variants = router(TrafficSplit("1"))
    original = request()
    ctx = CallContext.new("r")
    await policy(original, ctx, never_called)
    assert original.version is None  # the client's request is left as it was
    assert variants["1"].seen[0].version == "1"
    assert variants["1"].seen[0].inputs is original.inputs  # no copy on the hot path
    assert ctx.response_headers == {"x-seawall-variant": "stable", "x-seawall-served-by": "iris:1"}


async def test_the_readdressed_request_carries_every_other_field_as_is() -> None:
    policy, variants = router(TrafficSplit("1"))
    original = request()
    original.parameters["priority"] = 3
    await policy(original, CallContext.new("r"), never_called)
    routed = variants["1"].seen[0]
    for field in dataclasses.fields(InferenceRequest):
        if field.name != "version":  # a field added later must not be dropped on the way
            assert getattr(routed, field.name) is getattr(original, field.name), field.name


async def test_sticky_users_keep_their_variant() -> None:
    class NoDraws(random.Random):
        def random(self) -> float:
            raise AssertionError("a sticky call must not draw a random number")

    policy = RouterPolicy(
        {v: Variant(v) for v in ("1", "2")},
        TrafficSplit("1", "2", 50),
        RoutingOptions(sticky_header="X-User-Id"),
        rng=NoDraws(),
    )
    for user in ("alice", "bob", "carol", "dave"):
        served = {
            (await route(policy, {"x-user-id": user})).annotations["version"] for _ in range(20)
        }
        assert len(served) == 1, user


async def test_raising_the_weight_keeps_every_canary_user_on_the_canary() -> None:
    split = TrafficSplit("1", "2", 10)
    policy, _ = router(split, RoutingOptions(sticky_header="x-user-id"))
    users = [f"user-{i}" for i in range(CALLS)]

    async def canary_users() -> set[str]:
        found = set()
        for user in users:
            if (await route(policy, {"x-user-id": user})).annotations["variant"] == "canary":
                found.add(user)
        return found

    at_10 = await canary_users()
    split.set_canary_weight(50)
    at_50 = await canary_users()
    assert within_binomial(len(at_10), CALLS, 0.10)
    assert within_binomial(len(at_50), CALLS, 0.50)
    assert at_10 <= at_50  # monotone: nobody moves back to stable when the weight rises
    split.set_canary_weight(10)
    assert await canary_users() == at_10  # and lowering it again returns the same 10%


async def test_the_sticky_hash_is_salted_by_model() -> None:
    split = TrafficSplit("1", "2", 50)
    options = RoutingOptions(sticky_header="x-user-id")
    iris = RouterPolicy({"1": Variant("1"), "2": Variant("2")}, split, options, target="iris")
    wine = RouterPolicy({"1": Variant("1"), "2": Variant("2")}, split, options, target="wine")
    users = [{"x-user-id": f"u{i}"} for i in range(200)]
    on_iris = [iris.choose(CallContext.new("r", headers=h)) for h in users]
    on_wine = [wine.choose(CallContext.new("r", headers=h)) for h in users]
    assert on_iris != on_wine  # not the same users in every model's canary


async def test_calls_without_the_sticky_header_are_split_at_random() -> None:
    policy, variants = router(TrafficSplit("1", "2", 20), RoutingOptions(sticky_header="x-user-id"))
    for _ in range(2_000):
        await route(policy)
    assert within_binomial(len(variants["2"].seen), 2_000, 0.20)


async def test_override_header_picks_the_variant() -> None:
    events: list[object] = []
    policy, variants = router(TrafficSplit("1", "2", 0), events=events)
    assert (await route(policy, {"x-seawall-variant": "canary"})).annotations["version"] == "2"
    assert (await route(policy, {"x-seawall-variant": "stable"})).annotations["version"] == "1"
    ctx = await route(policy, {"x-seawall-variant": "3"})  # a served version with no role
    assert ctx.annotations["version"] == "3"
    assert ctx.response_headers["x-seawall-variant"] == "3"
    ctx = await route(policy, {"x-seawall-variant": "2"})
    assert ctx.response_headers["x-seawall-variant"] == "canary"
    assert events == [
        VariantOverridden("iris", "2", "canary"),
        VariantOverridden("iris", "1", "stable"),
        VariantOverridden("iris", "3", "3"),
        VariantOverridden("iris", "2", "2"),
    ]
    assert [len(variants[v].seen) for v in ("1", "2", "3")] == [1, 2, 1]


@pytest.mark.parametrize("value", ["blue", "canary"])
async def test_an_unknown_override_is_refused_with_400(value: str) -> None:
    split = TrafficSplit("1", None if value == "canary" else "2", 0)
    policy, variants = router(split, RoutingOptions(override_header="X-Pin"))
    with pytest.raises(InvalidInputError) as caught:
        await route(policy, {"x-pin": value})
    assert caught.value.field == "x-pin"
    allowed = "stable, 1, 2, 3" if value == "canary" else "stable, canary, 1, 2, 3"
    assert caught.value.reason == f"must be {allowed}; got {value!r}"
    assert error_status(caught.value) == 400
    assert all(not v.seen for v in variants.values())


async def test_the_override_can_be_turned_off() -> None:
    policy, variants = router(TrafficSplit("1"), RoutingOptions(override_header=None))
    await route(policy, {"x-seawall-variant": "nonsense"})
    assert len(variants["1"].seen) == 1


async def test_blue_green_switch_moves_every_call_at_once() -> None:
    split = TrafficSplit("1", "2", 50)
    policy, variants = router(split, RoutingOptions(sticky_header="x-user-id"))
    split.switch("2")
    ctxs = [await route(policy, {"x-user-id": f"u{i}"}) for i in range(300)]
    assert {c.annotations["version"] for c in ctxs} == {"2"}
    assert {c.response_headers["x-seawall-variant"] for c in ctxs} == {"stable"}
    assert variants["1"].seen == []
    split.switch("1")  # switching back is as fast
    assert (await route(policy)).annotations["version"] == "1"


async def test_stats_record_latency_on_the_clock_and_expire() -> None:
    clock = FakeClock()
    policy = RouterPolicy(
        {"1": Variant("1", clock, 0.020), "2": Variant("2", clock, 0.250)},
        TrafficSplit("1", "2", 100),
        RoutingOptions(window_s=30),
        clock=clock,
    )
    for _ in range(10):
        await route(policy)
    window = policy.stats("2").snapshot(clock.monotonic())
    assert (window.requests, window.errors, window.error_rate) == (10, 0, 0.0)
    assert [window.p50_s, window.p95_s, window.p99_s] == pytest.approx([0.25] * 3)
    assert policy.stats("1").snapshot(clock.monotonic()).requests == 0
    clock.advance(30)
    assert policy.stats("2").snapshot(clock.monotonic()) == VariantWindow(
        0, 0, 0.0, None, None, None
    )


async def test_only_server_side_failures_count_as_errors() -> None:
    policy, variants = router(TrafficSplit("1", "2", 100))
    canary = variants["2"]
    failures = [
        InvalidInputError("inputs", "bad"),
        RateLimitedError("quota"),
        BackendUnavailableError("down"),
        OverloadedError("full"),
    ]
    for error in failures:
        canary.error = error
        ctx = CallContext.new("r")
        with pytest.raises(type(error)) as caught:
            await policy(request(), ctx, never_called)
        assert caught.value is error  # passed on untouched
        assert ctx.response_headers["x-seawall-variant"] == "canary"  # error responses say so too
    window = policy.stats("2").snapshot(1_000.0)
    assert (window.requests, window.errors, window.error_rate) == (4, 2, 0.5)
    assert window.p50_s is None  # no successful call, no latency


async def test_a_split_naming_a_version_without_handler_is_not_served() -> None:
    split = TrafficSplit("1")  # no `versions`: it cannot refuse "9"
    policy, _ = router(split)
    split.switch("9")
    with pytest.raises(ModelNotReadyError, match="version '9' has no handler"):
        await route(policy)


async def test_the_router_works_inside_a_pipeline() -> None:
    policy, variants = router(TrafficSplit("1", "2", 100))
    pipeline = Pipeline([policy], never_called)
    response = await pipeline(request(), CallContext.new("r"))
    assert response.version == "2"
    assert len(variants["2"].seen) == 1


def test_stats_of_an_unknown_version_is_a_key_error() -> None:
    policy, _ = router(TrafficSplit("1"))
    with pytest.raises(KeyError, match="'7' is not routed here"):
        policy.stats("7")


def test_options_normalise_header_names() -> None:
    options = RoutingOptions(sticky_header=" X-User-Id ", override_header="X-Seawall-Variant")
    assert (options.sticky_header, options.override_header) == ("x-user-id", "x-seawall-variant")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sticky_header": "x user"}, "sticky_header"),
        ({"sticky_header": ""}, "sticky_header"),
        ({"override_header": "x:y"}, "override_header"),
        ({"sticky_header": "x-seawall-variant"}, "sticky_header"),
        ({"window_s": 0}, "window_s"),
        ({"latency_samples": 0}, "latency_samples"),
    ],
)
def test_bad_options_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: "):
        RoutingOptions(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("variants", "split", "field"),
    [
        ({}, TrafficSplit("1"), "variants"),
        ({"": None}, TrafficSplit("1"), "variants"),
        ({"1": None}, TrafficSplit("2"), "split.stable"),
        ({"1": None}, TrafficSplit("1", "2"), "split.canary"),
        ({"1": None}, TrafficSplit("1", versions=["1", "2"]), "split.versions"),
    ],
)
def test_bad_variants_name_the_field(
    variants: dict[str, None], split: TrafficSplit, field: str
) -> None:
    handlers = {k: Variant(k) for k in variants}
    with pytest.raises(ValueError, match=rf"^{field}: "):
        RouterPolicy(handlers, split)
