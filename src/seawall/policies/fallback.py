"""Fallback: when the primary call fails, an ordered chain of alternatives answers instead.

Alternatives, tried in order, at most `max_hops` of them, each only while the call's deadline
leaves time: another model or variant (`ModelAlternative`), a heuristic (`FunctionAlternative`),
a fixed response (`StaticAlternative`) and the last good response for the same input
(`CachedAlternative`, in `fallback_cache`). The first that answers serves the call, and the
response says so: `x-seawall-served-by: <alternative>` and `x-seawall-fallback: <reason>`, the
reason being the primary error's `code` (`unavailable`, `circuit_open`, `timeout`,
`overloaded`...). When every alternative fails, the primary error is raised: the client sees the
real cause. A primary success is marked `x-seawall-served-by: <target>` (unless an inner stage
already said who served it) and recorded in every `CachedAlternative`'s cache.

Only the error classes in `triggers` start the chain (resilience4j's record/ignore lists). By
default: every `BackendError` but `ModelExecutionError` (in-process model code raising is a defect
tied to that input; answering it with a heuristic would hide a bug, so add it to `triggers`
only to degrade on purpose), plus `CircuitOpenError`, `OverloadedError` (shedding, full queues,
bulkheads) and `ModelNotReadyError`. `RateLimitedError` is left out: a quota is the client's own
limit, and a fallback would let it be exceeded. The client's own errors (invalid input, payload too
large, not found, unauthorized, forbidden) never trigger it. The policy is specific to
`InferenceRequest` (alternatives build tensors).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from seawall.clock import Clock, SystemClock
from seawall.context import CallContext
from seawall.errors import (
    BackendError,
    BadResponseError,
    CircuitOpenError,
    ForbiddenError,
    InvalidInputError,
    ModelExecutionError,
    ModelNotReadyError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    UnauthorizedError,
)
from seawall.pipeline import EventSink, Handler, discard
from seawall.policies.fallback_cache import CachedAlternative
from seawall.types import Datatype, InferenceRequest, InferenceResponse, Tensor, coerce

__all__ = [
    "Alternative",
    "FallbackExhausted",
    "FallbackFailed",
    "FallbackOptions",
    "FallbackPolicy",
    "FallbackUsed",
    "FunctionAlternative",
    "ModelAlternative",
    "StaticAlternative",
]

SERVED_BY_HEADER = "x-seawall-served-by"
FALLBACK_HEADER = "x-seawall-fallback"

DEFAULT_MAX_HOPS = 3
DEFAULT_TRIGGERS: tuple[type[Exception], ...] = (
    BackendError,
    CircuitOpenError,
    OverloadedError,
    ModelNotReadyError,
)
DEFAULT_IGNORED: tuple[type[Exception], ...] = (ModelExecutionError,)

# The client's own mistakes: a fallback answer would hide them.
_NEVER: tuple[type[Exception], ...] = (
    InvalidInputError,
    PayloadTooLargeError,
    NotFoundError,
    UnauthorizedError,
    ForbiddenError,
)


@dataclass(frozen=True, slots=True)
class FallbackOptions:
    """Which failures start the chain and how far it goes."""

    #: Most alternatives tried for one call, in order (the primary call is not counted).
    max_hops: int = DEFAULT_MAX_HOPS
    #: Error classes of the primary call that start the chain (subclasses included).
    triggers: tuple[type[Exception], ...] = DEFAULT_TRIGGERS
    #: Error classes that never start it, even when a trigger covers them.
    ignored: tuple[type[Exception], ...] = DEFAULT_IGNORED

    def __post_init__(self) -> None:
        if self.max_hops < 1:
            raise ValueError(f"max_hops: must be at least 1, got {self.max_hops}")
        if not self.triggers:
            raise ValueError("triggers: at least one error class must start the chain")
        for name, classes in (("triggers", self.triggers), ("ignored", self.ignored)):
            for cls in classes:
                if not (isinstance(cls, type) and issubclass(cls, Exception)):
                    raise ValueError(f"{name}: {cls!r} is not an exception class")
        for cls in self.triggers:
            if issubclass(cls, _NEVER):
                raise ValueError(
                    f"triggers: {cls.__name__} is the client's own error; a fallback would hide it"
                )

    def triggers_on(self, error: BaseException) -> bool:
        """True if `error` from the primary call starts the chain."""
        return isinstance(error, self.triggers) and not isinstance(error, (*self.ignored, *_NEVER))


@dataclass(frozen=True, slots=True)
class FallbackUsed:
    """An alternative answered a call the primary failed."""

    target: str
    alternative: str
    #: The primary error's code.
    reason: str
    #: Position of the alternative in the chain, from 1.
    hop: int


@dataclass(frozen=True, slots=True)
class FallbackFailed:
    """An alternative failed too; the next one is tried."""

    target: str
    alternative: str
    #: The alternative's error code (`cache_miss`, `timeout`, `bad_response`...).
    error: str
    message: str


@dataclass(frozen=True, slots=True)
class FallbackExhausted:
    """No alternative answered; the primary error goes to the client."""

    target: str
    reason: str
    #: Alternatives tried (fewer than configured when the deadline or `max_hops` cut it short).
    tried: int


class Alternative(Protocol):
    """Something that can answer an inference call when the primary cannot."""

    @property
    def name(self) -> str:
        """Label for `x-seawall-served-by`, events and annotations."""
        ...

    async def answer(self, request: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        """Answer `request` or raise."""
        ...


@dataclass(frozen=True, slots=True)
class ModelAlternative:
    """Another model or variant: its pipeline, called with the request re-addressed to it."""

    name: str
    handler: Handler[InferenceRequest, InferenceResponse]
    #: Model the request is addressed to; `name` when not given.
    model: str | None = None
    #: Version the request is addressed to; None for that model's default version.
    version: str | None = None

    async def answer(self, request: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        # New tensor objects: the other pipeline may convert inputs in place (validation).
        readdressed = replace(
            request,
            model=self.model or self.name,
            version=self.version,
            inputs=[replace(t) for t in request.inputs],
            parameters=dict(request.parameters),
            outputs=None if request.outputs is None else list(request.outputs),
        )
        return await self.handler(readdressed, ctx)


#: A heuristic: named input arrays (read-only) in, named outputs out.
FallbackFunction = Callable[[dict[str, npt.NDArray[Any]]], Mapping[str, npt.ArrayLike]]


@dataclass(frozen=True, slots=True)
class FunctionAlternative:
    """A heuristic written in Python; output datatypes are inferred from the arrays it returns.

    `fn` runs inline on the event loop, which suits the cheap rules a fallback usually is; set
    `offload` for anything slower than a few hundred microseconds, to run it on a worker thread.
    """

    name: str
    fn: FallbackFunction
    #: Run `fn` in a worker thread instead of on the event loop.
    offload: bool = False

    async def answer(self, request: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        inputs = {t.name: _read_only_view(t.data) for t in request.inputs}
        try:
            result = await asyncio.to_thread(self.fn, inputs) if self.offload else self.fn(inputs)
        except Exception as exc:  # foreign code: translate whatever it raises
            raise ModelExecutionError(
                f"fallback {self.name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(result, Mapping):
            raise BadResponseError(
                f"fallback {self.name!r} returned a {type(result).__name__}; "
                "expected a mapping of output name to array"
            )
        try:
            outputs = [Tensor.from_numpy(n, v) for n, v in result.items() if request.wants(n)]
        except (TypeError, ValueError) as exc:
            raise BadResponseError(f"fallback {self.name!r}: {exc}") from exc
        return _response(request, outputs, self.name)


class StaticAlternative:
    """A fixed response: the same outputs for every call (datatypes inferred unless given)."""

    __slots__ = ("_outputs", "name")

    def __init__(
        self,
        outputs: Mapping[str, npt.ArrayLike],
        *,
        datatypes: Mapping[str, Datatype] | None = None,
        name: str = "static",
    ) -> None:
        if not outputs:
            raise ValueError("outputs: a static response needs at least one output")
        types = dict(datatypes or {})
        if unknown := sorted(set(types) - set(outputs)):
            raise ValueError(f"datatypes: no output named {', '.join(unknown)}")
        self.name = name
        self._outputs = [_frozen_tensor(n, v, types.get(n)) for n, v in outputs.items()]

    async def answer(self, request: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        outputs = [
            Tensor(t.name, t.datatype, t.shape, t.data)
            for t in self._outputs
            if request.wants(t.name)
        ]
        return _response(request, outputs, self.name)

    def __repr__(self) -> str:
        return f"StaticAlternative({[t.name for t in self._outputs]}, name={self.name!r})"


def _read_only_view(data: npt.NDArray[Any]) -> npt.NDArray[Any]:
    view = data.view()
    view.flags.writeable = False
    return view


def _frozen_tensor(name: str, values: npt.ArrayLike, datatype: Datatype | None) -> Tensor:
    """A tensor holding a read-only copy of `values`, converted to `datatype` only if lossless."""
    array = np.array(values)  # a copy: freezing it must not touch the caller's array
    try:
        if datatype is None:
            tensor = Tensor.from_numpy(name, array)
        else:
            data = coerce(array, datatype)
            tensor = Tensor(name, datatype, tuple(data.shape), data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"outputs.{name}: {exc}") from None
    tensor.data.flags.writeable = False
    return tensor


def _response(request: InferenceRequest, outputs: list[Tensor], label: str) -> InferenceResponse:
    """The response to `request`, refused if an output the client asked for is missing."""
    if request.outputs is not None:
        have = {t.name for t in outputs}
        missing = [o.name for o in request.outputs if o.name not in have]
        if missing:
            raise BadResponseError(f"fallback {label!r} has no output {', '.join(missing)}")
    return InferenceResponse(
        model=request.model, version=request.version, id=request.id, outputs=outputs
    )


class FallbackPolicy:
    """Answers a failed call from the first alternative that can, in order; see the module doc."""

    name = "fallback"

    def __init__(
        self,
        alternatives: Sequence[Alternative],
        options: FallbackOptions | None = None,
        *,
        clock: Clock | None = None,
        on_event: EventSink = discard,
        target: str = "",
    ) -> None:
        _check_alternatives(alternatives)
        self.alternatives = tuple(alternatives)
        self.options = options or FallbackOptions()
        self._clock = clock or SystemClock()
        self._on_event = on_event
        self._target = target
        caches = (a.cache for a in alternatives if isinstance(a, CachedAlternative))
        self._caches = tuple({id(c): c for c in caches}.values())

    async def __call__(
        self,
        request: InferenceRequest,
        ctx: CallContext,
        call_next: Handler[InferenceRequest, InferenceResponse],
    ) -> InferenceResponse:
        try:
            response = await call_next(request, ctx)
        except Exception as exc:
            if not self.options.triggers_on(exc):
                raise
            primary = exc
        else:
            for cache in self._caches:
                cache.put(request, response)
            # setdefault: an inner stage (a router's variant, a nested fallback) knows better.
            ctx.response_headers.setdefault(SERVED_BY_HEADER, self._target or _address(request))
            return response
        return await self._fall_back(request, ctx, primary)

    async def _fall_back(
        self, request: InferenceRequest, ctx: CallContext, primary: Exception
    ) -> InferenceResponse:
        reason = _code(primary)
        tried = 0
        for alternative in self.alternatives[: self.options.max_hops]:
            left = ctx.time_left(self._clock.monotonic())
            if left is not None and left <= 0:
                break  # no time to answer in: do not start work that cannot finish
            tried += 1
            try:
                async with self._clock.timeout(left):
                    response = await alternative.answer(request, ctx)
            except Exception as exc:  # an alternative failing is what the chain is for
                message = str(exc)
                if isinstance(exc, TimeoutError) and not message:  # ours: the deadline came
                    message = f"no answer in the {left:.3f} s left before the deadline"
                self._on_event(FallbackFailed(self._target, alternative.name, _code(exc), message))
                continue
            ctx.response_headers[SERVED_BY_HEADER] = alternative.name
            ctx.response_headers[FALLBACK_HEADER] = reason
            ctx.annotations["fallback"] = alternative.name
            self._on_event(FallbackUsed(self._target, alternative.name, reason, tried))
            return response
        self._on_event(FallbackExhausted(self._target, reason, tried))
        raise primary

    def __repr__(self) -> str:
        names = ", ".join(a.name for a in self.alternatives)
        return f"FallbackPolicy({self._target or 'fallback'!r}: {names})"


def _check_alternatives(alternatives: Sequence[Alternative]) -> None:
    if not alternatives:
        raise ValueError("alternatives: a fallback chain needs at least one alternative")
    seen: set[str] = set()
    for i, alternative in enumerate(alternatives):
        label = alternative.name
        # The name goes into a response header: printable ASCII, no surrounding spaces.
        if not label or not (label.isascii() and label.isprintable()) or label != label.strip():
            raise ValueError(
                f"alternatives[{i}].name: {label!r} must be printable ASCII (it is a header value)"
            )
        if label in seen:
            raise ValueError(f"alternatives[{i}].name: {label!r} is used twice")
        seen.add(label)


def _code(error: BaseException) -> str:
    code = getattr(error, "code", None)
    if isinstance(code, str):
        return code
    return "timeout" if isinstance(error, TimeoutError) else type(error).__name__


def _address(request: InferenceRequest) -> str:
    return f"{request.model}:{request.version}" if request.version else request.model
