"""`seawall keys`: signing pairs (private, never overwritten) and API keys on both databases."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from seawall.cli.main import app
from seawall.security import PASSPHRASE_ENV, key_id, load_private_key, read_public_key
from seawall.security.apikeys import ApiKeyRecord, ApiKeyStore
from seawall.store import AuditLog, Database

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


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database's URL: an SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'keys.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    database = Database(url)
    try:
        database.upgrade()
    finally:
        database.close()
    return url


def _keys(url: str, *args: str) -> Result:
    return runner.invoke(app, ["keys", *args, "--url", url], env={})


def _lookup(url: str, secret: str) -> ApiKeyRecord | None:
    database = Database(url)
    try:
        return asyncio.run(ApiKeyStore(database).lookup(secret))
    finally:
        database.close()


def test_create_prints_the_secret_once_on_stdout_and_a_warning_on_stderr(url: str) -> None:
    result = _keys(url, "create", "app", "--role", "consumer", "--role", "viewer", "-m", "iris")
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()
    assert secret.startswith("sw_")
    assert secret not in result.stderr
    assert "not shown again" in result.stderr
    record = _lookup(url, secret)
    assert record is not None
    assert (record.name, record.roles, record.models) == ("app", ("consumer", "viewer"), ("iris",))
    assert record.created_by.startswith("cli:")


def test_list_shows_prefixes_never_secrets(url: str) -> None:
    secret = _keys(url, "create", "app", "--role", "admin").stdout.strip()
    listed = _keys(url, "list")
    assert listed.exit_code == 0, listed.output
    assert secret not in listed.output
    assert secret[8:] not in listed.output
    (row,) = [line for line in listed.stdout.splitlines() if line.startswith("app ")]
    assert row.split()[:4] == ["app", secret[:8], "admin", "*"]


def test_revoke_stops_the_key_and_hides_it_from_the_list(url: str) -> None:
    secret = _keys(url, "create", "app", "--role", "consumer").stdout.strip()
    result = _keys(url, "revoke", "app")
    assert result.exit_code == 0, result.output
    assert f"revoked app ({secret[:8]})" in result.stdout
    assert _lookup(url, secret) is None
    assert _keys(url, "list").stdout.strip() == "no API keys"
    assert "app " in _keys(url, "list", "--all").stdout


def test_rotate_prints_a_new_secret_and_the_old_one_stops(url: str) -> None:
    old = _keys(url, "create", "app", "--role", "consumer").stdout.strip()
    result = _keys(url, "rotate", "app")
    assert result.exit_code == 0, result.output
    new = result.stdout.strip()
    assert new.startswith("sw_")
    assert new != old
    assert "not shown again" in result.stderr
    assert _lookup(url, old) is None
    assert _lookup(url, new) is not None


def test_rotate_with_an_overlap_keeps_the_old_secret_working(url: str) -> None:
    old = _keys(url, "create", "app", "--role", "consumer").stdout.strip()
    assert _keys(url, "rotate", "app", "--overlap", "3600").exit_code == 0
    assert _lookup(url, old) is not None


def test_changes_are_audited(url: str) -> None:
    _keys(url, "create", "app", "--role", "consumer")
    _keys(url, "rotate", "app")
    _keys(url, "revoke", "app")
    database = Database(url)
    try:
        records = asyncio.run(AuditLog(database).records())
    finally:
        database.close()
    assert [r.action for r in records] == ["key.create", "key.rotate", "key.revoke"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "app", "--role", "root"], "roles: unknown"),
        (["create", "dup", "--role", "consumer"], "name: a key named 'dup' exists"),
        (["create", "app", "--role", "consumer", "--expires", "tomorrow"], "--expires"),
        (["create", "app", "--role", "consumer", "--expires", "2030-01-01T00:00"], "time zone"),
        (["create", "app", "--role", "consumer", "--expires", "2001-01-01T00:00Z"], "expires_at"),
        (["revoke", "nope"], "name: no key named 'nope'"),
        (["rotate", "nope"], "name: no key named 'nope'"),
    ],
)
def test_bad_input_names_the_field_and_exits_2(url: str, args: list[str], message: str) -> None:
    assert _keys(url, "create", "dup", "--role", "consumer").exit_code == 0
    result = _keys(url, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stdout == ""


def test_an_unmigrated_database_is_an_error_naming_the_fix(tmp_path: Path) -> None:
    result = _keys(f"sqlite:///{tmp_path / 'empty.db'}", "list")
    assert result.exit_code == 1
    assert "seawall db upgrade" in result.stderr
