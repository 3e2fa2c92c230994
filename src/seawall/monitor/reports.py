"""`DriftReportStore`: the drift reports the gateway saves per model version and window, read back.

The gateway appends one row per closed window (`save`); `seawall monitor drift` lists them
(`latest`), and the rollout controller asks whether a version is drifting (`verdict`): the
reports of that version whose window ended at or after a point in time, added up. A verdict
is `drifting=None` when none of those reports had enough data to judge (every one
`insufficient_data`), so "no evidence" is never read as "stable".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from seawall.clock import Clock, SystemClock
from seawall.errors import InvalidInputError
from seawall.monitor.report import DriftReport, Verdict
from seawall.monitor.tables import DriftReportRow
from seawall.store.engine import Database
from seawall.store.record import Record

__all__ = ["MAX_LIST", "DriftReportRecord", "DriftReportStore", "DriftVerdict"]

#: Most reports `latest` returns at once.
MAX_LIST = 10_000

_MODEL_CHARS = 200
_VERSION_CHARS = 64
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DriftReportRecord(Record):
    """One saved drift report: the window's verdict and counts, and the whole report."""

    id: int
    model: str
    version: str
    window_start: datetime
    window_end: datetime
    #: Calls seen in the window, and the rows the report is over (from the sampled calls).
    offered: int
    samples: int
    #: `drifting`, `stable` or `insufficient_data` (a `Verdict` value).
    verdict: str
    drifting: bool
    #: The largest PSI of any feature or output.
    score: float | None
    drifted_features: tuple[str, ...]
    #: Where the reference came from (a snapshot id, a file).
    reference: str
    #: The gateway that computed it, and when it was stored.
    created_by: str
    created_at: datetime
    #: `DriftReport.to_json()`: every feature's statistics.
    report: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DriftVerdict(Record):
    """Is a model version drifting? Its reports whose window ended at or after `since`, added up."""

    model: str
    version: str
    since: datetime
    #: Reports found, and how many of them had enough data to judge.
    windows: int
    judged: int
    drifting_windows: int
    #: The largest score of a judged report (None: none judged).
    max_score: float | None
    #: Features and outputs that drifted in some window, sorted.
    drifted_features: tuple[str, ...]
    last_window_end: datetime | None
    #: Some judged window drifted; None when no report had enough data (or there was none).
    drifting: bool | None
    #: When the verdict was computed (the store's clock): `checked_at - last_window_end` is
    #: how stale the evidence is.
    checked_at: datetime


class DriftReportStore:
    """The drift reports in `database` (table `drift_reports`); every method is async."""

    def __init__(self, database: Database, *, clock: Clock | None = None) -> None:
        self.database = database
        self._clock = clock or SystemClock()

    async def save(
        self, report: DriftReport, *, offered: int, reference: str, created_by: str
    ) -> int:
        """Append `report`, of a window in which `offered` calls were seen; its row id.

        Idempotent: the same window saved again by the same gateway (a retry) keeps the row
        stored first and returns its id."""
        values = _row_values(report, offered=offered, reference=reference, created_by=created_by)
        values["created_at"] = datetime.fromtimestamp(self._clock.time(), UTC)

        def write() -> int:
            try:
                with self.database.begin() as connection:
                    inserted = connection.execute(
                        insert(DriftReportRow).values(values).returning(DriftReportRow.id)
                    )
                    return int(inserted.scalar_one())
            except IntegrityError:
                with self.database.begin(read_only=True) as connection:
                    existing = connection.execute(
                        select(DriftReportRow.id).where(
                            DriftReportRow.model == values["model"],
                            DriftReportRow.version == values["version"],
                            DriftReportRow.window_start == values["window_start"],
                            DriftReportRow.created_by == values["created_by"],
                        )
                    ).scalar_one_or_none()
                if existing is None:  # not the window's row: another constraint broke
                    raise
                return int(existing)

        return await self.database.run(write)

    async def latest(
        self, model: str | None = None, version: str | None = None, limit: int = 20
    ) -> list[DriftReportRecord]:
        """The newest `limit` reports (of `model`, of its `version`), newest window first."""
        if not 1 <= limit <= MAX_LIST:
            raise InvalidInputError("limit", f"1 to {MAX_LIST}, got {limit}")
        query = select(DriftReportRow).order_by(
            DriftReportRow.window_end.desc(), DriftReportRow.id.desc()
        )
        if model is not None:
            query = query.where(DriftReportRow.model == model)
        if version is not None:
            query = query.where(DriftReportRow.version == version)
        return await self._read(lambda c: [_record(row) for row in c.execute(query.limit(limit))])

    async def verdict(self, model: str, version: str, *, since: datetime) -> DriftVerdict:
        """Whether `model` `version` drifted in the windows that ended at or after `since`."""
        if since.tzinfo is None:
            raise InvalidInputError("since", f"must have a time zone, got naive {since}")
        report = DriftReportRow.report
        query = select(
            DriftReportRow.window_end,
            DriftReportRow.drifting,
            DriftReportRow.score,
            report["verdict"].as_string().label("verdict"),
            report["drifted_features"].label("drifted_features"),
        ).where(
            DriftReportRow.model == model,
            DriftReportRow.version == version,
            DriftReportRow.window_end >= since,
        )
        rows = await self._read(lambda c: c.execute(query).all())
        now = datetime.fromtimestamp(self._clock.time(), UTC)
        return _aggregate(model, version, since.astimezone(UTC), now, rows)

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        def run() -> T:
            with self.database.begin(read_only=True) as connection:
                return fn(connection)

        return await self.database.run(run)


