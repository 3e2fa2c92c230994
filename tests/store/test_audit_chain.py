"""The hash chain without a database: the encoding, and every single-record tamper detected."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.store.audit_chain import (
    GENESIS_HASH,
    ChainVerifier,
    Problem,
    StoredRecord,
    VerifyResult,
    canonical_details,
    format_at,
    record_hash,
)

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
Content = tuple[str, str, str, dict[str, Any]]
Chain = tuple[list[StoredRecord], tuple[int, str]]


def _chain(contents: list[Content]) -> Chain:
    """Records as `AuditLog.append` would write them, and the head after the last."""
    records, prev = [], GENESIS_HASH
    for seq, (actor, action, target, details) in enumerate(contents, 1):
        at = T0 + timedelta(seconds=seq, microseconds=seq)
        text = canonical_details(details)
        digest = record_hash(seq, at, actor, action, target, text, prev)
        records.append(StoredRecord(seq, at, actor, action, target, text, prev, digest))
        prev = digest
    return records, (len(records), prev)


def _verify(records: list[StoredRecord], head: tuple[object, object] | None) -> VerifyResult:
    """What `AuditLog.verify` does with rows read `ORDER BY seq`."""
    verifier = ChainVerifier(head)
    for record in sorted(records, key=lambda r: int(str(r.seq))):
        if not verifier.add(record):
            break
    return verifier.finish()


def _spec_hash(record: StoredRecord) -> str:
    """The encoding as the docstring states it, written independently of the module."""
    assert isinstance(record.at, datetime)
    at = record.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    fields = ["seawall-audit-v1", str(record.seq), at]
    fields += [str(f) for f in (record.actor, record.action, record.target)]
    fields += [str(record.details), str(record.prev_hash)]
    data = b"".join(len(f.encode()).to_bytes(8, "big") + f.encode() for f in fields)
    return hashlib.sha256(data).hexdigest()


# Single-record tampering, each as an attacker with write access to the table would do it.
# Each returns the tampered rows and where verification must say the chain first breaks.
Tamper = Callable[[list[StoredRecord], int], tuple[list[StoredRecord], int, set[Problem]]]

_EDITS: dict[str, Callable[[StoredRecord], StoredRecord]] = {
    "seq": lambda r: r._replace(seq=int(str(r.seq)) + 1000),
    "at": lambda r: r._replace(at=r.at + timedelta(microseconds=1)),  # type: ignore[operator]
    "actor": lambda r: r._replace(actor=f"{r.actor}x"),
    "action": lambda r: r._replace(action=f"{r.action}x"),
    "target": lambda r: r._replace(target=f"{r.target}x"),
    "details": lambda r: r._replace(details='{"forged":true}'),
    "details_whitespace": lambda r: r._replace(details=f" {r.details}"),
    "prev_hash": lambda r: r._replace(prev_hash=_flip(str(r.prev_hash))),
    "hash": lambda r: r._replace(hash=_flip(str(r.hash))),
}
_EDIT_PROBLEMS: dict[str, set[Problem]] = {"seq": {"missing"}, "prev_hash": {"relinked"}}


def _flip(digest: str) -> str:
    return digest[:-1] + ("0" if digest[-1] != "0" else "1")


def _edit(field: str) -> Tamper:
    def tamper(records: list[StoredRecord], k: int) -> tuple[list[StoredRecord], int, set[Problem]]:
        edited = [_EDITS[field](r) if r.seq == k else r for r in records]
        return edited, k, _EDIT_PROBLEMS.get(field, {"edited"})

    return tamper


def _delete(records: list[StoredRecord], k: int) -> tuple[list[StoredRecord], int, set[Problem]]:
    return [r for r in records if r.seq != k], k, {"missing"}


def _insert(records: list[StoredRecord], k: int) -> tuple[list[StoredRecord], int, set[Problem]]:
    """A forged record at position k (1..n+1), its own hash and link correct, later ones moved up.

    The forgery is consistent with what precedes it, so the break shows at the record after it
    (whose link no longer holds), at the head's seq (whose hash it lacks), or past the head.
    """
    moved = [r._replace(seq=int(str(r.seq)) + 1) if int(str(r.seq)) >= k else r for r in records]
    prev = GENESIS_HASH if k == 1 else str(records[k - 2].hash)
    at = T0 + timedelta(days=1)
    forged = StoredRecord(k, at, "mallory", "key.create", "admin", "{}", prev, "")
    forged = forged._replace(hash=record_hash(k, at, "mallory", "key.create", "admin", "{}", prev))
    n = len(records)
    if k == n:  # the forgery now holds the head's seq, but not its hash
        return [*moved, forged], k, {"replaced"}
    if k > n:  # appended after the head
        return [*moved, forged], k, {"unexpected"}
    return [*moved, forged], k + 1, {"relinked"}


def _swap(records: list[StoredRecord], k: int) -> tuple[list[StoredRecord], int, set[Problem]]:
    """Records k and k+1 trade places (needs k < n)."""
    swapped = [r._replace(seq={k: k + 1, k + 1: k}.get(int(str(r.seq)), r.seq)) for r in records]
    return swapped, k, {"relinked"}


def _replace_last(
    records: list[StoredRecord], k: int
) -> tuple[list[StoredRecord], int, set[Problem]]:
    """The last record swapped for a forgery with a correct hash and link (k is ignored)."""
    last = records[-1]
    assert isinstance(last.seq, int)
    assert isinstance(last.at, datetime)
    prev = str(last.prev_hash)
    digest = record_hash(last.seq, last.at, "mallory", "alias.move", "x", "{}", prev)
    forged = StoredRecord(last.seq, last.at, "mallory", "alias.move", "x", "{}", prev, digest)
    return [*records[:-1], forged], last.seq, {"replaced"}


TAMPERS: dict[str, Tamper] = {
    **{f"edit {field}": _edit(field) for field in _EDITS},
    "delete": _delete,
    "insert": _insert,
    "swap": _swap,
    "replace last": _replace_last,
}


def _positions(kind: str, n: int) -> range:
    return {"insert": range(1, n + 2), "swap": range(1, n)}.get(kind, range(1, n + 1))


CONTENTS: list[Content] = [
    ("alice", "model.promote", "iris@3", {"stage": "production", "approvals": 2}),
    ("cli:bob", "alias.move", "iris@champion", {"from": 2, "to": 3}),
    ("system", "config.reload", "seawall.yaml", {}),
    ("ops-key", "key.create", "ci-deployer", {"roles": ["deployer"]}),
    ("alice", "data.read", "snapshot/42", {"rows": 1000, "ratio": 0.25}),
    ("system", "model.refuse", "iris@4", {"reason": "unsigned artifact", "ok": False}),
]


def test_an_untouched_chain_verifies() -> None:
    records, head = _chain(CONTENTS)
    assert _verify(records, head) == VerifyResult(True, 6, 6, head[1])
    assert [r.prev_hash for r in records[1:]] == [r.hash for r in records[:-1]]
    assert records[0].prev_hash == GENESIS_HASH


def test_an_empty_chain_verifies_against_the_genesis_head() -> None:
    assert _verify([], (0, GENESIS_HASH)) == VerifyResult(True, 0, 0, GENESIS_HASH)


@pytest.mark.parametrize("kind", list(TAMPERS))
def test_every_single_record_tamper_at_every_position_names_the_first_bad_record(
    kind: str,
) -> None:
    records, head = _chain(CONTENTS)
    for k in _positions(kind, len(records)):
        tampered, bad, problems = TAMPERS[kind](records, k)
        result = _verify(tampered, head)
        assert not result.ok, (kind, k)
        assert (result.first_bad_seq, result.problem in problems) == (bad, True), (kind, k, result)
        assert result.checked == bad - 1
        assert result.reason


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=12)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_content = st.tuples(
    _text.filter(bool),
    st.sampled_from(["model.promote", "alias.move", "key.revoke", "data.read"]),
    _text,
    st.dictionaries(_text, _json, max_size=4),
)


@settings(max_examples=200, deadline=None)
@given(
    contents=st.lists(_content, min_size=1, max_size=10),
    kind=st.sampled_from(list(TAMPERS)),
    data=st.data(),
)
def test_any_chain_with_any_single_tamper_breaks_where_it_was_tampered(
    contents: list[Content], kind: str, data: st.DataObject
) -> None:
    records, head = _chain(contents)
    assert _verify(records, head).ok
    assert all(_spec_hash(r) == r.hash for r in records)
    positions = _positions(kind, len(records))
    if not positions:
        return  # a chain of one record has no neighbours to swap
    k = data.draw(st.sampled_from(positions), label="position")
    tampered, bad, problems = TAMPERS[kind](records, k)
    if tampered == records:
        return  # e.g. a whitespace edit of details with nothing to put a space after
    result = _verify(tampered, head)
    assert (result.ok, result.first_bad_seq, result.problem in problems) == (False, bad, True)


def test_the_encoding_is_pinned() -> None:
    # A changed encoding would make every stored chain fail: this value must never change.
    at = datetime(2026, 11, 26, 12, 30, 15, 123456, tzinfo=UTC)
    digest = record_hash(7, at, "alice", "model.promote", "iris@3", '{"a":1}', GENESIS_HASH)
    record = StoredRecord(7, at, "alice", "model.promote", "iris@3", '{"a":1}', GENESIS_HASH, "")
    assert digest == _spec_hash(record)
    assert digest == "110891cede67024436c4e8ddabbf0e03fc836a807804b592b33f06880cefa5c3"


def test_field_boundaries_are_part_of_the_hash() -> None:
    at = T0
    assert record_hash(1, at, "ab", "c", "", "{}", GENESIS_HASH) != record_hash(
        1, at, "a", "bc", "", "{}", GENESIS_HASH
    )


def test_details_have_one_canonical_text() -> None:
    assert canonical_details({"b": [1, 2.5, None], "a": {"z": True, "é": "ü"}}) == (
        '{"a":{"z":true,"\\u00e9":"\\u00fc"},"b":[1,2.5,null]}'
    )
    assert canonical_details({}) == "{}"


@pytest.mark.parametrize(
    ("details", "message"),
    [
        ({"n": math.nan}, "details: not plain JSON"),
        ({"s": {1, 2}}, "details: not plain JSON"),
        ({1: "x"}, "details: keys must be strings, got 1"),
        ({"a": [{"b": {2: 0}}]}, r"details\.a\[0\]\.b: keys must be strings"),
    ],
)
def test_details_that_are_not_plain_json_are_refused(details: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        canonical_details(details)


def test_times_are_hashed_in_utc_with_microseconds() -> None:
    paris = timezone(timedelta(hours=1))
    assert format_at(datetime(2026, 11, 26, 13, 0, tzinfo=paris)) == "2026-11-26T12:00:00.000000Z"
    with pytest.raises(ValueError, match="naive"):
        format_at(datetime(2026, 11, 26))


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (None, "missing or damaged"),
        (("6", "x"), "missing or damaged"),
        ((-1, GENESIS_HASH), "missing or damaged"),
        ((0, "f" * 64), "empty log is damaged"),
    ],
)
def test_a_missing_or_damaged_head_fails_without_naming_a_record(
    head: tuple[object, object] | None, reason: str
) -> None:
    records, _ = _chain(CONTENTS[:1]) if head != (0, "f" * 64) else ([], None)
    result = _verify(records, head)
    assert (result.ok, result.first_bad_seq, result.problem) == (False, None, "no_head")
    assert reason in result.reason


def test_a_head_behind_the_records_names_the_first_record_past_it() -> None:
    records, _ = _chain(CONTENTS)
    result = _verify(records, (4, str(records[3].hash)))
    assert (result.first_bad_seq, result.problem, result.checked) == (5, "unexpected", 4)


@pytest.mark.parametrize(
    "damage",
    [
        {"at": datetime(2026, 11, 26)},  # naive: SQLite text that lost its meaning
        {"at": "yesterday"},
        {"actor": 42},
        {"details": b"{}"},
        {"prev_hash": None},
        {"actor": "\udc80"},  # cannot have come through append
    ],
)
def test_fields_of_the_wrong_type_are_reported_not_raised(damage: dict[str, object]) -> None:
    records, head = _chain(CONTENTS)
    records[2] = records[2]._replace(**damage)
    result = _verify(records, head)
    assert (result.ok, result.first_bad_seq) == (False, 3)


@pytest.mark.parametrize("seq", [True, "1", 0])
def test_a_damaged_seq_is_reported_at_the_position_it_holds(seq: object) -> None:
    records, head = _chain(CONTENTS[:2])
    verifier = ChainVerifier(head)
    assert not verifier.add(records[0]._replace(seq=seq))
    result = verifier.finish()
    assert (result.ok, result.first_bad_seq, result.problem) == (False, 1, "edited")
