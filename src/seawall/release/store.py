"""`RolloutStore`: rollouts and their decisions in the database, each decision audited.

`create` writes a new rollout (refusing a second live one of the same model) and `save` writes
a controller's new state, the decision that produced it and its audit record
`rollout.<kind>` (with the guardrails' values and thresholds) in one transaction: all three or
none. A save names the revision it follows; a writer whose revision is stale (another process
changed the rollout since) is refused with `StaleRolloutError`, so two controllers can never
interleave their decisions. Refusals are seawall errors: `InvalidInputError` names the field,
`NotFoundError` an unknown rollout, `ConflictError` a clash with what is stored.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from seawall.clock import Clock
from seawall.errors import ConflictError, InvalidInputError, NotFoundError
from seawall.release.codec import plan_to_json
from seawall.release.errors import RolloutStateError
from seawall.release.plan import RolloutPlan
from seawall.release.records import DecisionRecord, RolloutRecord
from seawall.release.state import Decision, DecisionKind, RolloutState, Status
from seawall.release.tables import LIVE_STATUSES, DecisionRow, RolloutRow
from seawall.store.audit import AuditLog
from seawall.store.engine import Database

__all__ = ["MAX_LIST", "RolloutStore", "StaleRolloutError"]

#: Most rollouts or decisions one call returns.
MAX_LIST = 10_000

_MODEL_CHARS = 200
_VERSION_CHARS = 64
T = TypeVar("T")


class StaleRolloutError(ConflictError):
    """The rollout changed since the revision a save followed (another process wrote it)."""

    code = "rollout_stale"


class RolloutStore:
    """The rollouts in `database`; every method is async, on the database's threads."""

    def __init__(self, database: Database, audit: AuditLog, *, clock: Clock) -> None:
        self.database = database
        self._audit = audit
        self._clock = clock

    async def create(self, plan: RolloutPlan, *, actor: str) -> RolloutRecord:
        """Store a new rollout of `plan` (at its start); ConflictError if the model has one live."""
        _check_plan(plan)
        _check_actor(actor)
        state = RolloutState(plan.model, plan.canary_version)
        now = self._now()
        values = {
            "model": plan.model,
            "stable_version": plan.stable_version,
            "canary_version": plan.canary_version,
            "status": state.status.value,
            "step_index": 0,
            "weight": 0.0,
            "reason": "created",
            "plan": plan_to_json(plan),
            "state": state.to_json(),
            "revision": 0,
            "created_at": now,
            "created_by": actor,
            "updated_at": now,
        }
        try:
            return await self.database.run(self._write, lambda c: self._create(c, values, actor))
        except IntegrityError:  # a concurrent start of the same model won
            raise _live_conflict(plan.model, None) from None

    async def save(
        self, rollout_id: int, state: RolloutState, decision: Decision, *, actor: str, revision: int
    ) -> tuple[RolloutRecord, DecisionRecord]:
        """Store `state` and `decision` (audited) if the rollout is still at `revision`."""
        _check_actor(actor)
        return await self.database.run(
            self._write, lambda c: self._save(c, rollout_id, state, decision, actor, revision)
        )

    async def load(self, rollout_id: int) -> RolloutRecord:
        """The rollout with this id; NotFoundError if there is none."""
        return await self.database.run(self._read, lambda c: _by_id(c, rollout_id))

    async def get(self, model: str) -> RolloutRecord:
        """`model`'s live rollout, else its latest; NotFoundError if it never had one."""
        return await self.database.run(self._read, lambda c: _current(c, model))

    async def list(self, *, active_only: bool = False, limit: int = 100) -> list[RolloutRecord]:
        """Rollouts, newest first: every one, or only the live ones."""
        _check_limit(limit)
        query = select(RolloutRow).order_by(RolloutRow.id.desc()).limit(limit)
        if active_only:
            query = query.where(RolloutRow.status.in_(LIVE_STATUSES))
        return await self.database.run(
            self._read, lambda c: [_rollout(row) for row in c.execute(query)]
        )

    async def history(self, model: str, *, limit: int = 100) -> builtins.list[DecisionRecord]:
        """The last `limit` decisions of `model`'s current rollout (see `get`), oldest first."""
        _check_limit(limit)
        return await self.database.run(
            self._read, lambda c: _decisions(c, _current(c, model), limit)
        )

    async def decisions(
        self, rollout_id: int, *, limit: int = 100
    ) -> builtins.list[DecisionRecord]:
        """The last `limit` decisions of the rollout with this id, oldest first."""
        _check_limit(limit)
        return await self.database.run(
            self._read, lambda c: _decisions(c, _by_id(c, rollout_id), limit)
        )

    # ============================================================ internals

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.time(), UTC)

    def _read(self, fn: Callable[[Connection], T]) -> T:
        with self.database.begin(read_only=True) as connection:
            return fn(connection)

    def _write(self, fn: Callable[[Connection], T]) -> T:
        with self.database.begin() as connection:
            return fn(connection)

    def _create(self, c: Connection, values: dict[str, Any], actor: str) -> RolloutRecord:
        model = values["model"]
        live = c.execute(_LIVE.where(RolloutRow.model == model)).first()
        if live is not None:
            raise _live_conflict(model, _rollout(live))
        inserted = c.execute(insert(RolloutRow).values(values).returning(RolloutRow.id))
        record = _by_id(c, int(inserted.scalar_one()))
        details = {
            "rollout_id": record.id,
            "model": model,
            "stable_version": record.stable_version,
            "canary_version": record.canary_version,
            "plan": record.plan,
        }
        _audited(lambda: self._audit.append_in(c, actor, "rollout.start", _target(record), details))
        return record

    def _save(
        self,
        c: Connection,
        rollout_id: int,
        state: RolloutState,
        decision: Decision,
        actor: str,
        revision: int,
    ) -> tuple[RolloutRecord, DecisionRecord]:
        row = c.execute(select(RolloutRow).where(RolloutRow.id == rollout_id).with_for_update())
        current = row.first()
        if current is None:
            raise NotFoundError(f"rollout: no rollout with id {rollout_id}")
        stored = _rollout(current)
        _check_save(stored, state, revision)
        changes = {
            "status": state.status.value,
            "step_index": state.step_index,
            "weight": state.weight,
            "reason": decision.reason,
            "state": state.to_json(),
            "revision": revision + 1,
            "updated_at": self._now(),
        }
        c.execute(update(RolloutRow).where(RolloutRow.id == rollout_id).values(changes))
        values = _decision_values(rollout_id, decision, actor)
        results = values["results"]
        inserted = c.execute(insert(DecisionRow).values(values).returning(DecisionRow.id))
        decision_id = int(inserted.scalar_one())
        details = _details(stored, decision, results)
        action = f"rollout.{decision.kind.value}"
        _audited(lambda: self._audit.append_in(c, actor, action, _target(stored), details))
        saved = _by_id(c, rollout_id)
        return saved, _decision_record(saved, decision_id, {**values, "results": tuple(results)})


