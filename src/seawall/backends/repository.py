"""`ModelRepository`: the served models by name and version, with their load state."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from seawall.backends.base import Backend
from seawall.clock import Clock, SystemClock
from seawall.errors import ConfigError, ModelNotReadyError, NotFoundError
from seawall.pipeline import Handler
from seawall.types import InferenceRequest, InferenceResponse, ModelMetadata

__all__ = ["ModelRepository", "ModelState", "ServedModel"]

logger = logging.getLogger("seawall.models")

InferenceHandler = Handler[InferenceRequest, InferenceResponse]


class ModelState(StrEnum):
    """Where a served model is in its lifecycle."""

    LOADING = "LOADING"
    READY = "READY"
    FAILED = "FAILED"
    UNLOADED = "UNLOADED"


@dataclass(slots=True, eq=False)
class ServedModel:
    """One version of one model: its backend, the pipeline in front of it, and its state."""

    name: str
    version: str
    backend: Backend
    handler: InferenceHandler
    state: ModelState = ModelState.LOADING
    reason: str = ""
    load_seconds: float | None = None
    #: Successful loads so far: changes whenever the model behind this name and version is
    #: (re)loaded, so answers cached for an earlier load are never served for this one.
    generation: int = 0

    @property
    def ready(self) -> bool:
        return self.state is ModelState.READY and self.backend.ready()

    def check_ready(self) -> None:
        """Raise `ModelNotReadyError` (with the reason) unless the model can serve."""
        if not self.ready:
            detail = f": {self.reason}" if self.reason else ""
            state = self.state.value.lower() if self.state is not ModelState.READY else "not ready"
            raise ModelNotReadyError(
                f"model {self.name!r} version {self.version!r} is {state}{detail}",
                retry_after_s=5.0 if self.state is ModelState.LOADING else None,
            )

    def metadata(self) -> ModelMetadata:
        self.check_ready()
        return self.backend.metadata()


class ModelRepository:
    """Holds every served model; looks them up and loads them all concurrently at start."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._models: dict[str, dict[str, ServedModel]] = {}
        self._defaults: dict[str, str] = {}
        self._routes: dict[str, tuple[InferenceHandler, Callable[[], str]]] = {}

    @property
    def clock(self) -> Clock:
        """The clock the models' policies were built with."""
        return self._clock

    def add(self, model: ServedModel, *, default: bool = False) -> None:
        """Add a version; the first, or the one marked `default`, serves unversioned calls."""
        versions = self._models.setdefault(model.name, {})
        if model.version in versions:
            raise ConfigError(f"models: {model.name!r} version {model.version!r} is defined twice")
        versions[model.version] = model
        if default or model.name not in self._defaults:
            self._defaults[model.name] = model.version

    def route(self, name: str, handler: InferenceHandler, stable: Callable[[], str]) -> None:
        """Send `name`'s unversioned calls to `handler` (a traffic router); `stable()` names
        the version that stands for the model in them (readiness, metadata, metrics)."""
        if name not in self._models:
            raise ConfigError(f"traffic: no model {name!r} to route")
        self._routes[name] = (handler, stable)

    def routed(self, name: str) -> InferenceHandler | None:
        """The router of `name`'s unversioned calls (None: its default version serves them)."""
        route = self._routes.get(name)
        return None if route is None else route[0]

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The model version asked for (the default version, or a routed model's stable
        version, when `version` is empty)."""
        versions = self._models.get(name)
        if versions is None:
            raise NotFoundError(f"model {name!r} not found")
        if not version:
            route = self._routes.get(name)
            return versions[route[1]() if route is not None else self._defaults[name]]
        model = versions.get(version)
        if model is None:
            known = ", ".join(sorted(versions))
            raise NotFoundError(f"model {name!r} has no version {version!r} (versions: {known})")
        return model

    def versions(self, name: str) -> tuple[str, ...]:
        return tuple(self._models.get(name, {}))

    def default_version(self, name: str) -> str:
        route = self._routes.get(name)
        return route[1]() if route is not None else self._defaults[name]

    def __iter__(self) -> Iterator[ServedModel]:
        for versions in self._models.values():
            yield from versions.values()

    def __len__(self) -> int:
        return sum(len(v) for v in self._models.values())

    def swapped_hook(self, model: ServedModel) -> Callable[[str], None]:
        """What a backend that swaps versions live calls after each swap: the model is ready
        (even if its first load failed) and starts a new generation (no stale cache hits)."""

        def swapped(version: str) -> None:
            model.generation += 1
            model.state, model.reason = ModelState.READY, ""
            logger.info(
                "model version now serving",
                extra={"model": model.name, "version": model.version, "serving": version},
            )

        return swapped

    async def load_all(self) -> None:
        """Load every model concurrently; a failure marks that model FAILED and spares the rest."""
        await asyncio.gather(*(self._load(model) for model in self))

    async def _load(self, model: ServedModel) -> None:
        model.state, model.reason = ModelState.LOADING, ""
        started = self._clock.monotonic()
        try:
            await model.backend.load()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any load failure: report it and keep serving the others
            model.state, model.reason = ModelState.FAILED, f"{type(exc).__name__}: {exc}"
            logger.error(
                "model failed to load",
                extra={"model": model.name, "version": model.version, "reason": model.reason},
            )
            return
        model.load_seconds = self._clock.monotonic() - started
        model.generation += 1
        model.state = ModelState.READY
        logger.info(
            "model loaded",
            extra={
                "model": model.name,
                "version": model.version,
                "backend": model.backend.name,
                "load_seconds": round(model.load_seconds, 3),
            },
        )

    async def close_all(self) -> None:
        """Close every backend, even those that failed to load."""
        for model in self:
            try:
                await model.backend.close()
            except Exception:  # one backend failing to close must not keep the others open
                logger.exception("backend failed to close", extra={"model": model.name})
            model.state = ModelState.UNLOADED
