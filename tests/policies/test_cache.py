"""CachePolicy: hits with the caller's id, TTL, Cache-Control, what is never kept, single flight."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.backends.mock import Fail, Hang, MockBackend, Respond
from seawall.clock import FakeClock
from seawall.context import CallContext
from seawall.errors import BackendTimeoutError, BackendUnavailableError
from seawall.pipeline import Pipeline
from seawall.policies.cache import (
    CACHE_HEADER,
    CacheEntrySkipped,
    CacheOptions,
    CachePolicy,
    CacheSnapshot,
)
from seawall.policies.cache_codec import InferenceCodec, LlmCodec
from seawall.policies.cache_store import CacheStoreFailed, MemoryCacheStore, RedisCacheStore
from seawall.policies.fallback import FallbackPolicy, StaticAlternative
from seawall.types import (
    InferenceRequest,
    InferenceResponse,
    LlmKind,
    LlmRequest,
    LlmResponse,
    RequestedOutput,
    Tensor,
    Usage,
)

ROWS = [[1.0, 2.0]]


def request(rid: str | None = None, rows: Any = ROWS, **kw: Any) -> InferenceRequest:
    tensor = Tensor.from_numpy("input-0", np.asarray(rows, np.float32))
    return InferenceRequest("iris", [tensor], version="1", id=rid, **kw)


def ctx(rid: str = "r", cache_control: str | None = None, **kw: Any) -> CallContext:
    headers = {} if cache_control is None else {"cache-control": cache_control}
    return CallContext.new(rid, headers=headers, **kw)


async def settle() -> None:
    """Let every task run until it blocks on the fake clock or a future."""
    for _ in range(10):
        await asyncio.sleep(0)


class Harness:
    """A cache in front of a MockBackend on one FakeClock; the generation is settable."""

    def __init__(self, *, default: Any = None, **options: Any) -> None:
        self.clock = FakeClock()
        self.events: list[Any] = []
        self.generation = 1
        self.backend = MockBackend("iris", clock=self.clock, default=default or Respond())
        self.store = MemoryCacheStore(clock=self.clock)
        self.policy: CachePolicy[InferenceRequest, InferenceResponse] = CachePolicy(
            InferenceCodec(),
            CacheOptions(**options),
            store=self.store,
            generation=lambda: self.generation,
            clock=self.clock,
            on_event=self.events.append,
            target="iris:1",
        )

    async def load(self) -> Harness:
        await self.backend.load()
        return self

    async def call(
        self, req: InferenceRequest | None = None, context: CallContext | None = None
    ) -> tuple[InferenceResponse, CallContext]:
        context = context or ctx()
        req = req or request(context.request_id)
        return await self.policy(req, context, self.backend.infer), context

    def task(
        self, rid: str, context: CallContext | None = None
    ) -> tuple[asyncio.Task[InferenceResponse], CallContext]:
        context = context or ctx(rid)
        coro = self.policy(request(rid), context, self.backend.infer)
        return asyncio.create_task(coro), context


def output(response: InferenceResponse) -> list[Any]:
    return [t.data.tolist() for t in response.outputs]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ttl_s": 0}, "ttl_s: must be a positive number, got 0"),
        ({"ttl_s": float("nan")}, "ttl_s: must be a positive number, got nan"),
        ({"max_entry_bytes": 0}, "max_entry_bytes: must be at least 1, got 0"),
    ],
)
def test_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CacheOptions(**options)


def test_defaults() -> None:
    assert CacheOptions() == CacheOptions(ttl_s=300.0, max_entry_bytes=1024 * 1024, coalesce=True)


async def test_a_repeat_is_answered_from_the_cache_with_the_callers_own_id() -> None:
    h = await Harness(default=Respond(outputs={"output-0": [0.25, 0.75]})).load()

    first, first_ctx = await h.call(context=ctx("a"))
    second, second_ctx = await h.call(context=ctx("b"))

    assert h.backend.stats.calls == 1
    assert (first.id, second.id) == ("a", "b")
    assert output(second) == output(first) == [[0.25, 0.75]]
    assert (second.model, second.version) == (first.model, first.version)
    assert first_ctx.response_headers[CACHE_HEADER] == "miss"
    assert second_ctx.response_headers[CACHE_HEADER] == "hit"
    assert (first_ctx.annotations["cache"], second_ctx.annotations["cache"]) == ("miss", "hit")
    assert not second.outputs[0].data.flags.writeable  # a hit never exposes the stored bytes
    assert h.policy.snapshot() == CacheSnapshot("iris:1", 1, 1, 0, 0, 1, h.store.size_bytes)


async def test_an_answer_expires_after_ttl_on_the_clock() -> None:
    h = await Harness(ttl_s=10.0).load()
    await h.call()

    h.clock.advance(9.999)
    _, hit = await h.call()
    h.clock.advance(0.001)
    _, expired = await h.call()

    assert (hit.annotations["cache"], expired.annotations["cache"]) == ("hit", "miss")
    assert h.backend.stats.calls == 2


@pytest.mark.parametrize(
    "other",
    [
        request(rows=[[1.0, 2.5]]),
        request(rows=[[1.0], [2.0]]),
        request(outputs=[RequestedOutput("output-0")]),
        request(parameters={"threshold": 0.5}),
        InferenceRequest("iris", request().inputs, version="2"),
        InferenceRequest("iris-2", request().inputs, version="1"),
    ],
    ids=["data", "shape", "outputs", "parameters", "version", "model"],
)
async def test_a_different_input_or_version_is_a_miss(other: InferenceRequest) -> None:
    h = await Harness().load()
    await h.call(request("a"))
    _, second = await h.call(other)
    assert second.annotations["cache"] == "miss"
    assert h.backend.stats.calls == 2


async def test_a_new_backend_generation_never_serves_the_old_answers() -> None:
    h = await Harness(default=Respond(outputs={"output-0": [1]})).load()
    await h.call()
    h.generation = 2  # the model was reloaded
    h.backend.push(Respond(outputs={"output-0": [2]}))

    reloaded, reloaded_ctx = await h.call()
    again, again_ctx = await h.call()

    assert (reloaded_ctx.annotations["cache"], again_ctx.annotations["cache"]) == ("miss", "hit")
    assert output(reloaded) == output(again) == [[2]]


@pytest.mark.parametrize("value", ["no-cache", "No-Cache, max-age=0", "max-age=0,no-cache"])
async def test_no_cache_skips_the_lookup_but_stores_the_fresh_answer(value: str) -> None:
    h = await Harness(default=Respond(outputs={"output-0": [1]})).load()
    await h.call()
    h.backend.push(Respond(outputs={"output-0": [2]}))

    fresh, fresh_ctx = await h.call(context=ctx(cache_control=value))
    later, later_ctx = await h.call()

    assert fresh_ctx.response_headers[CACHE_HEADER] == "bypass"
    assert fresh_ctx.annotations["cache_reason"] == "no-cache"
    assert output(fresh) == output(later) == [[2]]  # the fresh answer replaced the old one
    assert later_ctx.annotations["cache"] == "hit"
    assert h.backend.stats.calls == 2


@pytest.mark.parametrize("value", ["no-store", "no-cache, no-store", "NO-STORE"])
async def test_no_store_neither_reads_nor_writes(value: str) -> None:
    h = await Harness(default=Respond(outputs={"output-0": [1]})).load()
    await h.call()
    h.backend.push(Respond(outputs={"output-0": [2]}))

    private, private_ctx = await h.call(context=ctx(cache_control=value))
    later, _ = await h.call()

    assert private_ctx.response_headers[CACHE_HEADER] == "bypass"
    assert private_ctx.annotations["cache_reason"] == "no-store"
    assert (output(private), output(later)) == ([[2]], [[1]])
    assert h.backend.stats.calls == 2


@pytest.mark.parametrize("value", ["max-age=60", "private", "", "no-transform"])
async def test_other_cache_control_directives_do_not_change_anything(value: str) -> None:
    h = await Harness().load()
    await h.call()
    _, second = await h.call(context=ctx(cache_control=value))
    assert second.annotations["cache"] == "hit"


async def test_errors_are_never_stored() -> None:
    h = await Harness().load()
    h.backend.push(Fail(BackendUnavailableError("down")))

    with pytest.raises(BackendUnavailableError):
        await h.call(context=ctx("a"))
    response, second = await h.call(context=ctx("b"))

    assert second.annotations["cache"] == "miss"
    assert response.id == "b"
    assert h.backend.stats.calls == 2


async def test_a_fallback_answer_is_never_stored() -> None:
    h = await Harness().load()
    fallback = FallbackPolicy([StaticAlternative({"output-0": [0.0]})], target="iris:1")
    pipeline = Pipeline([h.policy, fallback], h.backend.infer)
    h.backend.push(Fail(BackendUnavailableError("down")))

    degraded_ctx = ctx("a")
    degraded = await pipeline(request("a"), degraded_ctx)
    real_ctx = ctx("b")
    real = await pipeline(request("b"), real_ctx)

    assert output(degraded) == [[0.0]]
    assert degraded_ctx.response_headers["x-seawall-fallback"] == "unavailable"
    assert degraded_ctx.annotations["cache_skipped"] == "fallback"
    assert real_ctx.annotations["cache"] == "miss"  # the static answer was not kept
    assert output(real) == [ROWS]


async def test_an_answer_marked_by_a_fallback_annotation_alone_is_not_stored() -> None:
    async def degraded(req: InferenceRequest, context: CallContext) -> InferenceResponse:
        context.annotations["fallback"] = "heuristic"
        return InferenceResponse("iris", [Tensor.from_numpy("output-0", [1])], id=req.id)

    policy: CachePolicy[InferenceRequest, InferenceResponse] = CachePolicy(InferenceCodec())
    first = ctx()
    await policy(request(), first, degraded)
    assert first.annotations["cache_skipped"] == "fallback"
    assert policy.snapshot().entries == 0


async def test_a_partial_answer_is_not_stored() -> None:
    h = await Harness(default=Respond(outputs={"output-0": [1]})).load()
    wants_two = request(outputs=[RequestedOutput("output-0"), RequestedOutput("probabilities")])

    _, first = await h.call(wants_two)
    _, second = await h.call(wants_two)

    assert first.annotations["cache_skipped"] == "partial"
    assert second.annotations["cache"] == "miss"
    assert h.events == []  # an expected skip is not an event


async def test_an_answer_larger_than_max_entry_bytes_is_answered_but_not_stored() -> None:
    h = await Harness(max_entry_bytes=64).load()
    big = request(rows=np.ones((1, 100)))

    response, first = await h.call(big)
    _, second = await h.call(big)

    assert response.outputs[0].shape == (1, 100)
    assert first.annotations["cache_skipped"] == "too_large"
    assert second.annotations["cache"] == "miss"
    assert h.events == [
        CacheEntrySkipped("iris:1", "too_large"),
        CacheEntrySkipped("iris:1", "too_large"),
    ]


async def test_an_unreadable_entry_is_a_miss_and_is_overwritten() -> None:
    h = await Harness().load()
    key = InferenceCodec().key(request(), h.generation)
    await h.store.set(key, b"\x07garbage", 60.0)

    _, first = await h.call()
    _, second = await h.call()

    assert (first.annotations["cache"], second.annotations["cache"]) == ("miss", "hit")
    assert h.events == [CacheEntrySkipped("iris:1", "unreadable")]


async def test_a_request_that_cannot_be_keyed_is_served_and_not_cached() -> None:
    h = await Harness().load()
    huge = request(parameters={"seed": 10**30})  # beyond what JSON (orjson) holds
    response, first = await h.call(huge)
    assert output(response) == [ROWS]
    assert (first.annotations["cache"], first.annotations["cache_reason"]) == (
        "bypass",
        "unkeyable",
    )


async def test_a_stateful_request_passes_through() -> None:
    h = await Harness().load()
    stateful = request(parameters={"sequence_id": 7})
    await h.call(stateful)
    _, second = await h.call(stateful)
    assert second.annotations["cache"] == "bypass"
    assert second.annotations["cache_reason"] == "stateful"
    assert h.backend.stats.calls == 2
    assert h.policy.snapshot().bypasses == 2


# --- single flight --------------------------------------------------------------------------


async def test_identical_concurrent_misses_call_the_model_once() -> None:
    h = await Harness(default=Respond(latency_s=1.0)).load()
    calls = [h.task(f"r{i}") for i in range(4)]
    await settle()
    assert h.backend.stats.calls == 1

    h.clock.advance(1.0)
    await settle()

    responses = [t.result() for t, _ in calls]
    assert [r.id for r in responses] == ["r0", "r1", "r2", "r3"]
    assert all(output(r) == [ROWS] for r in responses)
    assert [c.response_headers[CACHE_HEADER] for _, c in calls] == ["miss", "hit", "hit", "hit"]
    assert [c.annotations.get("cache_coalesced", False) for _, c in calls] == [False] + [True] * 3
    assert h.backend.stats.calls == 1
    snapshot = h.policy.snapshot()
    assert (snapshot.hits, snapshot.misses, snapshot.coalesced) == (3, 1, 3)


async def test_without_coalescing_every_concurrent_miss_calls_the_model() -> None:
    h = await Harness(default=Respond(latency_s=1.0), coalesce=False).load()
    calls = [h.task(f"r{i}") for i in range(3)]
    await settle()
    assert h.backend.stats.calls == 3
    h.clock.advance(1.0)
    await settle()
    assert all(t.done() for t, _ in calls)


async def test_when_the_first_call_fails_the_waiting_calls_call_the_model_themselves() -> None:
    h = await Harness(default=Respond(latency_s=1.0)).load()
    h.backend.push(Fail(BackendUnavailableError("down"), latency_s=1.0))
    leader, _ = h.task("a")
    await settle()
    followers = [h.task("b"), h.task("c")]
    await settle()

    h.clock.advance(1.0)
    await settle()
    assert isinstance(leader.exception(), BackendUnavailableError)
    assert h.backend.stats.calls == 3  # each follower called the model itself
    h.clock.advance(1.0)
    await settle()

    assert [t.result().id for t, _ in followers] == ["b", "c"]
    assert [c.annotations["cache"] for _, c in followers] == ["miss", "miss"]


async def test_when_the_first_caller_leaves_the_waiting_calls_are_answered_anyway() -> None:
    h = await Harness(default=Respond(latency_s=1.0)).load()
    leader, _ = h.task("a")
    await settle()
    follower, follower_ctx = h.task("b")
    await settle()

    leader.cancel()
    await settle()
    h.clock.advance(1.0)
    await settle()

    assert leader.cancelled()
    assert follower.result().id == "b"
    assert follower_ctx.annotations["cache"] == "miss"
    assert h.backend.stats.cancelled == 1


async def test_a_waiting_call_keeps_its_own_deadline_and_leaving_does_not_hurt_the_first() -> None:
    h = await Harness(default=Respond(latency_s=5.0)).load()
    leader, _ = h.task("a")
    await settle()
    hurried_ctx = ctx("b", deadline=h.clock.monotonic() + 1.0)
    hurried, _ = h.task("b", hurried_ctx)
    await settle()

    h.clock.advance(1.0)
    await settle()
    with pytest.raises(BackendTimeoutError, match="waiting for an identical call in flight"):
        hurried.result()
    h.clock.advance(4.0)
    await settle()

    assert leader.result().id == "a"
    _, later = await h.call()
    assert later.annotations["cache"] == "hit"


async def test_a_no_cache_call_does_not_wait_for_an_identical_call_in_flight() -> None:
    h = await Harness(default=Hang()).load()
    leader, _ = h.task("a")
    await settle()
    h.backend.push(Respond(outputs={"output-0": [3]}))

    fresh, fresh_ctx = await h.call(context=ctx("b", cache_control="no-cache"))

    assert output(fresh) == [[3]]
    assert fresh_ctx.annotations["cache"] == "bypass"
    assert not leader.done()
    leader.cancel()
    await settle()


# --- stores ---------------------------------------------------------------------------------


async def test_a_store_that_fails_makes_a_miss_never_a_failed_request() -> None:
    clock = FakeClock()
    events: list[Any] = []
    # Nothing listens on port 1: every lookup and write is refused at once.
    client = RedisCacheStore.client("redis://127.0.0.1:1/0", timeout_s=1.0)
    dead = RedisCacheStore(
        client,
        clock=clock,
        on_event=events.append,
        target="iris:1",
    )
    backend = MockBackend("iris", clock=clock)
    await backend.load()
    policy: CachePolicy[InferenceRequest, InferenceResponse] = CachePolicy(
        InferenceCodec(), store=dead, clock=clock, on_event=events.append, target="iris:1"
    )

    first_ctx = ctx("a")
    first = await policy(request("a"), first_ctx, backend.infer)
    second_ctx = ctx("b")
    second = await policy(request("b"), second_ctx, backend.infer)

    assert (first.id, second.id) == ("a", "b")
    assert [c.response_headers[CACHE_HEADER] for c in (first_ctx, second_ctx)] == ["miss"] * 2
    assert backend.stats.calls == 2
    # One failure (the first lookup); then Redis is left alone for the cool-off.
    assert [type(e) for e in events] == [CacheStoreFailed]
    assert events[0].operation == "get"
    await client.aclose()


# --- LLM calls ------------------------------------------------------------------------------


class Upstream:
    """An LLM model group stand-in: counts calls, answers with the call number."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, req: LlmRequest, context: CallContext) -> LlmResponse:
        self.calls += 1
        if req.kind is LlmKind.EMBEDDING:
            body: dict[str, Any] = {"object": "list", "data": [{"embedding": [0.1, self.calls]}]}
        else:
            message = {"role": "assistant", "content": f"answer {self.calls}"}
            body = {
                "id": f"c{self.calls}",
                "choices": [{"message": message, "finish_reason": "stop"}],
            }
        return LlmResponse(req.model, body=body, usage=Usage(5, 2), served_by="chat/primary")


