"""`seawall monitor drift` on an SQLite file holding real saved drift reports: one line per
report, the newest report's statistics with --model and --version, --json, and the exit status
(0 stable, 3 drifting, 2 bad input or no drift reports table, 1 database unreachable)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from seawall.cli.main import app
from seawall.data.profile import profile
from seawall.monitor import DriftReport, drift_report
from seawall.monitor.reports import DriftReportStore
from seawall.store import Database

runner = CliRunner()

T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
WINDOW_S = 300.0
COLORS = ["red", "green", "blue"]


def _report(window: int, version: str, *, shift: float = 0.0, rows: int = 400) -> DriftReport:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"x": rng.normal(0, 1, 2000), "color": rng.choice(COLORS, 2000)})
    reference = profile(frame, {"x": "float", "color": "string"})
    live_rng = np.random.default_rng(window)
    live = [
        {"x": float(x), "color": str(c)}
        for x, c in zip(live_rng.normal(shift, 1, rows), live_rng.choice(COLORS, rows), strict=True)
    ]
    start = T0 + window * WINDOW_S
    return drift_report(
        reference, live, model="iris", version=version, window=(start, start + WINDOW_S)
    )


#: Saved oldest first: iris 1 stable (windows 0, 2), iris 2 thin then drifting (1, 3).
REPORTS = [("1", 0, 0.0, 400), ("2", 1, 0.0, 10), ("1", 2, 0.0, 400), ("2", 3, 1.5, 400)]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[DriftReport]]:
    """A migrated SQLite file with the four reports of `REPORTS`, and the reports."""
    url = f"sqlite:///{tmp_path_factory.mktemp('monitor') / 'seawall.db'}"
    reports = [_report(w, v, shift=s, rows=n) for v, w, s, n in REPORTS]
    database = Database(url)
    database.upgrade()
    store = DriftReportStore(database)

    async def save_all() -> None:
        for drift in reports:
            await store.save(drift, offered=2 * drift.rows, reference="snap:1", created_by="gw")

    try:
        asyncio.run(save_all())
    finally:
        database.close()
    return url, reports


def drift(url: str, *args: str) -> Result:
    return runner.invoke(app, ["monitor", "drift", "--url", url, *args])


def test_every_report_is_a_line_newest_first_and_a_drifting_newest_exits_3(
    saved: tuple[str, list[DriftReport]],
) -> None:
    url, reports = saved
    result = drift(url)

    assert result.exit_code == 3, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "model", "version", "window", "end", "rows", "verdict", "score", "drifted"
    ]  # fmt: skip
    cells = [line.split() for line in lines[1:]]
    assert [c[:5] for c in cells] == [
        ["iris", "2", "2027-01-15T08:20:00+00:00", "400", "drifting"],
        ["iris", "1", "2027-01-15T08:15:00+00:00", "400", "stable"],
        ["iris", "2", "2027-01-15T08:10:00+00:00", "10", "insufficient_data"],
        ["iris", "1", "2027-01-15T08:05:00+00:00", "400", "stable"],
    ]
    assert cells[0][5:] == [f"{reports[3].score:.3f}", "x"]
    assert cells[2][5:] == ["0.000", "-"]
    assert len(lines) == 5  # no per-feature table without --model and --version


def test_a_version_shows_its_newest_reports_statistics(
    saved: tuple[str, list[DriftReport]],
) -> None:
    url, reports = saved
    stable = drift(url, "--model", "iris", "--version", "1")
    drifting = drift(url, "--model", "iris", "--version", "2", "--limit", "1")

    assert stable.exit_code == 0, stable.output
    assert drifting.exit_code == 3, drifting.output
    head, table = drifting.stdout.split("\n\n")
    assert len(head.splitlines()) == 2  # header and the one report (--limit 1)
    rows = [line.split() for line in table.splitlines()]
    assert rows[0] == ["feature", "stat", "value", "p-value", "threshold", "drifted"]
    newest = reports[3]
    assert len(rows) - 1 == len(newest.results) == 9
    psi = next(r for r in newest.results if (r.feature, r.stat) == ("x", "psi"))
    assert psi.value is not None
    assert psi.p_value is not None
    assert psi.threshold is not None
    expected = [f"{psi.value:.4g}", f"{psi.p_value:.3g}", f"{psi.threshold:.4g}", "yes"]
    assert ["x", "psi", *expected] in rows
    assert all(row[-1] == "no" for row in rows[1:] if row[0] == "color")
    stable_rows = stable.stdout.split("\n\n")[1].splitlines()[1:]
    assert len(stable_rows) == 9
    assert all(line.split()[-1] == "no" for line in stable_rows)


def test_json_lists_whole_reports_and_keeps_the_exit_status(
    saved: tuple[str, list[DriftReport]],
) -> None:
    url, reports = saved
    result = drift(url, "--model", "iris", "--json")
    older = drift(url, "--model", "iris", "--version", "1", "--json", "--limit", "1")

    assert result.exit_code == 3, result.output
    out = json.loads(result.stdout)
    assert [(r["version"], r["verdict"], r["samples"], r["offered"]) for r in out] == [
        ("2", "drifting", 400, 800),
        ("1", "stable", 400, 800),
        ("2", "insufficient_data", 10, 20),
        ("1", "stable", 400, 800),
    ]
    assert out[0]["report"] == reports[3].to_json()
    assert out[0]["window_end"] == "2027-01-15T08:20:00+00:00"
    assert older.exit_code == 0, older.output
    assert [r["window_end"] for r in json.loads(older.stdout)] == ["2027-01-15T08:15:00+00:00"]


def test_no_reports_is_said_and_exits_0(saved: tuple[str, list[DriftReport]]) -> None:
    url, _ = saved
    result = drift(url, "--model", "wine")

    assert result.exit_code == 0, result.output
    assert result.stdout == "no drift reports\n"


def test_a_config_file_names_the_database(
    saved: tuple[str, list[DriftReport]], tmp_path: Path
) -> None:
    url, _ = saved
    config = tmp_path / "seawall.yaml"
    config.write_text(f"database_url: {url}\n", encoding="utf-8")

    result = runner.invoke(
        app, ["monitor", "drift", "--config", str(config), "--version", "1", "--json"]
    )

    assert result.exit_code == 0, result.output
    assert [r["version"] for r in json.loads(result.stdout)] == ["1", "1"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--limit", "0"], 2, "--limit"),
        (["--model", " "], 2, "error: --model: must not be empty"),
        (["--colour", "red"], 2, "No such option"),
    ],
)
def test_bad_options_exit_2_naming_the_option(
    saved: tuple[str, list[DriftReport]], args: list[str], code: int, message: str
) -> None:
    result = drift(saved[0], *args)

    assert result.exit_code == code
    assert message in result.output


def test_a_database_without_drift_reports_exits_2_saying_what_to_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = drift(url)

    assert result.exit_code == 2
    assert "no drift reports (run `seawall db upgrade`)" in result.output


def test_an_unreachable_database_exits_1() -> None:
    result = drift("postgresql://postgres@127.0.0.1:1/test")

    assert result.exit_code == 1
    assert result.output.startswith("error: database ")


def _files(tmp_path: Path, serving_bmi: list[float]) -> tuple[Path, Path]:
    training = pd.DataFrame(
        {"id": [1, 2, 3, 4], "bmi": [20.0, 25.0, 30.0, 35.0], "sex": list("mfmf")}
    )
    serving = pd.DataFrame({"id": [2, 3, 4, 9], "bmi": serving_bmi, "sex": list("fmfm")})
    left, right = tmp_path / "training.csv", tmp_path / "serving.parquet"
    training.to_csv(left, index=False)
    serving.to_parquet(right)
    return left, right


def test_skew_joins_on_the_key_and_exits_3_when_a_feature_differs(tmp_path: Path) -> None:
    left, right = _files(tmp_path, [25.0, 31.5, 35.0, 99.0])
    args = ["monitor", "skew", "--training", str(left), "--serving", str(right), "--key", "id"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 3, result.output
    by_feature = {r["feature"]: r for r in json.loads(result.stdout)}
    assert by_feature["bmi"]["matched"] == 3
    assert by_feature["bmi"]["mismatches"] == 1
    assert by_feature["bmi"]["mean_abs_diff"] == pytest.approx(0.5)
    assert by_feature["bmi"]["skewed"]
    assert not by_feature["sex"]["skewed"]
    same, _ = _files(tmp_path, [25.0, 30.0, 35.0, 1.0])
    _, right = _files(tmp_path, [25.0, 30.0, 35.0, 1.0])
    clean = runner.invoke(
        app, ["monitor", "skew", "--training", str(same), "--serving", str(right), "--key", "id"]
    )
    assert clean.exit_code == 0, clean.output
    assert "bmi" in clean.stdout


def test_skew_bad_input_exits_2_naming_the_option(tmp_path: Path) -> None:
    left, right = _files(tmp_path, [25.0, 30.0, 35.0, 1.0])
    base = ["monitor", "skew", "--training", str(left), "--serving", str(right)]
    cases = {
        "no column 'patient'": [*base, "--key", "patient"],
        "--training": [
            "monitor",
            "skew",
            "--training",
            str(tmp_path / "nope.csv"),
            "--serving",
            str(right),
            "--key",
            "id",
        ],
    }
    for words, args in cases.items():
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (words, result.output)
        assert words in result.stderr
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    result = runner.invoke(
        app, ["monitor", "skew", "--training", str(left), "--serving", str(garbage), "--key", "id"]
    )
    assert result.exit_code == 2
    assert "--serving" in result.stderr
