"""The database half of a backup: a consistent dump, a check of a dump, a restore from one.

SQLite: the online backup API (`sqlite3.Connection.backup`) copies every page in one step under a
read transaction, so the copy is one snapshot while writers go on (WAL: readers never block
them). The copy is switched out of WAL mode, so it is one self-contained file.

PostgreSQL: `pg_dump --format=custom` of the schema seawall's tables are in (the URL's
`search_path`, usually `public`), not the whole database, which other applications may share.
A REPEATABLE READ transaction exports its snapshot; the row counts and the revision are read in
it and pg_dump dumps exactly it (`--snapshot`). `pg_restore --single-transaction` restores all
of it or nothing. The password goes to the client programs in `PGPASSWORD`, never on their
command line. Everything here blocks: call it off the event loop.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, text
from sqlalchemy.engine import URL

from seawall.data.backup_manifest import DatabaseInfo, database_file
from seawall.data.errors import BackupError
from seawall.errors import ConflictError, InvalidInputError
from seawall.store.engine import Database

__all__ = [
    "DEFAULT_PG_DUMP",
    "DEFAULT_PG_RESTORE",
    "PgTools",
    "check_dump",
    "check_target",
    "dump_database",
    "libpq_target",
    "restore_database",
    "table_counts",
]

#: The PostgreSQL client programs, found on PATH (their version must be >= the server's).
DEFAULT_PG_DUMP = "pg_dump"
DEFAULT_PG_RESTORE = "pg_restore"

_ALEMBIC = "alembic_version"
# pg_restore --list lines that create the schema itself, or comment on or grant it.
_SCHEMA_ENTRY = re.compile(r"^\d+; \d+ \d+ (SCHEMA - |COMMENT - SCHEMA |ACL - SCHEMA )")
# Lines of a tool's standard error quoted in an error message.
_STDERR_LINES = 5


@dataclass(frozen=True, slots=True)
class PgTools:
    """The PostgreSQL client programs a backup runs: names on PATH, or paths."""

    pg_dump: str = DEFAULT_PG_DUMP
    pg_restore: str = DEFAULT_PG_RESTORE


def dump_database(database: Database, into: Path, tools: PgTools) -> DatabaseInfo:
    """Write `database`'s dump into the directory `into` (its name: `database_file`)."""
    with database.translated_errors():
        if database.dialect == "sqlite":
            info = _dump_sqlite(database, into / database_file("sqlite"))
        else:
            info = _dump_postgres(database, into / database_file("postgresql"), tools)
    if _ALEMBIC not in info.tables:
        raise InvalidInputError(
            "database",
            f"{database.url} holds no seawall tables (never migrated): nothing to back up",
        )
    return info


def _dump_sqlite(database: Database, target: Path) -> DatabaseInfo:
    raw = database.engine.raw_connection()
    try:
        copy = sqlite3.connect(target)
        try:
            _sqlite3(raw.driver_connection).backup(copy)  # one step: a consistent snapshot
            copy.execute("PRAGMA journal_mode = DELETE")
            info = _sqlite_info(copy)
        finally:
            copy.close()
    finally:
        raw.close()
    _fsync(target)
    return info


def _sqlite3(connection: object) -> sqlite3.Connection:
    if not isinstance(connection, sqlite3.Connection):  # pragma: no cover - seawall's driver
        raise BackupError(f"SQLite through {type(connection).__name__}: sqlite3 expected")
    return connection


def _sqlite_info(connection: sqlite3.Connection) -> DatabaseInfo:
    names = [
        row[0]
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
    ]
    counts = {n: connection.execute(f'SELECT count(*) FROM "{_q(n)}"').fetchone()[0] for n in names}
    revision = None
    if _ALEMBIC in counts:
        row = connection.execute(f"SELECT version_num FROM {_ALEMBIC}").fetchone()
        revision = None if row is None else str(row[0])
    return DatabaseInfo("sqlite", revision, counts, None, sqlite3.sqlite_version)


def _q(name: str) -> str:
    return name.replace('"', '""')


