"""`SwappableBackend`: serves the version a `VersionSource` names, and follows it as it moves.

A registry alias (`models:/iris@champion`) is such a source: the version behind it changes
when someone promotes another. Every `poll_interval_s` the backend asks the source which
version it names; when that changed, it builds and loads the new version beside the old one,
switches new calls to it in one assignment, lets the calls already inside the old one finish
(up to `drain_timeout_s`), and only then closes the old one. No call is refused or cut during a
move: a call runs wholly on the version it started on.

A version that fails to build or load (a refused signature, a missing blob, a broken file)
never replaces a working one: the old version keeps serving, the failure is reported once per
version (`VersionSwapFailed`) and retried only when the source names another version, or after
`retry_failed_s`. If nothing is loaded yet, the backend is not ready and says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from seawall.backends.base import Backend
from seawall.clock import Clock, SystemClock
from seawall.context import CallContext
from seawall.errors import ModelNotReadyError
from seawall.pipeline import EventSink, discard
from seawall.types import InferenceRequest, InferenceResponse, ModelMetadata

__all__ = [
    "DEFAULT_DRAIN_TIMEOUT_S",
    "DEFAULT_RETRY_FAILED_S",
    "VERSION_HEADER",
    "SwappableBackend",
    "VersionSource",
    "VersionSwapFailed",
    "VersionSwapped",
]

logger = logging.getLogger("seawall.models")

#: Response header naming the version that answered (a registry version number).
VERSION_HEADER = "x-seawall-model-version"
#: How long an old version's in-flight calls may take to finish before it is closed anyway.
DEFAULT_DRAIN_TIMEOUT_S = 30.0
#: A version that failed to load is tried again after this long even if the source still names it.
DEFAULT_RETRY_FAILED_S = 60.0


class VersionSource(Protocol):
    """Names a version, and builds a backend for one."""

    async def current(self) -> str:
        """The version named now; raises (a `SeawallError`, ideally) if it cannot tell."""
        ...

    async def open(self, version: str) -> Backend:
        """A backend for `version`, not loaded yet; raises if the version is refused."""
        ...

    async def loaded(self, version: str, backend: Backend) -> None:
        """Told after `version`'s backend loaded, before it serves; raising refuses it."""
        ...

    async def swapped(self, previous: str | None, version: str) -> None:
        """Told after `version` replaced `previous` (None: the first load), to record it."""
        ...


@dataclass(frozen=True, slots=True)
class VersionSwapped:
    """New calls now go to `version` (`previous`: None at the first load)."""

    target: str
    previous: str | None
    version: str


@dataclass(frozen=True, slots=True)
class VersionSwapFailed:
    """`version` could not be built or loaded; `serving` (if any) goes on serving."""

    target: str
    version: str | None
    serving: str | None
    reason: str


