"""Database URLs: where the URL comes from (environment or a `*_FILE`), and its one canonical form.

seawall speaks to two databases: SQLite through the standard library's `sqlite3`, and PostgreSQL
through psycopg 3. Every accepted spelling is rewritten once, here, so the rest of the store sees
exactly `sqlite:///<absolute path>` (or an in-memory SQLite) or `postgresql+psycopg://...`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from seawall.errors import ConfigError

__all__ = [
    "DEFAULT_DATABASE_URL",
    "URL_ENV",
    "URL_FILE_ENV",
    "database_url_from_env",
    "is_memory",
    "normalize_url",
    "redact",
]

#: An SQLite file named seawall.db in the working directory: works with no server at all.
DEFAULT_DATABASE_URL = "sqlite:///./seawall.db"
#: The environment variable holding the database URL.
URL_ENV = "SEAWALL_DATABASE_URL"
#: The environment variable naming a file that holds the URL (a mounted secret; wins over nothing).
URL_FILE_ENV = "SEAWALL_DATABASE_URL_FILE"

_POSTGRES_NAMES = {"postgresql", "postgres"}
_MEMORY_NAMES = {"", ":memory:"}


def database_url_from_env(environ: Mapping[str, str]) -> str:
    """The URL from `SEAWALL_DATABASE_URL`, or the file `SEAWALL_DATABASE_URL_FILE` names.

    Neither set (or set empty): the default SQLite file. Both set: a `ConfigError`, because
    silently preferring one hides a deployment mistake.
    """
    value = environ.get(URL_ENV, "").strip()
    path = environ.get(URL_FILE_ENV, "").strip()
    if value and path:
        raise ConfigError(f"{URL_ENV} and {URL_FILE_ENV} are both set: set only one of them")
    if not path:
        return value or DEFAULT_DATABASE_URL
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{URL_FILE_ENV}: cannot read {path}: {exc.strerror or exc}") from exc
    if not text:
        raise ConfigError(f"{URL_FILE_ENV}: the file {path} is empty")
    return text


def normalize_url(url: str | URL, *, cwd: Path | None = None) -> URL:
    """The canonical URL: psycopg 3 for PostgreSQL, an absolute path for an SQLite file.

    `postgres://` and `postgresql://` become `postgresql+psycopg://`. A relative SQLite path is
    made absolute against `cwd` (default: the working directory now), so a later `chdir` does
    not move the database. In-memory SQLite and `?uri=true` file URIs are kept as given.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        # The text may hold a password: do not echo it.
        raise ConfigError(
            "database URL: not of the form dialect[+driver]://user:password@host/database"
        ) from exc
    backend = parsed.get_backend_name()
    if backend in _POSTGRES_NAMES:
        if parsed.drivername not in {"postgres", "postgresql", "postgresql+psycopg"}:
            raise ConfigError(
                f"database URL {redact(parsed)}: seawall connects to PostgreSQL with psycopg 3; "
                "use postgresql:// or postgresql+psycopg://"
            )
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if parsed.drivername not in {"sqlite", "sqlite+pysqlite"}:
            raise ConfigError(
                f"database URL {redact(parsed)}: seawall uses the standard sqlite3 driver; "
                "use sqlite:///path/to/file.db"
            )
        return _absolute_sqlite(parsed.set(drivername="sqlite"), cwd)
    raise ConfigError(
        f"database URL {redact(parsed)}: unsupported database {backend!r} "
        "(supported: sqlite, postgresql)"
    )


def is_memory(url: URL) -> bool:
    """True for an in-memory SQLite database (gone when its last connection closes)."""
    return url.get_backend_name() == "sqlite" and (url.database or "") in _MEMORY_NAMES


def redact(url: URL) -> str:
    """The URL as text with its password replaced by `***`, for messages and logs."""
    return url.render_as_string(hide_password=True)


def _absolute_sqlite(url: URL, cwd: Path | None) -> URL:
    if is_memory(url) or url.query.get("uri") == "true":
        return url
    path = Path(url.database or "").expanduser()
    if not path.is_absolute():
        path = (cwd or Path.cwd()) / path
    return url.set(database=str(path.resolve()))
