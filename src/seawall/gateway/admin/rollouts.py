"""Rollouts over HTTP: start one from a plan, watch it, pause, resume, abort or promote it.

Readers (viewer, deployer, approver, data-steward) see rollouts, their analysis runs (each
guardrail's value, the stable version's, the thresholds, the verdict) and their decisions;
deployers start them, command them and push business metrics. Every route about one model
checks the key's model scope (the plan's model for a start), and the listing shows only the
models the key may act on. The calling key's name is the actor of every decision it causes.

A plan is the YAML document `seawall.config.release` describes, as JSON; one that does not parse
is 400 naming each bad field's path. A plan whose metric calls a Python function (`function:`)
runs code in the gateway: only an admin may start one. A command the rollout's status does not
allow (resume a running one, abort a promoted one) is 409. Without a database, or in a gateway
that runs no rollout controller, 503.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Body, Depends, FastAPI, Path, Query

from seawall.config.release import parse_plan
from seawall.errors import ConfigError, ForbiddenError, InvalidInputError
from seawall.gateway.admin.access import Control, check_model_scope, requires
from seawall.gateway.admin.errors import responses
from seawall.gateway.admin.records import MODEL_NAME_PATTERN
from seawall.gateway.admin.rolloutviews import (
    DecisionView,
    MetricPush,
    PlanDocument,
    RolloutCommand,
    RolloutView,
    rollout_view,
)
from seawall.policies import ApiKey

if TYPE_CHECKING:
    from seawall.release.plan import RolloutPlan

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "plan_of", "rollout_routes"]

Reader = Annotated[ApiKey, Depends(requires("viewer", "deployer", "approver", "data-steward"))]
Deployer = Annotated[ApiKey, Depends(requires("deployer"))]
Model = Annotated[str, Path(pattern=MODEL_NAME_PATTERN, description="The model's name.")]

#: Rollouts or decisions in an answer when no limit is given, and the most in one answer.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

_TAGS: list[str | Enum] = ["rollouts"]
_READ = responses(404, 422, 503)
_PLAN_EXAMPLE = {
    "model": "iris",
    "stable_version": "1",
    "canary_version": "2",
    "steps": [
        {"set_weight": 10},
        {
            "analysis": {
                "interval_s": 30,
                "count": 3,
                "guardrails": [
                    {"name": "errors", "metric": "error_rate", "max": 0.01},
                    {
                        "name": "latency",
                        "metric": "latency_p95_s",
                        "max": 1.2,
                        "relative_to_stable": True,
                    },
                ],
            }
        },
        {"set_weight": 50},
    ],
}


_COMMAND_ROUTE: dict[str, Any] = {
    "response_model": RolloutView,
    "tags": _TAGS,
    "responses": responses(400, 404, 409, 422, 503),
}


def rollout_routes(app: FastAPI) -> None:
    """`/admin/rollouts...` over the gateway's rollout service."""
    _read_routes(app)
    _start_route(app)
    _command_routes(app)
    _metric_route(app)


def _read_routes(app: FastAPI) -> None:
    @app.get(
        "/admin/rollouts",
        response_model=list[RolloutView],
        tags=_TAGS,
        responses=responses(422, 503),
    )
    async def list_rollouts(
        key: Reader,
        control: Control,
        active_only: Annotated[bool, Query(description="Only those not yet finished.")] = False,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="At most this many.")] = (
            DEFAULT_LIMIT
        ),
    ) -> list[RolloutView]:
        """Rollouts of the models the key may act on, newest first."""
        service = await control.rollouts()
        records = await service.list(active_only=active_only, limit=limit)
        return [rollout_view(r) for r in records if key.may_call(r.model)]

    @app.get("/admin/rollouts/{model}", response_model=RolloutView, tags=_TAGS, responses=_READ)
    async def get_rollout(model: Model, key: Reader, control: Control) -> RolloutView:
        """The model's active rollout (else its latest), with every analysis run's results."""
        check_model_scope(key, model)
        return rollout_view(await (await control.rollouts()).get(model))

    @app.get(
        "/admin/rollouts/{model}/history",
        response_model=list[DecisionView],
        tags=_TAGS,
        responses=_READ,
    )
    async def rollout_history(
        model: Model,
        key: Reader,
        control: Control,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="At most this many.")] = (
            DEFAULT_LIMIT
        ),
    ) -> list[DecisionView]:
        """The decisions of the model's latest rollout, oldest first."""
        check_model_scope(key, model)
        decisions = await (await control.rollouts()).history(model, limit=limit)
        return [DecisionView.model_validate(d.to_json()) for d in decisions]