class SwappableBackend:
    """A backend that is whichever version `source` names, swapped without dropping calls."""

    def __init__(
        self,
        source: VersionSource,
        *,
        poll_interval_s: float,
        clock: Clock | None = None,
        on_event: EventSink = discard,
        target: str = "",
        drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
        retry_failed_s: float = DEFAULT_RETRY_FAILED_S,
        on_swap: Callable[[str], None] | None = None,
    ) -> None:
        """`on_swap(version)` runs after each successful swap (the repository marks the model
        ready and starts a new cache generation)."""
        if not poll_interval_s > 0:
            raise ValueError(f"poll_interval_s: must be > 0, got {poll_interval_s}")
        self.name = f"registry:{target}" if target else "registry"
        self._source = source
        self._poll_s = poll_interval_s
        self._clock = clock or SystemClock()
        self._on_event = on_event
        self._target = target
        self._drain_s = drain_timeout_s
        self._retry_s = retry_failed_s
        #: Called with the new version after each swap (settable after construction).
        self.on_swap = on_swap
        self._inner: Backend | None = None
        self._version: str | None = None
        self._in_flight: dict[int, int] = {}
        self._drained: dict[int, asyncio.Event] = {}
        self._failed: tuple[str | None, float] | None = None
        self._lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None
        self._closed = False
        #: Why nothing is serving, when nothing is.
        self.reason = ""

    @property
    def source(self) -> VersionSource:
        """What names and builds the versions."""
        return self._source

    @property
    def version(self) -> str | None:
        """The version serving now (None before the first successful load)."""
        return self._version

    async def load(self) -> None:
        """Load the version named now, and start following the source (even if this fails)."""
        if self._poller is None and not self._closed:
            self._poller = asyncio.create_task(self._poll(), name=f"follow {self.name}")
        await self.refresh(raise_on_failure=True)

    def ready(self) -> bool:
        inner = self._inner
        return inner is not None and inner.ready()

    def metadata(self) -> ModelMetadata:
        inner = self._inner
        if inner is None:
            raise ModelNotReadyError(f"{self.name}: no version loaded ({self.reason or 'loading'})")
        return inner.metadata()

    async def infer(self, request: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        inner, version = self._inner, self._version
        if inner is None or version is None:
            raise ModelNotReadyError(
                f"{self.name}: no version loaded ({self.reason or 'loading'})", retry_after_s=5.0
            )
        key = id(inner)
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        try:
            response = await inner.infer(request, ctx)
        finally:
            left = self._in_flight.get(key)
            if left is not None:  # None: retired already (its drain timed out)
                self._in_flight[key] = left - 1
                if left == 1 and (drained := self._drained.get(key)) is not None:
                    drained.set()
        ctx.response_headers[VERSION_HEADER] = version
        return response

    async def refresh(self, *, raise_on_failure: bool = False) -> bool:
        """Check the source once; swap if it names another version. True if a swap happened."""
        async with self._lock:
            if self._closed:
                return False
            try:
                wanted = await self._source.current()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the source is down or names nothing: keep serving
                self._fail(None, exc, raise_on_failure)
                return False
            if wanted == self._version or self._recently_failed(wanted):
                return False
            try:
                fresh = await self._source.open(wanted)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # refused before it was built (signature, blob, ...)
                self._fail(wanted, exc, raise_on_failure)
                return False
            try:
                await fresh.load()
                await self._source.loaded(wanted, fresh)
            except asyncio.CancelledError:
                await _close_quietly(fresh)
                raise
            except Exception as exc:  # a broken version must not replace a working one
                await _close_quietly(fresh)
                self._fail(wanted, exc, raise_on_failure)
                return False
            old, previous = self._inner, self._version
            self._inner, self._version, self._failed, self.reason = fresh, wanted, None, ""
        logger.info(
            "model version swapped",
            extra={"target": self._target, "from": previous, "to": wanted},
        )
        self._on_event(VersionSwapped(self._target, previous, wanted))
        if self.on_swap is not None:
            self.on_swap(wanted)
        try:
            await self._source.swapped(previous, wanted)
        except asyncio.CancelledError:
            raise
        except Exception:  # the swap stands even if it cannot be recorded
            logger.exception("could not record a version swap", extra={"target": self._target})
        if old is not None:
            await self._retire(old)
        return True

    async def close(self) -> None:
        """Stop following the source, and close the version serving (after its calls drain)."""
        self._closed = True
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        async with self._lock:
            inner, self._inner = self._inner, None
        if inner is not None:
            await self._retire(inner)

    def in_flight(self) -> int:
        """Calls inside any version now (the serving one and those draining)."""
        return sum(self._in_flight.values())

    def _recently_failed(self, wanted: str) -> bool:
        if self._failed is None:
            return False
        version, at = self._failed
        return version == wanted and self._clock.monotonic() - at < self._retry_s

    def _fail(self, version: str | None, exc: Exception, raise_on_failure: bool) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        repeated = self._failed is not None and self._failed[0] == version
        self._failed = (version, self._clock.monotonic())
        if self._inner is None:
            self.reason = reason
        if not repeated:
            logger.error(
                "model version not loaded",
                extra={"target": self._target, "version": version, "reason": reason},
            )
            self._on_event(VersionSwapFailed(self._target, version, self._version, reason))
        if raise_on_failure:
            raise exc

    async def _retire(self, old: Backend) -> None:
        key = id(old)
        if self._in_flight.get(key, 0) > 0:
            drained = self._drained[key] = asyncio.Event()
            try:
                async with self._clock.timeout(self._drain_s):
                    await drained.wait()
            except TimeoutError:
                logger.warning(
                    "closing an old model version with calls still in flight",
                    extra={"target": self._target, "in_flight": self._in_flight.get(key, 0)},
                )
        self._drained.pop(key, None)
        self._in_flight.pop(key, None)
        await _close_quietly(old)

    async def _poll(self) -> None:
        while not self._closed:
            await self._clock.sleep(self._poll_s)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the follower die: the next tick tries again
                logger.exception("model version check failed", extra={"target": self._target})


async def _close_quietly(backend: Backend) -> None:
    try:
        await backend.close()
    except Exception:  # closing a version must not stop serving another
        logger.exception("backend failed to close", extra={"backend": backend.name})
