"""The Policy protocol: one callable shape for every stage."""

from __future__ import annotations

from seawall.context import CallContext
from seawall.pipeline import Handler, Pipeline, Policy


class Conforming:
    async def __call__(self, request: str, ctx: CallContext, call_next: Handler[str, str]) -> str:
        return (await call_next(request, ctx)).upper()


class NotCallable:
    name = "not a policy"


async def echo(request: str, ctx: CallContext) -> str:
    return request


def test_a_conforming_class_is_a_policy_at_runtime() -> None:
    assert isinstance(Conforming(), Policy)


def test_objects_without_call_are_not_policies() -> None:
    assert not isinstance(NotCallable(), Policy)
    assert not isinstance(42, Policy)


async def test_a_conforming_policy_runs_in_a_pipeline() -> None:
    pipeline = Pipeline([Conforming()], echo)
    assert await pipeline("hello", CallContext.new("r")) == "HELLO"
