"""The shared declarative base: constraint names, and UTC timestamps on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, select
from sqlalchemy.exc import StatementError

from seawall.store import Base, Database, UtcDateTime
from seawall.store import spend as spend_module

_events = Table(
    "events",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("at", UtcDateTime),
)


def test_constraints_get_names_from_the_convention() -> None:
    assert spend_module.SpendRow.__tablename__ in Base.metadata.tables
    assert Base.metadata.tables["spend"].primary_key.name == "pk_spend"
    assert Base.metadata.naming_convention["ix"] == "ix_%(table_name)s_%(column_0_N_name)s"


async def test_timestamps_are_stored_in_utc_and_read_back_aware(database: Database) -> None:
    paris = timezone(timedelta(hours=1))
    written = datetime(2026, 11, 26, 13, 30, 15, 123456, tzinfo=paris)

    def round_trip() -> tuple[datetime, object]:
        with database.begin() as connection:
            _events.create(connection)
            connection.execute(_events.insert().values(id=1, at=written))
            raw = connection.exec_driver_sql("SELECT at FROM events").scalar()
            return connection.execute(select(_events.c.at)).scalar_one(), raw

    read, raw = await database.run(round_trip)
    assert read == written
    assert read.tzinfo is UTC
    assert (read.hour, read.minute, read.microsecond) == (12, 30, 123456)
    if database.dialect == "sqlite":
        # Stored as UTC text, so ORDER BY and comparisons in SQL follow time order.
        assert raw == "2026-11-26 12:30:15.123456"


async def test_naive_timestamps_are_refused(database: Database) -> None:
    def write_naive() -> None:
        with database.begin() as connection:
            _events.create(connection)
            connection.execute(_events.insert().values(id=1, at=datetime(2026, 11, 26)))

    with pytest.raises(StatementError, match="naive datetime"):
        await database.run(write_naive)


async def test_null_timestamps_stay_null(database: Database) -> None:
    def round_trip() -> object:
        with database.begin() as connection:
            _events.create(connection)
            connection.execute(_events.insert().values(id=1, at=None))
            return connection.execute(select(_events.c.at)).scalar_one()

    assert await database.run(round_trip) is None
