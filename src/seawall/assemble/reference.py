"""`TrainingReference`: a served model's training profile per version, and the rules from it.

The profile (`seawall.data.profile`) comes from the model's `training` section: a snapshot
named in the config, a profile file, or, for registry models, each version's own training
snapshot (its `dataset_snapshot`), read when the version has loaded and before it serves. The
rules are compiled against the loaded backend's signature, so a profile that does not fit the
model's inputs fails the start (a fixed model) or refuses the version (a registry one), naming
why.

Request-time checks (`ProfileCheckPolicy`) ask `current()`; drift monitors ask `profile()`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seawall.assemble.parts import Assembly
from seawall.assemble.registry import RegistrySource
from seawall.backends.base import Backend
from seawall.backends.swap import SwappableBackend
from seawall.clock import Clock
from seawall.config import ModelSettings, SeawallConfig, TrainingSettings
from seawall.errors import ConfigError
from seawall.pipeline import EventSink
from seawall.policies import ProfileCheckOptions, ProfileCheckPolicy, ProfileRules

if TYPE_CHECKING:
    from seawall.data import SnapshotStore
    from seawall.registry import VersionRecord

__all__ = ["TrainingReference", "profile_check", "training_reference"]

logger = logging.getLogger("seawall.models")


class TrainingReference:
    """One served model's training profiles and profile rules, by version."""

    def __init__(
        self,
        where: str,
        settings: TrainingSettings,
        *,
        snapshots: Callable[[], Awaitable[SnapshotStore]],
        version: Callable[[], str | None],
        path: Path | None = None,
        margin: float = 0.0,
    ) -> None:
        """`version()`: the version serving now; `path`: `settings.file`, resolved; `where`:
        the config path of `settings`, for messages."""
        self.where = where
        self.settings = settings
        self._snapshots = snapshots
        self._version = version
        self._path = path
        self._margin = margin
        self._profiles: dict[str, tuple[str, dict[str, Any]]] = {}
        self._rules: dict[str, tuple[str, ProfileRules]] = {}

    @property
    def follows_versions(self) -> bool:
        """Whether each version brings its own training snapshot (nothing fixed in config)."""
        return self.settings.snapshot is None and self._path is None

    def current(self) -> tuple[str, ProfileRules] | None:
        """The serving version and its rules (None: no profile for it)."""
        version = self._version()
        return None if version is None else self._rules.get(version)

    def profile(self, version: str) -> tuple[str, dict[str, Any]] | None:
        """`version`'s training profile and where it came from (None: not known)."""
        return self._profiles.get(version)

    def layout(self, version: str) -> tuple[tuple[str, str, int | None], ...] | None:
        """(feature, input tensor, column) of each of `version`'s features (None: not known)."""
        known = self._rules.get(version)
        if known is None:
            return None
        return tuple((r.name, r.input, r.column) for r in known[1].rules)

    async def load_fixed(self, version: str, backend: Backend) -> None:
        """Read the configured snapshot or file and compile it for `backend` (loaded)."""
        if self._path is not None:
            source = f"profile file {self._path}"
            profile = await asyncio.to_thread(_read_file, self._path, self.where)
        else:
            assert self.settings.snapshot is not None
            source, profile = await self._snapshot_profile(self.settings.snapshot)
        self._compile(version, backend, source, profile)

    async def load_version(self, version: str, snapshot: str | None, backend: Backend) -> None:
        """Read a registry version's training snapshot (if it names one) and compile it."""
        if not self.follows_versions:
            await self.load_fixed(version, backend)
            return
        if snapshot is None:
            logger.warning(
                "no training snapshot: inputs are not checked against a profile",
                extra={"where": self.where, "version": version},
            )
            return
        source, profile = await self._snapshot_profile(snapshot)
        self._compile(version, backend, source, profile)

    async def _snapshot_profile(self, ref: str) -> tuple[str, dict[str, Any]]:
        from seawall.errors import NotFoundError

        try:
            record = await (await self._snapshots()).get(ref)
        except NotFoundError as exc:
            raise ConfigError(f"{self.where}.snapshot: {exc}") from None
        return f"snapshot {record.id[:12]}", record.profile

    def _compile(
        self, version: str, backend: Backend, source: str, profile: dict[str, Any]
    ) -> None:
        try:
            rules = ProfileRules.from_profile(
                profile,
                backend.metadata(),
                features=self._features(profile),
                margin=self._margin,
                source=source,
            )
        except ConfigError as exc:
            raise ConfigError(f"{self.where}: {exc}") from None
        self._profiles[version] = (source, profile)
        self._rules[version] = (version, rules)

    def _features(self, profile: dict[str, Any]) -> list[str] | None:
        """`features`, else the profile's columns but the target (None: all of them)."""
        if self.settings.features is not None:
            return list(self.settings.features)
        target, columns = self.settings.target, profile.get("columns")
        if target is None or not isinstance(columns, dict):
            return None
        return [name for name in columns if name != target]


def _read_file(path: Path, where: str) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{where}.file: no such file {str(path)!r}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{where}.file: {path} is not a JSON profile: {exc}") from None
    if isinstance(document, dict) and isinstance(document.get("profile"), dict):
        document = document["profile"]  # `seawall data show --json`
    if not isinstance(document, dict):
        raise ConfigError(f"{where}.file: {path} holds no profile object")
    return document


def training_reference(
    index: int,
    settings: ModelSettings,
    config: SeawallConfig,
    assembly: Assembly,
    backend: Backend,
) -> TrainingReference | None:
    """The model's `TrainingReference` (None: neither `validation.profile` nor `drift` needs
    one), in `assembly.references` and hooked to the model's loading."""
    if settings.validation.profile is None and settings.drift is None:
        return None
    training = settings.training or TrainingSettings()
    where = f"models[{index}].training"
    control = assembly.shared.control if assembly.shared is not None else None

    async def snapshots() -> SnapshotStore:
        if control is None:  # pragma: no cover - assemble opens one whenever a snapshot is named
            raise ConfigError(f"{where}: a snapshot needs the database (database_url)")
        return await control.snapshots()

    if isinstance(backend, SwappableBackend):
        swappable = backend
        version: Callable[[], str | None] = lambda: swappable.version  # noqa: E731
    else:
        version = lambda: settings.version  # noqa: E731
    path = None if training.file is None else config.resolve_path(training.file)
    check = settings.validation.profile
    reference = TrainingReference(
        where,
        training,
        snapshots=snapshots,
        version=version,
        path=path,
        margin=0.0 if check is None else check.margin,
    )
    assembly.references[f"{settings.name}:{settings.version}"] = reference
    source = getattr(backend, "source", None)
    if isinstance(source, RegistrySource):

        async def on_loaded(record: VersionRecord, loaded: Backend) -> None:
            await reference.load_version(str(record.version), record.dataset_snapshot, loaded)

        source.on_loaded = on_loaded
    else:

        async def after_load() -> None:
            if backend.ready():  # a model that failed to load says why already
                await reference.load_fixed(settings.version, backend)

        assembly.after_load.append(after_load)
    return reference


def profile_check(
    settings: ModelSettings,
    reference: TrainingReference | None,
    *,
    clock: Clock,
    on_event: EventSink,
) -> ProfileCheckPolicy | None:
    """The model's `ProfileCheckPolicy` (None: `validation.profile` is off)."""
    check = settings.validation.profile
    if check is None or reference is None:
        return None
    options = ProfileCheckOptions(mode=check.mode, margin=check.margin)
    label = f"{settings.name}:{settings.version}"
    return ProfileCheckPolicy(
        reference.current, options, clock=clock, on_event=on_event, target=label
    )
