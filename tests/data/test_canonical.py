"""Snapshot ids: a hash of the content and lineage, the same in any process; Parquet round trips."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seawall.data.canonical import FORMAT, content_id, from_parquet, to_parquet

COLUMNS = {"n": "int", "x": "float", "ok": "bool", "s": "string", "at": "datetime"}
LINEAGE = {"dataset": "d", "contract": ["c", "1"], "parents": [], "transform": "ingest"}


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "n": pd.array([1, None, 2**62], dtype="Int64"),
            "x": np.array([0.5, np.nan, -3.25]),
            "ok": pd.array([True, None, False], dtype="boolean"),
            "s": pd.array(["a", None, "ünïcode"], dtype="string"),
            "at": pd.to_datetime(
                ["2026-11-26T10:00:00Z", None, "1970-01-01T00:00:00.000000001Z"],
                format="ISO8601",
                utc=True,
            ),
        }
    )


def _by_the_spec() -> str:
    """`_frame()`'s id, encoded by hand as the module docstring of `canonical` specifies."""
    header = {
        "format": "seawall-snapshot-v1",
        "columns": [[name, dtype] for name, dtype in COLUMNS.items()],
        "rows": 3,
        **LINEAGE,
    }
    text = "ünïcode".encode()
    at = int(pd.Timestamp("2026-11-26T10:00:00Z").value)
    validity = bytes([0b101])  # rows 0 and 2 present, little bit order
    sha = hashlib.sha256(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    sha.update(b"\n")
    sha.update(validity + struct.pack("<3q", 1, 0, 2**62))
    sha.update(validity + struct.pack("<3d", 0.5, 0.0, -3.25))
    sha.update(validity + bytes([1, 0, 0]))
    sha.update(validity + struct.pack("<4q", 0, 1, 1, 1 + len(text)) + b"a" + text)
    sha.update(validity + struct.pack("<3q", at, 0, 1))
    return sha.hexdigest()


KNOWN_ID = _by_the_spec()


def test_the_id_is_the_same_in_another_process(tmp_path: Path) -> None:
    file = tmp_path / "frame.parquet"
    file.write_bytes(to_parquet(_frame(), COLUMNS, {}))
    script = (
        "import sys; from seawall.data.canonical import content_id, from_parquet\n"
        f"frame, _ = from_parquet(open({str(file)!r}, 'rb').read())\n"
        f"print(content_id(frame, {COLUMNS!r}, {LINEAGE!r}))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
    )

    assert other.stdout.strip() == content_id(_frame(), COLUMNS, LINEAGE) == KNOWN_ID


def test_the_id_follows_the_documented_encoding() -> None:
    # A change here is a new encoding: give it a new FORMAT name, or old ids stop matching.
    assert FORMAT == "seawall-snapshot-v1"
    assert content_id(_frame(), COLUMNS, LINEAGE) == KNOWN_ID


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.assign(n=pd.array([1, None, 3], dtype="Int64")),
        lambda f: f.assign(x=np.array([0.5, 0.0, -3.25])),  # a value where one was missing
        lambda f: f.assign(s=pd.array(["a", "", "ünïcode"], dtype="string")),  # "" is no null
        lambda f: f.assign(s=pd.array(["ab", None, "ünïcode"], dtype="string")),
        lambda f: f.assign(s=pd.array(["a", None, "ünïcodf"], dtype="string")),
        lambda f: f.iloc[[2, 1, 0]].reset_index(drop=True),  # order is content
        lambda f: f.iloc[:2],
        lambda f: f.assign(ok=pd.array([True, None, True], dtype="boolean")),
        lambda f: f.assign(at=f["at"] + pd.Timedelta(1, "ns")),
    ],
)
def test_any_change_of_content_changes_the_id(change: object) -> None:
    changed = change(_frame())  # type: ignore[operator]

    assert content_id(changed, COLUMNS, LINEAGE) != KNOWN_ID


def test_strings_that_only_concatenate_alike_differ() -> None:
    one = pd.DataFrame({"s": pd.array(["ab", "c"], dtype="string")})
    two = pd.DataFrame({"s": pd.array(["a", "bc"], dtype="string")})

    assert content_id(one, {"s": "string"}, LINEAGE) != content_id(two, {"s": "string"}, LINEAGE)


@pytest.mark.parametrize(
    "lineage",
    [
        {**LINEAGE, "dataset": "e"},
        {**LINEAGE, "contract": ["c", "2"]},
        {**LINEAGE, "parents": ["a" * 64]},
        {**LINEAGE, "transform": "dedupe"},
    ],
)
def test_the_lineage_is_part_of_the_id(lineage: dict[str, object]) -> None:
    assert content_id(_frame(), COLUMNS, lineage) != KNOWN_ID


def test_negative_zero_is_zero_and_missing_values_hash_alike() -> None:
    zeros = pd.DataFrame({"x": [0.0, np.nan]})
    negative = pd.DataFrame({"x": [-0.0, np.nan]})

    assert content_id(zeros, {"x": "float"}, LINEAGE) == content_id(
        negative, {"x": "float"}, LINEAGE
    )


def test_the_dtype_is_part_of_the_id() -> None:
    ints = pd.DataFrame({"v": pd.array([1, 2], dtype="Int64")})
    floats = pd.DataFrame({"v": [1.0, 2.0]})

    assert content_id(ints, {"v": "int"}, LINEAGE) != content_id(floats, {"v": "float"}, LINEAGE)


def test_parquet_round_trips_the_frame_its_types_and_metadata() -> None:
    data = to_parquet(_frame(), COLUMNS, {"id": KNOWN_ID, **LINEAGE})

    frame, metadata = from_parquet(data)

    pd.testing.assert_frame_equal(frame, _frame())
    assert metadata == {"id": KNOWN_ID, **LINEAGE}
    assert content_id(frame, COLUMNS, LINEAGE) == KNOWN_ID
    assert data[:4] == data[-4:] == b"PAR1"
    assert b"pandas" not in data  # no library version in the file, only pyarrow's own
    json.dumps(metadata)


def test_the_same_frame_gives_the_same_bytes() -> None:
    assert to_parquet(_frame(), COLUMNS, {"a": 1}) == to_parquet(_frame(), COLUMNS, {"a": 1})


def test_an_empty_frame_has_an_id_and_a_file() -> None:
    empty = _frame().iloc[:0]

    frame, _ = from_parquet(to_parquet(empty, COLUMNS, {}))

    assert len(frame) == 0
    assert content_id(empty, COLUMNS, LINEAGE) != KNOWN_ID
    assert list(frame.columns) == list(COLUMNS)


def test_an_unknown_dtype_is_refused() -> None:
    with pytest.raises(ValueError, match="'complex' is not a contract dtype"):
        content_id(pd.DataFrame({"v": [1j]}), {"v": "complex"}, LINEAGE)
