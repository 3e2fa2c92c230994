"""Shadow mirroring: a sampled, bounded, fire-and-forget copy of calls to a shadow version.

The router asks `sample(request)` before it calls the primary: with probability `sample_rate`
the mirror takes a deep copy of the request then (the primary's pipeline may convert inputs in
place, and the shadow must see what the client sent). Once the primary has answered, the
router hands its response to `start(...)`, which starts a task and returns at once: the
primary's response goes back to the client before the shadow call has even begun, and nothing
the shadow does (fail, hang, raise) reaches the primary. At most `max_concurrency` shadow
calls run at a time; a copy arriving when all are busy is dropped and counted, never queued.

The shadow call gets a fresh `CallContext` (the request id + `-shadow`, batch priority, no
credentials: the handler is the shadow version's inner pipeline) and its own `timeout_s`. Its
answer is compared with the primary's by `compare` (default `OutputsMatch`: the same outputs,
shapes and values, floats within a tolerance) and the outcome counted in `ShadowStats`.
"""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from seawall.clock import Clock, SystemClock
from seawall.context import CallContext, Priority
from seawall.errors import BackendTimeoutError
from seawall.pipeline import EventSink, Handler, discard
from seawall.policies.variants import LatencySamples
from seawall.types import InferenceRequest, InferenceResponse, RequestedOutput, Tensor

__all__ = [
    "Compare",
    "OutputsMatch",
    "ShadowDisagreed",
    "ShadowFailed",
    "ShadowMirror",
    "ShadowOptions",
    "ShadowSkipped",
    "ShadowSnapshot",
    "ShadowStats",
]

DEFAULT_SAMPLE_RATE = 1.0
DEFAULT_MAX_CONCURRENCY = 8
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_RTOL = 1e-6
DEFAULT_ATOL = 1e-9
#: Latencies kept for the shadow's and the primary's quantiles (the most recent).
DEFAULT_LATENCY_SAMPLES = 1_000

#: (primary, shadow) -> True if the answers agree. Gets read-only views; must not block.
Compare = Callable[[InferenceResponse, InferenceResponse], bool]


@dataclass(frozen=True, slots=True)
class OutputsMatch:
    """Agreement: the same output names, each with equal shape and values.

    Integers, booleans and bytes must be equal exactly; when either side is floating point the
    values must be within `rtol`/`atol` (`numpy.isclose`, NaN equal to NaN).
    """

    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL

    def __post_init__(self) -> None:
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value < float("inf")):
                raise ValueError(f"{name}: must be a finite number >= 0, got {value!r}")

    def __call__(self, primary: InferenceResponse, shadow: InferenceResponse) -> bool:
        theirs = {t.name: t for t in shadow.outputs}
        if len(theirs) != len(shadow.outputs) or {t.name for t in primary.outputs} != set(theirs):
            return False
        return all(self._same(t.data, theirs[t.name].data) for t in primary.outputs)

    def _same(self, a: npt.NDArray[Any], b: npt.NDArray[Any]) -> bool:
        if a.shape != b.shape:
            return False
        if a.dtype.kind == "f" or b.dtype.kind == "f":
            if a.dtype.kind not in "biuf" or b.dtype.kind not in "biuf":
                return False
            return bool(np.allclose(a, b, rtol=self.rtol, atol=self.atol, equal_nan=True))
        if (a.dtype.kind == "O") != (b.dtype.kind == "O"):
            return False  # bytes against numbers
        return bool(np.array_equal(a, b))


