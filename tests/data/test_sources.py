"""Sources: CSV, Parquet, SQL and frames; each bad file a clear, permanent error; transient
database failures told apart from permanent ones."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seawall.data.errors import SourceError, SourceUnavailableError
from seawall.data.sources import (
    CsvSource,
    FrameSource,
    ParquetSource,
    SqlSource,
    source_for,
)

LIMIT = 1 << 20
NULLS = [""]


def test_a_csv_file_is_read_as_text_with_its_digest(iris_csv: Path) -> None:
    batch = CsvSource(iris_csv).read(max_bytes=LIMIT, null_values=NULLS)

    assert batch.frame.shape == (150, 6)
    assert batch.frame["sepal_length"].iloc[0] == "5.1"
    assert batch.source["kind"] == "csv"
    assert batch.source["path"] == str(iris_csv)
    assert batch.source["bytes"] == iris_csv.stat().st_size
    assert len(batch.source["sha256"]) == 64


def test_csv_nulls_are_the_contracts_and_a_bom_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "n.csv"
    path.write_bytes("\ufeffa,b\n1,\nNA,x\n".encode())

    plain = CsvSource(path).read(max_bytes=LIMIT, null_values=[""]).frame
    with_na = CsvSource(path).read(max_bytes=LIMIT, null_values=["", "NA"]).frame

    assert list(plain.columns) == ["a", "b"]
    assert plain["a"].tolist() == ["1", "NA"]  # NA is a value (Namibia) unless listed
    assert plain["b"].isna().tolist() == [True, False]
    assert with_na["a"].isna().tolist() == [False, True]


def test_csv_quoting_and_repeated_headers_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_bytes(b'a,a,b\n1,"two\nlines, and a comma",""\n')

    frame = CsvSource(path).read(max_bytes=LIMIT, null_values=NULLS).frame

    assert list(frame.columns) == ["a", "a", "b"]  # not renamed: the contract sees both
    assert frame.iloc[0, 1] == "two\nlines, and a comma"
    assert pd.isna(frame.iloc[0, 2])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"  \n\n", r"no header line \(only blank space\)"),
        (b"a,b\n1,2\n\xff\xfe,3\n", r"not UTF-8 text: byte 0xff at offset 8 \(line 3\)"),
        (
            b"a,b\n1,2\n3,4,5,6\n",
            "not valid CSV: line 3: 4 field\\(s\\), the header has 2",
        ),
        (b'a,b\n"1,2\n', "not valid CSV: line 2: unexpected end of data"),
        (b"a,b\n1\n2,3\n", "not valid CSV: line 2: 1 field\\(s\\), the header has 2"),
    ],
)
def test_a_bad_csv_file_is_a_permanent_error_naming_it(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)

    with pytest.raises(SourceError, match=rf"source: {path}: {message}"):
        CsvSource(path).read(max_bytes=LIMIT, null_values=NULLS)


def test_a_file_over_the_limit_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(b"a\n" + b"1\n" * 600)
    opened: list[Path] = []
    original = Path.open
    monkeypatch.setattr(
        Path, "open", lambda self, *a, **k: opened.append(self) or original(self, *a, **k)
    )

    with pytest.raises(SourceError, match=rf"{path}: 1202 bytes, over the limit of 1000"):
        CsvSource(path).read(max_bytes=1000, null_values=NULLS)
    assert opened == []
    assert len(CsvSource(path).read(max_bytes=1202, null_values=NULLS).frame) == 600


def test_a_missing_file_is_a_permanent_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        CsvSource(tmp_path / "none.csv").read(max_bytes=LIMIT, null_values=NULLS)
    with pytest.raises(SourceError, match="cannot read"):
        CsvSource(tmp_path).read(max_bytes=LIMIT, null_values=NULLS)


def test_a_parquet_file_keeps_its_types_exactly(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    table = pa.table(
        {
            "n": pa.array([2**62 + 1, None], type=pa.int64()),
            "x": pa.array([0.5, None]),
            "s": pa.array(["a", None]),
            "ok": pa.array([True, None]),
        }
    )
    pq.write_table(table, path)

    batch = ParquetSource(path).read(max_bytes=LIMIT, null_values=NULLS)

    assert batch.frame["n"].tolist()[0] == 2**62 + 1  # not through float64
    assert batch.frame["n"].dtype == "Int64"
    assert batch.frame["s"].dtype == "string"
    assert batch.frame["ok"].dtype == "boolean"
    assert np.isnan(batch.frame["x"].iloc[1])
    assert batch.source["kind"] == "parquet"


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: b"not parquet at all" + data[18:],
        lambda data: data[:-8] + b"\x00" * 8,  # footer length and magic gone
    ],
)
def test_a_corrupt_parquet_file_is_a_permanent_error(tmp_path: Path, damage: object) -> None:
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"a": list(range(100))}), good)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(damage(good.read_bytes()))  # type: ignore[operator]

    with pytest.raises(SourceError, match=rf"{bad}: not a valid Parquet file"):
        ParquetSource(bad).read(max_bytes=LIMIT, null_values=NULLS)


def test_files_are_chosen_by_suffix(tmp_path: Path) -> None:
    assert isinstance(source_for(tmp_path / "a.CSV"), CsvSource)
    assert isinstance(source_for(tmp_path / "a.parquet"), ParquetSource)
    assert isinstance(source_for(tmp_path / "a.pq"), ParquetSource)
    with pytest.raises(SourceError, match=r"unknown file type '\.xlsx' \(\.csv or \.parquet\)"):
        source_for(tmp_path / "a.xlsx")


def _sqlite(path: Path, iris: pd.DataFrame) -> str:
    with sqlite3.connect(path) as connection:
        iris.to_sql("iris", connection, index=False)
    return f"sqlite:///{path}"


def test_a_query_is_read_in_chunks(tmp_path: Path, iris: pd.DataFrame) -> None:
    url = _sqlite(tmp_path / "src.db", iris)

    batch = SqlSource(url, "SELECT * FROM iris WHERE species = 'setosa'").read(
        max_bytes=LIMIT, null_values=NULLS
    )

    assert batch.frame.shape == (50, 6)
    assert batch.frame["plant_id"].tolist() == list(range(1, 51))
    assert batch.source == {
        "kind": "sql",
        "url": url,
        "query": "SELECT * FROM iris WHERE species = 'setosa'",
        "rows": 50,
    }


def test_a_query_result_over_the_limit_is_refused(tmp_path: Path, iris: pd.DataFrame) -> None:
    url = _sqlite(tmp_path / "src.db", iris)

    with pytest.raises(SourceError, match="query: the result is over the limit of 1000 bytes"):
        SqlSource(url, "SELECT * FROM iris").read(max_bytes=1000, null_values=NULLS)


def test_an_empty_result_has_its_columns(tmp_path: Path, iris: pd.DataFrame) -> None:
    url = _sqlite(tmp_path / "src.db", iris)

    frame = (
        SqlSource(url, "SELECT * FROM iris WHERE 0").read(max_bytes=LIMIT, null_values=NULLS).frame
    )

    assert len(frame) == 0
    assert list(frame.columns) == list(iris.columns)


def test_a_bad_query_is_permanent(tmp_path: Path, iris: pd.DataFrame, postgres_url: str) -> None:
    url = _sqlite(tmp_path / "src.db", iris)

    with pytest.raises(SourceError, match="query: no such table: missing_table"):
        SqlSource(url, "SELECT * FROM missing_table").read(max_bytes=LIMIT, null_values=NULLS)
    with pytest.raises(SourceError, match='query: relation "missing_table" does not exist'):
        SqlSource(postgres_url, "SELECT * FROM missing_table").read(
            max_bytes=LIMIT, null_values=NULLS
        )


def test_a_postgres_query_is_read(postgres_url: str, iris: pd.DataFrame) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(postgres_url)
    iris.to_sql("iris", engine, index=False)
    engine.dispose()

    frame = (
        SqlSource(postgres_url, "SELECT * FROM iris ORDER BY plant_id")
        .read(max_bytes=LIMIT, null_values=NULLS)
        .frame
    )

    assert frame.shape == (150, 6)
    assert frame["species"].iloc[-1] == "virginica"


def test_a_refused_connection_is_transient_and_hides_the_password() -> None:
    with socket.socket() as sock:  # a port nothing listens on once it is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source = SqlSource(f"postgresql://me:s3cret@127.0.0.1:{port}/db", "SELECT 1")

    with pytest.raises(SourceUnavailableError) as caught:
        source.read(max_bytes=LIMIT, null_values=NULLS)

    assert f"postgresql://me:***@127.0.0.1:{port}/db" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert "s3cret" not in str(source.describe())


def test_a_locked_sqlite_database_is_transient(tmp_path: Path, iris: pd.DataFrame) -> None:
    url = _sqlite(tmp_path / "src.db", iris)
    holder = sqlite3.connect(tmp_path / "src.db")
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(SourceUnavailableError, match="database is locked"):
            SqlSource(url + "?timeout=0.05", "SELECT * FROM iris").read(
                max_bytes=LIMIT, null_values=NULLS
            )
    finally:
        holder.rollback()
        holder.close()


@pytest.mark.parametrize(
    ("url", "query", "message"),
    [
        ("not a url", "SELECT 1", "url: not a database URL"),
        ("sqlite://", "  ", "query: empty"),
    ],
)
def test_a_bad_url_or_query_is_refused_at_once(url: str, query: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        SqlSource(url, query)


def test_a_frame_source_copies_its_frame(iris: pd.DataFrame) -> None:
    source = FrameSource(iris, "iris without duplicates")

    batch = source.read(max_bytes=LIMIT, null_values=NULLS)
    batch.frame.loc[0, "species"] = "changed"

    assert iris.loc[0, "species"] == "setosa"
    assert batch.source == {"kind": "frame", "description": "iris without duplicates", "rows": 150}
    with pytest.raises(SourceError, match=r"frame: \d+ bytes in memory, over the limit of 10"):
        source.read(max_bytes=10, null_values=NULLS)
