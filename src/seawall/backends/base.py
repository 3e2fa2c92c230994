"""The `Backend` protocol: what the pipeline's terminal handler talks to."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from seawall.context import CallContext
from seawall.types import InferenceRequest, InferenceResponse, ModelMetadata

__all__ = ["Backend", "HealthChecked"]


@runtime_checkable
class Backend(Protocol):
    """A model behind seawall: in process, on a remote server, or a test double.

    Lifecycle: `load()` is awaited once at start-up (or when a model is added) and raises if the
    model cannot serve; `metadata()` and `infer()` are called only after a successful `load()`;
    `ready()` may be polled at any time; `close()` is awaited once at shutdown, after in-flight
    calls have drained, and must be safe to call after a failed `load()`.
    """

    #: Short description for logs and `repr(pipeline)`, e.g. ``sklearn:iris.joblib``.
    name: str

    async def load(self) -> None:
        """Load the model; raise (ideally a `SeawallError`) with the reason if it cannot serve."""
        ...

    def ready(self) -> bool:
        """True if `infer` can be called now."""
        ...

    def metadata(self) -> ModelMetadata:
        """The model's signature; valid after `load()`."""
        ...

    async def infer(self, request: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        """Run one inference; raise `BackendError` on failure, `RejectedError` on bad input."""
        ...

    async def close(self) -> None:
        """Release threads, sessions and connections."""
        ...


@runtime_checkable
class HealthChecked(Protocol):
    """A backend with an active health check, separate from its calls (a remote server's
    readiness URL); an `EndpointPool` probes such endpoints on an interval."""

    async def check_health(self) -> bool:
        """True if the backend passes its check now; False (not an exception) if it does not."""
        ...
