"""Contracts: parsed from YAML, every problem named by its YAML path, digests stable."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from seawall.data.contract import (
    DEFAULT_INVALID_SHARE_MAX,
    Contract,
    load_contract,
    parse_contract,
)
from seawall.data.errors import ContractError

FULL = """
name: plants
version: 3
columns:
  sepal_length: {dtype: float, min: 0, max: 10}
  species: {dtype: string, allowed: [setosa, versicolor], regex: "^[a-z]+$"}
  plant_id: {dtype: int, unique: true}
  flowering: {dtype: bool, nullable: true}
  measured_at: {dtype: datetime}
rows: {min: 5, max: 100}
freshness: {column: measured_at, max_age_s: 86400}
checks:
  - {name: petals_fit, function: "mychecks:petals_fit", params: {slack: 0.5}}
invalid_share_max: 0.02
null_values: ["", "NA"]
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(ContractError) as caught:
        parse_contract(textwrap.dedent(text), source="c.yaml")
    assert str(caught.value).startswith("c.yaml")
    return caught.value.problems


def test_a_full_contract_is_read() -> None:
    contract = parse_contract(FULL)

    assert contract.label == "plants@3"
    assert list(contract.columns) == [
        "sepal_length",
        "species",
        "plant_id",
        "flowering",
        "measured_at",
    ]
    assert contract.columns["sepal_length"].max == 10
    assert contract.columns["species"].allowed == ["setosa", "versicolor"]
    assert contract.columns["plant_id"].unique
    assert contract.columns["flowering"].nullable
    assert not contract.columns["measured_at"].nullable
    assert (contract.rows.min, contract.rows.max) == (5, 100)
    assert contract.freshness is not None
    assert contract.freshness.max_age_s == 86400
    assert contract.checks[0].params == {"slack": 0.5}
    assert contract.invalid_share_max == 0.02
    assert contract.null_values == ["", "NA"]


def test_defaults_reject_an_empty_batch_and_allow_five_percent_invalid() -> None:
    contract = parse_contract("name: x\nversion: v1\ncolumns: {a: {dtype: int}}")

    assert contract.rows.min == 1
    assert contract.rows.max is None
    assert contract.invalid_share_max == DEFAULT_INVALID_SHARE_MAX == 0.05
    assert contract.null_values == [""]
    assert contract.freshness is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "columns: {a: {dtype: float, max: ten}}",
            "columns.a.max: Input should be a valid number",
        ),
        ("columns: {a: {dtype: decimal}}", "columns.a.dtype: Input should be 'int', 'float'"),
        ("columns: {a: {dtype: int, min: 5, max: 1}}", "columns.a: min 5 is above max 1"),
        (
            "columns: {a: {dtype: string, min: 1}}",
            "columns.a: min: only for int and float columns, not string",
        ),
        (
            "columns: {a: {dtype: int, regex: '[0-9]+'}}",
            "columns.a: regex: only for string columns, not int",
        ),
        ("columns: {a: {dtype: string, regex: '(['}}", "columns.a.regex: not a regular expression"),
        ("columns: {a: {dtype: int, allowed: [1, x]}}", "columns.a: allowed: 'x' is not an int"),
        ("columns: {a: {dtype: int, allowed: [true]}}", "columns.a: allowed: True is not an int"),
        (
            "columns: {a: {dtype: float, allowed: [1.5]}}",
            "columns.a: allowed: only for string, int and bool columns, not float",
        ),
        ("columns: {a: {dtype: string, allowed: [1]}}", "columns.a: allowed: 1 is not a string"),
        ("columns: {a: {dtype: int, nulable: true}}", "columns.a.nulable: unknown field"),
        ("columns: {}", "columns: Dictionary should have at least 1 item"),
        (
            "columns: {_seawall_row: {dtype: int}}",
            "columns: '_seawall_row': names starting with _seawall_ are reserved",
        ),
        (
            "columns: {a: {dtype: int}}\nrows: {min: 10, max: 5}",
            "rows: min 10 is above max 5",
        ),
        (
            "columns: {a: {dtype: int}}\ninvalid_share_max: 1.5",
            "invalid_share_max: Input should be less",
        ),
        (
            "columns: {a: {dtype: int}}\nfreshness: {column: b, max_age_s: 60}",
            "freshness.column: 'b' is not a column",
        ),
        (
            "columns: {a: {dtype: int}}\nfreshness: {column: a, max_age_s: 60}",
            "freshness.column: 'a' is int, not datetime",
        ),
        (
            "columns: {a: {dtype: datetime}}\nfreshness: {column: a, max_age_s: 0}",
            "freshness.max_age_s: Input should be greater than 0",
        ),
        (
            "columns: {a: {dtype: int}}\nchecks: [{name: c, function: not-a-path}]",
            "checks[0].function: String should match pattern",
        ),
        (
            "columns: {a: {dtype: int}}\n"
            "checks: [{name: c, function: 'm:f'}, {name: c, function: 'm:g'}]",
            "checks[1].name: 'c' is used twice",
        ),
    ],
)
def test_each_problem_names_its_yaml_path(text: str, problem: str) -> None:
    problems = _problems(f"name: x\nversion: 1\n{text}")

    assert any(p.startswith(problem) for p in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    problems = _problems(
        """
        name: "bad name"
        columns: {a: {dtype: int, max: x}}
        extra: 1
        """
    )

    assert {p.split(":")[0] for p in problems} == {"name", "version", "columns.a.max", "extra"}


def test_a_key_given_twice_is_refused_with_its_line() -> None:
    with pytest.raises(ContractError, match=r"duplicate key 'a' \(line 5\)"):
        parse_contract("name: x\nversion: 1\ncolumns:\n  a: {dtype: int}\n  a: {dtype: float}\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: [x", "invalid YAML"),
        ("- a\n- b", "the top level must be a mapping, got list"),
        ("", "the top level must be a mapping, got NoneType"),
        ("x: !!python/object:os.system {}", "invalid YAML"),
    ],
)
def test_text_that_is_no_contract_is_refused(text: str, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        parse_contract(text)


def test_a_file_is_read_and_its_problems_carry_its_name(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(FULL)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nversion: 1\ncolumns: {a: {dtype: nope}}\n")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))

    assert load_contract(good).name == "plants"
    with pytest.raises(ContractError, match=rf"{bad}: 1 problem\(s\):\n  columns\.a\.dtype"):
        load_contract(bad)
    with pytest.raises(ContractError, match=r"latin.yaml: not UTF-8 text \(.* at byte 9\)"):
        load_contract(latin)
    with pytest.raises(ContractError, match=r"missing\.yaml: cannot read"):
        load_contract(tmp_path / "missing.yaml")


def test_the_digest_covers_the_rules_not_the_formatting() -> None:
    contract = parse_contract(FULL)
    reformatted = parse_contract(
        "# a comment\n" + FULL.replace("{dtype: float, min: 0", "{min: 0, dtype: float")
    )
    changed = parse_contract(FULL.replace("max: 10}", "max: 11}"))

    assert len(contract.digest()) == 64
    assert reformatted.digest() == contract.digest()
    assert changed.digest() != contract.digest()


def test_a_contract_is_frozen() -> None:
    contract = parse_contract(FULL)

    with pytest.raises(ValueError, match="frozen"):
        contract.version = "4"  # type: ignore[misc]
    assert isinstance(contract, Contract)