def chat(**fields: Any) -> LlmRequest:
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], **fields}
    return LlmRequest(LlmKind.CHAT, "chat", body)


async def twice(
    policy: CachePolicy[LlmRequest, LlmResponse], first: LlmRequest, second: LlmRequest
) -> list[str]:
    upstream = Upstream()
    results = []
    for req in (first, second):
        context = ctx()
        await policy(req, context, upstream)
        results.append(context.response_headers[CACHE_HEADER])
    return results


def llm_policy(*, deterministic_only: bool = True) -> CachePolicy[LlmRequest, LlmResponse]:
    return CachePolicy(LlmCodec(deterministic_only=deterministic_only), target="chat")


async def test_a_deterministic_llm_call_is_cached_whoever_the_user_is() -> None:
    policy = llm_policy()
    upstream = Upstream()
    first = await policy(chat(temperature=0, user="alice"), ctx(), upstream)
    second_ctx = ctx()
    second = await policy(
        chat(temperature=0, user="bob", stream_options={"include_usage": True}),
        second_ctx,
        upstream,
    )

    assert upstream.calls == 1
    assert second_ctx.annotations["cache"] == "hit"
    assert second.body == first.body
    assert (second.usage, second.served_by) == (Usage(5, 2), "chat/primary")


@pytest.mark.parametrize(
    "fields", [{}, {"temperature": 0.7}, {"temperature": 1, "seed": 42}, {"temperature": False}]
)
async def test_a_non_deterministic_llm_call_is_not_cached_by_default(
    fields: dict[str, Any],
) -> None:
    policy = llm_policy()
    assert await twice(policy, chat(**fields), chat(**fields)) == ["bypass", "bypass"]


