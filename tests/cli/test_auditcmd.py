"""`seawall audit verify | export`, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from seawall.cli.main import app
from seawall.store import AuditLog, AuditRecord, Database

runner = CliRunner()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    postgres: str = request.getfixturevalue("postgres_url")
    return postgres


def _append(url: str, count: int) -> list[AuditRecord]:
    database = Database(url)
    try:
        database.upgrade()
        log = AuditLog(database)

        async def append() -> list[AuditRecord]:
            return [await log.append("alice", "model.promote", f"m@{i}") for i in range(count)]

        return asyncio.run(append())
    finally:
        database.close()


def _execute(url: str, *statements: str) -> None:
    database = Database(url)
    try:
        with database.begin() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        database.close()


def test_verify_an_intact_log_exits_0_with_the_head(url: str) -> None:
    records = _append(url, 5)
    result = runner.invoke(app, ["audit", "verify", "--url", url])
    assert result.exit_code == 0, result.output
    assert result.output == f"ok: 5 records intact; head: seq 5, hash {records[-1].hash}\n"


def test_verify_a_tampered_log_exits_1_naming_the_record_and_why(url: str) -> None:
    _append(url, 5)
    if url.startswith("sqlite"):
        unguard = ["DROP TRIGGER audit_log_no_update"]
    else:
        unguard = ["ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"]
    _execute(url, *unguard, "UPDATE audit_log SET target = 'm@x' WHERE seq = 3")

    result = runner.invoke(app, ["audit", "verify", "--url", url])

    assert result.exit_code == 1
    assert result.output == (
        "tampered: record 3: its hash does not match its contents: edited "
        "(2 records before it are intact)\n"
    )


def test_verify_an_empty_log_exits_0(url: str) -> None:
    assert runner.invoke(app, ["db", "upgrade", "--url", url]).exit_code == 0
    result = runner.invoke(app, ["audit", "verify", "--url", url])
    assert result.exit_code == 0
    assert result.output.startswith("ok: 0 records intact; head: seq 0, hash 0000")


def test_export_writes_jsonl_to_standard_output(url: str) -> None:
    records = _append(url, 3)
    result = runner.invoke(app, ["audit", "export", "--url", url])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["seq"], line["target"], line["hash"]) for line in lines] == [
        (r.seq, r.target, r.hash) for r in records
    ]
    assert result.stderr == "exported 3 records\n"


def test_export_to_a_file_replaces_it_whole(url: str, tmp_path: Path) -> None:
    records = _append(url, 4)
    out = tmp_path / "audit.jsonl"
    out.write_text("an older export\n", encoding="utf-8")

    result = runner.invoke(app, ["audit", "export", "--url", url, "--out", str(out)])

    assert result.exit_code == 0, result.output
    assert result.stderr == f"exported 4 records to {out}\n"
    assert out.read_text(encoding="utf-8").splitlines() == [r.to_json() for r in records]
    assert sorted(p.name for p in tmp_path.iterdir() if "audit.jsonl" in p.name) == ["audit.jsonl"]


def test_export_to_a_missing_directory_exits_1(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    _append(url, 1)
    out = tmp_path / "no" / "such" / "audit.jsonl"
    result = runner.invoke(app, ["audit", "export", "--url", url, "--out", str(out)])
    assert result.exit_code == 1
    assert f"error: cannot write {out}: No such file or directory" in result.output


@pytest.mark.parametrize("command", ["verify", "export"])
def test_a_database_without_the_audit_log_exits_1_saying_what_to_run(
    url: str, command: str
) -> None:
    result = runner.invoke(app, ["audit", command, "--url", url])
    assert result.exit_code == 1
    assert "no audit log (run `seawall db upgrade`)" in result.output


def test_a_config_file_names_the_database(tmp_path: Path) -> None:
    config = tmp_path / "seawall.yaml"
    config.write_text("database_url: sqlite:///state.db\n", encoding="utf-8")
    _append(f"sqlite:///{tmp_path / 'state.db'}", 2)
    result = runner.invoke(app, ["audit", "verify", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: 2 records intact")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["audit", "verify", "--url", "mysql://x/y"], 2, "unsupported database 'mysql'"),
        (["audit", "export", "--url", "sqlite:////no/such/dir/x.db"], 2, "does not exist"),
        (["audit", "verify", "--url", "postgresql://postgres@127.0.0.1:1/test"], 1, "error:"),
    ],
)
def test_bad_or_unreachable_databases_are_named(args: list[str], code: int, message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == code
    assert message in result.output
