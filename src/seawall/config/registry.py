"""`RegistrySettings`: the artifact store, approval rules, and how a gateway follows aliases."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from seawall.config.base import Settings

if TYPE_CHECKING:
    from seawall.registry import RegistryOptions

__all__ = ["RegistrySettings"]

_ALIAS = r"^[a-z][a-z0-9_\-]{0,63}$"


class RegistrySettings(Settings):
    """The model registry (in `database_url`'s database) and its artifact store."""

    artifact_store: str = "./seawall-artifacts"
    """Content-addressed store of model artifacts: a directory (relative to the config file's
    directory) or an fsspec URL (`s3://bucket/prefix` with s3fs installed)."""
    cache_dir: str = "./.seawall-cache"
    """Where a gateway rebuilds registry artifacts before verifying and loading them."""
    poll_interval_s: float = Field(2.0, gt=0, le=3600)
    """How often a gateway checks whether the aliases it serves (`models:/name@alias`) moved."""
    approval_ttl_s: float = Field(7 * 24 * 3600.0, gt=0)
    """How long an approval counts towards a promotion to production."""
    required_approvals: int = Field(1, ge=0, le=10)
    """Approvals (from approvers other than the author) a new model's versions need before
    production; set per model with `seawall models create --required-approvals`."""
    protected_aliases: list[Annotated[str, Field(pattern=_ALIAS)]] = ["champion"]
    """Aliases that may only point at a version in production (so what they serve was
    approved)."""
    require_signed: bool = False
    """Only versions registered with a signed manifest may enter production (gateways with
    `security.require_signed` refuse unsigned ones anyway; this refuses them at promotion)."""
    deployment_target: str | None = Field(None, min_length=1)
    """Name this gateway records in the deployment history (null: `gateway@<hostname>`)."""

    def options(self) -> RegistryOptions:
        """The registry's rules as these settings give them."""
        from seawall.registry import RegistryOptions

        return RegistryOptions(
            approval_ttl_s=self.approval_ttl_s,
            protected_aliases=frozenset(self.protected_aliases),
            default_required_approvals=self.required_approvals,
            require_signed=self.require_signed,
        )
