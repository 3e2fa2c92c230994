"""Validation: every broken rule of every row attributed to its row and check; batch rules
reject the whole batch; the counts always balance."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seawall.data.contract import Contract, parse_contract
from seawall.data.errors import ContractError
from seawall.data.validation import FAILURE_COLUMNS, Validator, Verdict

NOW = 1_800_000_000.0


def _text(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as a CSV file gives it: every value text, missing ones NaN."""
    return frame.astype(str)


def _failed(verdict: Verdict) -> set[tuple[int, str | None, str]]:
    return {(int(r.row), r.column, r.check) for r in verdict.failures.itertuples()}


def _balanced(verdict: Verdict) -> Verdict:
    assert verdict.rows_in == verdict.rows_accepted + verdict.rows_quarantined
    return verdict


SPECIES = "{dtype: string, allowed: [setosa, versicolor, virginica]}"


def _contract(extra: str, species: str = SPECIES) -> Contract:
    return parse_contract(
        textwrap.dedent(
            f"""
            name: t
            version: 1
            columns:
              sepal_length: {{dtype: float, min: 0, max: 10}}
              sepal_width: {{dtype: float, min: 0, max: 10}}
              petal_length: {{dtype: float, min: 0, max: 10}}
              petal_width: {{dtype: float, min: 0, max: 10}}
              species: {species}
              plant_id: {{dtype: int, unique: true}}
            """
        )
        + textwrap.dedent(extra)
    )


def test_a_clean_batch_is_accepted_whole_with_its_types(
    iris: pd.DataFrame, iris_contract: Contract
) -> None:
    verdict = _balanced(Validator(iris_contract).validate(_text(iris), now_s=NOW))

    assert not verdict.rejected
    assert verdict.reason is None
    assert verdict.failures.empty
    assert list(verdict.failures.columns) == FAILURE_COLUMNS
    assert verdict.rows_accepted == 150
    accepted = verdict.accepted()
    assert accepted["plant_id"].dtype == "Int64"
    assert accepted["species"].dtype == "string"
    np.testing.assert_allclose(accepted["sepal_length"], iris["sepal_length"])


def test_each_broken_rule_is_attributed_to_its_row_and_check(
    iris: pd.DataFrame, iris_contract: Contract
) -> None:
    frame = _text(iris)
    frame.loc[3, "sepal_length"] = "abc"
    frame.loc[5, "sepal_width"] = "42"
    frame.loc[6, "petal_width"] = "-1"
    frame.loc[7, "species"] = "rose"
    frame.loc[9, "plant_id"] = frame.loc[8, "plant_id"]
    frame.loc[11, "petal_length"] = np.nan
    frame.loc[13, "sepal_length"] = "11"
    frame.loc[13, "species"] = np.nan

    verdict = _balanced(Validator(iris_contract).validate(frame, now_s=NOW))

    assert _failed(verdict) == {
        (3, "sepal_length", "dtype"),
        (5, "sepal_width", "max"),
        (6, "petal_width", "min"),
        (7, "species", "allowed"),
        (9, "plant_id", "unique"),
        (11, "petal_length", "nullable"),
        (13, "sepal_length", "max"),
        (13, "species", "nullable"),
    }
    reasons = {(r.row, r.check): (r.value, r.reason) for r in verdict.failures.itertuples()}
    assert reasons[(3, "dtype")] == ("abc", "'abc' is not a float")
    assert reasons[(5, "max")] == ("42.0", "42.0 is above the maximum 10")
    assert reasons[(6, "min")] == ("-1.0", "-1.0 is below the minimum 0")
    assert reasons[(7, "allowed")][1] == (
        "'rose' is not one of ['setosa', 'versicolor', 'virginica']"
    )
    assert reasons[(9, "unique")] == ("9", "9 repeats an earlier row's value")
    assert reasons[(11, "nullable")] == (None, "missing, and the column is not nullable")
    assert not verdict.rejected  # 7 of 150 invalid: under the 10% the contract allows
    assert np.flatnonzero(verdict.invalid).tolist() == [3, 5, 6, 7, 9, 11, 13]
    assert verdict.rows_accepted == 143
    assert 9 in set(verdict.accepted()["plant_id"])  # the first of the two 9s is kept


def test_an_unreadable_value_is_reported_once_not_also_as_missing(iris_contract: Contract) -> None:
    frame = _text(iris_frame_head(12))
    frame.loc[0, "plant_id"] = "one"

    verdict = Validator(iris_contract).validate(frame, now_s=NOW)

    assert _failed(verdict) == {(0, "plant_id", "dtype")}


def iris_frame_head(rows: int) -> pd.DataFrame:
    from sklearn.datasets import load_iris

    iris = load_iris(as_frame=True)
    frame = iris.frame.drop(columns="target").head(rows)
    frame.columns = [c.replace(" (cm)", "").replace(" ", "_") for c in frame.columns]
    frame["species"] = "setosa"
    frame["plant_id"] = range(rows)
    return frame


