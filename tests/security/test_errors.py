"""The security errors: where they sit in the tree, and what their messages say."""

from __future__ import annotations

from seawall.errors import SeawallError
from seawall.security import ArtifactVerificationError, SecurityError, VerificationFailure


def test_a_verification_error_names_the_artifact_the_reason_and_the_file() -> None:
    error = ArtifactVerificationError(
        "models/iris", VerificationFailure.DIGEST_MISMATCH, "model.onnx differs", path="model.onnx"
    )

    assert isinstance(error, SecurityError)
    assert isinstance(error, SeawallError)
    assert str(error) == "models/iris: digest mismatch: model.onnx differs"
    assert (error.artifact, error.reason, error.path) == (
        "models/iris",
        VerificationFailure.DIGEST_MISMATCH,
        "model.onnx",
    )
    assert error.code == "artifact_unverified"


def test_every_reason_reads_as_words() -> None:
    assert [r.value for r in VerificationFailure] == [
        "unsigned",
        "malformed manifest",
        "untrusted key",
        "bad signature",
        "file missing",
        "extra file",
        "not a regular file",
        "size mismatch",
        "digest mismatch",
        "wrong model",
    ]
