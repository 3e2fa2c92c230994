"""Artifact signing and verification, and secrets from the environment.

Ed25519 keys (`generate_signing_key`), a signed manifest of every file of an artifact
(`sign_artifact`), and its verification against trusted public keys before a model is loaded
(`verify_artifact`, `ArtifactVerifier`). Imports only the core and `cryptography`.
"""

from seawall.security.errors import ArtifactVerificationError, SecurityError, VerificationFailure
from seawall.security.keys import (
    PASSPHRASE_ENV,
    TrustedKeys,
    generate_signing_key,
    is_pem,
    key_id,
    load_private_key,
    parse_public_key,
    passphrase_from_env,
    read_public_key,
)
from seawall.security.manifest import FileEntry, Manifest
from seawall.security.secrets import secret_from_env
from seawall.security.signing import (
    MANIFEST_SUFFIX,
    ArtifactVerifier,
    manifest_path,
    sign_artifact,
    verify_artifact,
)

__all__ = [
    "MANIFEST_SUFFIX",
    "PASSPHRASE_ENV",
    "ArtifactVerificationError",
    "ArtifactVerifier",
    "FileEntry",
    "Manifest",
    "SecurityError",
    "TrustedKeys",
    "VerificationFailure",
    "generate_signing_key",
    "is_pem",
    "key_id",
    "load_private_key",
    "manifest_path",
    "parse_public_key",
    "passphrase_from_env",
    "read_public_key",
    "secret_from_env",
    "sign_artifact",
    "verify_artifact",
]
