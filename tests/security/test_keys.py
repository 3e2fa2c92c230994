"""Ed25519 key files: generated with safe modes, read back, refused with a clear message."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from seawall.errors import ConfigError
from seawall.security import (
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
from seawall.security.keys import KEY_ID_HEX_DIGITS


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_generated_pair_is_written_as_pem_with_a_private_mode(tmp_path: Path) -> None:
    private, public = tmp_path / "signing.key", tmp_path / "signing.pub"

    kid = generate_signing_key(private, public)

    assert mode(private) == 0o600
    assert mode(public) == 0o644
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    key = load_private_key(private)
    assert key_id(key.public_key()) == kid == key_id(read_public_key(public))


def test_the_private_key_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0)
    try:
        generate_signing_key(tmp_path / "k", tmp_path / "k.pub")
    finally:
        os.umask(old)

    assert mode(tmp_path / "k") == 0o600
    assert mode(tmp_path / "k.pub") == 0o644


def test_an_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    generate_signing_key(tmp_path / "k", tmp_path / "k.pub")
    before = (tmp_path / "k").read_bytes()

    with pytest.raises(ConfigError, match="already exists; refusing to overwrite"):
        generate_signing_key(tmp_path / "k", tmp_path / "other.pub")

    assert (tmp_path / "k").read_bytes() == before
    assert not (tmp_path / "other.pub").exists()


def test_a_passphrase_encrypts_the_private_key(tmp_path: Path) -> None:
    private = tmp_path / "k"
    generate_signing_key(private, tmp_path / "k.pub", passphrase="correct horse")

    assert "ENCRYPTED PRIVATE KEY" in private.read_text()
    assert isinstance(load_private_key(private, "correct horse"), Ed25519PrivateKey)
    with pytest.raises(ConfigError, match=f"encrypted: set {PASSPHRASE_ENV}"):
        load_private_key(private)
    with pytest.raises(ConfigError, match="or the passphrase is wrong") as caught:
        load_private_key(private, "wrong")
    assert "wrong" not in str(caught.value).replace("is wrong", "")


def test_a_passphrase_for_a_plain_key_is_refused(tmp_path: Path) -> None:
    generate_signing_key(tmp_path / "k", tmp_path / "k.pub")

    with pytest.raises(ConfigError, match=f"not encrypted; unset {PASSPHRASE_ENV}"):
        load_private_key(tmp_path / "k", "pw")


def test_the_passphrase_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text("s3cret\n")

    assert passphrase_from_env({}) is None
    assert passphrase_from_env({PASSPHRASE_ENV: "pw"}) == "pw"
    assert passphrase_from_env({f"{PASSPHRASE_ENV}_FILE": str(secret)}) == "s3cret"


def test_unusable_key_files_are_config_errors_naming_the_file(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "rsa.key").write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "garbage").write_text("hello")

    with pytest.raises(ConfigError, match=r"rsa\.key: an RSA key, not ed25519"):
        load_private_key(tmp_path / "rsa.key")
    with pytest.raises(ConfigError, match="garbage: not a PEM private key"):
        load_private_key(tmp_path / "garbage")
    with pytest.raises(ConfigError, match=r"missing\.key: cannot read the private key"):
        load_private_key(tmp_path / "missing.key")
    with pytest.raises(ConfigError, match="garbage: not a PEM public key"):
        read_public_key(tmp_path / "garbage")


def test_a_public_key_is_parsed_from_pem_text_and_must_be_ed25519() -> None:
    key = Ed25519PrivateKey.generate().public_key()
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    assert key_id(parse_public_key(pem, source="inline")) == key_id(key)
    assert is_pem(pem)
    assert is_pem("\n  " + pem)
    assert not is_pem("keys/signing.pub")
    with pytest.raises(ConfigError, match=r"trusted_keys\[1\]: an EC key, not ed25519"):
        parse_public_key(ec_pem, source="trusted_keys[1]")


def test_a_key_id_is_the_start_of_the_sha256_of_the_raw_key() -> None:
    import hashlib

    key = Ed25519PrivateKey.generate().public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    assert key_id(key) == hashlib.sha256(raw).hexdigest()[:KEY_ID_HEX_DIGITS]
    assert len(key_id(key)) == 16


def test_trusted_keys_map_ids_to_keys_once_each() -> None:
    a, b = Ed25519PrivateKey.generate().public_key(), Ed25519PrivateKey.generate().public_key()

    trusted = TrustedKeys([a, b, a])

    assert len(trusted) == 2
    assert set(trusted) == {key_id(a), key_id(b)}
    assert trusted[key_id(b)] is b
    assert trusted.get("0" * 16) is None
    assert key_id(a) in repr(trusted)
