"""The one callable shape every stage of the data path shares."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeAlias, TypeVar, runtime_checkable

from seawall.context import CallContext

__all__ = ["Handler", "Policy"]

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")

#: Takes a request and its context, returns a response: a backend, or a pipeline's inner part.
Handler: TypeAlias = Callable[[RequestT, CallContext], Awaitable[ResponseT]]


@runtime_checkable
class Policy(Protocol[RequestT, ResponseT]):
    """A stage of the pipeline: may act before and after `call_next`, or answer without it.

    Policies see domain objects only (no HTTP). A policy refuses a call by raising a
    `RejectedError`, and reports a failed backend call by raising a `BackendError`.
    """

    async def __call__(
        self, request: RequestT, ctx: CallContext, call_next: Handler[RequestT, ResponseT]
    ) -> ResponseT: ...
