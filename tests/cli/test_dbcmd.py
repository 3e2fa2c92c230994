"""`seawall db upgrade | current | sql | spend`, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seawall.cli.main import app
from seawall.store import Database, SpendLedger, migrate

runner = CliRunner()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'spend.db'}"
    postgres: str = request.getfixturevalue("postgres_url")
    return postgres


def test_upgrade_migrates_once_and_current_reports_the_head(url: str) -> None:
    before = runner.invoke(app, ["db", "current", "--url", url])
    assert before.exit_code == 1  # not at head: scripts can gate a deploy on it
    assert "not migrated" in before.output

    for _ in range(2):  # idempotent
        upgraded = runner.invoke(app, ["db", "upgrade", "--url", url])
        assert upgraded.exit_code == 0, upgraded.output
        assert f"at revision {migrate.head()}" in upgraded.output

    after = runner.invoke(app, ["db", "current", "--url", url])
    assert after.exit_code == 0
    assert f": {migrate.head()} (head: {migrate.head()})" in after.output


def test_spend_prints_each_model_and_the_total(url: str) -> None:
    assert runner.invoke(app, ["db", "upgrade", "--url", url]).exit_code == 0
    database = Database(url)
    try:
        ledger = SpendLedger(database)

        async def record() -> None:
            await ledger.add("team-a", "2026-11", "chat-default", 0.25, 1000, 200)
            await ledger.add("team-a", "2026-11", "chat-default", 0.25, 1000, 200)
            await ledger.add("team-a", "2026-11", "embed", 0.01, 500, 0)
            await ledger.add("team-b", "2026-11", "embed", 9.0, 5, 0)

        asyncio.run(record())
    finally:
        database.close()

    result = runner.invoke(app, ["db", "spend", "team-a", "--period", "2026-11", "--url", url])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].split() == ["chat-default", "0.500000", "2000", "400", "2"]
    assert lines[2].split() == ["embed", "0.010000", "500", "0", "1"]
    assert lines[3].split() == ["total", "0.510000"]
    empty = runner.invoke(app, ["db", "spend", "team-a", "--period", "2026-10", "--url", url])
    assert empty.output.strip() == "team-a: no spend in 2026-10"


def test_spend_defaults_to_this_month(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'spend.db'}"
    runner.invoke(app, ["db", "upgrade", "--url", url])
    result = runner.invoke(app, ["db", "spend", "nobody", "--url", url])
    assert result.output.strip() == f"nobody: no spend in {datetime.now(UTC):%Y-%m}"


def test_a_config_file_names_the_database_relative_to_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf").mkdir()
    config = tmp_path / "conf" / "seawall.yaml"
    config.write_text("database_url: sqlite:///state/seawall.db\n", encoding="utf-8")
    (tmp_path / "conf" / "state").mkdir()
    monkeypatch.chdir(tmp_path)

    result = runner.invoke(app, ["db", "upgrade", "--config", str(config)])

    assert result.exit_code == 0, result.output
    assert (tmp_path / "conf" / "state" / "seawall.db").exists()


def test_without_a_url_the_environment_names_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEAWALL_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "env.db").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["db", "upgrade", "--url", "mysql://x/y"], "unsupported database 'mysql'"),
        (["db", "upgrade", "--url", "sqlite:////no/such/dir/x.db"], "does not exist"),
        (["db", "spend", "a", "--period", "2026-13", "--url", "sqlite://"], "--period"),
        (["db", "sql", "--dialect", "oracle"], "--dialect"),
    ],
)
def test_bad_input_is_named_and_exits_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output


def test_an_unreachable_database_exits_1_with_the_reason() -> None:
    result = runner.invoke(
        app, ["db", "upgrade", "--url", "postgresql://postgres@127.0.0.1:1/test"]
    )
    assert result.exit_code == 1
    assert "error: database" in result.output
    assert "connection" in result.output.lower()


def test_sql_prints_the_migration_script_without_connecting() -> None:
    result = runner.invoke(app, ["db", "sql", "--dialect", "postgresql"])
    assert result.exit_code == 0
    assert "CREATE TABLE spend" in result.output
    assert "alembic_version" in result.output
