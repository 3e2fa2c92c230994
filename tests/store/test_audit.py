"""AuditLog on SQLite and PostgreSQL: appends, reads, export, and tampering by raw SQL detected."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import bindparam, event, select, text

from seawall.clock import FakeClock
from seawall.store import AuditLog, AuditRecord, Database, StoreError, StoreUnavailableError
from seawall.store.audit import MAX_PAGE_SIZE, AuditRow
from seawall.store.audit_chain import GENESIS_HASH, Problem, canonical_details, record_hash
from seawall.store.schema import UtcDateTime

CONTENTS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("alice", "model.promote", "iris@3", {"stage": "production", "approvals": 2}),
    ("cli:bob", "alias.move", "iris@champion", {"from": 2, "to": 3}),
    ("system", "config.reload", "seawall.yaml", {}),
    ("ops-key", "key.create", "ci-deployer", {"roles": ["deployer"]}),
    ("alice", "data.read", "snapshot/42", {"rows": 1000, "ratio": 0.25}),
    ("system", "model.refuse", "iris@4", {"reason": "unsigned artifact", "ok": False}),
]
N = len(CONTENTS)


async def _fill(log: AuditLog) -> list[AuditRecord]:
    return [await log.append(*content) for content in CONTENTS]


def _head(db: Database) -> tuple[int, str]:
    with db.begin(read_only=True) as connection:
        seq, digest = connection.execute(text("SELECT seq, hash FROM audit_head")).one()
    return seq, digest


# --- appending and reading ---------------------------------------------------------------


async def test_appends_chain_each_record_to_the_one_before(migrated: Database) -> None:
    clock = FakeClock(wall_start=1_795_000_000.25)
    log = AuditLog(migrated, clock=clock)
    first = await log.append("alice", "model.promote", "iris@3", {"b": 1, "a": [1, "x"]})
    clock.advance(1.5)
    second = await log.append("system", "config.reload")

    assert first == AuditRecord(
        1,
        datetime.fromtimestamp(1_795_000_000.25, UTC),
        "alice",
        "model.promote",
        "iris@3",
        {"a": [1, "x"], "b": 1},
        GENESIS_HASH,
        first.hash,
    )
    assert (second.seq, second.prev_hash, second.target, second.details) == (2, first.hash, "", {})
    assert second.at - first.at == timedelta(seconds=1.5)
    assert first.hash == record_hash(
        1, first.at, "alice", "model.promote", "iris@3", '{"a":[1,"x"],"b":1}', GENESIS_HASH
    )
    assert await log.records() == [first, second]
    assert _head(migrated) == (2, second.hash)
    assert (await log.head()).seq == 2


async def test_details_are_stored_as_canonical_json_text(migrated: Database) -> None:
    await AuditLog(migrated).append("a", "x.y", "t", {"é": 1.5, "b": None, "a": {"z": [True]}})
    with migrated.begin(read_only=True) as connection:
        stored = connection.execute(text("SELECT details FROM audit_log")).scalar_one()
    assert stored == '{"a":{"z":[true]},"b":null,"\\u00e9":1.5}'


async def test_an_append_is_committed_before_it_returns(database_url: str) -> None:
    writer, reader = Database(database_url), Database(database_url)
    try:
        writer.upgrade()
        record = await AuditLog(writer).append("alice", "key.revoke", "old-key")
        # Another connection pool, as another process would see it.
        assert await AuditLog(reader).records() == [record]
    finally:
        writer.close()
        reader.close()


async def test_a_record_appended_in_a_transaction_commits_or_rolls_back_with_it(
    migrated: Database,
) -> None:
    log = AuditLog(migrated)

    def promote(fail: bool) -> AuditRecord:
        with migrated.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS promoted (name TEXT)")
            connection.exec_driver_sql("INSERT INTO promoted VALUES ('iris@3')")
            record = log.append_in(connection, "alice", "model.promote", "iris@3", {"to": 3})
            if fail:
                raise RuntimeError("the promotion failed after it was recorded")
            return record

    with pytest.raises(RuntimeError):
        await migrated.run(promote, True)
    assert await log.records() == []
    assert _head(migrated) == (0, GENESIS_HASH)
    record = await migrated.run(promote, False)
    assert await log.records() == [record]
    assert (await log.verify()).checked == 1
    with pytest.raises(ValueError, match="action"), migrated.begin() as connection:
        log.append_in(connection, "alice", "Promote")


async def test_records_come_in_pages_in_seq_order(migrated: Database) -> None:
    log = AuditLog(migrated)
    for i in range(7):
        await log.append("system", "test.page", str(i))
    pages = [await log.records(after_seq=after, limit=3) for after in (0, 3, 6, 7)]
    assert [[r.seq for r in page] for page in pages] == [[1, 2, 3], [4, 5, 6], [7], []]
    for limit in (0, MAX_PAGE_SIZE + 1):
        with pytest.raises(ValueError, match="limit: 1 to 10000"):
            await log.records(limit=limit)


async def test_an_empty_log_has_the_genesis_head_and_verifies(migrated: Database) -> None:
    log = AuditLog(migrated)
    head = await log.head()
    assert (head.seq, head.hash) == (0, GENESIS_HASH)
    result = await log.verify()
    assert (result.ok, result.checked, result.head_seq) == (True, 0, 0)
    assert await log.records() == []


@pytest.mark.parametrize(
    ("actor", "action", "target", "details", "message"),
    [
        ("", "model.promote", "m", {}, "actor: who acted"),
        ("a\nb", "model.promote", "m", {}, "actor: printable characters only"),
        ("a\x00", "model.promote", "m", {}, "actor: printable"),
        ("a" * 201, "model.promote", "m", {}, "actor: at most 200 characters"),
        ("alice", "promote", "m", {}, "action: dotted lower-case words"),
        ("alice", "Model.Promote", "m", {}, "action: dotted lower-case words"),
        ("alice", "model.promote", "t" * 1001, {}, "target: at most 1000 characters"),
        ("alice", "model.promote", "\udc80", {}, "target: printable"),
        ("alice", "model.promote", "m", [1], "details: a JSON object"),
        ("alice", "model.promote", "m", {"x": float("nan")}, "details: not plain JSON"),
        ("alice", "model.promote", "m", {"x": "y" * 40}, "details: at most 32 bytes"),
        (7, "model.promote", "m", {}, "actor: a string, got int"),
    ],
)
async def test_bad_input_is_refused_and_writes_nothing(
    migrated: Database, actor: Any, action: str, target: str, details: Any, message: str
) -> None:
    log = AuditLog(migrated, max_details_bytes=32)
    with pytest.raises(ValueError, match=message):
        await log.append(actor, action, target, details)
    assert _head(migrated) == (0, GENESIS_HASH)
    assert await log.records() == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_details_bytes": 1}, "max_details_bytes: at least 2"),
        ({"lock_timeout_s": 0}, "lock_timeout_s: must be > 0"),
    ],
)
def test_impossible_options_are_refused(
    tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    db = Database(f"sqlite:///{tmp_path}/a.db")
    try:
        with pytest.raises(ValueError, match=message):
            AuditLog(db, **options)
    finally:
        db.close()


async def test_an_append_waits_for_the_head_only_so_long(database_url: str) -> None:
    db = Database(database_url, busy_timeout_s=0.2)
    try:
        db.upgrade()
        log = AuditLog(db, lock_timeout_s=0.2)
        # Another writer that holds the head and does not finish (SQLite: BEGIN IMMEDIATE).
        lock = " FOR UPDATE" if db.dialect == "postgresql" else ""
        with db.begin() as holder:
            holder.execute(text(f"SELECT seq FROM audit_head{lock}"))
            with pytest.raises(StoreUnavailableError, match="lock"):
                await log.append("alice", "model.promote", "m")
        assert (await log.append("alice", "model.promote", "m")).seq == 1
    finally:
        db.close()


_printable = st.text(st.characters(codec="utf-8").filter(str.isprintable), max_size=20)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    actor=_printable.filter(bool),
    target=_printable,
    details=st.dictionaries(st.text(max_size=8), _json, max_size=4),
)
async def test_any_text_and_json_round_trip_and_keep_the_chain_valid(
    migrated: Database, actor: str, target: str, details: dict[str, Any]
) -> None:
    log = AuditLog(migrated)
    record = await log.append(actor, "test.round-trip", target, details)
    (read,) = await log.records(after_seq=record.seq - 1, limit=1)
    assert read == record
    assert read.details == json.loads(canonical_details(details))
    assert (await log.verify()).ok


# --- export ----------------------------------------------------------------------------------


async def test_export_writes_one_json_line_per_record_that_anyone_can_recheck(
    migrated: Database,
) -> None:
    log = AuditLog(migrated)
    records = await _fill(log)
    out = io.StringIO()
    assert await log.export(out) == N
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, N + 1))
    assert lines[0] == {
        "seq": 1,
        "at": records[0].at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": "alice",
        "action": "model.promote",
        "target": "iris@3",
        "details": {"approvals": 2, "stage": "production"},
        "prev_hash": GENESIS_HASH,
        "hash": records[0].hash,
    }
    for line in lines:  # the documented encoding, recomputed from the export alone
        at = datetime.fromisoformat(line["at"].replace("Z", "+00:00"))
        fields = (line["actor"], line["action"], line["target"])
        details = canonical_details(line["details"])
        assert record_hash(line["seq"], at, *fields, details, line["prev_hash"]) == line["hash"]


async def test_an_empty_log_exports_nothing(migrated: Database) -> None:
    out = io.StringIO()
    assert await AuditLog(migrated).export(out) == 0
    assert out.getvalue() == ""


# --- tampering by raw SQL --------------------------------------------------------------------


class Tamperer:
    """Raw SQL on the audit tables, as anyone with write access to the database could run it."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.saved_head = (0, GENESIS_HASH)

    def drop_guards(self) -> None:
        """The triggers stop mistakes; an owner of the database can drop them."""
        with self.db.begin() as connection:
            if self.db.dialect == "sqlite":
                query = "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'"
            else:
                query = (
                    "SELECT tgname, tgrelid::regclass::text FROM pg_trigger "
                    "WHERE tgrelid IN ('audit_log'::regclass, 'audit_head'::regclass) "
                    "AND NOT tgisinternal"
                )
            for name, table in connection.exec_driver_sql(query).all():
                suffix = "" if self.db.dialect == "sqlite" else f" ON {table}"
                connection.exec_driver_sql(f"DROP TRIGGER {name}{suffix}")

    def save(self) -> None:
        with self.db.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE audit_saved AS SELECT * FROM audit_log")
        self.saved_head = _head(self.db)

    def restore(self) -> None:
        with self.db.begin() as connection:
            connection.exec_driver_sql("DELETE FROM audit_log")
            connection.exec_driver_sql("INSERT INTO audit_log SELECT * FROM audit_saved")
            connection.execute(
                text("UPDATE audit_head SET seq = :seq, hash = :hash"),
                dict(zip(("seq", "hash"), self.saved_head, strict=True)),
            )

    def row(self, seq: int) -> AuditRow:
        with self.db.session(read_only=True) as session:
            row = session.get(AuditRow, seq)
            assert row is not None
            session.expunge(row)
            return row

    def set(self, seq: int, column: str, value: object) -> None:
        statement = text(f"UPDATE audit_log SET {column} = :value WHERE seq = :seq")
        if column == "at":
            statement = statement.bindparams(bindparam("value", type_=UtcDateTime()))
        with self.db.begin() as connection:
            assert connection.execute(statement, {"value": value, "seq": seq}).rowcount == 1

    def delete(self, seq: int) -> None:
        with self.db.begin() as connection:
            connection.execute(text("DELETE FROM audit_log WHERE seq = :seq"), {"seq": seq})

    def renumber(self, old: int, new: int) -> None:
        with self.db.begin() as connection:
            connection.execute(
                text("UPDATE audit_log SET seq = :new WHERE seq = :old"), {"old": old, "new": new}
            )

    def insert(self, seq: int, actor: str, action: str, target: str, prev_hash: str) -> None:
        """A forged record with a correctly computed hash."""
        at = datetime(2026, 1, 1, tzinfo=UTC)
        digest = record_hash(seq, at, actor, action, target, "{}", prev_hash)
        statement = text(
            "INSERT INTO audit_log (seq, at, actor, action, target, details, prev_hash, hash) "
            "VALUES (:seq, :at, :actor, :action, :target, '{}', :prev_hash, :hash)"
        ).bindparams(bindparam("at", type_=UtcDateTime()))
        values = {"seq": seq, "at": at, "actor": actor, "action": action, "target": target}
        with self.db.begin() as connection:
            connection.execute(statement, {**values, "prev_hash": prev_hash, "hash": digest})


