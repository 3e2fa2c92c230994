"""Coercion: text and typed columns read as the contract's dtype, value by value, exactly."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.data.coercion import PANDAS_DTYPES, Coerced, ColumnMismatchError, _parse_int, coerce


def _read(
    values: list[Any], dtype: str, source_dtype: Any = object
) -> tuple[list[Any], list[bool]]:
    result = coerce(pd.Series(values, dtype=source_dtype), dtype)  # type: ignore[arg-type]
    assert str(result.values.dtype) == PANDAS_DTYPES[dtype]
    out = [
        None if v is pd.NA or v is pd.NaT or (isinstance(v, float) and np.isnan(v)) else v
        for v in result.values
    ]
    return out, result.failed.tolist()


def test_text_reads_as_int_exactly_beyond_float_precision() -> None:
    values, failed = _read(
        [" 5 ", "007", "1e3", "5.0", "abc", None, "1.5", "9007199254740993", "9223372036854775808"],
        "int",
    )

    assert values == [5, 7, 1000, 5, None, None, None, 9007199254740993, None]
    assert failed == [False, False, False, False, True, False, True, False, True]


def test_text_reads_as_float_and_nan_text_is_not_a_missing_value() -> None:
    values, failed = _read(["1.5", "-0", "inf", "nan", "x", None], "float")

    assert values[:3] == [1.5, 0.0, float("inf")]
    assert values[3:] == [None, None, None]
    assert failed == [False, False, False, True, True, False]


def test_text_reads_as_bool_without_pandas_truthiness() -> None:
    values, failed = _read(["true", "False", " yes ", "0", "1", "maybe", None], "bool")

    assert values == [True, False, True, False, True, None, None]
    assert failed == [False, False, False, False, False, True, False]


def test_text_reads_as_utc_datetime() -> None:
    values, failed = _read(
        ["2026-11-26T10:00:00Z", "2026-11-26T12:00:00+02:00", "2026-11-26", "yesterday", None],
        "datetime",
    )

    assert values[0] == values[1] == pd.Timestamp("2026-11-26T10:00:00", tz="UTC")
    assert values[2] == pd.Timestamp("2026-11-26", tz="UTC")
    assert failed == [False, False, False, True, False]


def test_text_stays_text_and_other_objects_become_text() -> None:
    values, failed = _read(["a", None, 3, 1.5], "string")

    assert values == ["a", None, "3", "1.5"]
    assert failed == [False] * 4


@pytest.mark.parametrize(
    ("values", "source_dtype", "dtype", "expected", "failed"),
    [
        ([1, None, 3], "Int64", "int", [1, None, 3], [False] * 3),
        ([1, None, 3], "Int64", "float", [1.0, None, 3.0], [False] * 3),
        ([1.0, 2.5, None], "float64", "int", [1, None, None], [False, True, False]),
        ([1, 0, 2], "int64", "bool", [True, False, None], [False, False, True]),
        ([True, None], "boolean", "bool", [True, None], [False] * 2),
    ],
)
def test_typed_columns_convert_where_the_value_allows(
    values: list[Any], source_dtype: str, dtype: str, expected: list[Any], failed: list[bool]
) -> None:
    assert _read(values, dtype, source_dtype) == (expected, failed)


def test_naive_datetimes_are_taken_as_utc_and_aware_ones_converted() -> None:
    naive = pd.Series(pd.to_datetime(["2026-11-26 10:00"]))
    aware = naive.dt.tz_localize("Europe/Paris")

    assert coerce(naive, "datetime").values.iloc[0] == pd.Timestamp("2026-11-26 10:00", tz="UTC")
    assert coerce(aware, "datetime").values.iloc[0] == pd.Timestamp("2026-11-26 09:00", tz="UTC")


@pytest.mark.parametrize(
    ("series", "dtype", "message"),
    [
        (pd.Series([1, 2]), "string", "an int column cannot be read as string"),
        (pd.Series([True, False]), "float", "a bool column cannot be read as float"),
        (
            pd.Series(pd.to_datetime(["2026-01-01"])),
            "int",
            "a datetime column cannot be read as int",
        ),
        (pd.Series([1.5]), "datetime", "a float column cannot be read as datetime"),
        (pd.Series(["a", "b", None]), "float", r"none of its 2 values reads as float \('a'\)"),
    ],
)
def test_a_column_that_cannot_hold_the_dtype_is_a_mismatch(
    series: pd.Series, dtype: str, message: str
) -> None:
    with pytest.raises(ColumnMismatchError, match=message):
        coerce(series, dtype)  # type: ignore[arg-type]


def test_an_empty_or_all_missing_column_reads() -> None:
    assert len(coerce(pd.Series([], dtype=object), "int").values) == 0
    values, failed = _read([None, None], "float")
    assert values == [None, None]
    assert failed == [False, False]


def test_categorical_values_are_read_through_their_text() -> None:
    values, failed = _read(["1", "2", "x"], "int", "category")

    assert values == [1, 2, None]
    assert failed == [False, False, True]


_TEXTS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        ["", " 7 ", "+7", "007", "1e3", "5.", ".5", "nan", "inf", "x", "1_0", "Infinity"]
    ),
    st.none(),
)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(_TEXTS, max_size=20))
def test_the_fast_path_reads_text_exactly_as_the_exact_path(values: list[str | None]) -> None:
    series = pd.Series(values, dtype=object)
    present = series.notna().to_numpy()
    ints = coerce_or_none(series, "int")
    floats = coerce_or_none(series, "float")

    arrow = pd.Series(values, dtype=pd.ArrowDtype(pa.string()))  # as a CSV file is read
    for dtype in ("int", "float"):
        one, other = coerce_or_none(series, dtype), coerce_or_none(arrow, dtype)
        assert (one is None) == (other is None)
        if one is not None and other is not None:
            pd.testing.assert_series_equal(one.values, other.values)
            assert one.failed.tolist() == other.failed.tolist()
    exact = [None if v is None else _parse_int(v) for v in values]
    if ints is not None:
        assert [None if v is pd.NA else int(v) for v in ints.values] == exact
        assert ints.failed.tolist() == [
            p and e is None for p, e in zip(present, exact, strict=True)
        ]
    numbers = np.array([_python_float(v) for v in values], dtype=float)
    if floats is not None:
        np.testing.assert_array_equal(floats.values.to_numpy(), numbers)
        assert floats.failed.tolist() == (present & np.isnan(numbers)).tolist()
        mixed = coerce_or_none(pd.Series([*values, 1], dtype=object), "float")  # not all text
        assert mixed is not None
        np.testing.assert_array_equal(mixed.values.to_numpy()[:-1], numbers)


def _python_float(value: str | None) -> float:
    """Python's own float(), on what looks like a float literal (no "1_0": Python reads it)."""
    if value is None or "_" in value or not value.isascii():  # Python also reads "١٢" as 12
        return float("nan")
    try:
        return float(value)
    except ValueError:
        return float("nan")


def coerce_or_none(series: pd.Series, dtype: str) -> Coerced | None:
    """`coerce`, or None when no value reads (a mismatch, which the other test covers)."""
    try:
        return coerce(series, dtype)  # type: ignore[arg-type]
    except ColumnMismatchError:
        return None
