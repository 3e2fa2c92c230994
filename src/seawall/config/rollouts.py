"""`ReleaseSettings`: the gateway's rollout controller (where guardrail metrics come from)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from seawall.config.base import Settings

__all__ = ["ReleaseSettings"]

_ALIAS = r"^[a-z][a-z0-9_\-]{0,63}$"


class ReleaseSettings(Settings):
    """Rollouts of the models under `traffic:`: state in `database_url`'s database, decisions in
    the audit log, one replica at a time running them."""

    prometheus_url: str | None = None
    """Base URL of a Prometheus server for guardrails written in PromQL (`metric: {query:
    ...}`; null: such a plan is refused)."""
    min_requests: int = Field(20, ge=1, le=1_000_000)
    """Calls a version needs in an analysis window before its error rate and p95 latency are
    judged (fewer: the metric is unavailable, and the run inconclusive)."""
    registry_alias: Annotated[str, Field(pattern=_ALIAS)] | None = None
    """For registry models: the alias moved to the canary when a rollout promotes it (null: the
    traffic split alone changes)."""
    plans: list[Annotated[str, Field(min_length=1)]] = []
    """Rollout plan files (relative to the config file's directory) started when the gateway
    starts, unless that model's rollout of that canary already ran or runs."""
    actor: str = Field("rollout-controller", min_length=1, max_length=200)
    """Who the audit log names for the controller's own decisions."""

    @field_validator("prometheus_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value