def _row_values(
    report: DriftReport, *, offered: int, reference: str, created_by: str
) -> dict[str, Any]:
    """The `drift_reports` row of `report`; `InvalidInputError` naming a field that cannot fit."""
    checks = (
        ("report.model", 0 < len(report.model) <= _MODEL_CHARS, f"1 to {_MODEL_CHARS} characters"),
        (
            "report.version",
            0 < len(report.version) <= _VERSION_CHARS,
            f"1 to {_VERSION_CHARS} characters",
        ),
        ("offered", offered >= 0, "a count of calls, at least 0"),
        ("reference", bool(reference), "must not be empty"),
        ("created_by", 0 < len(created_by) <= _MODEL_CHARS, f"1 to {_MODEL_CHARS} characters"),
    )
    for field, ok, rule in checks:
        if not ok:
            raise InvalidInputError(field, rule)
    return {
        "model": report.model,
        "version": report.version,
        "window_start": datetime.fromtimestamp(report.window_start, UTC),
        "window_end": datetime.fromtimestamp(report.window_end, UTC),
        "offered": offered,
        "samples": report.rows,
        "drifting": report.drifting,
        "score": report.score,
        "reference": reference,
        "report": report.to_json(),
        "created_by": created_by,
    }


def _record(row: Any) -> DriftReportRecord:
    report = dict(row.report)
    return DriftReportRecord(
        id=row.id,
        model=row.model,
        version=row.version,
        window_start=row.window_start,
        window_end=row.window_end,
        offered=row.offered,
        samples=row.samples,
        verdict=str(report.get("verdict", "")),
        drifting=row.drifting,
        score=row.score,
        drifted_features=tuple(report.get("drifted_features", ())),
        reference=row.reference,
        created_by=row.created_by,
        created_at=row.created_at,
        report=report,
    )


def _aggregate(
    model: str, version: str, since: datetime, now: datetime, rows: Sequence[Any]
) -> DriftVerdict:
    judged = [r for r in rows if r.verdict != Verdict.INSUFFICIENT_DATA]
    drifted = [r for r in judged if r.drifting]
    features = sorted({f for r in drifted for f in (r.drifted_features or ())})
    scores = [r.score for r in judged if r.score is not None]
    return DriftVerdict(
        model=model,
        version=version,
        since=since,
        windows=len(rows),
        judged=len(judged),
        drifting_windows=len(drifted),
        max_score=max(scores, default=None),
        drifted_features=tuple(features),
        last_window_end=max((r.window_end for r in rows), default=None),
        drifting=bool(drifted) if judged else None,
        checked_at=now,
    )