def _dump_postgres(database: Database, target: Path, tools: PgTools) -> DatabaseInfo:
    conninfo, env = libpq_target(database.engine.url)
    with database.begin(read_only=True) as connection:
        connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot = connection.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
        schema = connection.exec_driver_sql("SELECT current_schema()").scalar()
        if schema is None:
            raise InvalidInputError(
                "database",
                f"{database.url}: no schema of its search_path exists: nothing to back up",
            )
        info = _postgres_info(connection, schema)
        # The snapshot lives as long as this transaction: pg_dump runs inside it.
        _run(
            [
                tools.pg_dump,
                "--format=custom",
                "--no-password",
                f"--schema={_pattern(schema)}",
                f"--snapshot={snapshot}",
                f"--file={target}",
                f"--dbname={conninfo}",
            ],
            env,
        )
    return info


def _postgres_info(connection: Connection, schema: str) -> DatabaseInfo:
    counts = table_counts(connection, schema)
    revision = None
    if _ALEMBIC in counts:
        quoted = _quoted(connection, schema, _ALEMBIC)
        revision = connection.exec_driver_sql(f"SELECT version_num FROM {quoted}").scalar()
    version = str(connection.exec_driver_sql("SHOW server_version").scalar_one())
    return DatabaseInfo("postgresql", revision, counts, schema, version)


def table_counts(connection: Connection, schema: str | None = None) -> dict[str, int]:
    """Rows per table: every table of SQLite's file, or of PostgreSQL's `schema`."""
    counts = {}
    for name in _table_names(connection, schema):
        query = f"SELECT count(*) FROM {_quoted(connection, schema, name)}"
        counts[name] = int(connection.exec_driver_sql(query).scalar_one())
    return counts