def _start_route(app: FastAPI) -> None:
    @app.post(
        "/admin/rollouts",
        status_code=201,
        response_model=RolloutView,
        tags=_TAGS,
        responses=responses(400, 404, 409, 422, 503),
    )
    async def start_rollout(
        key: Deployer,
        control: Control,
        body: Annotated[
            PlanDocument,
            Body(
                description="A rollout plan, as in YAML (`seawall.config.release`).",
                examples=[_PLAN_EXAMPLE],
            ),
        ],
    ) -> RolloutView:
        """Start rolling the plan's canary version out; 409 if the model has an active rollout."""
        plan = plan_of(body)
        check_model_scope(key, plan.model)
        if any(m.function is not None for m in plan.metrics()) and not key.has_role("admin"):
            raise ForbiddenError(
                f"API key {key.name!r} may not start a plan whose metrics call Python functions "
                "(`function:`): that needs the role 'admin'"
            )
        service = await control.rollouts()
        return rollout_view(await service.start(plan, actor=key.name))


#: The commands on a rollout: name (the route's last segment and the service's method), the
#: reason recorded when none is given, and the route's description.
_COMMANDS = (
    (
        "pause",
        "paused by hand",
        "Hold the rollout where it is (traffic stays) until resumed; 409 if not running.",
    ),
    (
        "resume",
        "resumed by hand",
        "Carry on after a pause (its timers shifted by the time paused); 409 if not paused.",
    ),
    (
        "abort",
        "aborted by hand",
        "Roll the canary back now (no more traffic to it); 409 if the rollout is over.",
    ),
    (
        "promote",
        "promoted by hand",
        "Make the canary the stable version now, skipping the steps left; 409 if it is over.",
    ),
)


def _command_routes(app: FastAPI) -> None:
    for command, default_reason, description in _COMMANDS:
        _command_route(app, command, default_reason, description)


def _command_route(app: FastAPI, command: str, default_reason: str, description: str) -> None:
    async def endpoint(
        model: Model, key: Deployer, control: Control, body: RolloutCommand | None = None
    ) -> RolloutView:
        check_model_scope(key, model)
        act = getattr(await control.rollouts(), command)
        reason = _reason(body, default_reason)
        return rollout_view(await act(model, actor=key.name, reason=reason))

    endpoint.__name__ = endpoint.__qualname__ = f"{command}_rollout"  # the OpenAPI operation id
    endpoint.__doc__ = description
    app.post(f"/admin/rollouts/{{model}}/{command}", **_COMMAND_ROUTE)(endpoint)


def _reason(body: RolloutCommand | None, default: str) -> str:
    return body.reason if body is not None and body.reason.strip() else default


def _metric_route(app: FastAPI) -> None:
    @app.post(
        "/admin/rollouts/{model}/metrics",
        status_code=202,
        response_model=MetricPush,
        tags=_TAGS,
        responses=responses(400, 404, 422, 503),
    )
    async def push_metric(
        model: Model, body: MetricPush, key: Deployer, control: Control
    ) -> MetricPush:
        """Record a business metric's value for a version; analyses read the latest one."""
        check_model_scope(key, model)
        (await control.rollouts()).push(model, body.name, body.version, body.value)
        return body


def plan_of(document: dict[str, Any]) -> RolloutPlan:
    """The plan in `document`; 400 naming each bad field's path."""
    try:
        return parse_plan(document)
    except ConfigError as exc:
        raise InvalidInputError("plan", "; ".join(exc.problems)) from None
