"""Pipeline: policies folded around a terminal, first listed outermost, checked when built."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.context import CallContext
from seawall.errors import ConfigError
from seawall.pipeline import Handler, Pipeline

Request = str
Response = list[str]


class Recorder:
    """A policy that logs `before`/`after` around `call_next` into a shared list."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def __call__(
        self, request: Request, ctx: CallContext, call_next: Handler[Request, Response]
    ) -> Response:
        self.log.append(f"{self.name}:before")
        response = await call_next(request, ctx)
        self.log.append(f"{self.name}:after")
        return [*response, self.name]


class Backend:
    """A terminal whose bound `infer` method is the handler."""

    def __init__(self, log: list[str], name: str = "backend") -> None:
        self.name = name
        self.log = log
        self.calls = 0

    async def infer(self, request: Request, ctx: CallContext) -> Response:
        self.calls += 1
        self.log.append(self.name)
        return [f"{self.name}({request})"]


class Anonymous:
    """A policy without a `name` attribute."""

    async def __call__(
        self, request: Request, ctx: CallContext, call_next: Handler[Request, Response]
    ) -> Response:
        return await call_next(request, ctx)


async def terminal_fn(request: Request, ctx: CallContext) -> Response:
    return [request]


def ctx() -> CallContext:
    return CallContext.new("test")


async def test_the_first_listed_policy_is_outermost() -> None:
    log: list[str] = []
    backend = Backend(log)
    pipeline = Pipeline([Recorder("a", log), Recorder("b", log), Recorder("c", log)], backend.infer)
    response = await pipeline("req", ctx())
    assert log == [
        "a:before",
        "b:before",
        "c:before",
        "backend",
        "c:after",
        "b:after",
        "a:after",
    ]
    # Responses travel back out through the same policies in reverse.
    assert response == ["backend(req)", "c", "b", "a"]


async def test_every_stage_sees_the_same_context() -> None:
    seen: list[CallContext] = []

    def spy(label: str) -> Any:
        async def policy(
            request: Request, context: CallContext, call_next: Handler[Any, Any]
        ) -> Any:
            seen.append(context)
            context.annotations[label] = True
            return await call_next(request, context)

        return policy

    async def terminal(request: Request, context: CallContext) -> Response:
        seen.append(context)
        return [request]

    context = ctx()
    await Pipeline([spy("p1"), spy("p2")], terminal)("r", context)
    assert len(seen) == 3
    assert all(c is context for c in seen)
    assert context.annotations == {"p1": True, "p2": True}


async def test_a_policy_that_answers_itself_short_circuits_the_rest() -> None:
    log: list[str] = []
    backend = Backend(log)

    class Cache:
        name = "cache"

        async def __call__(
            self, request: Request, ctx: CallContext, call_next: Handler[Request, Response]
        ) -> Response:
            log.append("cache")
            return ["cached"]

    pipeline = Pipeline([Recorder("outer", log), Cache(), Recorder("inner", log)], backend.infer)
    assert await pipeline("req", ctx()) == ["cached", "outer"]
    assert log == ["outer:before", "cache", "outer:after"]
    assert backend.calls == 0


async def test_exceptions_propagate_through_every_policy() -> None:
    log: list[str] = []
    boom = RuntimeError("backend down")

    async def failing(request: Request, ctx: CallContext) -> Response:
        log.append("backend")
        raise boom

    pipeline = Pipeline([Recorder("a", log), Recorder("b", log)], failing)
    with pytest.raises(RuntimeError) as info:
        await pipeline("req", ctx())
    assert info.value is boom
    # Nothing after call_next ran in either policy.
    assert log == ["a:before", "b:before", "backend"]


async def test_an_outer_policy_can_handle_an_inner_failure() -> None:
    async def failing(request: Request, ctx: CallContext) -> Response:
        raise TimeoutError

    async def fallback(
        request: Request, ctx: CallContext, call_next: Handler[Request, Response]
    ) -> Response:
        try:
            return await call_next(request, ctx)
        except TimeoutError:
            return ["fallback"]

    log: list[str] = []
    assert await Pipeline([fallback, Recorder("x", log)], failing)("r", ctx()) == ["fallback"]
    assert log == ["x:before"]


async def test_no_policies_calls_the_terminal_directly() -> None:
    log: list[str] = []
    backend = Backend(log)
    pipeline: Pipeline[Request, Response] = Pipeline([], backend.infer)
    assert pipeline.policies == ()
    assert await pipeline("req", ctx()) == ["backend(req)"]
    assert backend.calls == 1
    assert repr(pipeline) == "Pipeline(backend)"


