"""Signed model files through `assemble`: trusted keys from config, checked before each load."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from seawall.assemble import assemble
from seawall.assemble.signing import artifact_check, artifact_verifier
from seawall.backends import ModelRepository, ModelState, SklearnBackend
from seawall.config import SeawallConfig, parse_config
from seawall.context import CallContext
from seawall.errors import ConfigError
from seawall.security import key_id, sign_artifact
from seawall.types import InferenceRequest, Tensor

SIGNER = Ed25519PrivateKey.generate()
STRANGER = Ed25519PrivateKey.generate()
PUBLIC_PEM = (
    SIGNER.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


@pytest.fixture
def models(tmp_path: Path, demo_dir: Path) -> Path:
    """A directory with the demo's iris models (copies: manifests are written beside them)."""
    for name in ("iris.joblib", "iris.onnx"):
        shutil.copy(demo_dir / name, tmp_path / name)
    (tmp_path / "release.pub").write_text(PUBLIC_PEM)
    return tmp_path


def config(directory: Path, *, require_signed: bool = True, extra: str = "") -> SeawallConfig:
    text = f"""
security:
  trusted_keys: [release.pub]
  require_signed: {str(require_signed).lower()}
models:
  - name: iris
    backend: {{kind: sklearn, path: iris.joblib}}
  - name: iris-onnx
    backend: {{kind: onnx, path: iris.onnx}}
{extra}"""
    return parse_config(text, base_dir=directory, environ={})


Load = Callable[[SeawallConfig], Awaitable[ModelRepository]]


@pytest.fixture
async def loaded() -> AsyncIterator[Load]:
    """`await loaded(config)`: the assembled repository, every model loaded; closed afterwards."""
    repositories: list[ModelRepository] = []

    async def load(config: SeawallConfig) -> ModelRepository:
        repository = assemble(config).repository
        repositories.append(repository)
        await repository.load_all()
        return repository

    yield load
    for repository in repositories:
        await repository.close_all()


def tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


async def predict(repository: ModelRepository, model: str) -> list[int]:
    request = InferenceRequest(
        model=model, inputs=[Tensor.from_numpy("input-0", np.array([[5.1, 3.5, 1.4, 0.2]]))]
    )
    response = await repository.get(model).handler(request, CallContext.new())
    return [int(v) for v in response.outputs[0].data]


async def test_signed_models_load_and_serve(models: Path, loaded: Load) -> None:
    for name in ("iris.joblib", "iris.onnx"):
        sign_artifact(models / name, SIGNER, name=name.split(".")[0], version="1")

    repository = await loaded(config(models))

    assert {m.name: m.state for m in repository} == {
        "iris": ModelState.READY,
        "iris-onnx": ModelState.READY,
    }
    assert await predict(repository, "iris") == [0]


async def test_a_tampered_model_fails_with_the_reason_and_the_other_serves(
    models: Path, loaded: Load
) -> None:
    for name in ("iris.joblib", "iris.onnx"):
        sign_artifact(models / name, SIGNER, name=name.split(".")[0], version="1")
    tamper(models / "iris.joblib")

    repository = await loaded(config(models))

    iris = repository.get("iris")
    assert iris.state is ModelState.FAILED
    assert iris.reason.startswith("ArtifactVerificationError: ")
    assert "digest mismatch: iris.joblib" in iris.reason
    assert isinstance(iris.backend, SklearnBackend)
    assert not iris.backend.ready()
    assert repository.get("iris-onnx").state is ModelState.READY
    assert await predict(repository, "iris-onnx") == [0]


async def test_an_unsigned_model_fails_only_when_signing_is_required(
    models: Path, loaded: Load
) -> None:
    sign_artifact(models / "iris.onnx", SIGNER, name="iris-onnx", version="1")

    strict = await loaded(config(models))
    lenient = await loaded(config(models, require_signed=False))

    assert strict.get("iris").state is ModelState.FAILED
    assert "unsigned: no manifest at" in strict.get("iris").reason
    assert lenient.get("iris").state is ModelState.READY


async def test_a_model_with_a_manifest_is_verified_even_when_not_required(
    models: Path, loaded: Load
) -> None:
    sign_artifact(models / "iris.joblib", STRANGER, name="iris", version="1")

    repository = await loaded(config(models, require_signed=False))

    assert repository.get("iris").state is ModelState.FAILED
    assert f"untrusted key: signed by key {key_id(STRANGER.public_key())}" in (
        repository.get("iris").reason
    )
    assert repository.get("iris-onnx").state is ModelState.READY  # no manifest: not checked


async def test_a_configured_signature_path_is_used_and_must_exist(
    models: Path, loaded: Load
) -> None:
    (models / "sigs").mkdir()
    sign_artifact(
        models / "iris.joblib", SIGNER, name="iris", version="1", manifest=models / "sigs/a.json"
    )
    extra = """\
  - name: iris-sig
    backend: {kind: sklearn, path: iris.joblib}
    signature: sigs/a.json
  - name: iris-nosig
    backend: {kind: sklearn, path: iris.joblib}
    signature: sigs/missing.json
"""

    repository = await loaded(config(models, require_signed=False, extra=extra))

    assert repository.get("iris-sig").state is ModelState.READY
    assert repository.get("iris-nosig").state is ModelState.FAILED
    assert "missing.json" in repository.get("iris-nosig").reason


def test_trusted_keys_are_read_from_files_and_pem_text(models: Path) -> None:
    other = (
        STRANGER.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    text = "security:\n  trusted_keys:\n    - release.pub\n    - ${OTHER_KEY}\n"
    settings = parse_config(text, base_dir=models, environ={"OTHER_KEY": other})

    verifier = artifact_verifier(settings)

    assert set(verifier.trusted_keys) == {
        key_id(SIGNER.public_key()),
        key_id(STRANGER.public_key()),
    }
    assert verifier.require_signed is False


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("missing.pub", r"security.trusted_keys\[0\]: .*missing.pub: cannot read the public key"),
        ("iris.onnx", r"security.trusted_keys\[0\]: .*iris.onnx: not a PEM public key"),
        (
            "'-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----'",
            r"security.trusted_keys\[0\]: not a PEM public key",
        ),
    ],
)
def test_a_bad_trusted_key_fails_assembly_at_its_path(models: Path, key: str, message: str) -> None:
    settings = parse_config(f"security: {{trusted_keys: [{key}]}}", base_dir=models, environ={})

    with pytest.raises(ConfigError, match=message):
        assemble(settings)


def test_only_model_files_get_a_check(models: Path) -> None:
    extra = """\
  - name: mock
    backend: {kind: mock}
"""
    settings = config(models, extra=extra)
    verifier = artifact_verifier(settings)
    checks = {m.name: artifact_check(m, settings, verifier) for m in settings.models}

    assert checks["mock"] is None
    assert callable(checks["iris"])
    assert callable(checks["iris-onnx"])
