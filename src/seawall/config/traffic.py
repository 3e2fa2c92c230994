"""`TrafficSettings`: how a model's unversioned calls are split among its versions."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from seawall.config.base import NAME_PATTERN, Settings

__all__ = ["ShadowSettings", "TrafficSettings"]

_HEADER = r"^[a-z0-9][a-z0-9\-_]{0,63}$"


class ShadowSettings(Settings):
    """A copy of sampled calls sent to another version, compared with the answer, never served."""

    version: str = Field(pattern=NAME_PATTERN)
    """The version that gets the copies (a configured version of the model)."""
    sample_rate: float = Field(0.1, ge=0, le=1)
    """Share of calls mirrored."""
    max_concurrency: int = Field(8, ge=1, le=1024)
    """Copies in flight at most; a call beyond it is not mirrored (never queued)."""
    timeout_s: float = Field(5.0, gt=0, le=600)
    """A copy still unanswered after this long is cancelled and counted as timed out."""
    rtol: float = Field(1e-6, ge=0)
    """Relative tolerance under which floating-point outputs agree."""
    atol: float = Field(1e-9, ge=0)
    """Absolute tolerance under which floating-point outputs agree."""


class TrafficSettings(Settings):
    """Stable, canary and shadow versions of one model; unversioned calls are split among them."""

    stable: str = Field(pattern=NAME_PATTERN)
    """The version most calls go to (a configured version of the model)."""
    canary: str | None = Field(None, pattern=NAME_PATTERN)
    """A version getting `canary_weight` percent of calls (null: none)."""
    canary_weight: float = Field(0.0, ge=0, le=100)
    """Percent of calls sent to the canary at start (a rollout moves it)."""
    sticky_header: Annotated[str, Field(pattern=_HEADER)] | None = None
    """Header whose value keeps a caller on one version (hashed; null: each call at random)."""
    override_header: Annotated[str, Field(pattern=_HEADER)] | None = "x-seawall-variant"
    """Header a caller may set to `stable`, `canary` or a version, to choose (null: off)."""
    window_s: int = Field(60, ge=1, le=3600)
    """Span of each version's error and latency window (what rollout analysis reads)."""
    shadow: ShadowSettings | None = None
    """Mirror sampled calls to another version (null: off)."""

    @model_validator(mode="after")
    def _distinct_roles(self) -> TrafficSettings:
        if self.canary is not None and self.canary == self.stable:
            raise ValueError(f"canary: must differ from stable ({self.stable!r})")
        if self.shadow is not None and self.shadow.version == self.stable:
            raise ValueError(f"shadow.version: must differ from stable ({self.stable!r})")
        if self.canary is None and self.canary_weight:
            raise ValueError("canary_weight: needs a canary")
        return self
