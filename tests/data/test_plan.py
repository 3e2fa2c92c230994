"""Plans: the same batch always plans to the same snapshot; the counts always balance."""

from __future__ import annotations

import pandas as pd
import pytest

from seawall.data.canonical import content_id, from_parquet
from seawall.data.contract import Contract
from seawall.data.errors import DataError
from seawall.data.plan import check_balance, make_plan
from seawall.data.quarantine import REASONS_COLUMN, ROW_COLUMN
from seawall.data.sources import Batch
from seawall.data.validation import Validator

NOW = 1_800_000_000.0


def _plan(frame: pd.DataFrame, contract: Contract, **options: object):  # type: ignore[no-untyped-def]
    batch = Batch(frame.astype(str), {"kind": "frame", "description": "test"})
    return make_plan(Validator(contract), batch, dataset="iris", now_s=NOW, **options)  # type: ignore[arg-type]


def test_a_clean_batch_plans_a_snapshot_and_no_quarantine(
    iris: pd.DataFrame, iris_contract: Contract
) -> None:
    plan = _plan(iris, iris_contract)

    assert plan.snapshot_id is not None
    assert plan.quarantine_parquet is None
    assert plan.profile is not None
    assert plan.profile["rows"] == 150
    assert plan.contract_digest == iris_contract.digest()
    assert plan.lineage == {
        "dataset": "iris",
        "contract": ["iris", "1"],
        "parents": [],
        "transform": "ingest",
    }
    assert plan.snapshot_parquet is not None
    frame, metadata = from_parquet(plan.snapshot_parquet)
    assert metadata["id"] == plan.snapshot_id
    assert content_id(frame, plan.columns, plan.lineage) == plan.snapshot_id


def test_the_same_batch_plans_the_same_bytes(iris: pd.DataFrame, iris_contract: Contract) -> None:
    one, two = _plan(iris, iris_contract), _plan(iris, iris_contract)

    assert one.snapshot_id == two.snapshot_id
    assert one.snapshot_parquet == two.snapshot_parquet
    assert one.profile == two.profile


def test_invalid_rows_are_left_out_and_quarantined_as_read(
    iris: pd.DataFrame, iris_contract: Contract
) -> None:
    frame = iris.astype(str)
    frame.loc[2, "sepal_length"] = "abc"
    frame.loc[2, "species"] = "rose"
    frame.loc[40, "petal_width"] = "11"

    plan = make_plan(Validator(iris_contract), Batch(frame, {}), dataset="iris", now_s=NOW)

    assert plan.verdict.rows_accepted == 148
    assert plan.profile is not None
    assert plan.profile["rows"] == 148
    assert plan.quarantine_parquet is not None
    quarantined, _ = from_parquet(plan.quarantine_parquet)
    assert quarantined[ROW_COLUMN].tolist() == [2, 40]
    assert quarantined["sepal_length"].tolist() == ["abc", "5.0"]  # as the file had them
    assert quarantined[REASONS_COLUMN].tolist() == [
        "sepal_length: 'abc' is not a float; species: 'rose' is not one of "
        "['setosa', 'versicolor', 'virginica']",
        "petal_width: 11.0 is above the maximum 10",
    ]


def test_a_rejected_batch_plans_no_snapshot_and_quarantines_every_row(
    iris: pd.DataFrame, iris_contract: Contract
) -> None:
    plan = _plan(iris.head(5), iris_contract)  # fewer than rows.min

    assert plan.snapshot_id is None
    assert plan.snapshot_parquet is None
    assert plan.profile is None
    assert plan.quarantine_parquet is not None
    quarantined, _ = from_parquet(plan.quarantine_parquet)
    assert quarantined[ROW_COLUMN].tolist() == [0, 1, 2, 3, 4]
    assert quarantined[REASONS_COLUMN].isna().all()  # no row broke a rule: the batch did


def test_parents_and_transform_are_part_of_the_id(
    iris: pd.DataFrame, iris_contract: Contract
) -> None:
    base = _plan(iris, iris_contract)
    derived = _plan(iris, iris_contract, parents=[base.snapshot_id], transform="dedupe")

    assert derived.snapshot_id != base.snapshot_id
    assert derived.lineage["parents"] == [base.snapshot_id]


@pytest.mark.parametrize(("rows_in", "accepted", "quarantined"), [(5, 3, 1), (5, 6, -1), (0, 1, 0)])
def test_counts_that_do_not_balance_are_an_error(
    rows_in: int, accepted: int, quarantined: int
) -> None:
    with pytest.raises(DataError, match="counts do not balance"):
        check_balance(rows_in, accepted, quarantined)
    check_balance(5, 3, 2)
