"""Models served from the registry (`kind: registry`): the source a `SwappableBackend` follows.

`RegistrySource.current()` asks the registry which version the model's URI names now
(`models:/iris@champion`); `open(version)` rebuilds that version's artifact from the artifact
store (every blob checked against its registered digest), verifies its signed manifest against
the trusted keys (and that it was signed for this model and version), and builds the in-process
backend its framework needs. A refusal appends an `artifact.refuse` audit record naming the
reason, so a tampered or unsigned artifact never loads unnoticed. Each successful swap appends
`model.serve` and records the deployment (this gateway, share 1) in the registry's history.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seawall.backends import OnnxBackend, SklearnBackend
from seawall.backends.base import Backend
from seawall.backends.inprocess import InProcessOptions
from seawall.backends.swap import SwappableBackend
from seawall.clock import Clock
from seawall.config import ModelSettings, RegistryBackendSettings, SeawallConfig
from seawall.errors import ConfigError, ModelNotReadyError
from seawall.pipeline import EventSink
from seawall.security import ArtifactVerificationError, ArtifactVerifier, VerificationFailure

if TYPE_CHECKING:
    from seawall.registry import Registry, VersionRecord
    from seawall.store import AuditLog

__all__ = ["RegistrySource", "registry_backend"]

logger = logging.getLogger("seawall.models")

#: Frameworks a registry version may declare to be served in process.
FRAMEWORKS = ("sklearn", "onnx")


class RegistrySource:
    """The version a `models:/` URI names, and the backend for one (see the module doc)."""

    def __init__(
        self,
        settings: ModelSettings,
        spec: RegistryBackendSettings,
        *,
        registry: Callable[[], Awaitable[Registry]],
        audit: Callable[[], Awaitable[AuditLog]],
        verifier: ArtifactVerifier,
        cache_dir: Path,
        deployment_target: str,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._spec = spec
        self._registry = registry
        self._audit = audit
        self._verifier = verifier
        self._cache_dir = cache_dir
        self.deployment_target = deployment_target
        self._clock = clock
        #: Called with each version's record and loaded backend before it serves (it may
        #: refuse it by raising): the training reference reads the version's profile.
        self.on_loaded: Callable[[VersionRecord, Backend], Awaitable[None]] | None = None
        self._opened: dict[str, VersionRecord] = {}

    @property
    def uri(self) -> str:
        return self._spec.uri

    @property
    def _name(self) -> str:
        """The registered model's name (the URI's; the served name may differ)."""
        return self._spec.uri.removeprefix("models:/").split("@")[0].split("/")[0]

    async def current(self) -> str:
        record = await (await self._registry()).resolve_uri(self._spec.uri)
        return str(record.version)

    async def open(self, version: str) -> Backend:
        registry = await self._registry()
        record = await registry.get_version(self._name, int(version))
        if record.framework not in FRAMEWORKS:
            raise ModelNotReadyError(
                f"{record.uri}: framework {record.framework!r} is not served in process "
                f"(served: {', '.join(FRAMEWORKS)})"
            )
        try:
            path = await asyncio.to_thread(self._verified, registry, record)
        except Exception as exc:
            await self._refused(record, exc)
            raise
        self._opened = {version: record}
        return self._backend(record.framework, path)

    async def loaded(self, version: str, backend: Backend) -> None:
        """Let `on_loaded` check the version before it serves; a refusal is audited."""
        record = self._opened.pop(version, None)
        if self.on_loaded is None or record is None:
            return
        try:
            await self.on_loaded(record, backend)
        except Exception as exc:
            await self._refused(record, exc)
            raise

    async def swapped(self, previous: str | None, version: str) -> None:
        """Record that this gateway now serves `version` (audit log and deployment history)."""
        registry = await self._registry()
        name, actor = self._name, self.deployment_target
        if previous is not None:
            await registry.record_deployment(name, int(previous), actor, 0.0, actor=actor)
        await registry.record_deployment(name, int(version), actor, 1.0, actor=actor)
        details = {"uri": self._spec.uri, "from": previous, "to": version, "served_as": self._label}
        await (await self._audit()).append(actor, "model.serve", f"model:{name}/{version}", details)

    @property
    def _label(self) -> str:
        return f"{self._settings.name}:{self._settings.version}"

    def _verified(self, registry: Registry, record: VersionRecord) -> Path:
        from seawall.registry import materialize
        from seawall.security import verify_artifact

        if registry.blobs is None:  # pragma: no cover - registry_backend always gives one
            raise ConfigError("registry: no artifact store")
        built = materialize(registry.blobs, record, self._cache_dir)
        if built.manifest is None:
            if self._verifier.require_signed:
                raise ArtifactVerificationError(
                    str(built.path),
                    VerificationFailure.UNSIGNED,
                    f"{record.uri} was registered unsigned and security.require_signed is set",
                )
            return built.path
        verify_artifact(
            built.path,
            self._verifier.trusted_keys,
            manifest=built.manifest,
            name=record.name,
            version=str(record.version),
        )
        return built.path

    async def _refused(self, record: VersionRecord, exc: Exception) -> None:
        details: dict[str, Any] = {
            "uri": self._spec.uri,
            "reason": f"{type(exc).__name__}: {exc}",
            "served_as": self._label,
        }
        if isinstance(exc, ArtifactVerificationError):
            details["failure"] = exc.reason.value
        try:
            audit = await self._audit()
            await audit.append(self.deployment_target, "artifact.refuse", record.uri, details)
        except Exception:  # the refusal stands even if it cannot be recorded
            logger.exception("could not record a refused artifact", extra={"uri": record.uri})

    def _backend(self, framework: str, path: Path) -> Backend:
        spec = self._spec
        options = InProcessOptions(workers=spec.workers, max_queue=spec.max_queue)
        if framework == "sklearn":
            return SklearnBackend(
                path,
                input_name=spec.input_name,
                input_datatype=spec.input_datatype,
                options=options,
                clock=self._clock,
            )
        return OnnxBackend(
            path, intra_op_threads=spec.intra_op_threads, options=options, clock=self._clock
        )


def registry_backend(
    settings: ModelSettings,
    spec: RegistryBackendSettings,
    config: SeawallConfig,
    *,
    registry: Callable[[], Awaitable[Registry]],
    audit: Callable[[], Awaitable[AuditLog]],
    verifier: ArtifactVerifier,
    clock: Clock,
    on_event: EventSink,
) -> SwappableBackend:
    """The backend of a `kind: registry` model: follows its URI, swapping versions live."""
    target = config.registry.deployment_target or f"gateway@{socket.gethostname()}"
    source = RegistrySource(
        settings,
        spec,
        registry=registry,
        audit=audit,
        verifier=verifier,
        cache_dir=config.resolve_path(config.registry.cache_dir),
        deployment_target=target,
        clock=clock,
    )
    return SwappableBackend(
        source,
        poll_interval_s=config.registry.poll_interval_s,
        clock=clock,
        on_event=on_event,
        target=f"{settings.name}:{settings.version}",
    )
