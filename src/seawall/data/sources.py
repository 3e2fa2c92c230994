"""Where batches come from: CSV and Parquet files, SQL queries, and frames already in memory.

A `Source` reads one batch (blocking: run it in a thread) and says what it read, for the
record: its kind, path or URL (password hidden) and query, and for a file its sha256 and size.
Its errors say whether another attempt may help:

- `SourceUnavailableError` (transient: retried with backoff): the database refused the
  connection or timed out, was locked, or a file system timed out;
- `SourceError` (permanent: never retried): a missing, empty, oversized or corrupt file, a CSV
  file that is not UTF-8, a query the database rejects.

A file is measured before it is read: one over `max_bytes` is refused without reading it.
"""

from __future__ import annotations

import csv as _csv
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from seawall.data.errors import SourceError, SourceUnavailableError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "Batch",
    "CsvSource",
    "FrameSource",
    "ParquetSource",
    "Source",
    "SqlSource",
    "source_for",
]

#: Largest file (or query result, in memory) a source reads unless told otherwise: 512 MiB.
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
# Rows fetched from a database at a time, between two checks of the size limit.
_FETCH_ROWS = 10_000
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Batch:
    """The rows a source read, as it read them, and what it read them from."""

    frame: pd.DataFrame
    source: dict[str, Any] = field(default_factory=dict)


class Source(Protocol):
    """A place a batch is read from."""

    def describe(self) -> dict[str, Any]:
        """The source for the record (JSON): kind and location, never a password."""
        ...

    def read(self, *, max_bytes: int, null_values: Sequence[str]) -> Batch:
        """Read the whole batch (blocking). `null_values`: texts that mean missing (CSV)."""
        ...


