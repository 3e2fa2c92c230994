"""A snapshot's id (a hash of its content, not of its file) and its Parquet form.

The id is the sha256 of the *seawall-snapshot-v1* encoding, which depends only on the rows,
their types and the snapshot's lineage, never on a library's file format:

1. one line of canonical JSON (keys sorted, no spaces): `format`, `dataset`, `contract`
   (`[name, version]`), `columns` (`[[name, dtype], ...]` in order), `rows`, `parents` (ids),
   `transform`; then `\\n`;
2. for each column in order: its validity bitmap (`numpy.packbits`, little bit order, 1 =
   present), then its values, all little-endian: int as int64, float as float64 (-0.0 written
   as 0.0), bool as one byte, datetime as int64 nanoseconds since the epoch (UTC), a missing
   value as zeros; string as `rows + 1` int64 UTF-8 byte offsets, then the UTF-8 bytes.

So the same rows ingested again, by another process, another machine or another pyarrow, get
the same id. The Parquet file (zstd, no pandas metadata, the id in its schema metadata) is
stored as a blob under its own sha256; reading a snapshot checks both digests.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from seawall.data.coercion import PANDAS_DTYPES

__all__ = ["FORMAT", "content_id", "from_parquet", "to_parquet"]

#: The encoding's name, first in the hashed header: a new encoding gets a new name.
FORMAT = "seawall-snapshot-v1"
#: Schema metadata key of the Parquet files: JSON of the snapshot's header and id.
METADATA_KEY = b"seawall"

_ARROW_TYPES = {
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.large_string(),
    "datetime": pa.timestamp("ns", tz="UTC"),
}
_PANDAS_TYPES = {
    pa.int64(): pd.Int64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
    pa.string(): pd.StringDtype(),
    pa.large_string(): pd.StringDtype(),
}


def content_id(frame: pd.DataFrame, columns: Mapping[str, str], lineage: Mapping[str, Any]) -> str:
    """The snapshot id of `frame` (typed as `columns`: name → dtype) with `lineage`.

    `lineage`: `dataset`, `contract` ([name, version]), `parents` and `transform`.
    """
    header = {
        "format": FORMAT,
        "columns": [[name, dtype] for name, dtype in columns.items()],
        "rows": len(frame),
        **{key: lineage[key] for key in ("dataset", "contract", "parents", "transform")},
    }
    sha = hashlib.sha256(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    sha.update(b"\n")
    for name, dtype in columns.items():
        for chunk in _encoded(frame[name], dtype):
            sha.update(chunk)
    return sha.hexdigest()


def _encoded(series: pd.Series, dtype: str) -> Sequence[bytes | memoryview]:
    present = series.notna().to_numpy(dtype=bool)
    validity = np.packbits(present, bitorder="little").tobytes()
    if dtype == "string":
        array = pa.array(series.astype(object).where(present, ""), type=pa.large_string())
        offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[: len(series) + 1]
        data = array.buffers()[2]
        start, end = (int(offsets[0]), int(offsets[-1])) if len(series) else (0, 0)
        body = b"" if data is None else memoryview(data)[start:end]
        return [validity, (offsets - start).astype("<i8").tobytes(), body]
    if dtype == "int":
        values = series.to_numpy(dtype="int64", na_value=0).astype("<i8")
    elif dtype == "float":
        values = np.where(present, series.to_numpy(dtype="float64", na_value=0.0), 0.0) + 0.0
        values = values.astype("<f8")
    elif dtype == "bool":
        values = series.to_numpy(dtype="bool", na_value=False).astype(np.uint8)
    elif dtype == "datetime":
        nanos = series.dt.tz_convert("UTC").astype("datetime64[ns, UTC]").array.asi8
        values = np.where(present, nanos, 0).astype("<i8")
    else:
        raise ValueError(f"dtype: {dtype!r} is not a contract dtype")
    return [validity, values.tobytes()]


def to_parquet(
    frame: pd.DataFrame, columns: Mapping[str, str], metadata: Mapping[str, Any]
) -> bytes:
    """`frame`'s `columns` as Parquet bytes, `metadata` (JSON) in the schema's metadata.

    Deterministic for one pyarrow version: the same frame gives the same bytes.
    """
    fields = [pa.field(name, _ARROW_TYPES[dtype]) for name, dtype in columns.items()]
    arrays = [_arrow(frame[name], dtype) for name, dtype in columns.items()]
    text = json.dumps(dict(metadata), sort_keys=True, separators=(",", ":"))
    schema = pa.schema(fields, metadata={METADATA_KEY: text.encode()})
    table = pa.Table.from_arrays(arrays, schema=schema)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def _arrow(series: pd.Series, dtype: str) -> pa.Array:
    if dtype == "datetime":
        series = series.astype(PANDAS_DTYPES["datetime"])
    return pa.array(series, type=_ARROW_TYPES[dtype], from_pandas=True)


def from_parquet(data: bytes) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The frame (in the contract's pandas dtypes) and metadata of `to_parquet`'s bytes."""
    table = pq.read_table(io.BytesIO(data))
    raw = (table.schema.metadata or {}).get(METADATA_KEY, b"{}")
    frame = table.to_pandas(types_mapper=_PANDAS_TYPES.get)
    return frame, json.loads(raw)
