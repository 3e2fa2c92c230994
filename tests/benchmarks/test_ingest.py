"""benchmarks/ingest.py: the batch it writes, and a whole (small) run with its report."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str) -> ModuleType:
    """A benchmark module, imported as the scripts import each other (benchmarks/ on the path)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


ingest = load("ingest")


def test_the_batch_has_its_rows_and_its_share_of_invalid_ones(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"

    broken = ingest.write_batch(path, 1000, invalid_share=0.02)

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert len(frame) == 1000
    assert broken == 20
    assert (frame["bmi"] == "n/a").sum() == 20
    assert frame["patient"].tolist() == [str(i) for i in range(1000)]


def test_a_small_run_reports_both_rates_and_their_ratio(tmp_path: Path) -> None:
    out = tmp_path / "ingest.md"

    assert ingest.main(["--rows", "2000", "--repeats", "1", "--out", str(out)]) == 0

    report = out.read_text()
    assert "2000 rows, 20 invalid" in report
    assert "| bare CSV → Parquet (pandas + pyarrow) |" in report
    assert "| seawall ingest (validate, snapshot, quarantine, commit) |" in report
    assert "Ingestion counts: 2000 in, 1980 accepted, 20 quarantined (accepted)." in report
    assert "| profile |" in report
