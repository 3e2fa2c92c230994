"""Reading a source's column as the contract's dtype, value by value.

A CSV column arrives as text; a Parquet or SQL column with a type of its own. Each is turned into
one pandas dtype per contract dtype (`PANDAS_DTYPES`), and every value that does not read as
that type is marked `failed` (its row is quarantined with the `dtype` check), rather than
failing the batch. A column fails the batch (`ColumnMismatchError`, a schema mismatch) only when
its type cannot hold the contract's at all (a timestamp column for an int) or none of its
values reads.

pandas' own casts are not used for text: `astype(bool)` reads "false" as True, and going
through float64 loses integers above 2**53.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from seawall.data.contract import DType

__all__ = ["PANDAS_DTYPES", "Coerced", "ColumnMismatchError", "coerce"]

#: The pandas dtype each contract dtype is held in (nullable, so a missing value stays missing).
PANDAS_DTYPES: dict[str, str] = {
    "int": "Int64",
    "float": "float64",
    "bool": "boolean",
    "string": "string",
    "datetime": "datetime64[ns, UTC]",
}

_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})
_INT = re.compile(r"[+-]?[0-9]+")
# A float literal: decimal or exponent notation, inf, infinity or nan; no "1_0", no hex.
_FLOAT = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:inf|infinity|nan))"
)
_INT64 = (-(2**63), 2**63 - 1)
# Largest integer a float64 holds exactly: "5.0" reads as 5, "1e300" is no int64.
_EXACT = 2.0**53


class ColumnMismatchError(Exception):
    """The column's type cannot hold the contract's dtype (the reason says why)."""


@dataclass(frozen=True, slots=True)
class Coerced:
    """A column as the contract's dtype, and which of its rows did not read."""

    values: pd.Series
    #: True where the source had a value that does not read as the dtype (now missing).
    failed: np.ndarray[Any, np.dtype[np.bool_]]


def coerce(series: pd.Series, dtype: DType) -> Coerced:
    """Read `series` as `dtype`; `ColumnMismatchError` if its type or every value is wrong."""
    kind = _kind(series)
    convert = _CONVERTERS[dtype]
    values, failed = convert(series.astype(object) if kind == "other" else series, kind)
    present = series.notna().to_numpy()
    if failed.any() and failed.sum() == present.sum():
        first = series[failed].iloc[0]
        raise ColumnMismatchError(
            f"none of its {int(present.sum())} values reads as {dtype} ({first!r})"
        )
    return Coerced(values.astype(PANDAS_DTYPES[dtype]), failed)


def _kind(series: pd.Series) -> str:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        return "text"  # object, pandas strings, Arrow strings
    return "other"  # categorical, decimal...: read through their values' text


def _mismatch(kind: str, dtype: str) -> ColumnMismatchError:
    article = "an" if kind[0] in "aeiou" else "a"
    return ColumnMismatchError(f"{article} {kind} column cannot be read as {dtype}")


Result = tuple[pd.Series, np.ndarray[Any, np.dtype[np.bool_]]]


def _none(series: pd.Series) -> np.ndarray[Any, np.dtype[np.bool_]]:
    return np.zeros(len(series), dtype=bool)


def _to_int(series: pd.Series, kind: str) -> Result:
    if kind == "int":
        return series.astype("Int64"), _none(series)
    if kind == "float":
        return _integral(series, series.notna().to_numpy())
    if kind not in ("text", "other"):
        raise _mismatch(kind, "int")
    cast = _arrow_cast(series, "int64")
    if cast is not None:  # every value an integer literal: parsed in C, exactly
        values = cast.fill_null(0).to_numpy(zero_copy_only=False)
        missing = cast.is_null().to_numpy(zero_copy_only=False)
        return pd.Series(pd.arrays.IntegerArray(values, missing), index=series.index), _none(series)
    return _parsed(series, _parse_int, "Int64")


