"""`Pipeline`: policies folded around a terminal handler, the first listed outermost."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, Generic, TypeVar

from seawall.context import CallContext
from seawall.errors import ConfigError
from seawall.pipeline.policy import Handler, Policy

__all__ = ["Pipeline"]

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")


class Pipeline(Generic[RequestT, ResponseT]):
    """An ordered chain of policies around `terminal`, built and checked once.

    `Pipeline([a, b], backend)` calls `a`, which may call `b`, which may call `backend`.
    Building binds every stage to the next, so a call costs one await per policy and no lookups.
    """

    __slots__ = ("_handler", "_policies", "_terminal", "name")

    def __init__(
        self,
        policies: Sequence[Policy[RequestT, ResponseT]],
        terminal: Handler[RequestT, ResponseT],
        *,
        name: str = "",
    ) -> None:
        self.name = name
        self._policies = tuple(policies)
        self._terminal = terminal
        _check(self._policies, terminal, name)
        handler: Handler[RequestT, ResponseT] = terminal
        for policy in reversed(self._policies):
            handler = partial(policy, call_next=handler)
        self._handler = handler

    @property
    def policies(self) -> tuple[Policy[RequestT, ResponseT], ...]:
        """The policies, outermost first."""
        return self._policies

    @property
    def terminal(self) -> Handler[RequestT, ResponseT]:
        """What the innermost policy calls: the backend, or a handler over several."""
        return self._terminal

    async def __call__(self, request: RequestT, ctx: CallContext) -> ResponseT:
        return await self._handler(request, ctx)

    def __repr__(self) -> str:
        stages = [_label(p) for p in self._policies] + [_label(self._terminal)]
        prefix = f"{self.name}: " if self.name else ""
        return f"Pipeline({prefix}{' → '.join(stages)})"


def _label(stage: Any) -> str:
    for owner in (stage, getattr(stage, "__self__", None)):  # a bound method: its object's name
        name = getattr(owner, "name", None)
        if isinstance(name, str) and name:
            return name
    return getattr(stage, "__qualname__", type(stage).__name__)


def _check(policies: tuple[Any, ...], terminal: Any, name: str) -> None:
    where = f"pipeline {name!r}" if name else "pipeline"
    if not callable(terminal):
        raise ConfigError(f"{where}: the terminal handler {terminal!r} is not callable")
    seen: set[int] = set()
    for i, policy in enumerate(policies):
        if not callable(policy):
            raise ConfigError(f"{where}: policies[{i}] ({policy!r}) is not callable")
        if id(policy) in seen:
            # Policies hold state (windows, queues, counters): sharing one twice double-counts.
            raise ConfigError(f"{where}: policies[{i}] ({_label(policy)}) appears twice")
        seen.add(id(policy))
