"""`AuditLog`: who did what, when, kept append-only and hash-chained in the database.

Each record holds the hash of the one before it (`seawall.store.audit_chain` says how records
are encoded and hashed), so editing, deleting, inserting or reordering any record breaks the
chain at that record, and `verify` names it. The `audit_head` table holds the last record's seq
and hash: it is what appends lock, and it catches the removal of the last records too.

Appends from any number of threads and processes serialize on the head: SQLite's writer
transaction is `BEGIN IMMEDIATE` (the file's write lock), PostgreSQL locks the head row
(`SELECT ... FOR UPDATE`); the append reads the head, inserts the record, moves the head and
commits before it returns (`append_in` does the same inside the caller's transaction instead).
The primary key on `seq` is the last line of defence.

There is no update or delete API. Migration 0002 also installs triggers on both databases that
refuse UPDATE and DELETE on `audit_log` (and TRUNCATE on PostgreSQL) and let the head move only
to the record just appended. They stop mistakes, not an owner of the database, who can drop
them: that is what the hash chain is for. Nor does the chain stop someone who rewrites every
record and the head consistently; only a copy of a head hash kept elsewhere catches that.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Connection,
    SmallInteger,
    String,
    Text,
    bindparam,
    insert,
    select,
    type_coerce,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from seawall.clock import Clock, SystemClock
from seawall.store.audit_chain import (
    ChainVerifier,
    StoredRecord,
    VerifyResult,
    canonical_details,
    format_at,
    record_hash,
)
from seawall.store.engine import DEFAULT_BUSY_TIMEOUT_S, Database
from seawall.store.errors import StoreError
from seawall.store.schema import Base, UtcDateTime

__all__ = [
    "DEFAULT_LOCK_TIMEOUT_S",
    "DEFAULT_MAX_DETAILS_BYTES",
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "AuditHead",
    "AuditHeadRow",
    "AuditLog",
    "AuditRecord",
    "AuditRow",
]

#: Largest canonical `details` text, in bytes: an audit record is a note, not a payload.
DEFAULT_MAX_DETAILS_BYTES = 64 * 1024
#: Seconds an append waits for the chain head on PostgreSQL before failing (SQLite waits for
#: the database's `busy_timeout_s`, which defaults to the same).
DEFAULT_LOCK_TIMEOUT_S = DEFAULT_BUSY_TIMEOUT_S
#: Records `records()` returns when no limit is given, and the most it returns at once.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 10_000

# Dotted lower-case words: `model.promote`, `alias.move`, `key.create`, `data.read`.
_ACTION = re.compile(r"[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)+")
_MAX_CHARS = {"actor": 200, "action": 100, "target": 1000}
# Rows fetched at a time while verifying or exporting a long log.
_BATCH = 1000


class AuditRow(Base):
    """A row of `audit_log` (created by migration 0002). Never updated or deleted."""

    __tablename__ = "audit_log"
    __table_args__ = (CheckConstraint("seq >= 1", name="seq_positive"),)

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    target: Mapped[str] = mapped_column(Text)
    # Canonical JSON text, not a JSON column: the hash covers these exact bytes, and
    # PostgreSQL's jsonb would reorder keys and renormalize numbers.
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The one row of `audit_head`: the last record's seq and hash (0 and genesis when empty)."""

    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit record as appended (treat `details` as read-only)."""

    seq: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def to_json(self) -> str:
        """One JSONL line of `seawall audit export` (without the newline)."""
        return json.dumps(
            {
                "seq": self.seq,
                "at": format_at(self.at),
                "actor": self.actor,
                "action": self.action,
                "target": self.target,
                "details": self.details,
                "prev_hash": self.prev_hash,
                "hash": self.hash,
            },
            separators=(",", ":"),
        )


@dataclass(frozen=True, slots=True)
class AuditHead:
    """Where the chain ends: the last record's seq and hash."""

    seq: int
    hash: str