@dataclass(frozen=True, slots=True)
class ShadowOptions:
    """How much traffic is mirrored, how many copies may run at once, and for how long."""

    #: Share of the primary's successful calls copied to the shadow (0..1).
    sample_rate: float = DEFAULT_SAMPLE_RATE
    #: Shadow calls running at once at most; a copy beyond this is skipped, never queued.
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    #: Seconds a shadow call may take before it is cancelled and counted as timed out.
    timeout_s: float = DEFAULT_TIMEOUT_S
    #: Decides whether the shadow's answer agrees with the primary's.
    compare: Compare = field(default_factory=OutputsMatch)
    #: Latencies kept for each side's quantiles.
    latency_samples: int = DEFAULT_LATENCY_SAMPLES

    def __post_init__(self) -> None:
        rate = self.sample_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise ValueError(f"sample_rate: must be between 0 and 1, got {rate!r}")
        if isinstance(self.max_concurrency, bool) or self.max_concurrency < 1:
            raise ValueError(f"max_concurrency: must be at least 1, got {self.max_concurrency}")
        if not (0 < self.timeout_s < float("inf")):
            raise ValueError(f"timeout_s: must be a number of seconds > 0, got {self.timeout_s}")
        if not callable(self.compare):
            raise ValueError(f"compare: must be callable, got {self.compare!r}")
        if self.latency_samples < 1:
            raise ValueError(f"latency_samples: must be at least 1, got {self.latency_samples}")


@dataclass(frozen=True, slots=True)
class ShadowSkipped:
    """A sampled copy was dropped: `max_concurrency` shadow calls were already running."""

    target: str
    version: str
    request_id: str


@dataclass(frozen=True, slots=True)
class ShadowFailed:
    """The shadow call raised or timed out (`error` is its code: `timeout`, `unavailable`...)."""

    target: str
    version: str
    request_id: str
    error: str
    message: str


@dataclass(frozen=True, slots=True)
class ShadowDisagreed:
    """The shadow answered, differently from the primary."""

    target: str
    version: str
    request_id: str


@dataclass(frozen=True, slots=True)
class ShadowSnapshot:
    """Counts of the shadow's calls and their outcomes, and both sides' latency quantiles."""

    mirrored: int
    skipped_busy: int
    failed: int
    timed_out: int
    agreed: int
    disagreed: int
    #: agreed / (agreed + disagreed); None before any comparison.
    agreement_rate: float | None
    shadow_p50_s: float | None
    shadow_p95_s: float | None
    #: The primary's latency on the calls whose shadow answered (paired with the shadow's).
    primary_p50_s: float | None
    primary_p95_s: float | None


class ShadowStats:
    """Running totals of a mirror since it started."""

    def __init__(self, latency_samples: int = DEFAULT_LATENCY_SAMPLES) -> None:
        self.mirrored = self.skipped_busy = self.failed = self.timed_out = 0
        self.agreed = self.disagreed = 0
        self.shadow_latency = LatencySamples(latency_samples)
        self.primary_latency = LatencySamples(latency_samples)

    def snapshot(self) -> ShadowSnapshot:
        """The totals now."""
        compared = self.agreed + self.disagreed
        shadow_p50, shadow_p95 = self.shadow_latency.quantiles((0.5, 0.95))
        primary_p50, primary_p95 = self.primary_latency.quantiles((0.5, 0.95))
        return ShadowSnapshot(
            mirrored=self.mirrored,
            skipped_busy=self.skipped_busy,
            failed=self.failed,
            timed_out=self.timed_out,
            agreed=self.agreed,
            disagreed=self.disagreed,
            agreement_rate=self.agreed / compared if compared else None,
            shadow_p50_s=shadow_p50,
            shadow_p95_s=shadow_p95,
            primary_p50_s=primary_p50,
            primary_p95_s=primary_p95,
        )


