"""`Validator`: a contract compiled to a pandera schema, and the verdict it gives on a batch.

Validation runs in three steps, each adding to one list of failures:

1. columns: a missing, unexpected or repeated column, or a column whose type cannot hold the
   contract's dtype (or none of whose values reads as it), is a schema mismatch that rejects
   the batch; nothing else is checked;
2. values: each column is read as its dtype (`coercion`): a value that does not read fails its
   row (`dtype`), so does a missing one where the column is not nullable (`nullable`) and a
   repeat of an earlier row's value where it is unique (`unique`; missing values repeat
   nothing); then pandera checks the rest lazily, so every broken rule of every row is
   reported, not only the first: min, max, allowed, regex, custom row checks;
3. the batch: row count, freshness (of the newest valid row), custom checks that answer for the
   whole batch, and the share of invalid rows against `invalid_share_max`.

A row with any failure is invalid (quarantined); any batch failure rejects the whole batch.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from seawall.data.coercion import PANDAS_DTYPES, ColumnMismatchError, coerce
from seawall.data.contract import ColumnRule, Contract
from seawall.data.errors import ContractError

__all__ = ["FAILURE_COLUMNS", "BatchFailure", "Validator", "Verdict"]

#: The columns of `Verdict.failures`: one row per (row, check) broken.
FAILURE_COLUMNS = ["row", "column", "check", "value", "reason"]
#: Longest text kept of a failing value.
MAX_VALUE_CHARS = 200

#: One failure: row, column (None: the row as a whole), check, value as text, reason.
Failure = tuple[int, str | None, str, str | None, str]
_MISSING = "missing, and the column is not nullable"


@dataclass(frozen=True, slots=True)
class BatchFailure:
    """A rule the batch as a whole broke: `schema`, `rows`, `freshness`, `invalid_share`, or
    `check:<name>`."""

    check: str
    reason: str


@dataclass(frozen=True)
class Verdict:
    """What a contract says of one batch."""

    rows_in: int
    #: Every row, read as the contract's dtypes (None when the columns did not match).
    data: pd.DataFrame | None
    #: True for each row that broke a row-level rule.
    invalid: np.ndarray[Any, np.dtype[np.bool_]]
    #: One row per (row, check) broken, as `FAILURE_COLUMNS`; `row` is the 0-based position.
    failures: pd.DataFrame
    batch_failures: tuple[BatchFailure, ...]

    @property
    def rejected(self) -> bool:
        return bool(self.batch_failures)

    @property
    def reason(self) -> str | None:
        """Why the batch was rejected (None: it was not)."""
        return "; ".join(f"{f.check}: {f.reason}" for f in self.batch_failures) or None

    @property
    def quarantined(self) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """The rows that go to quarantine: the invalid ones, or all of a rejected batch."""
        return np.ones(self.rows_in, dtype=bool) if self.rejected else self.invalid

    @property
    def rows_quarantined(self) -> int:
        return int(self.quarantined.sum())

    @property
    def rows_accepted(self) -> int:
        return self.rows_in - self.rows_quarantined

    def accepted(self) -> pd.DataFrame:
        """The valid rows, typed, in source order (empty for a rejected batch)."""
        if self.data is None or self.rejected:
            raise ValueError("a rejected batch has no accepted rows")
        return self.data[~self.invalid].reset_index(drop=True)


class Validator:
    """A contract compiled once: its custom checks imported, its pandera schema built."""

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        functions = [
            _resolve(i, check.function, check.params) for i, check in enumerate(contract.checks)
        ]
        self._names: dict[tuple[str | None, int], tuple[str, ColumnRule | None]] = {}
        self.schema = pa.DataFrameSchema(
            {name: self._column(name, rule) for name, rule in contract.columns.items()},
            checks=[
                self._frame_check(i, check.name, fn)
                for i, (check, fn) in enumerate(zip(contract.checks, functions, strict=True))
            ],
            strict=True,
            coerce=False,
        )

    def _column(self, name: str, rule: ColumnRule) -> pa.Column:
        checks: list[pa.Check] = []

        def add(check: pa.Check, label: str) -> None:
            self._names[(name, len(checks))] = (label, rule)
            checks.append(check)

        if rule.min is not None:
            add(pa.Check.greater_than_or_equal_to(rule.min), "min")
        if rule.max is not None:
            add(pa.Check.less_than_or_equal_to(rule.max), "max")
        if rule.allowed is not None:
            add(pa.Check.isin(rule.allowed), "allowed")
        if rule.regex is not None:  # pandera's str_matches anchors at the start only
            add(pa.Check.str_matches(rf"(?:{rule.regex})\Z"), "regex")
        # Missing and repeated values are found before pandera runs (`_missing_or_repeated`).
        return pa.Column(PANDAS_DTYPES[rule.dtype], checks=checks, nullable=True)

    def _frame_check(self, number: int, name: str, fn: Callable[..., Any]) -> pa.Check:
        self._names[(None, number)] = (f"check:{name}", None)
        return pa.Check(fn, name=name, ignore_na=False)

    def validate(self, frame: pd.DataFrame, *, now_s: float) -> Verdict:
        """The verdict on `frame` (a batch as read); `now_s`: wall-clock time, for freshness."""
        frame = frame.reset_index(drop=True)
        rows = len(frame)
        mismatch = self._columns(frame)
        typed, unread = (None, []) if mismatch else self._coerced(frame, mismatch)
        if typed is None or mismatch:  # nothing else is checked against the wrong columns
            return Verdict(rows, None, np.zeros(rows, dtype=bool), _frame([]), tuple(mismatch))
        checked, batch = self._checked(typed)
        order = {name: i for i, name in enumerate(self.contract.columns)}
        failures = _frame(unread + checked, order)
        invalid = np.zeros(rows, dtype=bool)
        invalid[failures["row"].to_numpy(dtype=np.int64)] = True
        batch += self._batch(typed, invalid, now_s)
        return Verdict(rows, typed, invalid, failures, tuple(batch))

    def _columns(self, frame: pd.DataFrame) -> list[BatchFailure]:
        wanted = list(self.contract.columns)
        problems = []
        missing = [c for c in wanted if c not in frame.columns]
        extra = [str(c) for c in frame.columns if c not in self.contract.columns]
        if missing:
            problems.append(BatchFailure("schema", f"missing column(s) {missing}"))
        if extra:
            problems.append(BatchFailure("schema", f"unexpected column(s) {extra}"))
        if frame.columns.duplicated().any():
            repeated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
            problems.append(BatchFailure("schema", f"column(s) {repeated} given twice"))
        if problems:
            return problems
        for name, rule in self.contract.columns.items():
            try:
                coerce(frame[name].iloc[:0], rule.dtype)  # the type alone, before any value
            except ColumnMismatchError as exc:
                problems.append(BatchFailure("schema", f"column {name!r}: {exc}"))
        return problems

    def _coerced(
        self, frame: pd.DataFrame, mismatch: list[BatchFailure]
    ) -> tuple[pd.DataFrame | None, list[Failure]]:
        """The typed frame and the values that did not read; None if a column read not at all."""
        columns: dict[str, pd.Series] = {}
        failures: list[Failure] = []
        for name, rule in self.contract.columns.items():
            try:
                coerced = coerce(frame[name], rule.dtype)
            except ColumnMismatchError as exc:  # no value reads: the column is not what it claims
                mismatch.append(BatchFailure("schema", f"column {name!r}: {exc}"))
                continue
            columns[name] = coerced.values
            for row in np.flatnonzero(coerced.failed):
                value = _text(frame[name].iat[row])
                reason = f"{value!r} is not {_a(rule.dtype)}"
                failures.append((int(row), name, "dtype", value, reason))
            failures += _missing_or_repeated(name, rule, coerced.values, coerced.failed)
        return (None if mismatch else pd.DataFrame(columns)), failures

    def _checked(self, typed: pd.DataFrame) -> tuple[list[Failure], list[BatchFailure]]:
        try:
            self.schema.validate(typed, lazy=True)
        except SchemaErrors as exc:
            cases = exc.failure_cases
        else:
            return [], []
        rows: list[Failure] = []
        batch: list[BatchFailure] = []
        seen: set[tuple[int, str | None, str]] = set()
        for case in cases.itertuples(index=False):
            row = None if pd.isna(case.index) else int(case.index)
            column = None if pd.isna(case.column) else str(case.column)
            frame_level = case.schema_context == "DataFrameSchema"
            check, rule = self._name(None if frame_level else column, case.check, case.check_number)
            if row is None:
                batch.append(_frame_failure(check, case.failure_case))
            elif check.startswith("check:"):
                # A row-level custom check is reported once per column by pandera: once here.
                if (row, None, check) not in seen:
                    seen.add((row, None, check))
                    rows.append((row, None, check, None, f"failed {check}"))
            else:
                value = case.failure_case
                rows.append((row, column, check, _text(value), _reason(check, value, rule)))
        return rows, batch

    def _name(self, column: str | None, check: str, number: Any) -> tuple[str, ColumnRule | None]:
        if not pd.isna(number) and (column, int(number)) in self._names:
            return self._names[(column, int(number))]
        return str(check), None

    def _batch(
        self, typed: pd.DataFrame, invalid: np.ndarray[Any, np.dtype[np.bool_]], now_s: float
    ) -> list[BatchFailure]:
        contract, rows = self.contract, len(typed)
        failures = []
        if rows < contract.rows.min:
            failures.append(BatchFailure("rows", f"{rows} row(s), fewer than {contract.rows.min}"))
        if contract.rows.max is not None and rows > contract.rows.max:
            failures.append(BatchFailure("rows", f"{rows} rows, more than {contract.rows.max}"))
        if contract.freshness is not None and rows:
            column = contract.freshness.column
            newest = typed[column][~invalid].max()
            if pd.isna(newest):
                failures.append(BatchFailure("freshness", f"no valid {column} to date the batch"))
            else:
                age_s = now_s - newest.timestamp()
                if age_s > contract.freshness.max_age_s:
                    failures.append(
                        BatchFailure(
                            "freshness",
                            f"newest {column} ({newest.isoformat()}) is {age_s:.0f} s old, "
                            f"more than {contract.freshness.max_age_s:g} s",
                        )
                    )
        share = float(invalid.sum()) / rows if rows else 0.0
        if share > contract.invalid_share_max:
            failures.append(
                BatchFailure(
                    "invalid_share",
                    f"{int(invalid.sum())} of {rows} rows invalid ({share:.1%}), "
                    f"more than {contract.invalid_share_max:.1%}",
                )
            )
        return failures


def _missing_or_repeated(
    name: str, rule: ColumnRule, values: pd.Series, unread: np.ndarray[Any, np.dtype[np.bool_]]
) -> list[Failure]:
    """`nullable` and `unique`, checked here rather than by pandera: pandera counts missing
    values as repeats of each other, and warns when failures are all missing values."""
    failures: list[Failure] = []
    present = values.notna().to_numpy()
    if not rule.nullable:
        absent = np.flatnonzero(~present & ~unread)
        failures += [(int(r), name, "nullable", None, _MISSING) for r in absent]
    if rule.unique:
        repeats = np.flatnonzero(values.duplicated(keep="first").to_numpy() & present)
        for r in repeats:
            value = _text(values.iat[r])
            failures.append((int(r), name, "unique", value, _reason("unique", value, rule)))
    return failures


def _resolve(number: int, path: str, params: dict[str, Any]) -> Callable[..., Any]:
    module_name, _, attribute = path.partition(":")
    where = f"checks[{number}].function"
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ContractError(f"{where}: cannot import {module_name!r}: {exc}") from exc
    for part in attribute.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ContractError(f"{where}: {module_name!r} has no {attribute!r}")
    if not callable(target):
        raise ContractError(f"{where}: {path!r} is not callable")
    return functools.partial(target, **params) if params else target


def _frame(failures: list[Failure], order: dict[str, int] | None = None) -> pd.DataFrame:
    """The failures as `FAILURE_COLUMNS`, by row, then column (in `order`), then check."""
    last = len(order or {})
    failures = sorted(failures, key=lambda f: (f[0], (order or {}).get(f[1] or "", last), f[2]))
    return pd.DataFrame(
        {
            "row": np.array([f[0] for f in failures], dtype=np.int64),
            **{
                name: pd.Series([f[i] for f in failures], dtype=object)
                for i, name in enumerate(FAILURE_COLUMNS[1:], start=1)
            },
        }
    )


def _frame_failure(check: str, case: Any) -> BatchFailure:
    if case is False or (isinstance(case, np.bool_) and not case):
        return BatchFailure(check, "failed for the batch")
    if check.startswith("check:"):  # it raised, or answered with something else than booleans
        return BatchFailure(check, f"failed: {_text(case)}")
    return BatchFailure("schema", f"{check}: {_text(case)}")


def _reason(check: str, value: Any, rule: ColumnRule | None) -> str:
    shown = _text(value)
    if rule is None:
        return f"{shown!r} failed {check}"
    if check == "min":
        return f"{shown} is below the minimum {rule.min:g}"
    if check == "max":
        return f"{shown} is above the maximum {rule.max:g}"
    if check == "allowed":
        return f"{shown!r} is not one of {rule.allowed}"
    if check == "regex":
        return f"{shown!r} does not match {rule.regex!r}"
    if check == "unique":
        return f"{shown} repeats an earlier row's value"
    return f"{shown!r} failed {check}"


def _text(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return None
    text = value.isoformat() if isinstance(value, pd.Timestamp) else str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _a(dtype: str) -> str:
    return "an int" if dtype == "int" else f"a {dtype}"