class AuditLog:
    """The audit log in `database`; every method is async and runs on the database's threads."""

    def __init__(
        self,
        database: Database,
        *,
        clock: Clock | None = None,
        max_details_bytes: int = DEFAULT_MAX_DETAILS_BYTES,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    ) -> None:
        if max_details_bytes < 2:
            raise ValueError(f"max_details_bytes: at least 2 ('{{}}'), got {max_details_bytes}")
        if not lock_timeout_s > 0:
            raise ValueError(f"lock_timeout_s: must be > 0, got {lock_timeout_s}")
        self._lock_timeout = f"SET LOCAL lock_timeout = {max(1, round(lock_timeout_s * 1000))}"
        self.database = database
        self._clock = clock or SystemClock()
        self._max_details_bytes = max_details_bytes

    async def append(
        self, actor: str, action: str, target: str = "", details: Mapping[str, Any] | None = None
    ) -> AuditRecord:
        """Record that `actor` did `action` to `target`; committed before this returns.

        `actor` is an API key's name, `cli:<user>` or `system`; `action` a dotted name such as
        `model.promote`; `details` a JSON object. Bad input is a ValueError and writes nothing.
        """
        text = self._validated(actor, action, target, {} if details is None else details)
        return await self.database.run(self._append, actor, action, target, text)

    async def records(
        self, *, after_seq: int = 0, limit: int = DEFAULT_PAGE_SIZE
    ) -> list[AuditRecord]:
        """Up to `limit` records with seq above `after_seq`, oldest first (one page)."""
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit: 1 to {MAX_PAGE_SIZE}, got {limit}")
        return await self.database.run(self._records, after_seq, limit)

    async def head(self) -> AuditHead:
        """Where the chain ends now (seq 0 and the genesis hash for an empty log)."""
        return await self.database.run(self._head)

    async def verify(self) -> VerifyResult:
        """Check every record's link and hash, and the head, in one snapshot of the log."""
        return await self.database.run(self._verify)

    async def export(self, file: TextIO) -> int:
        """Write every record to `file` as JSONL, oldest first, in one snapshot; the count.

        The writes happen on the database's thread. A record whose details are not a JSON
        object (the log was edited) stops the export with `StoreError`.
        """
        return await self.database.run(self._export, file)

    def _validated(self, actor: str, action: str, target: str, details: Mapping[str, Any]) -> str:
        for name, value in (("actor", actor), ("action", action), ("target", target)):
            if not isinstance(value, str):
                raise ValueError(f"{name}: a string, got {type(value).__name__}")
            if len(value) > _MAX_CHARS[name]:
                raise ValueError(f"{name}: at most {_MAX_CHARS[name]} characters, got {len(value)}")
            # Also refuses NUL (PostgreSQL cannot store it) and lone surrogates (not UTF-8).
            if not value.isprintable():
                raise ValueError(f"{name}: printable characters only, got {value!r}")
        if not actor:
            raise ValueError("actor: who acted (an API key's name, cli:<user>, system); got ''")
        if not _ACTION.fullmatch(action):
            raise ValueError(f"action: dotted lower-case words (model.promote), got {action!r}")
        if not isinstance(details, Mapping):
            raise ValueError(f"details: a JSON object, got {type(details).__name__}")
        text = canonical_details(details)
        if len(text) > self._max_details_bytes:
            raise ValueError(
                f"details: at most {self._max_details_bytes} bytes as JSON, got {len(text)}"
            )
        return text

    def append_in(
        self,
        connection: Connection,
        actor: str,
        action: str,
        target: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        """`append` inside the caller's write transaction: it commits or rolls back with it.

        Blocking: call it in work passed to `database.run`, on a connection from
        `database.begin()` (not `read_only`). The head stays locked until that transaction
        ends, so keep it short. For "promote, and record that" as one commit.
        """
        text = self._validated(actor, action, target, {} if details is None else details)
        return self._write(connection, actor, action, target, text)

    def _append(self, actor: str, action: str, target: str, details: str) -> AuditRecord:
        with self.database.begin() as connection:
            return self._write(connection, actor, action, target, details)

    def _write(
        self, connection: Connection, actor: str, action: str, target: str, details: str
    ) -> AuditRecord:
        # SQLite: already the writer (BEGIN IMMEDIATE, waiting up to its busy timeout).
        # PostgreSQL: the row lock queues the other writers here, for a bounded time, and
        # READ COMMITTED lets them read the head this one leaves.
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(self._lock_timeout)
        head = connection.execute(_LOCK_HEAD).one_or_none()
        if head is None:
            raise StoreError(f"database {self.database.url}: the audit_head row is missing")
        # Stamped under the lock, so timestamps follow seq order on one clock.
        at = datetime.fromtimestamp(self._clock.time(), UTC)
        seq, prev_hash = head.seq + 1, head.hash
        digest = record_hash(seq, at, actor, action, target, details, prev_hash)
        row = {
            "seq": seq,
            "at": at,
            "actor": actor,
            "action": action,
            "target": target,
            "details": details,
            "prev_hash": prev_hash,
            "hash": digest,
        }
        try:
            connection.execute(_INSERT, row)
        except IntegrityError as exc:
            raise StoreError(
                f"database {self.database.url}: audit record {seq} exists but the head is at "
                f"{seq - 1}: the log was edited (run `seawall audit verify`)"
            ) from exc
        connection.execute(_MOVE_HEAD, {"new_seq": seq, "new_hash": digest})
        return AuditRecord(seq, at, actor, action, target, json.loads(details), prev_hash, digest)

    def _records(self, after_seq: int, limit: int) -> list[AuditRecord]:
        query = _ROWS.where(AuditRow.seq > after_seq).order_by(AuditRow.seq).limit(limit)
        with self.database.begin(read_only=True) as connection:
            return [_record(row) for row in connection.execute(query)]

    def _head(self) -> AuditHead:
        with self.database.begin(read_only=True) as connection:
            head = connection.execute(_HEAD).one_or_none()
        if head is None:
            raise StoreError(f"database {self.database.url}: the audit_head row is missing")
        return AuditHead(head.seq, head.hash)

    def _verify(self) -> VerifyResult:
        sqlite = self.database.dialect == "sqlite"
        # Raw columns: a tampered SQLite row may hold anything, and must be reported, not crash.
        at = type_coerce(AuditRow.at, Text).label("at") if sqlite else AuditRow.at
        query = select(
            AuditRow.seq,
            at,
            AuditRow.actor,
            AuditRow.action,
            AuditRow.target,
            AuditRow.details,
            AuditRow.prev_hash,
            AuditRow.hash,
        ).order_by(AuditRow.seq)
        with self.database.begin(read_only=True) as connection:
            _snapshot(connection)
            head = connection.execute(_HEAD).one_or_none()
            verifier = ChainVerifier(None if head is None else (head.seq, head.hash))
            streamed = connection.execution_options(stream_results=True, yield_per=_BATCH)
            # Closed on leaving, or PostgreSQL's server-side cursor would outlive an early stop.
            with streamed.execute(query) as rows:
                for row in rows:
                    record = StoredRecord(*row)
                    if sqlite:
                        record = record._replace(at=_sqlite_at(record.at))
                    if not verifier.add(record):
                        break
        return verifier.finish()

    def _export(self, file: TextIO) -> int:
        count = 0
        with self.database.begin(read_only=True) as connection:
            _snapshot(connection)
            streamed = connection.execution_options(stream_results=True, yield_per=_BATCH)
            with streamed.execute(_ROWS.order_by(AuditRow.seq)) as rows:
                for row in rows:
                    file.write(_record(row).to_json() + "\n")
                    count += 1
        return count


# Built once: constructing statements is a fair share of an append's time.
_HEAD = select(AuditHeadRow.seq, AuditHeadRow.hash).where(AuditHeadRow.id == 1)
_LOCK_HEAD = _HEAD.with_for_update()
_INSERT = insert(AuditRow)
_MOVE_HEAD = (
    update(AuditHeadRow)
    .where(AuditHeadRow.id == 1)
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)
_ROWS = select(
    AuditRow.seq,
    AuditRow.at,
    AuditRow.actor,
    AuditRow.action,
    AuditRow.target,
    AuditRow.details,
    AuditRow.prev_hash,
    AuditRow.hash,
)


def _record(row: Any) -> AuditRecord:
    try:
        details = json.loads(row.details)
    except (TypeError, ValueError):
        details = None
    if not isinstance(details, dict):
        raise StoreError(
            f"audit record {row.seq}: details are not a JSON object: the log was edited "
            "(run `seawall audit verify`)"
        )
    return AuditRecord(
        row.seq, row.at, row.actor, row.action, row.target, details, row.prev_hash, row.hash
    )


def _snapshot(connection: Connection) -> None:
    """Make the transaction read one snapshot of the log, however long it runs."""
    # SQLite's read transaction is a snapshot already (WAL); PostgreSQL's READ COMMITTED
    # would let the head and the records come from different moments.
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")


def _sqlite_at(value: object) -> object:
    """SQLite's stored text of `at` as an aware datetime; anything unreadable as it is."""
    if not isinstance(value, str):
        return value
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return value
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at
