"""Artifact signatures for models loaded from a file: trusted keys from `security`, a check each.

The check is handed to the in-process backend (`InProcessOptions.check_artifact`), which runs
it in its loading thread before the file is read; a refusal fails that model's load, so the
repository marks it FAILED with the reason and the other models keep serving.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from seawall.config import (
    ModelSettings,
    OnnxBackendSettings,
    SeawallConfig,
    SklearnBackendSettings,
)
from seawall.errors import ConfigError
from seawall.security import (
    ArtifactVerifier,
    TrustedKeys,
    is_pem,
    parse_public_key,
    read_public_key,
)

__all__ = ["artifact_check", "artifact_verifier"]


def artifact_verifier(config: SeawallConfig) -> ArtifactVerifier:
    """The trusted keys (PEM files or PEM text) and the requirement, read once at start-up."""
    keys = []
    for i, item in enumerate(config.security.trusted_keys):
        where = f"security.trusted_keys[{i}]"
        if is_pem(item):
            keys.append(parse_public_key(item, source=where))
            continue
        try:
            keys.append(read_public_key(config.resolve_path(item)))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return ArtifactVerifier(TrustedKeys(keys), require_signed=config.security.require_signed)


def artifact_check(
    settings: ModelSettings, config: SeawallConfig, verifier: ArtifactVerifier
) -> Callable[[], object] | None:
    """The check for one model, or None for a model that is not a file (python, mock, oip)."""
    spec = settings.backend
    if not isinstance(spec, SklearnBackendSettings | OnnxBackendSettings):
        return None
    path = config.resolve_path(spec.path)
    manifest = config.resolve_path(settings.signature) if settings.signature else None
    # Always a check, even with nothing required: a manifest put beside the file later counts.
    return functools.partial(verifier.verify, path, manifest)