_LIVE = select(RolloutRow).where(RolloutRow.status.in_(LIVE_STATUSES))


def _decision_values(rollout_id: int, decision: Decision, actor: str) -> dict[str, Any]:
    return {
        "rollout_id": rollout_id,
        "kind": decision.kind.value,
        "step_index": decision.step_index,
        "status": decision.status.value,
        "weight": decision.weight,
        "reason": decision.reason,
        "results": [r.to_json() for r in decision.results],
        "at": datetime.fromtimestamp(decision.at, UTC),
        "actor": actor,
    }


def _check_save(stored: RolloutRecord, state: RolloutState, revision: int) -> None:
    if (state.model, state.canary_version) != (stored.model, stored.canary_version):
        raise InvalidInputError(
            "state",
            f"belongs to {state.model} {state.canary_version}, not rollout {stored.id} "
            f"({stored.model} {stored.canary_version})",
        )
    if stored.revision != revision:
        raise StaleRolloutError(
            f"rollout {stored.id} of {stored.model} {stored.canary_version}: changed by another "
            f"process (revision {stored.revision}, this writer follows {revision})"
        )
    if stored.status.terminal:
        raise RolloutStateError(
            f"rollout {stored.id} of {stored.model} {stored.canary_version}: already "
            f"{stored.status}"
        )


