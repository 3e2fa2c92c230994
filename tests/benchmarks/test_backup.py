"""benchmarks/backup.py: a whole (small) run on each database, with its report."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy.engine import make_url

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str) -> ModuleType:
    """A benchmark module, imported as the scripts import each other (benchmarks/ on the path)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


backup = load("backup")


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_small_run_reports_each_operation_and_its_ratio(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    out = tmp_path / "backup.md"
    args = ["--dialect", dialect, "--rows", "300", "--blobs", "7", "--blob-kib", "4"]
    if dialect == "postgresql":
        server = make_url(request.getfixturevalue("postgres_url")).set(query={})
        args += ["--postgres", server.render_as_string(hide_password=False)]

    assert backup.main([*args, "--repeats", "1", "--out", str(out)]) == 0

    report = out.read_text()
    assert f"# Backup cost ({dialect})" in report
    assert "300 audit records, 7 blobs of 4 KiB." in report
    for operation in ("create", "verify", "restore"):
        assert f"| {operation} | " in report
    sizes = report.split("Backup: ")[1].split(" bytes)")[0]
    assert int(sizes.split("(")[1].replace(",", "")) > 7 * 4096