def test_a_regex_must_match_the_whole_value(iris: pd.DataFrame) -> None:
    contract = _contract("", species="{dtype: string, regex: '[a-z]+'}")
    frame = _text(iris)
    frame.loc[2, "species"] = "setosa1"  # re.match would accept its start

    verdict = Validator(contract).validate(frame, now_s=NOW)

    assert _failed(verdict) == {(2, "species", "regex")}
    assert verdict.failures["reason"][0] == "'setosa1' does not match '[a-z]+'"


def test_a_custom_row_check_fails_rows_once_each(iris: pd.DataFrame, check_module: str) -> None:
    contract = _contract(
        f"""
        checks:
          - {{name: petals_fit, function: "{check_module}:petals_fit", params: {{slack: 0.5}}}}
        """
    )
    frame = _text(iris)
    frame.loc[4, "petal_length"] = "9.9"  # longer than its sepal (5.0) + 0.5
    frame.loc[5, "petal_length"] = "5.8"  # 5.4 + 0.5 = 5.9: fits

    verdict = Validator(contract).validate(frame, now_s=NOW)

    assert _failed(verdict) == {(4, None, "check:petals_fit")}
    assert verdict.failures["reason"][0] == "failed check:petals_fit"


def test_a_custom_batch_check_rejects_the_batch(iris: pd.DataFrame, check_module: str) -> None:
    contract = _contract(
        f"""
        checks:
          - {{name: enough_species, function: "{check_module}:enough_species"}}
        """
    )
    one_species = _text(iris[iris["species"] == "setosa"])

    verdict = _balanced(Validator(contract).validate(one_species, now_s=NOW))
    accepted = Validator(contract).validate(_text(iris), now_s=NOW)

    assert verdict.rejected
    assert verdict.reason == "check:enough_species: failed for the batch"
    assert verdict.rows_quarantined == 50
    assert not accepted.rejected


def test_a_custom_check_that_raises_rejects_the_batch(
    iris: pd.DataFrame, check_module: str
) -> None:
    contract = _contract(f"checks: [{{name: broken, function: '{check_module}:broken'}}]")

    verdict = Validator(contract).validate(_text(iris), now_s=NOW)

    assert verdict.rejected
    assert verdict.batch_failures[0].check == "check:broken"
    assert "this check is broken" in verdict.batch_failures[0].reason


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("no_such_module_xyz:f", r"checks\[0\]\.function: cannot import 'no_such_module_xyz'"),
        ("{module}:missing", r"checks\[0\]\.function: 'seawall_test_checks' has no 'missing'"),
        ("{module}:NOT_CALLABLE", r"checks\[0\]\.function: '.*:NOT_CALLABLE' is not callable"),
    ],
)
def test_a_custom_check_that_cannot_be_found_is_a_contract_error(
    check_module: str, function: str, message: str
) -> None:
    contract = _contract(
        f"checks: [{{name: c, function: '{function.format(module=check_module)}'}}]"
    )

    with pytest.raises(ContractError, match=message):
        Validator(contract)


def test_missing_extra_and_repeated_columns_reject_the_batch(
    iris: pd.DataFrame, iris_contract: Contract
) -> None:
    frame = _text(iris).drop(columns=["plant_id"]).assign(colour="red")
    repeated = pd.concat([_text(iris), _text(iris)[["species"]]], axis=1)

    verdict = _balanced(Validator(iris_contract).validate(frame, now_s=NOW))
    again = Validator(iris_contract).validate(repeated, now_s=NOW)

    assert verdict.rejected
    assert verdict.data is None
    assert verdict.reason == (
        "schema: missing column(s) ['plant_id']; schema: unexpected column(s) ['colour']"
    )
    assert verdict.rows_quarantined == 150
    assert again.reason == "schema: column(s) ['species'] given twice"
    with pytest.raises(ValueError, match="no accepted rows"):
        verdict.accepted()


def test_a_column_of_the_wrong_type_rejects_the_batch(
    iris: pd.DataFrame, iris_contract: Contract
) -> None:
    typed = iris.assign(species=range(150))  # a Parquet int column where text is expected
    unreadable = _text(iris).assign(sepal_length="n/a")

    typed_verdict = Validator(iris_contract).validate(typed, now_s=NOW)
    unreadable_verdict = _balanced(Validator(iris_contract).validate(unreadable, now_s=NOW))

    assert (
        typed_verdict.reason == "schema: column 'species': an int column cannot be read as string"
    )
    assert unreadable_verdict.reason == (
        "schema: column 'sepal_length': none of its 150 values reads as float ('n/a')"
    )
    assert unreadable_verdict.rows_quarantined == 150


def test_row_count_bounds_apply_to_the_batch(iris: pd.DataFrame, iris_contract: Contract) -> None:
    validator = Validator(iris_contract)  # rows: {min: 10, max: 1000}

    few = _balanced(validator.validate(_text(iris.head(9)), now_s=NOW))
    enough = validator.validate(_text(iris.head(10)), now_s=NOW)
    many = validator.validate(
        _text(pd.concat([iris] * 7, ignore_index=True).assign(plant_id=range(1050))), now_s=NOW
    )
    empty = validator.validate(_text(iris.head(0)), now_s=NOW)

    assert few.reason == "rows: 9 row(s), fewer than 10"
    assert few.rows_quarantined == 9
    assert not enough.rejected
    assert many.reason == "rows: 1050 rows, more than 1000"
    assert empty.reason == "rows: 0 row(s), fewer than 10"
    assert (empty.rows_in, empty.rows_accepted, empty.rows_quarantined) == (0, 0, 0)


