"""Database dumps on SQLite and PostgreSQL: libpq arguments without the password on the command
line, dumps read back and checked, damage inside a dump found, targets checked before a restore."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from seawall.data.backup_manifest import DatabaseInfo
from seawall.data.dump import (
    PgTools,
    check_dump,
    check_target,
    dump_database,
    libpq_target,
    restore_database,
)
from seawall.data.errors import BackupError
from seawall.errors import ConflictError, InvalidInputError
from seawall.store import AuditLog, Database
from seawall.store.migrate import head

TOOLS = PgTools()


def test_libpq_gets_every_part_of_the_url_but_the_password() -> None:
    url = make_url(
        "postgresql+psycopg://ops:s3cr%27t@db.example:6543/seawall"
        "?sslmode=require&options=-csearch_path%3Dprod"
    )

    conninfo, env = libpq_target(url)

    assert "s3cr" not in conninfo
    assert env["PGPASSWORD"] == "s3cr't"
    parts = psycopg.conninfo.conninfo_to_dict(conninfo)
    assert parts == {
        "host": "db.example",
        "port": "6543",
        "user": "ops",
        "dbname": "seawall",
        "sslmode": "require",
        "options": "-csearch_path=prod",
    }


def test_libpq_gets_several_hosts_and_no_password_of_ours() -> None:
    url = make_url("postgresql://u@/seawall?host=a.example&host=b.example")

    conninfo, env = libpq_target(url)

    assert psycopg.conninfo.conninfo_to_dict(conninfo)["host"] == "a.example,b.example"
    assert env.get("PGPASSWORD") == os.environ.get("PGPASSWORD")


def test_a_parameter_libpq_does_not_know_is_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="database: a parameter libpq does not know"):
        libpq_target(make_url("postgresql://u@h/d?colour=blue"))


def test_a_dump_records_the_snapshots_tables_and_revision(
    migrated: Database, tmp_path: Path
) -> None:
    with migrated.begin() as connection:
        AuditLog(migrated).append_in(connection, "me", "model.promote", "iris")

    out = tmp_path / "dump"
    out.mkdir()
    info = dump_database(migrated, out, TOOLS)

    assert info.dialect == migrated.dialect
    assert info.revision == migrated.revision() == head()
    assert info.tables["audit_log"] == 1
    assert info.tables["audit_head"] == 1
    assert info.tables["alembic_version"] == 1
    assert sorted(p.name for p in out.iterdir()) == [info.file]
    assert check_dump(out / info.file, info, TOOLS) == []


def test_a_dump_whose_counts_differ_from_the_manifest_is_named(
    migrated: Database, tmp_path: Path
) -> None:
    info = dump_database(migrated, tmp_path, TOOLS)
    claimed = replace(info, tables={**info.tables, "audit_head": 2, "ghosts": 0})

    problems = check_dump(tmp_path / info.file, claimed, TOOLS)

    if info.dialect == "sqlite":
        assert problems == [
            "database.sqlite3: table audit_head: 1 rows, the manifest says 2",
            "database.sqlite3: table ghosts: None rows, the manifest says 0",
        ]
    else:  # pg_restore --list shows which tables have data, not how many rows
        assert problems == ["database.pgdump: no data for table ghosts in the dump"]


def test_damage_inside_a_dump_is_found(migrated: Database, tmp_path: Path) -> None:
    info = dump_database(migrated, tmp_path, TOOLS)
    dump = tmp_path / info.file
    data = bytearray(dump.read_bytes())
    if info.dialect == "sqlite":
        data[4096 * 2 : 4096 * 3] = bytes(4096)  # a b-tree page zeroed
    else:
        del data[len(data) // 2 :]  # cut off in the middle of its data
    dump.write_bytes(data)

    problems = check_dump(dump, info, TOOLS)

    if info.dialect == "sqlite":
        assert problems == [
            "database.sqlite3: not a readable SQLite database: database disk image is malformed"
        ]
    else:
        assert problems == [
            "database.pgdump: pg_restore cannot read it: pg_restore failed (exit 1): "
            "pg_restore: error: could not read from input file: end of file"
        ]


def test_a_file_that_is_no_dump_is_named(tmp_path: Path) -> None:
    for dialect, file in (("sqlite", "database.sqlite3"), ("postgresql", "database.pgdump")):
        (tmp_path / file).write_bytes(b"this is not a database at all" * 200)
        info = DatabaseInfo(dialect, "0005", {"audit_log": 3}, "public", "x")

        problems = check_dump(tmp_path / file, info, TOOLS)

        assert len(problems) == 1
        assert problems[0].startswith(f"{file}: ")
        assert "not a" in problems[0] or "cannot read it" in problems[0]


def test_a_target_holding_tables_is_refused(migrated: Database, tmp_path: Path) -> None:
    info = dump_database(migrated, tmp_path, TOOLS)

    with pytest.raises(ConflictError, match=r"holds tables \(alembic_version, api_keys, .*\)"):
        check_target(migrated, info)


def test_a_backup_is_restored_only_into_its_own_kind(tmp_path: Path) -> None:
    info = DatabaseInfo("postgresql", "0005", {}, "public", "15")
    target = Database(f"sqlite:///{tmp_path / 't.db'}")
    try:
        with pytest.raises(InvalidInputError, match="holds a postgresql database: restore it into"):
            check_target(target, info)
    finally:
        target.close()


@pytest.fixture
def fresh_schema(postgres_url: str) -> Iterator[tuple[str, str]]:
    """A schema of mixed case and quotes in its name, and a URL whose search_path leads to it."""
    schema = f'Backup"Q"_{uuid.uuid4().hex[:8]}'
    server = make_url(postgres_url).set(query={}).render_as_string(hide_password=False)
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    quoted = '"' + schema.replace('"', '""') + '"'
    url = make_url(server).update_query_dict({"options": f"-csearch_path={quoted}"})
    yield schema, url.render_as_string(hide_password=False)
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def test_a_schema_with_an_awkward_name_is_dumped_alone(
    fresh_schema: tuple[str, str], tmp_path: Path
) -> None:
    schema, url = fresh_schema
    database = Database(url)
    try:
        database.upgrade()
        info = dump_database(database, tmp_path, TOOLS)
    finally:
        database.close()

    assert info.schema == schema
    assert info.tables["audit_head"] == 1
    assert check_dump(tmp_path / info.file, info, TOOLS) == []


def test_a_target_whose_search_path_leads_elsewhere_is_refused(
    postgres_url: str, tmp_path: Path
) -> None:
    info = DatabaseInfo("postgresql", "0005", {"audit_log": 1}, "somewhere_else", "15")
    target = Database(postgres_url)
    try:
        with pytest.raises(InvalidInputError, match=r"in schema 'somewhere_else', but .* leads to"):
            check_target(target, info)
        with target.begin(read_only=True) as connection:  # the probe was rolled back
            found = connection.exec_driver_sql(
                "SELECT count(*) FROM pg_namespace WHERE nspname = 'somewhere_else'"
            ).scalar()
        assert found == 0
    finally:
        target.close()


def test_a_missing_pg_restore_is_named(postgres_url: str, tmp_path: Path) -> None:
    database = Database(postgres_url)
    try:
        database.upgrade()
        info = dump_database(database, tmp_path, TOOLS)
        missing = PgTools(pg_restore=str(tmp_path / "bin" / "pg_restore"))
        with pytest.raises(BackupError, match=r"bin/pg_restore: not found: install the PostgreSQL"):
            restore_database(tmp_path / info.file, database, info, missing)
    finally:
        database.close()
    assert check_dump(tmp_path / info.file, info, missing)[0].endswith(
        "pg_restore: not found: install the PostgreSQL client programs "
        "(of the server's version or newer)"
    )
