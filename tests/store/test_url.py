"""Database URLs: the accepted spellings, their canonical form, and reading them from the env."""

from __future__ import annotations

from pathlib import Path

import pytest

from seawall.errors import ConfigError
from seawall.store.url import (
    DEFAULT_DATABASE_URL,
    database_url_from_env,
    is_memory,
    normalize_url,
    redact,
)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:pw@db.internal:5433/seawall",
        "postgres://app:pw@db.internal:5433/seawall",
        "postgresql+psycopg://app:pw@db.internal:5433/seawall",
    ],
)
def test_postgres_urls_use_psycopg_3(url: str) -> None:
    normalized = normalize_url(url)
    assert normalized.drivername == "postgresql+psycopg"
    assert (normalized.username, normalized.password) == ("app", "pw")
    assert (normalized.host, normalized.port) == ("db.internal", 5433)
    assert normalized.database == "seawall"


def test_postgres_query_options_are_kept() -> None:
    normalized = normalize_url(
        "postgresql://u@h/d?options=-csearch_path%3Dtenant_a&sslmode=require"
    )
    assert dict(normalized.query) == {"options": "-csearch_path=tenant_a", "sslmode": "require"}


def test_other_postgres_drivers_are_refused_without_showing_the_password() -> None:
    with pytest.raises(ConfigError, match="psycopg 3") as caught:
        normalize_url("postgresql+psycopg2://app:hunter2@db/seawall")
    assert "hunter2" not in str(caught.value)
    assert "app:***@db" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mysql://root:hunter2@db/seawall", "unsupported database 'mysql'"),
        ("sqlite+aiosqlite:///x.db", "standard sqlite3 driver"),
        ("not a url hunter2", "not of the form"),
    ],
)
def test_unsupported_urls_are_config_errors(url: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason) as caught:
        normalize_url(url)
    assert "hunter2" not in str(caught.value)


def test_relative_sqlite_paths_are_made_absolute_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert normalize_url(DEFAULT_DATABASE_URL).database == str(tmp_path / "seawall.db")
    assert normalize_url("sqlite:///data/x.db").database == str(tmp_path / "data" / "x.db")
    assert normalize_url("sqlite:///x.db", cwd=tmp_path / "elsewhere").database == str(
        tmp_path / "elsewhere" / "x.db"
    )


def test_absolute_sqlite_paths_are_kept_and_the_driver_is_canonical(tmp_path: Path) -> None:
    normalized = normalize_url(f"sqlite+pysqlite:///{tmp_path}/a/../x.db")
    assert normalized.drivername == "sqlite"
    assert normalized.database == str(tmp_path / "x.db")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_memory_databases_are_kept(url: str) -> None:
    normalized = normalize_url(url)
    assert is_memory(normalized)
    assert normalized.database in (None, ":memory:")


def test_sqlite_file_uris_are_kept_as_given() -> None:
    url = "sqlite:///file:shared.db?mode=rwc&uri=true"
    assert normalize_url(url).database == "file:shared.db"
    assert not is_memory(normalize_url(url))


def test_redact_hides_only_the_password() -> None:
    assert redact(normalize_url("postgresql://app:s3cret@h:1/d")) == (
        "postgresql+psycopg://app:***@h:1/d"
    )


def test_the_default_is_an_sqlite_file_in_the_working_directory() -> None:
    assert database_url_from_env({}) == "sqlite:///./seawall.db"
    assert database_url_from_env({"SEAWALL_DATABASE_URL": "  "}) == DEFAULT_DATABASE_URL


def test_the_url_comes_from_the_variable() -> None:
    environ = {"SEAWALL_DATABASE_URL": "postgresql://a@b/c\n"}
    assert database_url_from_env(environ) == "postgresql://a@b/c"


def test_the_url_comes_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "database-url"
    secret.write_text("postgresql://app:s3cret@db/seawall\n", encoding="utf-8")
    environ = {"SEAWALL_DATABASE_URL_FILE": str(secret)}
    assert database_url_from_env(environ) == "postgresql://app:s3cret@db/seawall"


def test_both_sources_at_once_is_an_error(tmp_path: Path) -> None:
    environ = {"SEAWALL_DATABASE_URL": "sqlite:///a.db", "SEAWALL_DATABASE_URL_FILE": "/x"}
    with pytest.raises(ConfigError, match="both set"):
        database_url_from_env(environ)


def test_a_missing_or_empty_file_is_an_error_naming_the_variable(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=f"SEAWALL_DATABASE_URL_FILE: cannot read {missing}"):
        database_url_from_env({"SEAWALL_DATABASE_URL_FILE": str(missing)})
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is empty"):
        database_url_from_env({"SEAWALL_DATABASE_URL_FILE": str(empty)})
