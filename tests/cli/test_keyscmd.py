"""`seawall keys generate-signing`: a usable pair, a private mode, never an overwrite."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seawall.cli.main import app
from seawall.security import PASSPHRASE_ENV, key_id, load_private_key, read_public_key

runner = CliRunner()


def test_generate_signing_writes_a_private_and_a_public_key(tmp_path: Path) -> None:
    out = tmp_path / "keys"  # created if missing

    result = runner.invoke(app, ["keys", "generate-signing", "--out", str(out)], env={})

    assert result.exit_code == 0, result.output
    private, public = out / "signing.key", out / "signing.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    kid = key_id(read_public_key(public))
    assert key_id(load_private_key(private).public_key()) == kid
    assert f"key id: {kid}" in result.stdout
    assert "BEGIN" not in result.output  # key material is written to files, never printed


def test_a_passphrase_from_the_environment_encrypts_the_key(tmp_path: Path) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text("correct horse\n")

    result = runner.invoke(
        app,
        ["keys", "generate-signing", "--out", str(tmp_path), "--name", "release"],
        env={f"{PASSPHRASE_ENV}_FILE": str(secret)},
    )

    assert result.exit_code == 0, result.output
    assert "encrypted" in result.stdout
    assert load_private_key(tmp_path / "release.key", "correct horse") is not None
    assert "correct horse" not in result.output


def test_an_existing_key_is_not_overwritten(tmp_path: Path) -> None:
    assert runner.invoke(app, ["keys", "generate-signing", "-o", str(tmp_path)]).exit_code == 0
    before = (tmp_path / "signing.key").read_bytes()

    again = runner.invoke(app, ["keys", "generate-signing", "-o", str(tmp_path)])

    assert again.exit_code == 2
    assert "already exists; refusing to overwrite a key" in again.stderr
    assert (tmp_path / "signing.key").read_bytes() == before


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({PASSPHRASE_ENV: "a", f"{PASSPHRASE_ENV}_FILE": "/nonexistent"}, "both set"),
        ({f"{PASSPHRASE_ENV}_FILE": "/nonexistent/passphrase"}, "cannot read"),
    ],
)
def test_a_bad_passphrase_setting_is_refused(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    result = runner.invoke(app, ["keys", "generate-signing", "-o", str(tmp_path)], env=env)

    assert result.exit_code == 2
    assert message in result.stderr
    assert not (tmp_path / "signing.key").exists()


def test_an_unwritable_directory_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")

    result = runner.invoke(app, ["keys", "generate-signing", "-o", str(blocker / "keys")])

    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