def _flip(digest: str) -> str:
    return digest[:-1] + ("0" if digest[-1] != "0" else "1")


_EDITS: dict[str, tuple[str, Any]] = {
    "seq": ("seq", lambda row: row.seq + 1000),
    "at": ("at", lambda row: row.at + timedelta(microseconds=1)),
    "actor": ("actor", lambda row: row.actor + "x"),
    "action": ("action", lambda row: row.action + "x"),
    "target": ("target", lambda row: row.target + "x"),
    "details": ("details", lambda row: '{"forged":true}'),
    "details whitespace": ("details", lambda row: " " + row.details),
    "prev_hash": ("prev_hash", lambda row: _flip(row.prev_hash)),
    "hash": ("hash", lambda row: _flip(row.hash)),
}


def _tamper(t: Tamperer, kind: str, k: int, records: list[AuditRecord]) -> tuple[int, set[Problem]]:
    """Tamper with record k as `kind` says; where verify must see the first break, and how."""
    if kind in _EDITS:
        column, value = _EDITS[kind]
        t.set(k, column, value(t.row(k)))
        return k, {"seq": {"missing"}, "prev_hash": {"relinked"}}.get(kind, {"edited"})
    if kind == "delete":
        t.delete(k)
        return k, {"missing"}
    if kind == "insert":  # at position k: later records move up one, as a forger must
        for seq in range(N, k - 1, -1):
            t.renumber(seq, seq + 1)
        t.insert(
            k, "mallory", "key.create", "admin", records[k - 2].hash if k > 1 else GENESIS_HASH
        )
        if k == N:
            return k, {"replaced"}  # it holds the head's seq, not the head's hash
        return (k + 1, {"relinked"}) if k < N else (k, {"unexpected"})
    if kind == "swap":  # k and k + 1
        t.renumber(k, 1_000_000)
        t.renumber(k + 1, k)
        t.renumber(1_000_000, k + 1)
        return k, {"relinked"}
    assert kind == "replace last"
    t.delete(N)
    t.insert(N, "mallory", "alias.move", "iris@champion", records[N - 2].hash)
    return N, {"replaced"}