class ShadowMirror:
    """Copies sampled calls to the shadow `handler` in the background; see the module doc."""

    def __init__(
        self,
        handler: Handler[InferenceRequest, InferenceResponse],
        options: ShadowOptions | None = None,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        on_event: EventSink = discard,
        target: str = "",
        version: str | None = None,
    ) -> None:
        """`version`: the shadow's version; mirrored requests are addressed to it."""
        self.options = options or ShadowOptions()
        self.version = version
        self.stats = ShadowStats(self.options.latency_samples)
        self._handler = handler
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._on_event = on_event
        self._target = target
        self._label = version or ""
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def in_flight(self) -> int:
        """Shadow calls running now."""
        return len(self._tasks)

    def sample(self, request: InferenceRequest) -> InferenceRequest | None:
        """A private copy of `request` if this call is to be mirrored, else None."""
        rate = self.options.sample_rate
        if self._closed or rate == 0 or (rate < 1 and self._rng.random() >= rate):
            return None
        return _copy_request(request, self.version)

    def start(
        self,
        copied: InferenceRequest,
        primary: InferenceResponse,
        ctx: CallContext,
        primary_latency_s: float,
    ) -> bool:
        """Start the shadow call for `copied` in the background; False if skipped (busy)."""
        if self._closed:
            return False
        if len(self._tasks) >= self.options.max_concurrency:
            self.stats.skipped_busy += 1
            self._on_event(ShadowSkipped(self._target, self._label, ctx.request_id))
            return False
        self.stats.mirrored += 1
        call = self._call(copied, _read_only(primary), ctx, primary_latency_s)
        task = asyncio.get_running_loop().create_task(call, name=f"shadow {self._target}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def drain(self) -> None:
        """Wait until the shadow calls running now have finished (tests, orderly shutdown)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def close(self) -> None:
        """Cancel every running shadow call and wait for them; no new ones start."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await self.drain()

    async def _call(
        self,
        request: InferenceRequest,
        primary: InferenceResponse,
        parent: CallContext,
        primary_latency_s: float,
    ) -> None:
        rid = f"{parent.request_id}-shadow"
        start = self._clock.monotonic()
        ctx = CallContext(
            request_id=rid,
            deadline=start + self.options.timeout_s,
            priority=Priority.BATCH,
            trace=parent.trace,
        )
        try:
            async with self._clock.timeout(self.options.timeout_s):
                answer = await self._handler(request, ctx)
        except (TimeoutError, BackendTimeoutError) as exc:
            self.stats.timed_out += 1
            message = str(exc) or f"no answer within {self.options.timeout_s} s"
            self._on_event(ShadowFailed(self._target, self._label, rid, "timeout", message))
            return
        except Exception as exc:  # the shadow's failure is recorded, never passed on
            self._failed(rid, exc)
            return
        now = self._clock.monotonic()
        self._compare(rid, primary, answer, now, now - start, primary_latency_s)

    def _compare(
        self,
        rid: str,
        primary: InferenceResponse,
        answer: InferenceResponse,
        now: float,
        latency_s: float,
        primary_latency_s: float,
    ) -> None:
        try:
            agreed = self.options.compare(primary, _read_only(answer))
        except Exception as exc:  # a faulty comparison is the mirror's failure, not the call's
            self._failed(rid, exc)
            return
        self.stats.shadow_latency.add(now, latency_s)
        self.stats.primary_latency.add(now, primary_latency_s)
        if agreed:
            self.stats.agreed += 1
        else:
            self.stats.disagreed += 1
            self._on_event(ShadowDisagreed(self._target, self._label, rid))

    def _failed(self, rid: str, exc: Exception) -> None:
        self.stats.failed += 1
        code = getattr(exc, "code", None)
        error = code if isinstance(code, str) else type(exc).__name__
        self._on_event(ShadowFailed(self._target, self._label, rid, error, str(exc)))

    def __repr__(self) -> str:
        o = self.options
        return (
            f"ShadowMirror({self._target!r} -> {self.version!r}, sample_rate={o.sample_rate}, "
            f"max_concurrency={o.max_concurrency})"
        )


def _copy_request(request: InferenceRequest, version: str | None) -> InferenceRequest:
    """A copy sharing nothing mutable with `request`, addressed to `version` if given."""
    return InferenceRequest(
        model=request.model,
        inputs=[
            Tensor(t.name, t.datatype, t.shape, t.data.copy(), copy.deepcopy(t.parameters))
            for t in request.inputs
        ],
        version=version if version is not None else request.version,
        id=request.id,
        parameters=copy.deepcopy(request.parameters),
        outputs=None
        if request.outputs is None
        else [RequestedOutput(o.name, copy.deepcopy(o.parameters)) for o in request.outputs],
    )


def _read_only(response: InferenceResponse) -> InferenceResponse:
    """The same response over read-only views of its arrays: a comparison cannot change it."""
    outputs = []
    for tensor in response.outputs:
        view = tensor.data.view()
        view.flags.writeable = False
        outputs.append(replace(tensor, data=view, parameters=dict(tensor.parameters)))
    return replace(response, outputs=outputs, parameters=dict(response.parameters))