def _details(stored: RolloutRecord, decision: Decision, results: list[Any]) -> dict[str, Any]:
    return {
        "rollout_id": stored.id,
        "model": stored.model,
        "stable_version": stored.stable_version,
        "canary_version": stored.canary_version,
        "step": decision.step_index,
        "status": decision.status.value,
        "weight": decision.weight,
        "reason": decision.reason,
        "results": results,
        "at": decision.at,
    }


def _audited(append: Callable[[], object]) -> None:
    """Run an audit append; its ValueError (a field too long, bad text) as InvalidInputError."""
    try:
        append()
    except ValueError as exc:
        field, _, reason = str(exc).partition(": ")
        raise InvalidInputError(field, reason or str(exc)) from None


def _target(record: RolloutRecord) -> str:
    return f"model:{record.model}/{record.canary_version}"


def _live_conflict(model: str, live: RolloutRecord | None) -> ConflictError:
    which = "" if live is None else f" (rollout {live.id} of {live.canary_version}, {live.status})"
    return ConflictError(
        f"model: {model!r} has a rollout in progress{which}; abort or finish it first"
    )


def _by_id(c: Connection, rollout_id: int) -> RolloutRecord:
    row = c.execute(select(RolloutRow).where(RolloutRow.id == rollout_id)).first()
    if row is None:
        raise NotFoundError(f"rollout: no rollout with id {rollout_id}")
    return _rollout(row)


def _current(c: Connection, model: str) -> RolloutRecord:
    live = c.execute(_LIVE.where(RolloutRow.model == model)).first()
    if live is None:
        latest = select(RolloutRow).where(RolloutRow.model == model)
        live = c.execute(latest.order_by(RolloutRow.id.desc()).limit(1)).first()
    if live is None:
        raise NotFoundError(f"model: {model!r} has no rollout")
    return _rollout(live)


def _decisions(c: Connection, rollout: RolloutRecord, limit: int) -> list[DecisionRecord]:
    query = (
        select(DecisionRow)
        .where(DecisionRow.rollout_id == rollout.id)
        .order_by(DecisionRow.id.desc())
        .limit(limit)
    )
    rows = list(c.execute(query))
    return [_decision_record(rollout, row.id, _columns(row)) for row in reversed(rows)]


def _columns(row: Any) -> dict[str, Any]:
    return {
        "kind": row.kind,
        "step_index": row.step_index,
        "status": row.status,
        "weight": row.weight,
        "reason": row.reason,
        "results": tuple(row.results),
        "at": row.at,
        "actor": row.actor,
    }


def _decision_record(
    rollout: RolloutRecord, decision_id: int, values: Mapping[str, Any]
) -> DecisionRecord:
    return DecisionRecord(
        id=decision_id,
        rollout_id=rollout.id,
        model=rollout.model,
        canary_version=rollout.canary_version,
        kind=DecisionKind(values["kind"]),
        step_index=values["step_index"],
        status=Status(values["status"]),
        weight=values["weight"],
        reason=values["reason"],
        results=tuple(values["results"]),
        at=values["at"],
        actor=values["actor"],
    )


def _rollout(row: Any) -> RolloutRecord:
    return RolloutRecord(
        id=row.id,
        model=row.model,
        stable_version=row.stable_version,
        canary_version=row.canary_version,
        status=Status(row.status),
        step_index=row.step_index,
        weight=row.weight,
        reason=row.reason,
        plan=row.plan,
        state=row.state,
        created_at=row.created_at,
        created_by=row.created_by,
        updated_at=row.updated_at,
        revision=row.revision,
    )


def _check_plan(plan: RolloutPlan) -> None:
    if not isinstance(plan, RolloutPlan):
        raise InvalidInputError("plan", f"expected a RolloutPlan, got {type(plan).__name__}")
    if len(plan.model) > _MODEL_CHARS:
        raise InvalidInputError("model", f"at most {_MODEL_CHARS} characters")
    for field in ("stable_version", "canary_version"):
        if len(getattr(plan, field)) > _VERSION_CHARS:
            raise InvalidInputError(field, f"at most {_VERSION_CHARS} characters")


def _check_actor(actor: str) -> None:
    if not isinstance(actor, str) or not actor.strip():
        raise InvalidInputError("actor", "who acted (an API key's name, cli:<user>, system)")


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
        raise InvalidInputError("limit", f"1 to {MAX_LIST}, got {limit!r}")