KINDS = [*_EDITS, "delete", "insert", "swap", "replace last"]


def _positions(kind: str) -> range:
    return {"insert": range(1, N + 2), "swap": range(1, N), "replace last": range(N, N + 1)}.get(
        kind, range(1, N + 1)
    )


@pytest.mark.parametrize("kind", KINDS)
async def test_tampering_with_any_single_record_is_detected_and_named_every_time(
    migrated: Database, kind: str
) -> None:
    log = AuditLog(migrated)
    records = await _fill(log)
    tamperer = Tamperer(migrated)
    tamperer.drop_guards()
    tamperer.save()
    for k in _positions(kind):
        bad, problems = _tamper(tamperer, kind, k, records)
        result = await log.verify()
        assert not result.ok, (kind, k)
        assert result.first_bad_seq == bad, (kind, k, result)
        assert result.problem in problems, (kind, k, result)
        assert result.checked == bad - 1
        tamperer.restore()
        assert (await log.verify()).ok, (kind, k)


async def test_deleting_the_newest_records_is_caught_by_the_head(migrated: Database) -> None:
    log = AuditLog(migrated)
    await _fill(log)
    tamperer = Tamperer(migrated)
    tamperer.drop_guards()
    for seq in (N, N - 1):
        tamperer.delete(seq)
    result = await log.verify()
    assert (result.first_bad_seq, result.problem, result.checked) == (N - 1, "missing", N - 2)
    assert result.reason == f"missing (the head is at {N}): deleted"


