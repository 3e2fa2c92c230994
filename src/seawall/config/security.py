"""`SecuritySettings`: the public keys the gateway trusts, and whether artifacts must be signed."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from seawall.config.base import Settings

__all__ = ["SecuritySettings"]


class SecuritySettings(Settings):
    """Artifact signatures: verified before a model file (sklearn, onnx) is loaded."""

    trusted_keys: list[Annotated[str, Field(min_length=1)]] = []
    """Ed25519 public keys whose signatures are accepted: each a PEM file (relative to the
    config file's directory) or the PEM text itself (`${VAR}` interpolation works)."""
    require_signed: bool = False
    """Refuse to load a model file without a valid manifest (else only models that have a
    manifest are verified). Python and remote models are not files, so are not checked."""

    @model_validator(mode="after")
    def _keys_when_required(self) -> SecuritySettings:
        if self.require_signed and not self.trusted_keys:
            raise ValueError(
                "trusted_keys: require_signed needs at least one trusted key "
                "(`seawall keys generate-signing` writes a pair)"
            )
        return self
