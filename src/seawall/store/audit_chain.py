"""The audit log's hash chain: how a record is encoded and hashed, and how a chain is checked.

Pure functions over values, no database: `seawall.store.audit` stores what these compute and
feeds what it reads back to a `ChainVerifier`.

Encoding `seawall-audit-v1`. A record's hash is the hex SHA-256 of nine fields, each written as
its UTF-8 bytes preceded by their length (8 bytes, big-endian), so no two different records
encode alike whatever their text holds:

    "seawall-audit-v1", seq (decimal), at, actor, action, target, details, prev_hash

- `at`: ISO 8601 in UTC with microseconds and a `Z` (`2026-11-26T12:30:15.123456Z`).
- `details`: the stored canonical JSON text, byte for byte (`canonical_details`): keys sorted,
  no whitespace, ASCII only, no NaN or infinity. A whitespace-only edit is caught too.
- `prev_hash`: the previous record's hash; `GENESIS_HASH` (64 zeros) for record 1.

A later encoding gets a new tag; the tag is hashed, so a record cannot be passed off as another
version's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

__all__ = [
    "ENCODING",
    "GENESIS_HASH",
    "ChainVerifier",
    "Problem",
    "StoredRecord",
    "VerifyResult",
    "canonical_details",
    "format_at",
    "record_hash",
]

#: The tag of the hash encoding described in the module docstring.
ENCODING = "seawall-audit-v1"
#: The prev_hash of the first record.
GENESIS_HASH = "0" * 64

#: What is wrong with the first bad record (see `ChainVerifier`).
Problem = Literal["edited", "missing", "relinked", "unexpected", "replaced", "no_head"]


def canonical_details(details: Mapping[str, Any]) -> str:
    """The one JSON text of `details`: sorted keys, no whitespace, ASCII; ValueError if not JSON.

    Keys must be strings at every level: `json` would silently turn `1` into `"1"`, and the
    record read back would differ from the one written.
    """
    _check_keys(details, "details")
    try:
        return json.dumps(details, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"details: not plain JSON ({exc})") from None


def _check_keys(value: object, path: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path}: keys must be strings, got {key!r}")
            _check_keys(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_keys(item, f"{path}[{index}]")


def format_at(at: datetime) -> str:
    """`at` as hashed: ISO 8601, UTC, microseconds, `Z`."""
    if at.tzinfo is None:
        raise ValueError(f"at: a naive datetime has no time zone ({at})")
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def record_hash(
    seq: int, at: datetime, actor: str, action: str, target: str, details: str, prev_hash: str
) -> str:
    """The hex SHA-256 of a record in the `seawall-audit-v1` encoding."""
    digest = hashlib.sha256()
    for field in (ENCODING, str(seq), format_at(at), actor, action, target, details, prev_hash):
        data = field.encode("utf-8")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


class StoredRecord(NamedTuple):
    """A record as read from storage, unchecked: any field may hold anything after tampering."""

    seq: object
    at: object
    actor: object
    action: object
    target: object
    details: object
    prev_hash: object
    hash: object


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of checking a chain.

    `checked` counts the records found intact: all of them when `ok`, else those before the
    first bad one. `head_seq` and `head_hash` are where the log says its chain ends; an operator
    who keeps a copy of them elsewhere can later prove that nothing was rewritten up to there.
    """

    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: Problem | None = None
    reason: str = ""


class ChainVerifier:
    """Checks records fed in `seq` order against each other and against the chain's head.

    For each record, in this order: its `seq` is the next one (else one is `missing`: deleted,
    or renumbered); it is not past the head (else `unexpected`: written around `append`); its
    `prev_hash` is the previous record's hash (else `relinked`: a record was inserted, removed
    or moved before it); its hash matches its contents (else `edited`); the head's record has
    the head's hash (else `replaced`). Feed records until `add` returns False, then `finish`.
    """

    def __init__(self, head: tuple[object, object] | None) -> None:
        self._head_seq, self._head_hash = _head(head)
        self._expected = 1
        self._prev = GENESIS_HASH
        self._failure: tuple[int | None, Problem, str] | None = None
        if self._head_seq < 0:
            self._failure = (None, "no_head", "the audit_head row is missing or damaged")
        elif self._head_seq == 0 and self._head_hash != GENESIS_HASH:
            self._failure = (None, "no_head", "the audit_head row of an empty log is damaged")

    def add(self, record: StoredRecord) -> bool:
        """Check the next record; False once a problem is found (later records do not matter)."""
        if self._failure is None:
            self._failure = self._check(record)
            if self._failure is None:
                self._expected += 1
                self._prev = str(record.hash)
        return self._failure is None

    def finish(self) -> VerifyResult:
        """The verdict, once every record (or every record up to the first bad one) was added."""
        if self._failure is None and self._expected <= self._head_seq:
            self._failure = (
                self._expected,
                "missing",
                f"missing (the head is at {self._head_seq}): deleted",
            )
        checked = self._expected - 1
        head_seq = max(self._head_seq, 0)
        if self._failure is None:
            return VerifyResult(True, checked, head_seq, self._head_hash)
        seq, problem, reason = self._failure
        return VerifyResult(False, checked, head_seq, self._head_hash, seq, problem, reason)

    def _check(self, record: StoredRecord) -> tuple[int | None, Problem, str] | None:
        expected = self._expected
        seq = record.seq
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < expected:
            return expected, "edited", f"its seq is damaged ({seq!r}): edited"
        if seq > expected:
            reason = f"missing (the next record is {seq}): deleted or renumbered"
            return expected, "missing", reason
        if seq > self._head_seq:
            reason = f"past the head ({self._head_seq}): inserted, or written around append"
            return seq, "unexpected", reason
        if record.prev_hash != self._prev:
            before = "the genesis value" if seq == 1 else f"record {seq - 1}'s hash"
            reason = f"its prev_hash is not {before}: a record was inserted, removed or moved"
            return seq, "relinked", reason
        if _content_hash(seq, record) != record.hash:
            return seq, "edited", "its hash does not match its contents: edited"
        if seq == self._head_seq and record.hash != self._head_hash:
            return seq, "replaced", "its hash is not the head's: replaced"
        return None


def _content_hash(seq: int, record: StoredRecord) -> str | None:
    """The hash `record`'s contents should have; None if a field has the wrong type."""
    at, actor, action, target = record.at, record.actor, record.action, record.target
    details, prev_hash = record.details, record.prev_hash
    if not (isinstance(at, datetime) and at.tzinfo is not None):
        return None
    if not (
        isinstance(actor, str)
        and isinstance(action, str)
        and isinstance(target, str)
        and isinstance(details, str)
        and isinstance(prev_hash, str)
    ):
        return None
    try:
        return record_hash(seq, at, actor, action, target, details, prev_hash)
    except UnicodeEncodeError:  # a lone surrogate cannot have been written through `append`
        return None


def _head(head: tuple[object, object] | None) -> tuple[int, str]:
    if head is None:
        return -1, ""
    seq, digest = head
    if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(digest, str):
        return -1, ""
    return seq, digest