async def test_a_missing_head_stops_appends_and_fails_verify(migrated: Database) -> None:
    log = AuditLog(migrated)
    await _fill(log)
    Tamperer(migrated).drop_guards()
    with migrated.begin() as connection:
        connection.exec_driver_sql("DELETE FROM audit_head")
    with pytest.raises(StoreError, match="the audit_head row is missing"):
        await log.append("alice", "model.promote", "m")
    with pytest.raises(StoreError, match="the audit_head row is missing"):
        await log.head()
    result = await log.verify()
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "no_head", None)


async def test_a_head_moved_back_makes_appends_fail_on_the_primary_key(migrated: Database) -> None:
    log = AuditLog(migrated)
    records = await _fill(log)
    Tamperer(migrated).drop_guards()
    with migrated.begin() as connection:
        connection.execute(
            text("UPDATE audit_head SET seq = :seq, hash = :hash"),
            {"seq": N - 1, "hash": records[N - 2].hash},
        )
    with pytest.raises(StoreError, match=f"audit record {N} exists but the head is at {N - 1}"):
        await log.append("alice", "model.promote", "m")
    result = await log.verify()
    assert (result.first_bad_seq, result.problem) == (N, "unexpected")


async def test_unreadable_details_stop_reads_and_export_but_not_verify(
    migrated: Database,
) -> None:
    log = AuditLog(migrated)
    await _fill(log)
    tamperer = Tamperer(migrated)
    tamperer.drop_guards()
    tamperer.set(3, "details", "[1, 2]")
    with pytest.raises(StoreError, match="audit record 3: details are not a JSON object"):
        await log.records()
    with pytest.raises(StoreError, match="audit record 3"):
        await log.export(io.StringIO())
    result = await log.verify()
    assert (result.first_bad_seq, result.problem) == (3, "edited")