async def test_a_pipeline_can_be_called_many_times_and_concurrently() -> None:
    log: list[str] = []
    backend = Backend(log)
    pipeline = Pipeline([Recorder("a", log)], backend.infer)
    results = await asyncio.gather(*(pipeline(str(i), ctx()) for i in range(20)))
    assert results == [[f"backend({i})", "a"] for i in range(20)]
    assert backend.calls == 20


def test_policies_property_keeps_the_order_and_is_immutable() -> None:
    log: list[str] = []
    a, b = Recorder("a", log), Recorder("b", log)
    source = [a, b]
    pipeline = Pipeline(source, terminal_fn)
    source.reverse()  # the pipeline took a copy when it was built
    assert pipeline.policies == (a, b)
    assert isinstance(pipeline.policies, tuple)


def test_repr_shows_the_order_by_name() -> None:
    log: list[str] = []
    pipeline = Pipeline(
        [Recorder("auth", log), Recorder("validation", log)], Backend(log, "mock:iris").infer
    )
    # A bound-method terminal is labelled by its object's name.
    assert repr(pipeline) == "Pipeline(auth → validation → mock:iris)"


def test_repr_with_a_pipeline_name() -> None:
    pipeline = Pipeline([Recorder("a", [])], terminal_fn, name="iris:1")
    assert pipeline.name == "iris:1"
    assert repr(pipeline) == "Pipeline(iris:1: a → terminal_fn)"


def test_repr_falls_back_to_qualified_and_class_names() -> None:
    class Nameless:
        async def infer(self, request: Request, ctx: CallContext) -> Response:
            return [request]

    async def policy_fn(
        request: Request, ctx: CallContext, call_next: Handler[Request, Response]
    ) -> Response:
        return await call_next(request, ctx)

    pipeline = Pipeline([Anonymous(), policy_fn], Nameless().infer)
    assert repr(pipeline) == (
        "Pipeline(Anonymous → "
        "test_repr_falls_back_to_qualified_and_class_names.<locals>.policy_fn → "
        "test_repr_falls_back_to_qualified_and_class_names.<locals>.Nameless.infer)"
    )


def test_an_empty_name_attribute_is_not_a_label() -> None:
    log: list[str] = []
    assert repr(Pipeline([Recorder("", log)], terminal_fn)) == "Pipeline(Recorder → terminal_fn)"


@pytest.mark.parametrize("terminal", [None, 42, "backend"])
def test_a_terminal_that_is_not_callable_is_a_config_error(terminal: Any) -> None:
    with pytest.raises(ConfigError, match=r"terminal handler .* is not callable"):
        Pipeline([], terminal)


def test_a_policy_that_is_not_callable_is_a_config_error_naming_its_index() -> None:
    log: list[str] = []
    with pytest.raises(ConfigError, match=r"pipeline 'iris': policies\[1\] \('oops'\) is not"):
        Pipeline([Recorder("a", log), "oops", Recorder("b", log)], terminal_fn, name="iris")  # type: ignore[list-item]


def test_the_same_policy_instance_twice_is_a_config_error() -> None:
    log: list[str] = []
    shared = Recorder("limiter", log)
    with pytest.raises(ConfigError, match=r"^pipeline: policies\[2\] \(limiter\) appears twice$"):
        Pipeline([shared, Recorder("x", log), shared], terminal_fn)


def test_two_equal_but_distinct_policies_are_fine() -> None:
    log: list[str] = []
    pipeline = Pipeline([Recorder("same", log), Recorder("same", log)], terminal_fn)
    assert repr(pipeline) == "Pipeline(same → same → terminal_fn)"


@settings(max_examples=50, deadline=None)
@given(n=st.integers(min_value=0, max_value=25))
def test_any_number_of_policies_nest_in_list_order(n: int) -> None:
    log: list[str] = []
    backend = Backend(log)
    pipeline = Pipeline([Recorder(str(i), log) for i in range(n)], backend.infer)
    response = asyncio.run(pipeline("r", ctx()))
    expected = (
        [f"{i}:before" for i in range(n)] + ["backend"] + [f"{i}:after" for i in reversed(range(n))]
    )
    assert log == expected
    assert response == ["backend(r)", *(str(i) for i in reversed(range(n)))]
    assert repr(pipeline) == f"Pipeline({' → '.join([*(str(i) for i in range(n)), 'backend'])})"