def _arrow_cast(series: pd.Series, target: str) -> Any:
    """The text column cast whole by pyarrow (fast), or None if any value does not cast."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        return pc.cast(pa.array(series, type=pa.string(), from_pandas=True), target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None


def _parse_int(value: object) -> int | None:
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | np.integer):
        number = int(value)
    else:
        text = str(value).strip()
        if _INT.fullmatch(text):
            number = int(text)
        else:  # "5.0" and "1e3" are whole numbers too
            real = float(text) if _FLOAT.fullmatch(text) else math.nan
            if not (math.isfinite(real) and real.is_integer() and abs(real) <= _EXACT):
                return None
            number = int(real)
    return number if _INT64[0] <= number <= _INT64[1] else None


def _parsed(series: pd.Series, parse: Callable[[object], Any], dtype: str) -> Result:
    """Parse each present value in Python (exact, unlike pandas' casts); None did not read."""
    present = series.notna().to_numpy()
    raw = series.to_numpy(dtype=object)
    values: list[Any] = [None] * len(series)
    failed = np.zeros(len(series), dtype=bool)
    for i in np.flatnonzero(present).tolist():
        value = parse(raw[i])
        if value is None:
            failed[i] = True
        else:
            values[i] = value
    return pd.Series(pd.array(values, dtype=dtype), index=series.index), failed


def _integral(numbers: pd.Series, present: np.ndarray[Any, np.dtype[np.bool_]]) -> Result:
    array = numbers.to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        whole = np.isfinite(array) & (np.floor(array) == array) & (np.abs(array) <= _EXACT)
    failed = present & ~whole
    return pd.Series(np.where(whole, array, np.nan), index=numbers.index).astype("Int64"), failed


def _to_float(series: pd.Series, kind: str) -> Result:
    if kind in ("int", "float"):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        return pd.Series(values, index=series.index), _none(series)
    if kind not in ("text", "other"):
        raise _mismatch(kind, "float")
    numbers = _arrow_floats(series)
    if numbers is None:  # not all text (a SQL column of Decimals): the same rules, in Python
        numbers = np.array([_parse_float(v) for v in series.to_numpy(dtype=object)], dtype=float)
    # NaN text is no number: a missing value is written as the contract's null_values say.
    return pd.Series(numbers, index=series.index), series.notna().to_numpy() & np.isnan(numbers)


def _arrow_floats(series: pd.Series) -> np.ndarray[Any, np.dtype[np.float64]] | None:
    """Float literals read in C (correctly rounded, as Python's `float`); NaN where none."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:  # no copy if the column is Arrow strings already (a CSV file's)
        array = pa.array(series, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    trimmed = pc.utf8_trim_whitespace(array)
    literal = pc.match_substring_regex(trimmed, f"^(?:{_FLOAT.pattern})$").fill_null(False)
    cast = pc.cast(pc.if_else(literal, trimmed, pa.scalar(None, pa.string())), pa.float64())
    return np.asarray(cast.to_numpy(zero_copy_only=False), dtype=np.float64)


def _parse_float(value: object) -> float:
    if value is None or isinstance(value, bool | np.bool_):
        return math.nan
    if isinstance(value, int | float | np.integer | np.floating | Decimal):
        return float(value)
    text = str(value).strip()
    return float(text) if _FLOAT.fullmatch(text) else math.nan


def _to_bool(series: pd.Series, kind: str) -> Result:
    if kind == "bool":
        return series.astype("boolean"), _none(series)
    if kind not in ("int", "float", "text", "other"):
        raise _mismatch(kind, "bool")
    return _parsed(series, _parse_bool, "boolean")


def _parse_bool(value: object) -> bool | None:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return bool(value) if value in (0, 1) else None
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def _to_string(series: pd.Series, kind: str) -> Result:
    if kind not in ("text", "other"):
        raise _mismatch(kind, "string")
    if pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty"):
        return series.astype("string"), _none(series)  # text already (a CSV file's columns)
    present = series.notna()
    return series.astype(object).where(present, None).map(
        lambda v: v if v is None or isinstance(v, str) else str(v)
    ), _none(series)


def _to_datetime(series: pd.Series, kind: str) -> Result:
    if kind == "datetime":
        zone = getattr(series.dt, "tz", None)
        values = series.dt.tz_localize("UTC") if zone is None else series.dt.tz_convert("UTC")
        return values, _none(series)
    if kind not in ("text", "other"):
        raise _mismatch(kind, "datetime")
    values = pd.to_datetime(series.astype(object), errors="coerce", utc=True, format="ISO8601")
    return values, series.notna().to_numpy() & values.isna().to_numpy()


_CONVERTERS = {
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "string": _to_string,
    "datetime": _to_datetime,
}