async def test_with_always_every_complete_llm_call_is_cached() -> None:
    policy = llm_policy(deterministic_only=False)
    assert await twice(policy, chat(temperature=0.7), chat(temperature=0.7)) == ["miss", "hit"]
    assert await twice(policy, chat(temperature=0.6), chat(temperature=0.8)) == ["miss", "miss"]


async def test_embeddings_are_deterministic() -> None:
    policy = llm_policy()
    embed = LlmRequest(LlmKind.EMBEDDING, "chat", {"model": "chat", "input": "hello"})
    assert await twice(policy, embed, embed) == ["miss", "hit"]


@pytest.mark.parametrize("deterministic_only", [True, False])
async def test_a_streamed_llm_call_is_never_cached(deterministic_only: bool) -> None:
    policy = llm_policy(deterministic_only=deterministic_only)
    streamed = chat(temperature=0, stream=True)
    context = ctx()
    await policy(streamed, context, Upstream())
    assert context.annotations["cache_reason"] == "stream"
    # ... and a streamed call does not read what a plain one stored either.
    assert await twice(policy, chat(temperature=0), streamed) == ["miss", "bypass"]


async def test_an_llm_answer_without_a_finish_reason_is_partial() -> None:
    policy = llm_policy()

    async def cut_off(req: LlmRequest, context: CallContext) -> LlmResponse:
        return LlmResponse("chat", body={"choices": [{"message": {}, "finish_reason": None}]})

    context = ctx()
    await policy(chat(temperature=0), context, cut_off)
    assert context.annotations["cache_skipped"] == "partial"


