"""FallbackPolicy: alternatives in order when the primary fails, marked, within the deadline."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from seawall.backends.mock import Hang, MockBackend, Respond
from seawall.clock import FakeClock
from seawall.context import CallContext
from seawall.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    BadResponseError,
    CircuitOpenError,
    ForbiddenError,
    InvalidInputError,
    ModelExecutionError,
    ModelNotReadyError,
    OverloadedError,
    RateLimitedError,
    RejectedError,
    UnauthorizedError,
)
from seawall.pipeline import Pipeline
from seawall.policies.fallback import (
    Alternative,
    FallbackExhausted,
    FallbackFailed,
    FallbackOptions,
    FallbackPolicy,
    FallbackUsed,
    FunctionAlternative,
    ModelAlternative,
    StaticAlternative,
)
from seawall.policies.fallback_cache import CachedAlternative, LastGoodCache
from seawall.types import (
    Datatype,
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    Tensor,
)

SERVED_BY = "x-seawall-served-by"
FALLBACK = "x-seawall-fallback"


def request(
    values: Any = None, *, outputs: list[str] | None = None, rid: str = "client-7"
) -> InferenceRequest:
    data = np.asarray([[1.0, 2.0]] if values is None else values, np.float32)
    return InferenceRequest(
        "iris",
        [Tensor.from_numpy("input-0", data)],
        version="1",
        id=rid,
        outputs=None if outputs is None else [RequestedOutput(n) for n in outputs],
    )


class Primary:
    """A `call_next` that raises `error` (or answers when None) and counts its calls."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.calls = 0

    async def __call__(self, req: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return InferenceResponse(req.model, [Tensor.from_numpy("out", [7.0])], req.version, req.id)


class Failing:
    """An alternative that always raises `error`."""

    def __init__(self, name: str, error: Exception | None = None) -> None:
        self.name = name
        self.error = error or BackendUnavailableError(f"{name} is down")
        self.calls = 0

    async def answer(self, req: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        self.calls += 1
        raise self.error


class Harness:
    def __init__(
        self,
        alternatives: list[Alternative],
        options: FallbackOptions | None = None,
        clock: FakeClock | None = None,
    ) -> None:
        self.clock = clock or FakeClock()
        self.events: list[object] = []
        self.policy = FallbackPolicy(
            alternatives,
            options,
            clock=self.clock,
            on_event=self.events.append,
            target="iris:1",
        )

    async def run(
        self, primary: Primary, req: InferenceRequest | None = None, ctx: CallContext | None = None
    ) -> tuple[InferenceResponse, CallContext]:
        ctx = ctx or CallContext.new("r")
        response = await self.policy(req or request(), ctx, primary)
        return response, ctx


async def settle() -> None:
    """Let tasks run until they block on the fake clock."""
    for _ in range(5):
        await asyncio.sleep(0)


def static(value: float = 0.5, name: str = "static") -> StaticAlternative:
    return StaticAlternative({"out": [value]}, name=name)


def value(response: InferenceResponse, name: str = "out") -> list[Any]:
    tensor = response.output(name)
    assert tensor is not None, f"no output {name!r}"
    return list(tensor.data.reshape(-1).tolist())


# --- the primary ------------------------------------------------------------------------------


async def test_a_primary_success_passes_through_marked_with_the_target() -> None:
    harness = Harness([static()])
    response, ctx = await harness.run(Primary())
    assert value(response) == [7.0]
    assert ctx.response_headers == {SERVED_BY: "iris:1"}
    assert "fallback" not in ctx.annotations
    assert harness.events == []


async def test_without_a_target_the_served_by_header_names_the_requested_model() -> None:
    policy = FallbackPolicy([static()])
    ctx = CallContext.new()
    await policy(request(), ctx, Primary())
    assert ctx.response_headers[SERVED_BY] == "iris:1"
    ctx = CallContext.new()
    await policy(InferenceRequest("plain", []), ctx, Primary())
    assert ctx.response_headers[SERVED_BY] == "plain"


async def test_an_inner_stage_that_said_who_served_is_not_overwritten() -> None:
    async def variant(req: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        ctx.response_headers[SERVED_BY] = "iris:2-canary"
        return InferenceResponse(req.model, [])

    policy = FallbackPolicy([static()], target="iris")
    ctx = CallContext.new()
    await policy(request(), ctx, variant)
    assert ctx.response_headers[SERVED_BY] == "iris:2-canary"


# --- triggers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (BackendUnavailableError("refused"), "unavailable"),
        (BackendTimeoutError("no answer in 200 ms"), "timeout"),
        (BadResponseError("not JSON"), "bad_response"),
        (BackendError("injected failure"), "backend_error"),
        (CircuitOpenError("open", retry_after_s=5.0), "circuit_open"),
        (OverloadedError("bulkhead full", retry_after_s=1.0), "overloaded"),
        (ModelNotReadyError("loading"), "model_not_ready"),
    ],
)
async def test_transient_and_rejection_errors_trigger_the_fallback(
    error: Exception, reason: str
) -> None:
    harness = Harness([static()])
    response, ctx = await harness.run(Primary(error))
    assert value(response) == [0.5]
    assert ctx.response_headers == {SERVED_BY: "static", FALLBACK: reason}
    assert ctx.annotations["fallback"] == "static"
    assert harness.events == [FallbackUsed("iris:1", "static", reason, 1)]


@pytest.mark.parametrize(
    "error",
    [
        InvalidInputError("inputs[0].shape", "takes shape [-1, 4], got [1, 2]"),
        UnauthorizedError("no API key"),
        ForbiddenError("role 'reader' cannot infer"),
        RateLimitedError("quota exhausted", retry_after_s=3.0),
        ModelExecutionError("model code raised ZeroDivisionError"),
        ValueError("a foreign error that escaped translation"),
    ],
)
async def test_other_errors_pass_through_untouched(error: Exception) -> None:
    alternative = Failing("never")
    harness = Harness([alternative])
    with pytest.raises(type(error)) as info:
        await harness.run(Primary(error), ctx=(ctx := CallContext.new()))
    assert info.value is error
    assert alternative.calls == 0
    assert ctx.response_headers == {}
    assert harness.events == []


async def test_configured_triggers_and_ignored_classes() -> None:
    options = FallbackOptions(
        triggers=(ModelExecutionError, RateLimitedError), ignored=(BackendTimeoutError,)
    )
    assert options.triggers_on(ModelExecutionError("x"))
    assert options.triggers_on(RateLimitedError("x"))
    assert not options.triggers_on(BackendUnavailableError("x"))
    broad = FallbackOptions(triggers=(BackendError,), ignored=(BackendTimeoutError,))
    assert broad.triggers_on(BadResponseError("x"))
    assert not broad.triggers_on(BackendTimeoutError("x"))
    # The client's own errors never trigger, even under a broad trigger class.
    rejected = FallbackOptions(triggers=(RejectedError,))
    assert rejected.triggers_on(OverloadedError("x"))
    assert not rejected.triggers_on(InvalidInputError("f", "r"))
    assert not rejected.triggers_on(UnauthorizedError("x"))
    assert not FallbackOptions().triggers_on(asyncio.CancelledError())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_hops": 0}, "max_hops: must be at least 1, got 0"),
        ({"triggers": ()}, "triggers: at least one error class"),
        ({"triggers": (InvalidInputError,)}, "InvalidInputError is the client's own error"),
        ({"triggers": (ForbiddenError,)}, "ForbiddenError is the client's own error"),
        ({"triggers": ("BackendError",)}, "triggers: 'BackendError' is not an exception class"),
        ({"ignored": (KeyboardInterrupt,)}, "ignored: <class 'KeyboardInterrupt'> is not an"),
    ],
)
def test_options_are_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FallbackOptions(**kwargs)


