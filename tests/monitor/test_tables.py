"""The drift reports table: registered in the shared metadata, matching migration 0006."""

from __future__ import annotations

from seawall.monitor.tables import DriftReportRow
from seawall.store import Base


def test_the_table_is_in_the_shared_metadata_with_its_constraints() -> None:
    table = Base.metadata.tables["drift_reports"]
    assert table is DriftReportRow.__table__
    assert {c.name for c in table.columns} == {
        "id",
        "model",
        "version",
        "window_start",
        "window_end",
        "offered",
        "samples",
        "drifting",
        "score",
        "reference",
        "report",
        "created_by",
        "created_at",
    }
    unique = {
        tuple(c.name for c in u.columns)
        for u in table.constraints
        if u.name == "uq_drift_reports_window"
    }
    assert unique == {("model", "version", "window_start", "created_by")}
    assert table.c.score.nullable is not False