# --- property: sequential calls against a reference model -----------------------------------

_STEP = st.tuples(
    st.integers(0, 2),  # which input
    st.sampled_from([None, "no-cache", "no-store"]),
    st.sampled_from([0.0, 4.0, 7.0]),  # seconds that pass before the call
)


@settings(max_examples=80, deadline=None)
@given(steps=st.lists(_STEP, max_size=25))
def test_every_answer_is_the_models_latest_stored_one_within_ttl(
    steps: list[tuple[int, str | None, float]],
) -> None:
    """A reference dict of input -> (stored at, answer number) predicts every result."""

    async def run() -> None:
        clock = FakeClock()
        answered = 0

        async def model(req: InferenceRequest, context: CallContext) -> InferenceResponse:
            nonlocal answered
            answered += 1
            outputs = [Tensor.from_numpy("n", np.array([answered]))]
            return InferenceResponse(req.model, outputs, version=req.version, id=req.id)

        policy: CachePolicy[InferenceRequest, InferenceResponse] = CachePolicy(
            InferenceCodec(), CacheOptions(ttl_s=10.0), clock=clock
        )
        stored: dict[int, tuple[float, int]] = {}
        for i, (which, directive, wait_s) in enumerate(steps):
            clock.advance(wait_s)
            now = clock.monotonic()
            context = ctx(f"r{i}", cache_control=directive)
            response = await policy(request(f"r{i}", rows=[[which, 0.5]]), context, model)
            number = int(response.outputs[0].data[0])
            entry = stored.get(which)
            if directive is None and entry is not None and now - entry[0] < 10.0:
                assert (context.annotations["cache"], number) == ("hit", entry[1])
            else:
                assert number == answered  # the model answered this call
                assert context.annotations["cache"] == ("miss" if directive is None else "bypass")
                if directive != "no-store":
                    stored[which] = (now, number)
            assert response.id == f"r{i}"

    asyncio.run(run())