def test_defaults() -> None:
    options = FallbackOptions()
    assert options.max_hops == 3
    assert options.triggers == (BackendError, CircuitOpenError, OverloadedError, ModelNotReadyError)
    assert options.ignored == (ModelExecutionError,)


@pytest.mark.parametrize(
    ("alternatives", "message"),
    [
        ([], "alternatives: a fallback chain needs at least one alternative"),
        ([static(name="a"), static(name="a")], r"alternatives\[1\].name: 'a' is used twice"),
        ([static(name="bad\r\nheader")], r"alternatives\[0\].name: 'bad\\r\\nheader' must be"),
        ([static(name="")], r"alternatives\[0\].name: '' must be printable ASCII"),
        ([static(name=" padded")], "must be printable ASCII"),
    ],
)
def test_the_chain_is_validated_when_built(alternatives: list[Alternative], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FallbackPolicy(alternatives)


# --- the chain --------------------------------------------------------------------------------


async def test_alternatives_are_tried_in_order_until_one_answers() -> None:
    first, second = Failing("small-model"), Failing("rules", BadResponseError("returned None"))
    harness = Harness([first, second, static(), static(9.0, name="never")])
    response, ctx = await harness.run(Primary(CircuitOpenError("open")))
    assert value(response) == [0.5]
    assert (first.calls, second.calls) == (1, 1)
    assert ctx.response_headers == {SERVED_BY: "static", FALLBACK: "circuit_open"}
    assert harness.events == [
        FallbackFailed("iris:1", "small-model", "unavailable", "small-model is down"),
        FallbackFailed("iris:1", "rules", "bad_response", "returned None"),
        FallbackUsed("iris:1", "static", "circuit_open", 3),
    ]


async def test_when_every_alternative_fails_the_primary_error_is_raised() -> None:
    primary_error = BackendUnavailableError("iris:1: connection refused", retry_after_s=2.0)
    harness = Harness([Failing("a"), Failing("b")])
    ctx = CallContext.new()
    with pytest.raises(BackendUnavailableError) as info:
        await harness.run(Primary(primary_error), ctx=ctx)
    assert info.value is primary_error
    assert info.value.retry_after_s == 2.0
    assert ctx.response_headers == {}
    assert harness.events[-1] == FallbackExhausted("iris:1", "unavailable", 2)
    assert [type(e) for e in harness.events] == [FallbackFailed, FallbackFailed, FallbackExhausted]


async def test_max_hops_bounds_the_alternatives_tried() -> None:
    failing = [Failing(f"f{i}") for i in range(3)]
    harness = Harness([*failing, static()], FallbackOptions(max_hops=3))
    with pytest.raises(BackendTimeoutError):
        await harness.run(Primary(BackendTimeoutError("slow")))
    assert [f.calls for f in failing] == [1, 1, 1]
    assert harness.events[-1] == FallbackExhausted("iris:1", "timeout", 3)

    harness = Harness([*failing, static()], FallbackOptions(max_hops=4))
    response, _ = await harness.run(Primary(BackendTimeoutError("slow")))
    assert value(response) == [0.5]


# --- deadline and cancellation -----------------------------------------------------------------


async def test_no_alternative_starts_once_the_deadline_has_passed() -> None:
    clock = FakeClock()
    alternative = Failing("never")
    harness = Harness([alternative, static()], clock=clock)
    ctx = CallContext.new(deadline=clock.monotonic())
    with pytest.raises(BackendTimeoutError, match="deadline"):
        await harness.run(Primary(BackendTimeoutError("deadline reached")), ctx=ctx)
    assert alternative.calls == 0
    assert harness.events == [FallbackExhausted("iris:1", "timeout", 0)]


async def test_an_alternative_is_cut_off_at_the_deadline_and_cancelled() -> None:
    clock = FakeClock()
    hanging = MockBackend("iris-small", default=Hang(), clock=clock)
    await hanging.load()
    later = Failing("later")
    harness = Harness([ModelAlternative("iris-small", hanging.infer), later], clock=clock)
    ctx = CallContext.new(deadline=clock.monotonic() + 0.5)
    tasks_before = len(asyncio.all_tasks())
    call = asyncio.create_task(harness.run(Primary(BackendUnavailableError("down")), ctx=ctx))
    await settle()
    await clock.run_for(0.4, 0.1)
    assert not call.done()
    await clock.run_for(0.2, 0.1)
    with pytest.raises(BackendUnavailableError, match="down"):
        await call
    assert hanging.stats.cancelled == 1
    assert later.calls == 0  # no time left for it
    assert harness.events == [
        FallbackFailed(
            "iris:1", "iris-small", "timeout", "no answer in the 0.500 s left before the deadline"
        ),
        FallbackExhausted("iris:1", "unavailable", 1),
    ]
    assert len(asyncio.all_tasks()) == tasks_before


async def test_an_alternative_that_answers_in_time_serves() -> None:
    clock = FakeClock()
    slow = MockBackend("iris-small", default=Respond(latency_s=0.3), clock=clock)
    await slow.load()
    harness = Harness([ModelAlternative("iris-small", slow.infer)], clock=clock)
    ctx = CallContext.new(deadline=clock.monotonic() + 0.5)
    call = asyncio.create_task(harness.run(Primary(BackendUnavailableError("down")), ctx=ctx))
    await settle()
    await clock.run_for(0.3, 0.05)
    response, _ = await call
    assert response.model == "iris-small"
    assert ctx.response_headers == {SERVED_BY: "iris-small", FALLBACK: "unavailable"}


async def test_cancelling_the_call_cancels_the_alternative_in_progress() -> None:
    clock = FakeClock()
    hanging = MockBackend("iris-small", default=Hang(), clock=clock)
    await hanging.load()
    harness = Harness([ModelAlternative("iris-small", hanging.infer), static()], clock=clock)
    call = asyncio.create_task(harness.run(Primary(BackendUnavailableError("down"))))
    await clock.run_for(0.1, 0.05)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert hanging.stats.cancelled == 1
    assert harness.events == []  # neither a failure nor a fallback: the caller left


# --- model alternative -------------------------------------------------------------------------


async def test_a_model_alternative_gets_the_request_readdressed_with_the_clients_id() -> None:
    small = MockBackend("iris-small", record_requests=True)
    await small.load()
    harness = Harness([ModelAlternative("small", small.infer, model="iris-small", version="3")])
    original = request(outputs=["output-0"])
    response, ctx = await harness.run(Primary(OverloadedError("full")), req=original)
    sent = small.stats.requests[0]
    assert (sent.model, sent.version, sent.id) == ("iris-small", "3", "client-7")
    assert [o.name for o in sent.outputs or []] == ["output-0"]
    assert sent.inputs[0] is not original.inputs[0]
    np.testing.assert_array_equal(sent.inputs[0].data, original.inputs[0].data)
    assert (original.model, original.version) == ("iris", "1")
    assert (response.model, response.version, response.id) == ("iris-small", "3", "client-7")
    assert ctx.response_headers == {SERVED_BY: "small", FALLBACK: "overloaded"}


async def test_a_model_alternative_defaults_to_its_name_as_the_model() -> None:
    small = MockBackend("x", record_requests=True)
    await small.load()
    harness = Harness([ModelAlternative("iris-small", small.infer)])
    await harness.run(Primary(BackendTimeoutError("slow")))
    assert (small.stats.requests[0].model, small.stats.requests[0].version) == ("iris-small", None)


async def test_a_model_alternative_converting_inputs_leaves_the_original_alone() -> None:
    async def converting(req: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        tensor = req.inputs[0]
        tensor.data, tensor.datatype = tensor.data.astype(np.float64), Datatype.FP64
        return InferenceResponse(req.model, [], id=req.id)

    original = request()
    harness = Harness([ModelAlternative("other", converting)])
    await harness.run(Primary(BackendTimeoutError("slow")), req=original)
    assert original.inputs[0].datatype is Datatype.FP32
    assert original.inputs[0].data.dtype == np.float32


# --- function alternative ---------------------------------------------------------------------


async def test_a_function_alternative_answers_from_the_inputs() -> None:
    def rules(inputs: dict[str, Any]) -> dict[str, Any]:
        x = inputs["input-0"]
        return {"label": (x.sum(axis=1) > 2).astype(np.int64), "score": x.mean(axis=1)}

    harness = Harness([FunctionAlternative("rules", rules)])
    response, ctx = await harness.run(
        Primary(BackendUnavailableError("down")), req=request([[1.0, 2.0], [0.5, 0.5]])
    )
    assert (response.model, response.version, response.id) == ("iris", "1", "client-7")
    label, score = response.output("label"), response.output("score")
    assert label is not None
    assert score is not None
    assert (label.datatype, label.shape, label.data.tolist()) == (Datatype.INT64, (2,), [1, 0])
    assert (score.datatype, score.data.tolist()) == (Datatype.FP32, [1.5, 0.5])
    assert ctx.response_headers == {SERVED_BY: "rules", FALLBACK: "unavailable"}


async def test_a_function_alternative_returns_only_the_requested_outputs() -> None:
    harness = Harness([FunctionAlternative("rules", lambda x: {"a": [1], "b": [2]})])
    response, _ = await harness.run(Primary(BackendError("x")), req=request(outputs=["b"]))
    assert [t.name for t in response.outputs] == ["b"]


async def test_a_function_alternative_runs_off_the_loop_when_asked() -> None:
    import threading

    threads: list[str] = []

    def rules(inputs: dict[str, Any]) -> dict[str, Any]:
        threads.append(threading.current_thread().name)
        return {"out": [1.0]}

    harness = Harness([FunctionAlternative("rules", rules, offload=True)])
    response, _ = await harness.run(Primary(BackendError("x")))
    assert value(response) == [1.0]
    assert len(threads) == 1
    assert threads[0] != threading.main_thread().name


@pytest.mark.parametrize(
    ("fn", "code", "message"),
    [
        (lambda x: 1 / 0, "model_error", "fallback 'rules': ZeroDivisionError: division by zero"),
        (lambda x: [1, 2], "bad_response", "fallback 'rules' returned a list; expected a mapping"),
        (lambda x: {"other": [1]}, "bad_response", "fallback 'rules' has no output out"),
        (lambda x: {"out": [1j]}, "bad_response", "no Open Inference Protocol datatype"),
        # Inputs are read-only: a heuristic cannot corrupt the request for the next alternative.
        (lambda x: x["input-0"].__iadd__(1), "model_error", "read-only"),
    ],
)
async def test_a_failing_function_alternative_hands_over_to_the_next(
    fn: Any, code: str, message: str
) -> None:
    original = request(outputs=["out"])
    harness = Harness([FunctionAlternative("rules", fn), static()])
    response, _ = await harness.run(Primary(BackendError("x")), req=original)
    assert value(response) == [0.5]
    failed = harness.events[0]
    assert isinstance(failed, FallbackFailed)
    assert (failed.alternative, failed.error) == ("rules", code)
    assert message in failed.message
    assert original.inputs[0].data.tolist() == [[1.0, 2.0]]


# --- static alternative -------------------------------------------------------------------------


async def test_a_static_alternative_answers_the_same_for_every_call() -> None:
    source = np.array([0.1, 0.9])
    alternative = StaticAlternative(
        {"probabilities": source, "label": ["setosa"]},
        datatypes={"probabilities": Datatype.FP32},
        name="prior",
    )
    source[0] = 99.0  # the alternative kept its own copy
    harness = Harness([alternative])
    for rid in ("a", "b"):
        response, ctx = await harness.run(Primary(BackendError("x")), req=request(rid=rid))
        assert response.id == rid
        probabilities, label = response.output("probabilities"), response.output("label")
        assert probabilities is not None
        assert label is not None
        assert probabilities.datatype is Datatype.FP32
        assert probabilities.data.tolist() == pytest.approx([0.1, 0.9])
        assert (label.datatype, label.data.tolist()) == (Datatype.BYTES, [b"setosa"])
        assert not probabilities.data.flags.writeable
        assert ctx.response_headers == {SERVED_BY: "prior", FALLBACK: "backend_error"}


async def test_a_static_alternative_without_a_requested_output_fails() -> None:
    harness = Harness([static(), StaticAlternative({"x": [1]}, name="other")])
    response, _ = await harness.run(Primary(BackendError("x")), req=request(outputs=["x"]))
    assert value(response, "x") == [1]
    assert harness.events[0] == FallbackFailed(
        "iris:1", "static", "bad_response", "fallback 'static' has no output x"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"outputs": {}}, "outputs: a static response needs at least one output"),
        (
            {"outputs": {"a": [1]}, "datatypes": {"b": Datatype.FP32}},
            "datatypes: no output named b",
        ),
        (
            {"outputs": {"a": [0.5]}, "datatypes": {"a": Datatype.INT64}},
            "outputs.a: expected integers for INT64, got fractional numbers",
        ),
        ({"outputs": {"a": [1j]}}, "outputs.a: no Open Inference Protocol datatype"),
    ],
)
def test_a_static_alternative_is_validated_when_built(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StaticAlternative(**kwargs)


# --- cached alternative ------------------------------------------------------------------------


async def test_the_last_good_response_for_the_same_input_answers() -> None:
    cache = LastGoodCache()
    harness = Harness([CachedAlternative(cache), static()])
    await harness.run(Primary(), req=request([[1.0, 2.0]], rid="first"))
    assert len(cache) == 1
    response, ctx = await harness.run(
        Primary(BackendTimeoutError("slow")), req=request([[1.0, 2.0]], rid="second")
    )
    assert (value(response), response.id) == ([7.0], "second")
    assert ctx.response_headers == {SERVED_BY: "cached", FALLBACK: "timeout"}


async def test_a_different_input_misses_the_cache() -> None:
    cache = LastGoodCache()
    harness = Harness([CachedAlternative(cache), static()])
    await harness.run(Primary(), req=request([[1.0, 2.0]]))
    response, _ = await harness.run(Primary(BackendError("x")), req=request([[1.0, 2.5]]))
    assert value(response) == [0.5]
    assert harness.events[0] == FallbackFailed(
        "iris:1", "cached", "cache_miss", "no cached response of model 'iris' for this input"
    )
    # Same input, other requested outputs: a different entry too.
    harness.events.clear()
    await harness.run(Primary(BackendError("x")), req=request([[1.0, 2.0]], outputs=["out"]))
    assert isinstance(harness.events[0], FallbackFailed)


async def test_fallback_answers_are_not_recorded_as_good_responses() -> None:
    cache = LastGoodCache()
    harness = Harness([static(), CachedAlternative(cache)])
    await harness.run(Primary(BackendError("x")))
    assert len(cache) == 0


async def test_one_cache_shared_by_two_alternatives_is_recorded_once() -> None:
    cache = LastGoodCache(max_entries=5)
    harness = Harness([CachedAlternative(cache), CachedAlternative(cache, name="again")])
    await harness.run(Primary())
    assert len(cache) == 1


# --- acceptance -------------------------------------------------------------------------------


async def test_a_failing_primary_with_a_fallback_answers_every_request_marked() -> None:
    """Acceptance: 100% of requests answered, each marked with the fallback."""
    primary = MockBackend("iris", error_rate=1.0, error=BackendUnavailableError("refused"))
    await primary.load()
    events: list[object] = []
    policy = FallbackPolicy(
        [StaticAlternative({"label": [0]}, name="majority-class")],
        on_event=events.append,
        target="iris:1",
    )
    pipeline = Pipeline([policy], primary.infer)
    contexts = [CallContext.new(f"r{i}") for i in range(500)]
    responses = await asyncio.gather(
        *(pipeline(request(rid=ctx.request_id), ctx) for ctx in contexts)
    )
    assert primary.stats.failed == 500
    assert all(value(r, "label") == [0] for r in responses)
    assert [r.id for r in responses] == [ctx.request_id for ctx in contexts]
    assert all(
        ctx.response_headers == {SERVED_BY: "majority-class", FALLBACK: "unavailable"}
        for ctx in contexts
    )
    assert events == [FallbackUsed("iris:1", "majority-class", "unavailable", 1)] * 500


async def test_a_failing_primary_falls_back_to_another_model_for_every_request() -> None:
    primary = MockBackend("iris", error_rate=1.0, error=BackendTimeoutError("slow"))
    small = MockBackend("iris-small")
    for backend in (primary, small):
        await backend.load()
    pipeline = Pipeline(
        [FallbackPolicy([ModelAlternative("iris-small", small.infer)], target="iris:1")],
        primary.infer,
    )
    for i in range(500):
        ctx = CallContext.new(f"r{i}")
        response = await pipeline(request(), ctx)
        assert response.model == "iris-small"
        assert ctx.response_headers == {SERVED_BY: "iris-small", FALLBACK: "timeout"}
    assert (primary.stats.failed, small.stats.completed) == (500, 500)


def test_repr_and_pipeline_label() -> None:
    policy = FallbackPolicy([Failing("small"), static()], target="iris:1")
    assert repr(policy) == "FallbackPolicy('iris:1': small, static)"
    assert "fallback" in repr(Pipeline([policy], Primary()))
