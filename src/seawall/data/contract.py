"""Data contracts: what a batch must look like, read from YAML and validated with pydantic.

```yaml
name: iris                      # the contract (and, unless --name says otherwise, the dataset)
version: 2                      # bump it when the rules change: it is part of a snapshot's id
columns:                        # every column, in order; a batch with others is rejected
  sepal_length: {dtype: float, min: 0, max: 10}
  species: {dtype: string, allowed: [setosa, versicolor, virginica]}
  plant_id: {dtype: int, unique: true}
  tag: {dtype: string, nullable: true, regex: "^[a-z]+$"}
  measured_at: {dtype: datetime}
rows: {min: 100, max: 1000000}  # rows in the batch
freshness: {column: measured_at, max_age_s: 86400}
checks:                         # your own, by import path: a bool Series (per row) or a bool
  - {name: petals_fit, function: "mychecks:petals_fit", params: {slack: 0.1}}
invalid_share_max: 0.05         # more invalid rows than this share rejects the whole batch
```

Row-level rules (dtype, nullable, min, max, allowed, regex, unique, a custom check returning a
Series) quarantine the rows that break them; batch-level rules (columns, rows, freshness, a
custom check returning one bool, the invalid share) reject the whole batch. Errors name the
YAML path (`columns.sepal_length.max: Input should be a valid number`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from seawall.data.errors import ContractError

__all__ = [
    "DEFAULT_INVALID_SHARE_MAX",
    "RESERVED_PREFIX",
    "ColumnRule",
    "Contract",
    "CustomCheck",
    "DType",
    "Freshness",
    "RowBounds",
    "load_contract",
    "parse_contract",
]

#: Share of invalid rows above which the whole batch is rejected, unless the contract says.
DEFAULT_INVALID_SHARE_MAX = 0.05
#: Column names starting with this are seawall's own (quarantined rows carry `_seawall_row`).
RESERVED_PREFIX = "_seawall_"

DType = Literal["int", "float", "bool", "string", "datetime"]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
_VERSION = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
_CHECK_NAME = r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$"
_FUNCTION = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ColumnRule(_Model):
    """One column: its type and the rules each of its values must keep."""

    dtype: DType
    """int, float, bool, string or datetime (read as UTC; a naive time is taken as UTC)."""
    nullable: bool = False
    """May a value be missing (an empty CSV field, a SQL NULL)?"""
    min: float | None = None
    """Smallest value allowed (int and float columns)."""
    max: float | None = None
    """Largest value allowed (int and float columns)."""
    allowed: list[Any] | None = Field(None, min_length=1)
    """The only values allowed (string, int and bool columns)."""
    regex: str | None = None
    """Each value must match this regular expression entirely (string columns)."""
    unique: bool = False
    """No value may repeat in the batch (the first is kept, the repeats are quarantined)."""
    description: str = ""
    """What the column means."""

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _fits_dtype(self) -> ColumnRule:
        numeric = self.dtype in ("int", "float")
        for bound in ("min", "max"):
            value = getattr(self, bound)
            if value is not None and not numeric:
                raise ValueError(f"{bound}: only for int and float columns, not {self.dtype}")
            if value is not None and math.isnan(value):
                raise ValueError(f"{bound}: a number, not NaN")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        if self.regex is not None and self.dtype != "string":
            raise ValueError(f"regex: only for string columns, not {self.dtype}")
        if self.allowed is not None:
            _check_allowed(self.dtype, self.allowed)
        return self


def _check_allowed(dtype: str, allowed: list[Any]) -> None:
    expected: tuple[type, ...] = {"string": (str,), "int": (int,), "bool": (bool,)}.get(dtype, ())
    if not expected:
        raise ValueError(f"allowed: only for string, int and bool columns, not {dtype}")
    for value in allowed:
        # bool is an int in Python; an int column's allowed values are numbers, not true/false.
        if not isinstance(value, expected) or (dtype == "int" and isinstance(value, bool)):
            raise ValueError(
                f"allowed: {value!r} is not {'an int' if dtype == 'int' else 'a ' + dtype}"
            )


class RowBounds(_Model):
    """How many rows a batch may have."""

    min: int = Field(1, ge=0)
    """Fewest rows (an empty batch is rejected unless this is 0)."""
    max: int | None = Field(None, ge=1)
    """Most rows (none: no limit besides the source's size limit)."""

    @model_validator(mode="after")
    def _ordered(self) -> RowBounds:
        if self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class Freshness(_Model):
    """The batch is stale (and rejected) if its newest `column` value is older than this."""

    column: str
    """A datetime column."""
    max_age_s: float = Field(gt=0)
    """Largest age, in seconds, of the newest value."""


class CustomCheck(_Model):
    """Your own check, called with the typed batch (a DataFrame) and `params` as keywords.

    It returns a bool Series, one per row (False rows are quarantined), or one bool (False
    rejects the batch). Imported once, when the contract is compiled.
    """

    name: str = Field(pattern=_CHECK_NAME)
    """How failures are reported: `check:<name>`."""
    function: str = Field(pattern=_FUNCTION)
    """`package.module:function`."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments passed to the function."""


class Contract(_Model):
    """A data contract; see the module docstring for the YAML."""

    name: str = Field(pattern=_NAME)
    """The contract's name, and the dataset's unless another is given at ingestion."""
    version: str = Field(pattern=_VERSION)
    """The contract's version (a number or a word); part of each snapshot's id."""
    description: str = ""
    """What the data is."""
    columns: dict[str, ColumnRule] = Field(min_length=1)
    """Every column, in order."""
    rows: RowBounds = Field(default_factory=RowBounds)
    """How many rows a batch may have."""
    freshness: Freshness | None = None
    """How old the newest row may be (none: no limit)."""
    checks: list[CustomCheck] = Field(default_factory=list)
    """Custom checks, run after the column rules."""
    invalid_share_max: float = Field(DEFAULT_INVALID_SHARE_MAX, ge=0, le=1)
    """Largest share of invalid rows that still makes a snapshot (0: any invalid row rejects)."""
    null_values: list[str] = Field(default_factory=lambda: [""])
    """Texts that mean a missing value in a CSV file (an empty field by default)."""

    @field_validator("version", mode="before")
    @classmethod
    def _number_is_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("columns")
    @classmethod
    def _column_names(cls, columns: dict[str, ColumnRule]) -> dict[str, ColumnRule]:
        for name in columns:
            if not name or len(name) > 128 or not name.isprintable():
                raise ValueError(f"{name!r}: 1 to 128 printable characters")
            if name.startswith(RESERVED_PREFIX):
                raise ValueError(f"{name!r}: names starting with {RESERVED_PREFIX} are reserved")
        return columns

    @model_validator(mode="after")
    def _references(self) -> Contract:
        if self.freshness is not None:
            rule = self.columns.get(self.freshness.column)
            if rule is None:
                raise ValueError(f"freshness.column: {self.freshness.column!r} is not a column")
            if rule.dtype != "datetime":
                raise ValueError(
                    f"freshness.column: {self.freshness.column!r} is {rule.dtype}, not datetime"
                )
        names = [check.name for check in self.checks]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"checks[{i}].name: {name!r} is used twice")
        return self

    @property
    def label(self) -> str:
        """`name@version`."""
        return f"{self.name}@{self.version}"

    def digest(self) -> str:
        """sha256 of the parsed contract (not of its YAML text: comments do not count)."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def load_contract(path: str | Path) -> Contract:
    """Read and validate a contract file; `ContractError` names each problem's YAML path."""
    file = Path(path)
    try:
        text = file.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ContractError(f"{file}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ContractError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return parse_contract(text, source=str(file))


def parse_contract(text: str, *, source: str = "<contract>") -> Contract:
    """Like `load_contract`, from YAML text."""
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        raise ContractError(f"{source}: invalid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ContractError(f"{source}: the top level must be a mapping, got {type(raw).__name__}")
    try:
        return Contract.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors()]
        lines = "\n".join(f"  {p}" for p in problems)
        raise ContractError(f"{source}: {len(problems)} problem(s):\n{lines}", problems) from None


def _describe(error: Any) -> str:
    parts: list[str] = []
    for part in error["loc"]:
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}" if parts else str(part))
    where = "".join(parts)
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        message = "unknown field (check the spelling)"
    elif error["type"] == "value_error":  # our validators: without pydantic's "Value error, "
        message = str(error.get("ctx", {}).get("error", message))
        if not where:  # a whole-contract rule: its message starts with the path it is about
            return message
    return f"{where or '(top level)'}: {message}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice (PyYAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (line {mark.line + 1})", mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
