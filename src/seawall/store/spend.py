"""`SpendLedger`: LLM spend per API key, period and model, added up in the database.

Each row is one (principal, period, model) with running totals, incremented by an UPSERT
(`INSERT ... ON CONFLICT DO UPDATE SET usd = spend.usd + excluded.usd, ...`). The increment is
computed by the database under its row (PostgreSQL) or file (SQLite) lock, so any number of
writers, threads or processes, add up exactly: nothing is read, added in Python and written
back. A period is an opaque label chosen by the caller (`2026-11`, `2026-11-26`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Insert, Numeric, Text, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from seawall.clock import Clock, SystemClock
from seawall.store.engine import Database
from seawall.store.schema import Base, UtcDateTime

__all__ = ["SpendDelta", "SpendKey", "SpendLedger", "SpendRow", "SpendTotal"]


class SpendRow(Base):
    """A row of the `spend` table (created by migration 0001)."""

    __tablename__ = "spend"

    principal: Mapped[str] = mapped_column(Text, primary_key=True)
    period: Mapped[str] = mapped_column(Text, primary_key=True)
    model: Mapped[str] = mapped_column(Text, primary_key=True)
    # NUMERIC: exact decimal sums on PostgreSQL; SQLite stores it as a double.
    usd: Mapped[float] = mapped_column(Numeric(20, 9, asdecimal=False), server_default="0")
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    requests: Mapped[int] = mapped_column(BigInteger, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


@dataclass(frozen=True, slots=True, order=True)
class SpendKey:
    """Whose spend, in which period, on which model; ordered so batches lock rows in one order."""

    principal: str
    period: str
    model: str


@dataclass(frozen=True, slots=True)
class SpendDelta:
    """Amounts to add to one key's totals."""

    usd: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.usd) and self.usd >= 0):
            raise ValueError(f"usd: a cost is a finite number of dollars >= 0, got {self.usd}")
        for name in ("prompt_tokens", "completion_tokens", "requests"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: a count >= 0, got {getattr(self, name)}")

    def __add__(self, other: SpendDelta) -> SpendDelta:
        return SpendDelta(
            self.usd + other.usd,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.requests + other.requests,
        )


@dataclass(frozen=True, slots=True)
class SpendTotal:
    """One model's totals for a principal and period."""

    model: str
    usd: float
    prompt_tokens: int
    completion_tokens: int
    requests: int
    updated_at: datetime


class SpendLedger:
    """Spend totals in the database; every method is async and runs on the database's threads."""

    def __init__(self, database: Database, *, clock: Clock | None = None) -> None:
        self.database = database
        self._clock = clock or SystemClock()
        self._upsert = _upsert_statement(database.dialect)

    async def add(
        self,
        principal: str,
        period: str,
        model: str,
        usd: float,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        """Add one request's cost and tokens (and 1 to its request count), atomically."""
        delta = SpendDelta(usd, prompt_tokens, completion_tokens, requests=1)
        await self.add_many({SpendKey(principal, period, model): delta})

    async def add_many(self, deltas: Mapping[SpendKey, SpendDelta]) -> None:
        """Add every delta in one transaction: all are counted, or none is."""
        if not deltas:
            return
        now = datetime.fromtimestamp(self._clock.time(), UTC)
        # One lock order for every writer: two batches sharing keys cannot deadlock.
        rows = [_row(key, deltas[key], now) for key in sorted(deltas)]
        await self.database.run(self._write, rows)

    async def total_usd(self, principal: str, period: str) -> float:
        """Dollars spent by `principal` in `period` on every model (0.0 when nothing was)."""
        return await self.database.run(self._total_usd, principal, period)

    async def totals(self, principal: str, period: str) -> list[SpendTotal]:
        """Totals of `principal` in `period`, one per model, ordered by model."""
        return await self.database.run(self._totals, principal, period)

    def _write(self, rows: list[dict[str, object]]) -> None:
        with self.database.begin() as connection:
            connection.execute(self._upsert, rows)

    def _total_usd(self, principal: str, period: str) -> float:
        query = select(func.sum(SpendRow.usd)).where(
            SpendRow.principal == principal, SpendRow.period == period
        )
        with self.database.session(read_only=True) as session:
            return float(session.scalar(query) or 0.0)

    def _totals(self, principal: str, period: str) -> list[SpendTotal]:
        query = (
            select(SpendRow)
            .where(SpendRow.principal == principal, SpendRow.period == period)
            .order_by(SpendRow.model)
        )
        with self.database.session(read_only=True) as session:
            return [
                SpendTotal(
                    r.model, r.usd, r.prompt_tokens, r.completion_tokens, r.requests, r.updated_at
                )
                for r in session.scalars(query)
            ]


def _row(key: SpendKey, delta: SpendDelta, now: datetime) -> dict[str, object]:
    return {
        "principal": key.principal,
        "period": key.period,
        "model": key.model,
        "usd": delta.usd,
        "prompt_tokens": delta.prompt_tokens,
        "completion_tokens": delta.completion_tokens,
        "requests": delta.requests,
        "updated_at": now,
    }


def _upsert_statement(dialect: str) -> Insert:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(SpendRow)
    table, excluded = SpendRow.__table__.c, statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[table.principal, table.period, table.model],
        set_={
            "usd": table.usd + excluded.usd,
            "prompt_tokens": table.prompt_tokens + excluded.prompt_tokens,
            "completion_tokens": table.completion_tokens + excluded.completion_tokens,
            "requests": table.requests + excluded.requests,
            "updated_at": excluded.updated_at,
        },
    )
