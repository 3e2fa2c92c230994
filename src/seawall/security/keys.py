"""Ed25519 signing keys: generated, written as PEM, read back, and named by a key id.

The private key is PKCS#8 PEM created with mode 0600 (encrypted when a passphrase is given,
from `SEAWALL_SIGNING_KEY_PASSPHRASE` or the file `SEAWALL_SIGNING_KEY_PASSPHRASE_FILE` names);
the public key is SubjectPublicKeyInfo PEM, for `security.trusted_keys`. A key id is the first
16 hex digits of the sha256 of the raw 32-byte public key: it names a key in manifests and
messages, but trust always rests on the whole key (`TrustedKeys` maps an id to the key itself).
Messages name files, never key material.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from seawall.errors import ConfigError
from seawall.security.secrets import secret_from_env

__all__ = [
    "KEY_ID_HEX_DIGITS",
    "PASSPHRASE_ENV",
    "TrustedKeys",
    "generate_signing_key",
    "is_pem",
    "key_id",
    "load_private_key",
    "parse_public_key",
    "passphrase_from_env",
    "read_public_key",
]

#: The variable holding the private key's passphrase (or, with `_FILE`, naming its file).
PASSPHRASE_ENV = "SEAWALL_SIGNING_KEY_PASSPHRASE"
#: Hex digits of a key id: 64 bits, plenty to tell a handful of keys apart.
KEY_ID_HEX_DIGITS = 16

_PEM_BEGIN = "-----BEGIN "


def key_id(public_key: Ed25519PublicKey) -> str:
    """The key's id: the start of the sha256 of its raw 32 bytes, in hex."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:KEY_ID_HEX_DIGITS]


def passphrase_from_env(environ: Mapping[str, str]) -> str | None:
    """The private key's passphrase from the environment, if one is set."""
    return secret_from_env(environ, PASSPHRASE_ENV)


def generate_signing_key(
    private_path: str | Path, public_path: str | Path, *, passphrase: str | None = None
) -> str:
    """Write a new key pair (the private file 0600) and return its key id.

    Existing files are never overwritten: replacing a signing key by accident would orphan
    every artifact signed with it.
    """
    private_path, public_path = Path(private_path), Path(public_path)
    for path in (private_path, public_path):
        if path.exists():
            raise ConfigError(f"{path}: already exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode("utf-8"))
        if passphrase
        else serialization.NoEncryption()
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(private_path, private_pem, 0o600)
    try:
        _write_new(public_path, public_pem, 0o644)
    except BaseException:
        private_path.unlink(missing_ok=True)  # half a pair is no use: leave neither
        raise
    return key_id(key.public_key())


def load_private_key(path: str | Path, passphrase: str | None = None) -> Ed25519PrivateKey:
    """Read a PEM private key; `ConfigError` naming the file if it cannot be used."""
    path = Path(path)
    data = _read(path, "private key")
    password = passphrase.encode("utf-8") if passphrase else None
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except TypeError:  # encrypted without a passphrase, or a passphrase for a plain key
        if password is None:
            raise ConfigError(
                f"{path}: the private key is encrypted: set {PASSPHRASE_ENV} "
                f"(or {PASSPHRASE_ENV}_FILE)"
            ) from None
        raise ConfigError(
            f"{path}: the private key is not encrypted; unset {PASSPHRASE_ENV}"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        # Also a wrong passphrase: cryptography does not tell the two apart.
        raise ConfigError(f"{path}: not a PEM private key, or the passphrase is wrong") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(
            f"{path}: an {_kind(key)} key, not ed25519: seawall signs with ed25519 keys"
        )
    return key


def parse_public_key(pem: str | bytes, *, source: str) -> Ed25519PublicKey:
    """An ed25519 public key from PEM text; `source` names it in errors."""
    data = pem.encode("utf-8") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"{source}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(
            f"{source}: an {_kind(key)} key, not ed25519: seawall verifies ed25519 signatures"
        )
    return key


def read_public_key(path: str | Path) -> Ed25519PublicKey:
    """An ed25519 public key from a PEM file."""
    return parse_public_key(_read(Path(path), "public key"), source=str(path))


def is_pem(text: str) -> bool:
    """True if `text` is PEM itself rather than the path of a file holding it."""
    return text.lstrip().startswith(_PEM_BEGIN)


class TrustedKeys(Mapping[str, Ed25519PublicKey]):
    """The public keys whose signatures are accepted, by key id."""

    def __init__(self, keys: Iterable[Ed25519PublicKey] = ()) -> None:
        self._keys = {key_id(k): k for k in keys}

    def __getitem__(self, kid: str) -> Ed25519PublicKey:
        return self._keys[kid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"TrustedKeys({sorted(self._keys)})"


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL: never follow a planted symlink or replace a file; the mode is set at creation, so
    # the private key is never readable by others, not even for an instant.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise ConfigError(f"{path}: already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)  # a umask may have taken bits from the public key
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from exc


def _kind(key: object) -> str:
    return type(key).__name__.removeprefix("_").removesuffix("PrivateKey").removesuffix("PublicKey")