def source_for(path: str | Path) -> Source:
    """The source for a file, by its suffix: `.csv`, or `.parquet` / `.pq`."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix == ".csv":
        return CsvSource(file)
    if suffix in (".parquet", ".pq"):
        return ParquetSource(file)
    raise SourceError(f"{file}: unknown file type {suffix or '(none)'!r} (.csv or .parquet)")


class _FileSource:
    kind = "file"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().absolute()

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def _bytes(self, max_bytes: int) -> tuple[bytes, dict[str, Any]]:
        """The whole file, measured first; `SourceError` if missing, empty or too large."""
        try:
            size = self.path.stat().st_size
            if size > max_bytes:
                raise SourceError(f"{self.path}: {size} bytes, over the limit of {max_bytes}")
            with self.path.open("rb") as stream:
                data = stream.read(max_bytes + 1)
        except (TimeoutError, ConnectionError) as exc:  # a network file system
            raise SourceUnavailableError(f"{self.path}: {exc}") from exc
        except FileNotFoundError:
            raise SourceError(f"{self.path}: no such file") from None
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot read: {exc.strerror or exc}") from exc
        if len(data) > max_bytes:  # it grew since it was measured
            raise SourceError(f"{self.path}: over the limit of {max_bytes} bytes")
        if not data:
            raise SourceError(f"{self.path}: empty file")
        digest = hashlib.sha256(data).hexdigest()
        return data, {**self.describe(), "sha256": digest, "bytes": len(data)}


class CsvSource(_FileSource):
    """A UTF-8 CSV file with a header line; every field is read as text, then by the contract."""

    kind = "csv"

    def read(self, *, max_bytes: int, null_values: Sequence[str]) -> Batch:
        data, described = self._bytes(max_bytes)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise SourceError(
                f"{self.path}: not UTF-8 text: byte 0x{data[exc.start]:02x} at offset "
                f"{exc.start} (line {line}); re-encode it as UTF-8"
            ) from None
        if not text.strip():
            raise SourceError(f"{self.path}: no header line (only blank space)")
        return Batch(self._parsed(data.removeprefix(_BOM), text, null_values), described)

    def _parsed(self, data: bytes, text: str, null_values: Sequence[str]) -> pd.DataFrame:
        """Every field as text (pyarrow's reader: several times faster than pandas')."""
        import pyarrow as pa
        import pyarrow.csv as csv

        header = next(_csv.reader(io.StringIO(text)), [])
        options = csv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()),
            null_values=list(null_values),
            strings_can_be_null=True,
        )
        try:
            table = csv.read_csv(
                io.BytesIO(data),
                parse_options=csv.ParseOptions(newlines_in_values=True),
                convert_options=options,
            )
        except (pa.ArrowInvalid, _csv.Error) as exc:
            reason = _csv_problem(text, len(header)) or str(exc).strip().splitlines()[0]
            raise SourceError(f"{self.path}: not valid CSV: {reason}") from None
        # Kept as Arrow strings: reading them as numbers later needs no copy to Python objects.
        return table.to_pandas(types_mapper={pa.string(): pd.ArrowDtype(pa.string())}.get)


def _csv_problem(text: str, fields: int) -> str | None:
    """Where a CSV file first goes wrong, by line (pyarrow's error does not say)."""
    reader = _csv.reader(io.StringIO(text), strict=True)
    try:
        for row in reader:
            if row and len(row) != fields:
                return f"line {reader.line_num}: {len(row)} field(s), the header has {fields}"
    except _csv.Error as exc:
        return f"line {reader.line_num}: {exc}"
    return None


class ParquetSource(_FileSource):
    """A Parquet file; its columns keep their types (integers stay exact, nulls stay null)."""

    kind = "parquet"

    def read(self, *, max_bytes: int, null_values: Sequence[str]) -> Batch:
        import pyarrow as pa
        import pyarrow.parquet as pq

        data, described = self._bytes(max_bytes)
        try:
            table = pq.read_table(io.BytesIO(data))
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(f"{self.path}: not a valid Parquet file: {exc}") from None
        exact = {
            **{t: pd.Int64Dtype() for t in (pa.int8(), pa.int16(), pa.int32(), pa.int64())},
            pa.bool_(): pd.BooleanDtype(),
            pa.string(): pd.StringDtype(),
            pa.large_string(): pd.StringDtype(),
        }
        return Batch(table.to_pandas(types_mapper=exact.get), described)


class SqlSource:
    """The rows of a query, through SQLAlchemy (any database it has a driver for)."""

    def __init__(self, url: str, query: str, *, connect_timeout_s: float = 10.0) -> None:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        if not query.strip():
            raise SourceError("query: empty")
        try:
            self.url = make_url(url)
        except ArgumentError as exc:
            raise SourceError(f"url: not a database URL: {exc}") from None
        self.query = query
        self.connect_timeout_s = connect_timeout_s

    def describe(self) -> dict[str, Any]:
        return {"kind": "sql", "url": self.url.render_as_string(), "query": self.query}

    def __repr__(self) -> str:
        return f"SqlSource({self.url.render_as_string()!r}, {self.query!r})"

    def read(self, *, max_bytes: int, null_values: Sequence[str]) -> Batch:
        from sqlalchemy import create_engine, text
        from sqlalchemy.exc import SQLAlchemyError

        backend = self.url.get_backend_name()
        timeout = max(1, round(self.connect_timeout_s))
        args = {"connect_timeout": timeout} if backend == "postgresql" else {}
        try:
            engine = create_engine(self.url, connect_args=args)
        except (SQLAlchemyError, ImportError) as exc:
            raise SourceError(f"url: {self.url.render_as_string()}: {exc}") from None
        try:
            with engine.connect() as connection:
                result = connection.execution_options(stream_results=True).execute(text(self.query))
                frame = _fetched(result, max_bytes)
        except SQLAlchemyError as exc:
            raise _translated(exc, self.describe()["url"]) from exc
        finally:
            engine.dispose()
        return Batch(frame, {**self.describe(), "rows": len(frame)})


def _fetched(result: Any, max_bytes: int) -> pd.DataFrame:
    columns = list(result.keys())
    chunks: list[pd.DataFrame] = []
    size = 0
    while rows := result.fetchmany(_FETCH_ROWS):
        chunk = pd.DataFrame.from_records([tuple(r) for r in rows], columns=columns)
        size += int(chunk.memory_usage(deep=True).sum())
        if size > max_bytes:
            raise SourceError(f"query: the result is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    if not chunks:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in columns})
    return pd.concat(chunks, ignore_index=True)


def _translated(exc: Exception, url: str) -> Exception:
    """Transient (connection, timeout, lock) or permanent (the query, the schema)?"""
    from sqlalchemy.exc import DBAPIError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    original = getattr(exc, "orig", None)
    message = str(original if original is not None else exc).strip().splitlines()
    reason = message[0] if message else type(exc).__name__
    transient = isinstance(exc, PoolTimeoutError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )
    if isinstance(exc, OperationalError):
        # SQLite says OperationalError for a bad query too; other databases for the connection.
        sqlite = url.startswith("sqlite")
        transient = ("locked" in reason or "busy" in reason) if sqlite else True
    if transient:
        return SourceUnavailableError(f"{url}: {reason}")
    return SourceError(f"query: {reason}")


class FrameSource:
    """Rows already in memory (a transform's output), described by `description`."""

    def __init__(self, frame: pd.DataFrame, description: str) -> None:
        self.frame = frame
        self.description = description

    def describe(self) -> dict[str, Any]:
        return {"kind": "frame", "description": self.description}

    def read(self, *, max_bytes: int, null_values: Sequence[str]) -> Batch:
        size = int(self.frame.memory_usage(deep=True).sum())
        if size > max_bytes:
            raise SourceError(f"frame: {size} bytes in memory, over the limit of {max_bytes}")
        return Batch(self.frame.copy(), {**self.describe(), "rows": len(self.frame)})
