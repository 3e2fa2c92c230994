"""`InProcessBackend`: the shared part of models that run inside the gateway's process."""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from seawall.backends.executor import (
    DEFAULT_MAX_QUEUE,
    DEFAULT_RETRY_AFTER_S,
    DEFAULT_WORKERS,
    BoundedExecutor,
)
from seawall.clock import Clock, SystemClock
from seawall.context import CallContext
from seawall.errors import (
    BadResponseError,
    InvalidInputError,
    ModelExecutionError,
    ModelNotReadyError,
    SeawallError,
)
from seawall.types import (
    Datatype,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    Parameters,
    Tensor,
)

__all__ = ["Arrays", "InProcessBackend", "InProcessOptions"]

_LOAD_LOCK = threading.Lock()

#: Named arrays in and out of model code.
Arrays = Mapping[str, npt.NDArray[Any]]


@dataclass(frozen=True, slots=True)
class InProcessOptions:
    """How an in-process model is run."""

    #: Threads running this model's inference; numpy, scikit-learn and ONNX Runtime release the GIL.
    workers: int = DEFAULT_WORKERS
    #: Calls that may wait for a thread; beyond this, calls are refused with 503 at once.
    max_queue: int = DEFAULT_MAX_QUEUE
    #: `Retry-After` sent with those refusals.
    retry_after_s: float = DEFAULT_RETRY_AFTER_S
    #: Called in the loading thread before the model file is read; raising refuses the model.
    #: `assemble` passes an artifact signature check here (backends know nothing of signing).
    check_artifact: Callable[[], object] | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers: must be at least 1, got {self.workers}")
        if self.max_queue < 0:
            raise ValueError(f"max_queue: must be 0 or more, got {self.max_queue}")
        if self.retry_after_s < 0:
            raise ValueError(f"retry_after_s: must be 0 or more, got {self.retry_after_s}")


class InProcessBackend(ABC):
    """Loads a model in a thread at start-up and runs each call on a `BoundedExecutor`.

    Subclasses implement `_load_sync` (returns the signature) and `_predict_sync` (computes the
    outputs named in `wanted`). Exceptions from model code are translated here: `ValueError`
    means the model rejected the input (400), anything else is a `ModelExecutionError` (500).
    """

    platform: ClassVar[str]

    def __init__(
        self, name: str, *, options: InProcessOptions | None = None, clock: Clock | None = None
    ) -> None:
        self.name = name
        self._options = options or InProcessOptions()
        self._clock = clock or SystemClock()
        self._metadata: ModelMetadata | None = None
        self._executor: BoundedExecutor | None = None

    @abstractmethod
    def _load_sync(self) -> ModelMetadata:
        """Load the model (blocking) and return its signature."""

    @abstractmethod
    def _predict_sync(
        self, inputs: Arrays, wanted: Sequence[str], parameters: Parameters
    ) -> Arrays:
        """Compute the outputs named in `wanted` (blocking)."""

    async def load(self) -> None:
        metadata = await asyncio.to_thread(self._load_locked)
        self._executor = BoundedExecutor(
            self.name,
            workers=self._options.workers,
            max_queue=self._options.max_queue,
            retry_after_s=self._options.retry_after_s,
            clock=self._clock,
        )
        self._metadata = metadata

    def ready(self) -> bool:
        return self._metadata is not None and self._executor is not None

    def metadata(self) -> ModelMetadata:
        if self._metadata is None:
            raise ModelNotReadyError(f"{self.name}: not loaded")
        return self._metadata

    @property
    def pending(self) -> int:
        """Calls running or waiting for a thread."""
        return 0 if self._executor is None else self._executor.pending

    async def infer(self, request: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        metadata = self.metadata()
        wanted = (
            [o.name for o in request.outputs]
            if request.outputs is not None
            else [spec.name for spec in metadata.outputs]
        )
        inputs = {t.name: t.data for t in request.inputs}
        results = await self._run(inputs, wanted, request.parameters, ctx.deadline)
        return InferenceResponse(
            model=request.model,
            version=request.version,
            id=request.id,
            outputs=[self._output(name, results) for name in wanted],
        )

    async def _run(
        self, inputs: Arrays, wanted: Sequence[str], parameters: Parameters, deadline: float | None
    ) -> Arrays:
        if self._executor is None:
            raise ModelNotReadyError(f"{self.name}: not loaded")
        return await self._executor.run(
            self._predict_translated, deadline, inputs, wanted, parameters
        )

    def _predict_translated(
        self, inputs: Arrays, wanted: Sequence[str], parameters: Parameters
    ) -> Arrays:
        try:
            return self._predict_sync(inputs, wanted, parameters)
        except SeawallError:
            raise
        except ValueError as exc:
            raise InvalidInputError("inputs", f"the model rejected the input: {exc}") from exc
        except Exception as exc:  # model code is foreign: translate whatever it raises
            raise ModelExecutionError(f"{self.name}: {type(exc).__name__}: {exc}") from exc

    def _output(self, name: str, results: Arrays) -> Tensor:
        if name not in results:
            raise BadResponseError(f"{self.name}: the model returned no output {name!r}")
        array = np.asarray(results[name])
        try:
            datatype = Datatype.from_numpy(array.dtype)
        except TypeError as exc:
            raise BadResponseError(f"{self.name}: output {name!r}: {exc}") from exc
        return Tensor.from_numpy(name, array, datatype)

    def _load_locked(self) -> ModelMetadata:
        if self._options.check_artifact is not None:
            # Before anything is unpickled: a pickle runs code as it loads. Outside the lock,
            # so several models' files are hashed at once.
            self._options.check_artifact()
        # Loading imports modules (unpickling imports scikit-learn's, a Python model its own).
        # Two threads importing the same package at once can see it half initialised
        # (scikit-learn#13940), so loads take turns; inference still runs in parallel.
        with _LOAD_LOCK:
            return self._load_sync()

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        self._metadata = None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