def _timed(ages_s: list[float]) -> tuple[Validator, pd.DataFrame]:
    contract = parse_contract(
        """
        name: events
        version: 1
        columns:
          value: {dtype: float, max: 100}
          at: {dtype: datetime}
        freshness: {column: at, max_age_s: 3600}
        invalid_share_max: 0.5
        """
    )
    stamps = [pd.Timestamp(NOW - age, unit="s", tz="UTC").isoformat() for age in ages_s]
    frame = pd.DataFrame({"value": ["1"] * len(ages_s), "at": stamps})
    return Validator(contract), frame


def test_freshness_is_the_age_of_the_newest_valid_row() -> None:
    validator, frame = _timed([7200, 3600, 90000])
    stale_validator, stale = _timed([7200, 3601])
    _, dated_by_an_invalid_row = _timed([7200, 5000, 10])
    dated_by_an_invalid_row.loc[2, "value"] = "500"  # the newest row is over max: not counted

    assert not validator.validate(frame, now_s=NOW).rejected  # exactly 3600 s old: fresh
    stale_verdict = _balanced(stale_validator.validate(stale, now_s=NOW))
    assert stale_verdict.reason == (
        "freshness: newest at (2027-01-15T06:59:59+00:00) is 3601 s old, more than 3600 s"
    )
    assert stale_verdict.rows_quarantined == 2
    verdict = validator.validate(dated_by_an_invalid_row, now_s=NOW)
    assert verdict.reason is not None
    assert verdict.reason.startswith("freshness: newest at")
    assert "5000 s old" in verdict.reason


def test_the_invalid_share_threshold_is_inclusive(
    iris: pd.DataFrame, iris_contract: Contract
) -> None:
    validator = Validator(iris_contract)  # invalid_share_max: 0.1, of 150 rows: 15
    at_limit = _text(iris)
    at_limit.loc[:14, "species"] = "rose"
    over = _text(iris)
    over.loc[:15, "species"] = "rose"

    assert not validator.validate(at_limit, now_s=NOW).rejected
    verdict = _balanced(validator.validate(over, now_s=NOW))
    assert verdict.reason == "invalid_share: 16 of 150 rows invalid (10.7%), more than 10.0%"
    assert verdict.rows_quarantined == 150
    assert len(verdict.failures) == 16  # the row-level reasons are kept for the quarantine


def test_a_contract_with_every_dtype_types_the_batch() -> None:
    contract = parse_contract(
        """
        name: mixed
        version: 1
        columns:
          n: {dtype: int, allowed: [1, 2]}
          x: {dtype: float, nullable: true}
          ok: {dtype: bool}
          at: {dtype: datetime}
          s: {dtype: string, nullable: true}
        rows: {min: 0}
        invalid_share_max: 0.5
        """
    )
    frame = pd.DataFrame(
        {
            "n": ["1", "3"],
            "x": ["0.5", np.nan],
            "ok": ["yes", "no"],
            "at": ["2026-11-26T10:00:00Z", "2026-11-26"],
            "s": [np.nan, "b"],
        }
    )

    verdict = Validator(contract).validate(frame, now_s=NOW)

    assert _failed(verdict) == {(1, "n", "allowed")}
    assert [str(t) for t in verdict.accepted().dtypes] == [
        "Int64",
        "float64",
        "boolean",
        "datetime64[ns, UTC]",
        "string",
    ]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    broken=st.dictionaries(
        st.integers(0, 149),
        st.sampled_from([("sepal_length", "x"), ("sepal_width", "99"), ("species", "rose")]),
        max_size=30,
    )
)
def test_the_quarantined_rows_are_exactly_the_broken_ones(
    iris: pd.DataFrame, iris_contract: Contract, broken: dict[int, tuple[str, str]]
) -> None:
    frame = _text(iris)
    for row, (column, value) in broken.items():
        frame.loc[row, column] = value

    verdict = _balanced(Validator(iris_contract).validate(frame, now_s=NOW))

    assert set(np.flatnonzero(verdict.invalid)) == set(broken)
    assert verdict.rejected == (len(broken) > 15)
    expected_quarantined = 150 if verdict.rejected else len(broken)
    assert verdict.rows_quarantined == expected_quarantined


def test_missing_values_are_no_repeats_of_each_other() -> None:
    contract = parse_contract(
        """
        name: t
        version: 1
        columns:
          x: {dtype: float, unique: true, nullable: true}
          n: {dtype: int, unique: true}
        invalid_share_max: 1
        """
    )
    frame = pd.DataFrame({"x": ["1", None, None, "1"], "n": ["1", None, "1", "2"]})

    verdict = Validator(contract).validate(frame, now_s=NOW)

    assert _failed(verdict) == {(1, "n", "nullable"), (2, "n", "unique"), (3, "x", "unique")}
