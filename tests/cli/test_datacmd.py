"""`seawall data` on SQLite and PostgreSQL: ingest (exit 0 accepted, 1 rejected, 2 bad input),
snapshots, show, lineage through the registry, quarantine list/show/export, verify."""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import load_iris
from typer.testing import CliRunner, Result

from seawall.cli.main import app
from seawall.store import Database

runner = CliRunner()

CONTRACT = """\
name: iris
version: 1
columns:
  sepal_length: {dtype: float, min: 0, max: 10}
  sepal_width: {dtype: float, min: 0, max: 10}
  petal_length: {dtype: float, min: 0, max: 10}
  petal_width: {dtype: float, min: 0, max: 10}
  species: {dtype: string, allowed: [setosa, versicolor, virginica]}
rows: {min: %d}
invalid_share_max: 0.1
"""


def _iris() -> pd.DataFrame:
    iris = load_iris(as_frame=True)
    frame = iris.frame.drop(columns="target")
    frame.columns = [c.replace(" (cm)", "").replace(" ", "_") for c in frame.columns]
    frame["species"] = iris.target_names[iris.target.to_numpy()]
    return frame


@pytest.fixture
def work(tmp_path: Path, database_url: str) -> Path:
    """A directory with a migrated database, a contract and the iris CSV file."""
    db = Database(database_url)
    db.upgrade()
    db.close()
    (tmp_path / "url").write_text(database_url)
    (tmp_path / "iris.yaml").write_text(CONTRACT % 10)
    (tmp_path / "any.yaml").write_text(CONTRACT % 1)
    _iris().to_csv(tmp_path / "iris.csv", index=False)
    return tmp_path


def run(work: Path, *args: str) -> Result:
    url = (work / "url").read_text()
    return runner.invoke(
        app, [*args, "--url", url, "--store", str(work / "store")], env={"USER": "alice"}
    )


def ingest(work: Path, *args: str, contract: str = "iris.yaml") -> Result:
    return run(work, "data", "ingest", "--contract", str(work / contract), *args)


def test_an_ingestion_prints_its_counts_and_snapshot(work: Path) -> None:
    first = ingest(work, "--source", str(work / "iris.csv"))
    again = ingest(work, "--source", str(work / "iris.csv"), "--json")

    assert first.exit_code == 0, first.output
    lines = first.stdout.splitlines()
    assert lines[0] == "accepted: iris, 150 rows in, 150 accepted, 0 quarantined (ingestion 1)"
    assert lines[1].startswith("snapshot ")
    assert lines[1].endswith(" (new)")
    snapshot = lines[1].split()[1]
    assert len(snapshot) == 64
    assert again.exit_code == 0, again.output
    out = json.loads(again.stdout)
    assert out["new"] is False
    assert out["snapshot"]["id"] == snapshot
    assert out["ingestion"]["created_by"] == "cli:alice"


def test_quarantined_rows_are_shown_exported_fixed_and_ingested_again(work: Path) -> None:
    frame = _iris().astype(str)
    frame.loc[3, "sepal_length"] = "5,1"
    frame.loc[9, "species"] = "Iris setosa"
    frame.to_csv(work / "dirty.csv", index=False)

    result = ingest(work, "--source", str(work / "dirty.csv"))
    listed = run(work, "data", "quarantine", "list")
    shown = run(work, "data", "quarantine", "show", "1")
    exported = run(work, "data", "quarantine", "export", "1", "--out", str(work / "fix.csv"))

    assert result.exit_code == 0, result.output
    assert "148 accepted, 2 quarantined (ingestion 1)" in result.stdout
    assert "seawall data quarantine export 1 --out FILE" in result.stdout
    assert listed.stdout.splitlines()[1].split()[0] == "1"
    assert shown.exit_code == 0, shown.output
    assert "3    sepal_length  dtype    5,1" in shown.stdout
    assert "9    species       allowed  Iris setosa" in shown.stdout
    assert exported.stdout == f"wrote 2 quarantined row(s) of ingestion 1 to {work / 'fix.csv'}\n"
    fixed = pd.read_csv(work / "fix.csv", dtype=str)
    fixed["sepal_length"] = fixed["sepal_length"].str.replace(",", ".")
    fixed["species"] = fixed["species"].str.removeprefix("Iris ")
    fixed.to_csv(work / "fix.csv", index=False)
    again = ingest(work, "--source", str(work / "fix.csv"), contract="any.yaml")
    assert again.exit_code == 0, again.output
    assert "2 rows in, 2 accepted, 0 quarantined" in again.stdout


