"""`seawall backup create | verify | restore` end to end on SQLite and PostgreSQL: a round trip,
exit 1 naming each bad file or the refusal, exit 2 on bad input."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from seawall.cli.main import app
from seawall.store import AuditLog, BlobStore, Database

runner = CliRunner()


def invoke(*args: str) -> Result:
    return runner.invoke(app, ["backup", *args], env={"USER": "alice"})


@pytest.fixture
def source(database_url: str, tmp_path: Path) -> tuple[str, Path]:
    """A migrated database with three audited blobs in the store tmp_path/store."""
    database = Database(database_url)
    try:
        database.upgrade()
        blobs = BlobStore(tmp_path / "store")

        async def fill() -> None:
            for i in range(3):
                await AuditLog(database).append("bob", "model.promote", blobs.put(b"m%d" % i))

        asyncio.run(fill())
    finally:
        database.close()
    return database_url, tmp_path / "store"


@pytest.fixture
def target_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of the source's kind (PostgreSQL: a new one, with the same search_path)."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored.db'}"
        return
    url = make_url(database_url)
    name = f"backup_restore_{uuid.uuid4().hex[:12]}"
    admin = url.set(query={}).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            drop = sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name))
            connection.execute(drop)


@pytest.fixture
def backup(source: tuple[str, Path], tmp_path: Path) -> Path:
    url, store = source
    result = invoke("create", str(tmp_path / "backup"), "--url", url, "--store", str(store))
    assert result.exit_code == 0, result.output
    return tmp_path / "backup"


def test_create_verify_restore_round_trip(
    source: tuple[str, Path], backup: Path, target_url: str, tmp_path: Path
) -> None:
    _, store = source
    restored = tmp_path / "restored-store"

    verified = invoke("verify", str(backup))
    result = invoke("restore", str(backup), "--url", target_url, "--store", str(restored))
    audit = runner.invoke(app, ["audit", "verify", "--url", target_url])

    assert verified.exit_code == 0, verified.output
    assert verified.stdout.startswith(f"ok: {backup}: 5 files, ")
    assert "  blobs     3 (6 bytes)\n" in verified.stdout
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"restored {backup}\n  database  ")
    assert result.stdout.endswith(
        "  store     3 blob(s) written, 0 present already, 0 corrupt one(s) replaced, "
        "0 other(s) kept\n"
    )
    # Three appends, and the restore; the source got the backup.create instead.
    assert audit.exit_code == 0, audit.output
    assert audit.stdout.startswith("ok: 4 records intact")
    assert BlobStore(restored).digests() == BlobStore(store).digests()
    database = Database(target_url)
    try:
        last = asyncio.run(AuditLog(database).records())[-1]
    finally:
        database.close()
    assert (last.actor, last.action, last.target) == ("cli:alice", "backup.restore", str(backup))


def test_create_prints_what_it_wrote(source: tuple[str, Path], tmp_path: Path) -> None:
    url, store = source

    result = invoke("create", str(tmp_path / "b"), "--url", url, "--store", str(store))

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"backup written to {tmp_path / 'b'}"
    assert lines[1].startswith(f"  database  {make_url(url).get_backend_name()}")
    assert "revision 0" in lines[1]
    assert lines[2] == "  blobs     3 (6 bytes)"
    assert lines[3].startswith("  checksum  ")
    assert len(lines[3].split()[-1]) == 64


def test_verify_names_the_corrupt_file_and_exits_1(backup: Path) -> None:
    blob = sorted((backup / "blobs").iterdir())[0]
    blob.write_bytes(b"m9")

    result = invoke("verify", str(backup))

    assert result.exit_code == 1
    found = hashlib.sha256(b"m9").hexdigest()
    assert result.stderr == (
        f"corrupt: blobs/{blob.name}: sha256 {found} does not match the manifest's {blob.name}\n"
        f"backup {backup}: 1 problem(s)\n"
    )


def test_a_corrupt_backup_is_not_restored(backup: Path, target_url: str, tmp_path: Path) -> None:
    (backup / "manifest.json").unlink()

    result = invoke("restore", str(backup), "--url", target_url, "--store", str(tmp_path / "r"))

    assert result.exit_code == 1
    assert result.stderr == (
        f"error: backup {backup} does not verify, nothing restored: manifest.json: missing\n"
    )
    assert not (tmp_path / "r").exists()


def test_restore_refuses_a_database_that_holds_tables(
    source: tuple[str, Path], backup: Path, tmp_path: Path
) -> None:
    url, _ = source

    result = invoke("restore", str(backup), "--url", url, "--store", str(tmp_path / "r"))

    assert result.exit_code == 1
    assert result.stderr.startswith("refused: database ")
    assert "holds tables (alembic_version, api_keys, audit_head, audit_log, " in result.stderr


def test_restore_into_a_store_with_other_blobs_needs_merge_store(
    backup: Path, target_url: str, tmp_path: Path
) -> None:
    other = BlobStore(tmp_path / "r").put(b"other")
    args = ["restore", str(backup), "--url", target_url, "--store", str(tmp_path / "r")]

    refused = invoke(*args)
    merged = invoke(*args, "--merge-store")

    assert refused.exit_code == 1
    assert refused.stderr.startswith(f"refused: blob store {tmp_path / 'r'} holds 1 blob(s) ")
    assert other in refused.stderr
    assert merged.exit_code == 0, merged.output
    assert "3 blob(s) written, 0 present already, 0 corrupt one(s) replaced, 1 other(s) kept" in (
        merged.stdout
    )


def test_bad_input_exits_2_naming_the_problem(source: tuple[str, Path], tmp_path: Path) -> None:
    url, store = source
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")

    nowhere = invoke("verify", str(tmp_path / "nowhere"))
    full = invoke("create", str(tmp_path / "full"), "--url", url, "--store", str(store))
    bad_url = invoke("create", str(tmp_path / "b"), "--url", "mysql://u@h/d")
    restore_nowhere = invoke("restore", str(tmp_path / "nowhere"), "--url", url)

    assert (nowhere.exit_code, full.exit_code, bad_url.exit_code) == (2, 2, 2)
    assert nowhere.stderr == (
        f"error: path: {tmp_path / 'nowhere'}: no such directory: a backup is a directory\n"
    )
    assert full.stderr.startswith(f"error: dest: {tmp_path / 'full'} exists: ")
    assert "unsupported database 'mysql'" in bad_url.stderr
    assert restore_nowhere.exit_code == 2
    assert "no such directory" in restore_nowhere.stderr


def test_blobs_corrupt_in_the_store_are_left_out_and_exit_1(
    source: tuple[str, Path], tmp_path: Path
) -> None:
    url, store = source
    blobs = BlobStore(store)
    rotten = blobs.digests()[0]
    path = Path(blobs.uri(rotten))
    path.chmod(0o644)
    path.write_bytes(b"rot")

    result = invoke("create", str(tmp_path / "b"), "--url", url, "--store", str(store))

    assert result.exit_code == 1
    assert "  blobs     2 (4 bytes)" in result.stdout
    assert result.stderr.startswith(
        f"corrupt in the store, left out: blob {rotten} "
        f"(hashes to {hashlib.sha256(b'rot').hexdigest()})\n"
    )
    assert invoke("verify", str(tmp_path / "b")).exit_code == 0


def test_the_config_names_the_database_and_the_store(tmp_path: Path) -> None:
    config = tmp_path / "seawall.yaml"
    config.write_text(
        f"database_url: sqlite:///{tmp_path}/data.db\nregistry: {{artifact_store: ./blobs}}\n"
    )
    database = Database(f"sqlite:///{tmp_path}/data.db")
    database.upgrade()
    database.close()
    digest = BlobStore(tmp_path / "blobs").put(b"model")

    with contextlib.chdir(tmp_path.parent):
        result = invoke("create", str(tmp_path / "b"), "--config", str(config))

    assert result.exit_code == 0, result.output
    assert (tmp_path / "b" / "blobs" / digest).read_bytes() == b"model"
    assert (tmp_path / "b" / "database.sqlite3").is_file()
