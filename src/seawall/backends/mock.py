"""`MockBackend`: a scripted backend for tests and chaos experiments.

Each call takes the next step of the script (then the default step once the script runs out):

    MockBackend(script=[Fail(BackendUnavailableError("down")), Respond(latency_s=0.2), Hang()])

Latency is spent on the injected clock, so tests on `FakeClock` never sleep. `Respond` echoes
the inputs (or returns fixed outputs), `Fail` raises, `Hang` waits until cancelled.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from seawall.clock import Clock, SystemClock
from seawall.context import CallContext
from seawall.errors import BackendError, ModelNotReadyError
from seawall.types import (
    Datatype,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    Tensor,
    TensorSpec,
)

__all__ = ["DEFAULT_MOCK_SIGNATURE", "Fail", "Hang", "MockBackend", "Respond", "Step"]

#: Signature used when none is given: one FP32 matrix in, the same matrix out.
DEFAULT_MOCK_SIGNATURE = (
    (TensorSpec("input-0", Datatype.FP32, (-1, -1)),),
    (TensorSpec("output-0", Datatype.FP32, (-1, -1)),),
)


@dataclass(frozen=True, slots=True)
class Respond:
    """Answer after `latency_s`: `outputs` if given, else the inputs echoed as the outputs."""

    latency_s: float = 0.0
    outputs: Mapping[str, npt.ArrayLike] | None = None


@dataclass(frozen=True, slots=True)
class Fail:
    """Raise `error` after `latency_s`."""

    error: BaseException
    latency_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Hang:
    """Never answer; the call ends only when cancelled."""


Step = Respond | Fail | Hang


@dataclass(slots=True)
class _Stats:
    calls: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    requests: list[InferenceRequest] = field(default_factory=list)


class MockBackend:
    """A `Backend` that follows a script; counts calls, concurrency and cancellations."""

    def __init__(
        self,
        name: str = "mock",
        *,
        script: Iterable[Step] = (),
        default: Step | None = None,
        error_rate: float = 0.0,
        error: BackendError | None = None,
        seed: int | None = None,
        signature: tuple[Sequence[TensorSpec], Sequence[TensorSpec]] = DEFAULT_MOCK_SIGNATURE,
        load_error: BaseException | None = None,
        load_latency_s: float = 0.0,
        clock: Clock | None = None,
        record_requests: bool = False,
    ) -> None:
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError(f"error_rate: must be between 0 and 1, got {error_rate}")
        self.name = f"mock:{name}"
        self._model_name = name
        self._script: deque[Step] = deque(script)
        self._default: Step = default or Respond()
        self._error_rate = error_rate
        self._error = error or BackendError("injected failure")
        self._rng = random.Random(seed)
        self._inputs, self._outputs = (tuple(s) for s in signature)
        self._load_error = load_error
        self._load_latency_s = load_latency_s
        self._clock = clock or SystemClock()
        self._record = record_requests
        self._loaded = False
        self.stats = _Stats()

    def push(self, *steps: Step) -> None:
        """Append steps to the script."""
        self._script.extend(steps)

    async def load(self) -> None:
        if self._load_latency_s:
            await self._clock.sleep(self._load_latency_s)
        if self._load_error is not None:
            raise self._load_error
        self._loaded = True

    def ready(self) -> bool:
        return self._loaded

    def metadata(self) -> ModelMetadata:
        if not self._loaded:
            raise ModelNotReadyError(f"{self.name}: not loaded")
        return ModelMetadata(
            name=self._model_name, platform="mock", inputs=self._inputs, outputs=self._outputs
        )

    async def infer(self, request: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        if not self._loaded:
            raise ModelNotReadyError(f"{self.name}: not loaded")
        stats = self.stats
        stats.calls += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        if self._record:
            stats.requests.append(request)
        step = self._script.popleft() if self._script else self._default
        if self._error_rate and self._rng.random() < self._error_rate:
            step = Fail(self._error, getattr(step, "latency_s", 0.0))
        try:
            response = await self._play(step, request)
        except BaseException as exc:
            if isinstance(exc, Exception):
                stats.failed += 1
            else:  # CancelledError: the caller gave up (timeout, hedging, client gone)
                stats.cancelled += 1
            raise
        finally:
            stats.in_flight -= 1
        stats.completed += 1
        return response

    async def _play(self, step: Step, request: InferenceRequest) -> InferenceResponse:
        if isinstance(step, Hang):
            while True:
                await self._clock.sleep(3600.0)
        if step.latency_s:
            await self._clock.sleep(step.latency_s)
        if isinstance(step, Fail):
            raise step.error
        return InferenceResponse(
            model=request.model,
            version=request.version,
            id=request.id,
            outputs=self._outputs_for(step, request),
        )

    def _outputs_for(self, step: Respond, request: InferenceRequest) -> list[Tensor]:
        if step.outputs is not None:
            return [Tensor.from_numpy(n, np.asarray(v)) for n, v in step.outputs.items()]
        echoed: list[Tensor] = []
        for spec, tensor in zip(self._outputs, request.inputs, strict=False):
            if request.wants(spec.name):
                echoed.append(Tensor(spec.name, tensor.datatype, tensor.shape, tensor.data))
        return echoed

    async def close(self) -> None:
        self._loaded = False

    def __repr__(self) -> str:
        return f"MockBackend({self._model_name!r}, calls={self.stats.calls})"