def test_a_rejected_batch_exits_1_with_the_reason(work: Path) -> None:
    _iris().head(3).to_csv(work / "few.csv", index=False)

    result = ingest(work, "--source", str(work / "few.csv"))

    assert result.exit_code == 1
    assert result.stdout.startswith("rejected: iris, 3 rows in, 0 accepted, 3 quarantined")
    assert result.stderr == "refused: iris: rows: 3 row(s), fewer than 10\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "{work}/latin.csv"], "error: source: {work}/latin.csv: not UTF-8 text"),
        (["--source", "{work}/empty.csv"], "error: source: {work}/empty.csv: empty file"),
        (
            ["--source", "{work}/iris.csv", "--max-bytes", "100"],
            "error: source: {work}/iris.csv: {size} bytes, over the limit of 100",
        ),
        (["--source", "{work}/iris.xlsx"], "error: source: {work}/iris.xlsx: unknown file type"),
        ([], "error: --source: required (--source FILE, or --sql-url and --sql-query)"),
        (["--sql-url", "sqlite://"], "error: --sql-query: required"),
        (
            ["--source", "{work}/iris.csv", "--sql-url", "sqlite://"],
            "error: --source: a file, or --sql-url with --sql-query: not both",
        ),
    ],
)
def test_bad_input_exits_2_naming_it(work: Path, args: list[str], message: str) -> None:
    (work / "latin.csv").write_bytes("species\ncaf\xe9\n".encode("latin-1"))
    (work / "empty.csv").write_bytes(b"")

    result = ingest(work, *(a.format(work=work) for a in args))

    assert result.exit_code == 2, result.output
    size = (work / "iris.csv").stat().st_size
    assert result.stderr.startswith(message.format(work=work, size=size))


def test_an_invalid_contract_exits_2_naming_the_yaml_path(work: Path) -> None:
    (work / "bad.yaml").write_text("name: iris\nversion: 1\ncolumns: {x: {dtype: float, max: a}}\n")

    result = ingest(work, "--source", str(work / "iris.csv"), contract="bad.yaml")

    assert result.exit_code == 2
    assert "columns.x.max: Input should be a valid number" in result.stderr


