"""`SeawallConfig`: the whole configuration file."""

from __future__ import annotations

from pathlib import Path

from pydantic import PrivateAttr, field_validator

from seawall.config.base import Settings
from seawall.config.models import ModelSettings
from seawall.config.server import ServerSettings

__all__ = ["SeawallConfig"]


class SeawallConfig(Settings):
    """The whole configuration file."""

    server: ServerSettings = ServerSettings()
    """HTTP server and lifecycle."""
    models: list[ModelSettings] = []
    """Models served by the gateway."""

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @field_validator("models")
    @classmethod
    def _unique_versions(cls, models: list[ModelSettings]) -> list[ModelSettings]:
        # A field validator, so the error's path is `models`; the message names both entries.
        seen: dict[tuple[str, str], int] = {}
        defaults: dict[str, int] = {}
        for i, model in enumerate(models):
            key = (model.name, model.version)
            if key in seen:
                raise ValueError(
                    f"model {model.name!r} version {model.version!r} is listed twice "
                    f"(models[{seen[key]}] and models[{i}])"
                )
            seen[key] = i
            if model.default:
                if model.name in defaults:
                    raise ValueError(
                        f"model {model.name!r} has more than one default version "
                        f"(models[{defaults[model.name]}] and models[{i}])"
                    )
                defaults[model.name] = i
        return models

    @property
    def base_dir(self) -> Path:
        """Directory that relative paths in the file are relative to."""
        return self._base_dir

    def resolve_path(self, path: str) -> Path:
        """`path` made absolute against the config file's directory."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else (self._base_dir / candidate)
