"""The rollout tables: in the shared metadata, with the one-live-rollout-per-model index."""

from __future__ import annotations

from sqlalchemy import Index
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex

from seawall.release.state import Status
from seawall.release.tables import LIVE_PREDICATE, LIVE_STATUSES, DecisionRow, RolloutRow
from seawall.store import Base


def test_the_tables_are_in_the_shared_metadata_with_their_columns() -> None:
    rollouts = Base.metadata.tables["rollouts"]
    decisions = Base.metadata.tables["rollout_decisions"]
    assert rollouts is RolloutRow.__table__
    assert decisions is DecisionRow.__table__
    assert {c.name for c in rollouts.columns} == {
        "id",
        "model",
        "stable_version",
        "canary_version",
        "status",
        "step_index",
        "weight",
        "reason",
        "plan",
        "state",
        "revision",
        "created_at",
        "created_by",
        "updated_at",
    }
    assert {c.name for c in decisions.columns} == {
        "id",
        "rollout_id",
        "kind",
        "step_index",
        "status",
        "weight",
        "reason",
        "results",
        "at",
        "actor",
    }
    (key,) = decisions.foreign_keys
    assert key.target_fullname == "rollouts.id"


def test_the_live_statuses_are_the_statuses_that_are_not_terminal() -> None:
    assert set(LIVE_STATUSES) == {s.value for s in Status if not s.terminal}
    assert LIVE_PREDICATE == "status IN ('running', 'waiting_approval', 'paused')"


def test_one_live_rollout_per_model_is_a_partial_unique_index_on_both_databases() -> None:
    table = Base.metadata.tables["rollouts"]
    (index,) = [i for i in table.indexes if i.name == "uq_rollouts_live_model"]
    assert isinstance(index, Index)
    assert index.unique
    assert [c.name for c in index.columns] == ["model"]
    dialects = (postgresql.dialect(), sqlite.dialect())  # type: ignore[no-untyped-call]
    for dialect in dialects:
        ddl = str(CreateIndex(index).compile(dialect=dialect))
        assert ddl.startswith("CREATE UNIQUE INDEX uq_rollouts_live_model ON rollouts (model)")
        assert ddl.endswith(f"WHERE {LIVE_PREDICATE}")