def _table_names(connection: Connection, schema: str | None) -> list[str]:
    if connection.dialect.name == "sqlite":
        query = text(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        return sorted(connection.execute(query).scalars())
    query = text("SELECT tablename FROM pg_tables WHERE schemaname = :schema")
    return sorted(connection.execute(query, {"schema": schema}).scalars())


def _quoted(connection: Connection, schema: str | None, table: str) -> str:
    quote = connection.dialect.identifier_preparer.quote_identifier
    return quote(table) if schema is None else f"{quote(schema)}.{quote(table)}"


def _pattern(schema: str) -> str:
    """`schema` as a pg_dump pattern matching only itself (quoted: no wildcards, case kept)."""
    return '"' + schema.replace('"', '""') + '"'


def libpq_target(url: URL) -> tuple[str, dict[str, str]]:
    """A libpq connection string for `url` without its password, and an environment with it."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import make_conninfo

    params: dict[str, str] = {}
    for key, value in (
        ("host", url.host),
        ("port", url.port),
        ("user", url.username),
        ("dbname", url.database),
    ):
        if value is not None:
            params[key] = str(value)
    for key, query in url.query.items():
        params[key] = query if isinstance(query, str) else ",".join(query)
    try:
        conninfo = make_conninfo("", **params)
    except ProgrammingError as exc:
        raise InvalidInputError("database", f"a parameter libpq does not know: {exc}") from None
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    return conninfo, env


def check_dump(path: Path, info: DatabaseInfo, tools: PgTools) -> list[str]:
    """What is wrong with the dump at `path` (empty: it reads, and holds the tables it should)."""
    name = path.name
    if info.dialect == "sqlite":
        problems = _check_sqlite(path, info)
    else:
        problems = _check_pgdump(path, info, tools)
    return [f"{name}: {problem}" for problem in problems]


def _check_sqlite(path: Path, info: DatabaseInfo) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="seawall-verify-") as scratch:
        # A copy: opening the file could leave a journal beside it, an extra file in the backup.
        copy = Path(scratch) / path.name
        shutil.copyfile(path, copy)
        try:
            connection = sqlite3.connect(copy)
        except sqlite3.Error as exc:
            return [f"not an SQLite database: {exc}"]
        try:
            found = [str(row[0]) for row in connection.execute("PRAGMA integrity_check")]
            if found != ["ok"]:
                return [f"integrity_check: {'; '.join(found[:3])}"]
            return _compare(_sqlite_info(connection), info)
        except sqlite3.Error as exc:
            return [f"not a readable SQLite database: {exc}"]
        finally:
            connection.close()


def _compare(found: DatabaseInfo, expected: DatabaseInfo) -> list[str]:
    problems = []
    if found.revision != expected.revision:
        problems.append(f"at revision {found.revision}, the manifest says {expected.revision}")
    for table in sorted(set(found.tables) | set(expected.tables)):
        have, want = found.tables.get(table), expected.tables.get(table)
        if have != want:
            problems.append(f"table {table}: {have} rows, the manifest says {want}")
    return problems


def _check_pgdump(path: Path, info: DatabaseInfo, tools: PgTools) -> list[str]:
    try:
        listing = _run([tools.pg_restore, "--list", str(path)], dict(os.environ))
        # A full read: every data block is decompressed, so a damaged one is found too.
        _run([tools.pg_restore, f"--file={os.devnull}", str(path)], dict(os.environ))
    except BackupError as exc:
        return [f"pg_restore cannot read it: {exc}"]
    return [
        f"no data for table {table} in the dump"
        for table in sorted(info.tables)
        if f" TABLE DATA {info.schema} {table} " not in listing
    ]


def check_target(database: Database, info: DatabaseInfo) -> None:
    """Refuse a target that is not empty or of another kind than the backup (blocking)."""
    if database.dialect != info.dialect:
        raise InvalidInputError(
            "database",
            f"the backup holds a {info.dialect} database: restore it into {info.dialect}, "
            f"not into {database.url}",
        )
    with database.translated_errors(), database.engine.connect() as connection:
        if info.schema is None:
            clashing = _table_names(connection, None)
        else:
            clashing = _postgres_clashes(database, connection, info.schema, info.tables)
    if clashing:
        shown = ", ".join(clashing[:5]) + (", ..." if len(clashing) > 5 else "")
        raise ConflictError(
            f"database {database.url} holds tables ({shown}): a restore needs an empty database "
            "and never overwrites one; drop them or choose an empty database"
        )


def _postgres_clashes(
    database: Database, connection: Connection, schema: str, tables: Mapping[str, int]
) -> list[str]:
    # Would the URL's search_path lead to the schema if it existed? Create it and roll back.
    with connection.begin() as transaction:
        quote = connection.dialect.identifier_preparer.quote_identifier
        connection.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
        current = connection.exec_driver_sql("SELECT current_schema()").scalar()
        transaction.rollback()
    if current != schema:
        raise InvalidInputError(
            "database",
            f"the backup's tables are in schema {schema!r}, but {database.url} leads to "
            f"{current!r}: set its search_path to {schema} (options=-csearch_path={schema})",
        )
    return sorted(set(_table_names(connection, schema)) & {*tables, _ALEMBIC})


def restore_database(path: Path, database: Database, info: DatabaseInfo, tools: PgTools) -> None:
    """Restore the dump at `path` into the empty `database` (checked by `check_target`)."""
    with database.translated_errors():
        if info.dialect == "sqlite":
            _restore_sqlite(path, database)
        else:
            _restore_postgres(path, database, info, tools)


def _restore_sqlite(path: Path, database: Database) -> None:
    source = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        raw = database.engine.raw_connection()
        try:
            source.backup(_sqlite3(raw.driver_connection))  # one step, one transaction
        finally:
            raw.close()
    finally:
        source.close()


def _restore_postgres(path: Path, database: Database, info: DatabaseInfo, tools: PgTools) -> None:
    assert info.schema is not None
    with database.engine.connect() as connection:
        exists = connection.execute(
            text("SELECT 1 FROM pg_namespace WHERE nspname = :schema"), {"schema": info.schema}
        ).scalar()
    listing = _run([tools.pg_restore, "--list", str(path)], dict(os.environ))
    # An existing schema (public, always) is kept: its CREATE SCHEMA would fail.
    keep = [line for line in listing.splitlines() if not (exists and _SCHEMA_ENTRY.match(line))]
    conninfo, env = libpq_target(database.engine.url)
    with tempfile.TemporaryDirectory(prefix="seawall-restore-") as scratch:
        use_list = Path(scratch) / "toc.list"
        use_list.write_text("\n".join(keep) + "\n", encoding="utf-8")
        _run(
            [
                tools.pg_restore,
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
                "--no-password",
                f"--use-list={use_list}",
                f"--dbname={conninfo}",
                str(path),
            ],
            env,
        )


def _run(args: Sequence[str], env: dict[str, str]) -> str:
    """Run a client program; its standard output, or `BackupError` with its last words."""
    try:
        done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise BackupError(
            f"{args[0]}: not found: install the PostgreSQL client programs "
            "(of the server's version or newer)"
        ) from None
    if done.returncode != 0:
        said = " | ".join(done.stderr.strip().splitlines()[-_STDERR_LINES:]) or "no message"
        raise BackupError(f"{Path(args[0]).name} failed (exit {done.returncode}): {said}")
    return done.stdout


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