def test_a_query_is_ingested_and_an_unreachable_database_exits_1(work: Path) -> None:
    with sqlite3.connect(work / "source.db") as connection:
        _iris().to_sql("iris", connection, index=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    result = ingest(
        work, "--sql-url", f"sqlite:///{work / 'source.db'}", "--sql-query", "SELECT * FROM iris"
    )
    down = ingest(
        work,
        "--sql-url",
        f"postgresql://u:pw@127.0.0.1:{port}/d",
        "--sql-query",
        "SELECT 1",
        "--attempts",
        "1",
    )

    assert result.exit_code == 0, result.output
    assert "150 accepted" in result.stdout
    assert down.exit_code == 1
    assert down.stderr.startswith(f"error: postgresql://u:***@127.0.0.1:{port}/d: ")
    assert down.stderr.rstrip().endswith("(gave up after 1 attempt(s))")


def test_snapshots_are_listed_and_shown_with_their_profile(work: Path) -> None:
    ingest(work, "--source", str(work / "iris.csv"))

    listed = run(work, "data", "snapshots", "--json")
    table = run(work, "data", "snapshots")
    snapshot = json.loads(listed.stdout)[0]
    shown = run(work, "data", "show", snapshot["id"][:8])

    assert table.stdout.splitlines()[1].split()[:5] == [
        snapshot["id"][:12],
        "iris",
        "iris@1",
        "150",
        "0",
    ]
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines()[0] == f"snapshot {snapshot['id']}"
    assert "species       string  0      3         top: setosa 50, versicolor 50, virginica 50" in (
        shown.stdout
    )
    assert "sepal_length  float   0      35        min 4.3  median 5.8  max 7.9" in shown.stdout
    missing = run(work, "data", "show", "0" * 8)
    assert missing.exit_code == 2
    assert missing.stderr == "error: snapshot 00000000: no such snapshot\n"


def test_lineage_goes_from_a_model_version_to_its_data_and_sources(work: Path) -> None:
    ingest(work, "--source", str(work / "iris.csv"))
    snapshot = json.loads(run(work, "data", "snapshots", "--json").stdout)[0]["id"]
    model = work / "model.bin"
    model.write_bytes(b"weights")
    url = (work / "url").read_text()
    for dataset in (None, "iris-2026-11", snapshot):
        extra = [] if dataset is None else ["--dataset", dataset]
        registered = runner.invoke(
            app,
            ["models", "register", "iris", str(model), "--framework", "sklearn", *extra]
            + ["--url", url, "--artifact-store", str(work / "store")]
            + ([] if dataset is None else ["--parent", "1" if dataset != snapshot else "2"]),
            env={"USER": "alice"},
        )
        assert registered.exit_code == 0, registered.output

    result = run(work, "data", "lineage", "iris", "3")
    as_json = json.loads(run(work, "data", "lineage", "iris", "3", "--json").stdout)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "iris version 3 (none), code -, by cli:alice"
    assert lines[1].startswith(f"  snapshot {snapshot[:12]}  iris (iris@1), 150 rows, ingest")
    assert lines[2].startswith(f"    from csv {work / 'iris.csv'} (sha256:")
    assert lines[3] == "iris version 2 (none), code -, by cli:alice"
    assert lines[4].startswith("  dataset snapshot iris-2026-11: snapshot: 6 to 64 lower-case")
    assert lines[5:] == [
        "iris version 1 (none), code -, by cli:alice",
        "  dataset snapshot: not recorded",
    ]
    assert [entry["version"] for entry in as_json] == [3, 2, 1]
    assert as_json[0]["snapshots"][0]["source"]["kind"] == "csv"


def test_verify_finds_a_missing_file(work: Path) -> None:
    ingest(work, "--source", str(work / "iris.csv"))
    snapshot = json.loads(run(work, "data", "snapshots", "--json").stdout)[0]

    ok = run(work, "data", "verify")
    (work / "store" / "sha256" / snapshot["blob_digest"][:2] / snapshot["blob_digest"]).unlink()
    broken = run(work, "data", "verify")

    assert ok.exit_code == 0
    assert ok.stdout == "ok: every snapshot and quarantine file is present and intact\n"
    assert broken.exit_code == 1
    assert broken.stderr.startswith(f"corrupt: snapshot {snapshot['id']}: blob ")


def test_an_unmigrated_database_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "snapshots", "--url", f"sqlite:///{tmp_path}/new.db"])

    assert result.exit_code == 1
    assert "no data guard (run `seawall db upgrade`)" in result.stderr


def test_the_config_names_the_database_and_the_store(tmp_path: Path) -> None:
    config = tmp_path / "seawall.yaml"
    config.write_text(
        f"database_url: sqlite:///{tmp_path}/data.db\nregistry: {{artifact_store: ./blobs}}\n"
    )
    db = Database(f"sqlite:///{tmp_path}/data.db")
    db.upgrade()
    db.close()
    (tmp_path / "iris.yaml").write_text(CONTRACT % 10)
    _iris().to_csv(tmp_path / "iris.csv", index=False)

    result = runner.invoke(
        app,
        [
            "data",
            "ingest",
            "--contract",
            str(tmp_path / "iris.yaml"),
            "--source",
            str(tmp_path / "iris.csv"),
            "--config",
            str(config),
        ],
    )

    assert result.exit_code == 0, result.output
    files = [p for p in (tmp_path / "blobs" / "sha256").rglob("*") if p.is_file()]
    assert len(files) == 1  # relative to the config file's directory