async def test_garbage_in_an_sqlite_timestamp_is_reported_not_raised(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/a.db")
    try:
        db.upgrade()
        log = AuditLog(db)
        await _fill(log)
        tamperer = Tamperer(db)
        tamperer.drop_guards()
        with db.begin() as connection:  # SQLite keeps whatever it is given
            connection.exec_driver_sql("UPDATE audit_log SET at = 'yesterday' WHERE seq = 2")
        result = await log.verify()
        assert (result.first_bad_seq, result.problem) == (2, "edited")
    finally:
        db.close()


# --- several writers -------------------------------------------------------------------------


async def _assert_one_chain(db: Database, writers: dict[str, int]) -> None:
    """A valid chain 1..total holding each writer's records in the order it appended them."""
    log = AuditLog(db)
    result = await log.verify()
    total = sum(writers.values())
    assert (result.ok, result.checked, result.head_seq) == (True, total, total), result
    records = await log.records(limit=total)
    assert [r.seq for r in records] == list(range(1, total + 1))
    assert Counter(r.actor for r in records) == writers
    for actor in writers:
        assert [r.details["i"] for r in records if r.actor == actor] == list(range(writers[actor]))


async def test_four_threads_appending_at_once_make_one_unbroken_chain(database_url: str) -> None:
    db = Database(database_url, pool_size=4)
    try:
        db.upgrade()
        log = AuditLog(db)
        start = threading.Barrier(4)

        def writer(name: str) -> list[int]:
            async def append_all() -> list[int]:
                start.wait()
                return [
                    (await log.append(name, "test.thread", "", {"i": i})).seq for i in range(50)
                ]

            return asyncio.run(append_all())

        names = [f"thread-{n}" for n in range(4)]
        with ThreadPoolExecutor(4) as pool:
            seqs = dict(zip(names, pool.map(writer, names), strict=True))
        assert all(s == sorted(s) for s in seqs.values())
        await _assert_one_chain(db, dict.fromkeys(names, 50))
    finally:
        db.close()


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from seawall.store import AuditLog, Database

    async def main(url: str, name: str, count: int) -> None:
        db = Database(url)
        db.upgrade()  # both processes migrate the same empty database at once
        log = AuditLog(db)
        for i in range(count):
            await log.append(name, "test.process", "", {"i": i})
        await db.aclose()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


async def test_two_processes_appending_at_once_make_one_unbroken_chain(
    database_url: str, tmp_path: Path
) -> None:
    writers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WRITER, database_url, name, "100", cwd=tmp_path
        )
        for name in ("gateway-a", "gateway-b")
    ]
    codes = await asyncio.wait_for(asyncio.gather(*(w.wait() for w in writers)), timeout=60)
    assert codes == [0, 0]
    db = Database(database_url)
    try:
        await _assert_one_chain(db, {"gateway-a": 100, "gateway-b": 100})
    finally:
        db.close()


