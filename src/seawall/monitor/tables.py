"""The monitors' table (migration 0006): drift reports, one per model version and window.

Only `seawall.monitor` reads or writes it. The gateway that runs the monitors appends a report
at the end of each window; `seawall monitor drift` and the rollout controller read them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from seawall.store.schema import Base, UtcDateTime

__all__ = ["DriftReportRow"]


class DriftReportRow(Base):
    """One window's drift verdict for a served model version, with every feature's numbers."""

    __tablename__ = "drift_reports"
    __table_args__ = (
        Index("ix_drift_reports_model_version_window", "model", "version", "window_end"),
        Index("ix_drift_reports_window_end", "window_end"),
        # One report per window and gateway: a retried save stores nothing twice.
        UniqueConstraint(
            "model", "version", "window_start", "created_by", name="uq_drift_reports_window"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: The served model ("name:version" as configured) and the version that answered.
    model: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(64))
    window_start: Mapped[datetime] = mapped_column(UtcDateTime)
    window_end: Mapped[datetime] = mapped_column(UtcDateTime)
    #: Calls seen in the window, and how many were sampled.
    offered: Mapped[int] = mapped_column(BigInteger)
    samples: Mapped[int] = mapped_column(BigInteger)
    drifting: Mapped[bool] = mapped_column(Boolean)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: Where the reference came from (a snapshot id, a file).
    reference: Mapped[str] = mapped_column(Text)
    #: The whole report (`DriftReport.to_json()`).
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: Which gateway computed it, and when it was stored.
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
