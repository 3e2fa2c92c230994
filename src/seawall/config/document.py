"""`SeawallConfig`: the whole configuration file."""

from __future__ import annotations

from pathlib import Path

from pydantic import PrivateAttr, field_validator, model_validator

from seawall.config.base import Settings
from seawall.config.llm import LlmSettings
from seawall.config.models import ModelSettings
from seawall.config.policies import (
    AdmissionSettings,
    AuthSettings,
    ModelAlternativeSettings,
    PolicySettings,
    RateLimitsSettings,
)
from seawall.config.registry import RegistrySettings
from seawall.config.rollouts import ReleaseSettings
from seawall.config.security import SecuritySettings
from seawall.config.server import ServerSettings
from seawall.config.traffic import TrafficSettings

__all__ = ["SeawallConfig"]


class SeawallConfig(Settings):
    """The whole configuration file."""

    server: ServerSettings = ServerSettings()
    """HTTP server and lifecycle."""
    auth: AuthSettings | None = None
    """API keys (absent: inference needs no key)."""
    admission: AdmissionSettings | None = None
    """Global admission control and load shedding (absent: off)."""
    ratelimit: RateLimitsSettings = RateLimitsSettings()
    """Rate-limit storage, and the global and per-key buckets."""
    policy_defaults: PolicySettings = PolicySettings()
    """Policies every model gets unless its own `policies` section says otherwise."""
    models: list[ModelSettings] = []
    """Models served by the gateway."""
    traffic: dict[str, TrafficSettings] = {}
    """Per model name: how its unversioned calls are split among stable, canary and shadow
    versions (absent: the default version serves them)."""
    release: ReleaseSettings = ReleaseSettings()
    """Rollouts of the routed models: guardrail metrics, plans started with the gateway."""
    llm: LlmSettings | None = None
    """LLM model groups on the OpenAI-compatible API (absent: no `/v1` models)."""
    security: SecuritySettings = SecuritySettings()
    """Artifact signatures: trusted public keys, and whether model files must be signed."""
    registry: RegistrySettings = RegistrySettings()
    """Model registry: artifact store, approval rules, and how `models:/` models are followed."""
    database_url: str | None = None
    """Database for spend (and the registry): null reads `SEAWALL_DATABASE_URL`, else
    `sqlite:///./seawall.db`; PostgreSQL as `postgresql://user@host/db`."""

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _source: Path | None = PrivateAttr(default=None)

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

    @model_validator(mode="after")
    def _references_exist(self) -> SeawallConfig:
        served = {(m.name, m.version) for m in self.models}
        names = {m.name for m in self.models}
        # As the repository decides: the version marked `default`, else the first listed.
        default_version: dict[str, str] = {}
        for m in self.models:
            if m.default or m.name not in default_version:
                default_version[m.name] = m.version
        for i, model in enumerate(self.models):
            fallback = self.policies_for(model).fallback
            for j, alternative in enumerate(fallback.chain if fallback else ()):
                if not isinstance(alternative, ModelAlternativeSettings):
                    continue
                where = f"models[{i}].policies.fallback.chain[{j}]"
                target, version = alternative.model, alternative.version
                if target not in names or (version and (target, version) not in served):
                    wanted = f"{target!r} version {version!r}" if version else repr(target)
                    raise ValueError(f"{where}: {wanted} is not a configured model")
                if (target, version or default_version[target]) == (model.name, model.version):
                    raise ValueError(f"{where}: model {model.name!r} falls back to itself")
        for name, traffic in self.traffic.items():
            roles = {"stable": traffic.stable, "canary": traffic.canary}
            if traffic.shadow is not None:
                roles["shadow.version"] = traffic.shadow.version
            for role, version in roles.items():
                if version is not None and (name, version) not in served:
                    known = sorted(v for n, v in served if n == name)
                    raise ValueError(
                        f"traffic.{name}.{role}: {name!r} version {version!r} is not a "
                        f"configured model (versions: {', '.join(known) or 'none'})"
                    )
        key_names = {k.name for k in self.auth.keys} if self.auth else set()
        unknown = sorted(set(self.ratelimit.keys) - key_names)
        if unknown:
            raise ValueError(f"ratelimit.keys: no API key named {', '.join(unknown)} in auth.keys")
        return self

    def policies_for(self, model: ModelSettings) -> PolicySettings:
        """`model`'s policies: its own sections over `policy_defaults`."""
        return model.policies.merged_over(self.policy_defaults)

    @property
    def source(self) -> Path | None:
        """The file this configuration was read from (None: built in code); reloads re-read it."""
        return self._source

    @property
    def base_dir(self) -> Path:
        """Directory that relative paths in the file are relative to."""
        return self._base_dir

    def resolve_path(self, path: str) -> Path:
        """`path` made absolute against the config file's directory."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else (self._base_dir / candidate)