async def test_verify_reads_one_snapshot_while_appends_go_on(database_url: str) -> None:
    db, other = Database(database_url), Database(database_url)
    try:
        db.upgrade()
        log = AuditLog(db)
        await _fill(log)
        appended: list[AuditRecord] = []

        def append_meanwhile(conn: object, cursor: object, statement: str, *rest: object) -> None:
            # On verify's thread: after it read the head, before it reads the records.
            if "FROM audit_log ORDER BY audit_log.seq" in statement and not appended:
                appended.append(asyncio.run(AuditLog(other).append("w", "test.meanwhile")))

        event.listen(db.engine, "before_cursor_execute", append_meanwhile)
        result = await log.verify()
        event.remove(db.engine, "before_cursor_execute", append_meanwhile)

        assert [r.seq for r in appended] == [N + 1]
        assert (result.ok, result.checked, result.head_seq) == (True, N, N)
        assert (await log.verify()).checked == N + 1
    finally:
        db.close()
        other.close()


@contextmanager
def _statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *rest: object) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


async def test_postgres_appends_lock_the_head_row_and_verify_reads_a_snapshot(
    postgres_url: str,
) -> None:
    db = Database(postgres_url)
    try:
        db.upgrade()
        log = AuditLog(db)
        with _statements(db) as statements:
            await log.append("alice", "model.promote", "m")
            await log.verify()
        assert any(s.startswith("SELECT audit_head.seq") and "FOR UPDATE" in s for s in statements)
        assert "SET LOCAL lock_timeout = 5000" in statements
        assert "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY" in statements
    finally:
        db.close()


async def test_the_audit_row_reads_through_the_orm(migrated: Database) -> None:
    # The mapped classes are what the registry will join against; they read what append wrote.
    await AuditLog(migrated).append("alice", "model.promote", "iris@3")
    with migrated.session(read_only=True) as session:
        row = session.scalars(select(AuditRow)).one()
    assert (row.seq, row.actor, row.details, row.prev_hash) == (1, "alice", "{}", GENESIS_HASH)
