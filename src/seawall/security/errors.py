"""Errors of the security package, under `SeawallError`.

```
SeawallError
└── SecurityError                  an artifact cannot be signed (missing, not a regular file)
    └── ArtifactVerificationError  an artifact is not what a trusted key signed (reason, path)
```

Keys that cannot be read or are of the wrong kind raise `ConfigError`: keys are configuration
(`security.trusted_keys`, `--key`), and the message names the file, never the key material.
"""

from __future__ import annotations

from enum import StrEnum

from seawall.errors import SeawallError

__all__ = ["ArtifactVerificationError", "SecurityError", "VerificationFailure"]


class SecurityError(SeawallError):
    """An artifact cannot be signed: it is missing, unreadable, or holds a symbolic link."""

    code = "security_error"


class VerificationFailure(StrEnum):
    """Why an artifact was refused; each value is how the message names it."""

    UNSIGNED = "unsigned"
    MALFORMED = "malformed manifest"
    UNTRUSTED_KEY = "untrusted key"
    BAD_SIGNATURE = "bad signature"
    FILE_MISSING = "file missing"
    EXTRA_FILE = "extra file"
    NOT_REGULAR = "not a regular file"
    SIZE_MISMATCH = "size mismatch"
    DIGEST_MISMATCH = "digest mismatch"
    WRONG_MODEL = "wrong model"


class ArtifactVerificationError(SecurityError):
    """The artifact is unsigned, signed by an untrusted key, or differs from what was signed.

    `reason` says which; `path` names the file at fault (relative to the artifact) when one is.
    """

    code = "artifact_unverified"

    def __init__(
        self, artifact: str, reason: VerificationFailure, detail: str, *, path: str | None = None
    ) -> None:
        super().__init__(f"{artifact}: {reason.value}: {detail}")
        self.artifact = artifact
        self.reason = reason
        self.path = path
