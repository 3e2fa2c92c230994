"""Rollouts over the admin API, on a real `RolloutService` and both databases: plans started
(400 naming each bad field), watched (analysis runs with values and thresholds), commanded
(409 when the status forbids it), business metrics pushed, scopes and roles enforced, 503
without a rollout controller."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from seawall.clock import FakeClock
from seawall.gateway import Gateway
from seawall.gateway.admin.rolloutviews import DecisionView, RolloutView
from seawall.release import RolloutPlan, StaticSource
from seawall.release.records import DecisionRecord, RolloutRecord
from seawall.release.service import RolloutService

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.gateway.admin.conftest import Serve

ADMIN_KEY = "admin-secret-0123456789"
VIEW_KEY = "view-secret-0123456789a"
DEPLOY_KEY = "deploy-secret-012345678"
APPROVE_KEY = "approve-secret-01234567"
SCOPED_KEY = "scoped-secret-012345678"
KEYS = f"""
auth:
  keys:
    - {{name: ops, key: {ADMIN_KEY}, roles: [admin]}}
    - {{name: dashboards, key: {VIEW_KEY}, roles: [viewer]}}
    - {{name: release, key: {DEPLOY_KEY}, roles: [deployer]}}
    - {{name: four-eyes, key: {APPROVE_KEY}, roles: [approver]}}
    - {{name: other-team, key: {SCOPED_KEY}, roles: [deployer, viewer], models: [other]}}
models: [{{name: echo, backend: {{kind: mock}}}}]
"""
CONFIG = 'database_url: "{url}"\n' + KEYS.replace("{", "{{").replace("}", "}}")

#: 10% of the traffic, judged twice (30 s apart) on errors and latency relative to stable.
PLAN: dict[str, Any] = {
    "model": "iris",
    "stable_version": "1",
    "canary_version": "2",
    "steps": [
        {"set_weight": 10},
        {
            "analysis": {
                "interval_s": 30,
                "count": 2,
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


def as_key(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def plan(model: str = "iris", **changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(PLAN)
    document.update(model=model, **changes)
    return document


@dataclass
class Traffic:
    """A traffic target that records the canary weights it was given."""

    weights: list[float] = field(default_factory=list)
    promoted: bool = False
    rolled_back: bool = False

    async def set_canary_weight(self, percent: float) -> None:
        self.weights.append(percent)

    async def promote(self) -> None:
        self.promoted = True

    async def rollback(self) -> None:
        self.rolled_back = True


class Approvals:
    async def approved(self, model: str, version: str) -> bool:
        return False


@dataclass
class Rollouts:
    """A gateway with a rollout service on its database, and what the service drives."""

    gateway: Gateway
    http: httpx.AsyncClient
    service: RolloutService
    clock: FakeClock
    source: StaticSource
    traffic: dict[str, Traffic]

    async def settled(
        self, model: str, done: Callable[[RolloutRecord], bool], timeout_s: float = 10.0
    ) -> RolloutRecord:
        """The model's rollout once `done` holds (its controller runs in a task)."""
        deadline = time.monotonic() + timeout_s
        while True:
            record = await self.service.get(model)
            if done(record):
                return record
            assert time.monotonic() < deadline, f"still {record.status}: {record.reason}"
            await asyncio.sleep(0.01)

    async def advance(self, seconds: float, timeout_s: float = 10.0) -> None:
        """Move the clock once the controller sleeps on it (a sleep it has yet to begin would
        start after the move, and end `seconds` too late)."""
        deadline = time.monotonic() + timeout_s
        while self.clock.sleepers == 0:
            assert time.monotonic() < deadline, "no controller is waiting on the clock"
            await asyncio.sleep(0.001)
        self.clock.advance(seconds)

    async def history(self, model: str) -> list[DecisionRecord]:
        return await self.service.history(model)


async def with_rollouts(gateway: Gateway, http: httpx.AsyncClient, clock: FakeClock) -> Rollouts:
    assert gateway.assembly.shared is not None
    assert gateway.assembly.shared.control is not None
    control = gateway.assembly.shared.control
    source = StaticSource()
    traffic: dict[str, Traffic] = {}

    def target(plan: RolloutPlan) -> Traffic:
        return traffic.setdefault(plan.model, Traffic())

    service = RolloutService(
        await control.database(),
        await control.audit(),
        clock=clock,
        traffic=target,
        metrics=lambda plan: source,
        approvals=Approvals(),
    )

    async def provide() -> RolloutService:
        return service

    control.provide_rollouts(provide)
    return Rollouts(gateway, http, service, clock, source, traffic)


@pytest.fixture
async def rollouts(database_url: str, serve: Serve, clock: FakeClock) -> AsyncIterator[Rollouts]:
    # database_url first: its schema is dropped after the gateway (and its connections) stop.
    gateway, http = await serve(CONFIG.format(url=database_url))
    harness = await with_rollouts(gateway, http, clock)
    try:
        yield harness
    finally:
        await harness.service.aclose()


def healthy(source: StaticSource) -> None:
    """The canary errs 0.2% of calls and is 10% slower than stable: within both guardrails."""
    source.set("error_rate", "2", 0.002)
    source.set("latency_p95_s", "2", 0.11)
    source.set("latency_p95_s", "1", 0.1)


# --- start -----------------------------------------------------------------------------------


async def test_a_deployer_starts_a_rollout_and_its_controller_runs(rollouts: Rollouts) -> None:
    response = await rollouts.http.post("/admin/rollouts", json=plan(), headers=as_key(DEPLOY_KEY))

    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["model"], body["stable_version"], body["canary_version"]) == ("iris", "1", "2")
    assert (body["status"], body["step_index"], body["weight"]) == ("running", 0, 0.0)
    assert body["created_by"] == "release"
    assert body["plan"]["steps"][0] == {"set_weight": 10.0}
    record = await rollouts.settled("iris", lambda r: r.step_index == 1)
    assert (record.weight, rollouts.traffic["iris"].weights[-1]) == (10.0, 10.0)


async def test_a_plan_that_does_not_parse_is_400_naming_each_field(rollouts: Rollouts) -> None:
    bad = plan(steps=[{"set_weight": 150}, {"pause": {}}], colour="red")
    del bad["canary_version"]

    response = await rollouts.http.post("/admin/rollouts", json=bad, headers=as_key(DEPLOY_KEY))

    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("plan: ")
    for words in (
        "canary_version: Field required",
        "steps[0].set_weight: Input should be less than or equal to 100",
        "colour: unknown field (check the spelling)",
    ):
        assert words in error
    assert await rollouts.service.list() == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            plan(steps=[{"analysis": {"interval_s": 1, "count": 1, "guardrails": []}}]),
            "steps[0].analysis.guardrails: List should have at least 1 item",
        ),
        (plan(canary_version="1"), "canary_version: is the stable version '1'"),
        (
            plan(steps=[{"pause": {"duration_s": 5}}, {"analysis": PLAN["steps"][1]["analysis"]}]),
            "steps[1].analysis: the canary gets no traffic here",
        ),
    ],
)
async def test_the_plans_own_rules_are_400_too(
    rollouts: Rollouts, body: dict[str, Any], words: str
) -> None:
    response = await rollouts.http.post("/admin/rollouts", json=body, headers=as_key(DEPLOY_KEY))
    assert response.status_code == 400
    assert words in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ([1, 2], 422, "body: Input should be a valid dictionary"),
        (plan(stable_version="1\x00"), 422, "body: Value error, text contains a NUL character"),
    ],
)
async def test_a_body_no_plan_could_be_is_422(
    rollouts: Rollouts, body: Any, status: int, words: str
) -> None:
    response = await rollouts.http.post("/admin/rollouts", json=body, headers=as_key(DEPLOY_KEY))
    assert response.status_code == status
    assert response.json()["error"] == words


async def test_a_second_live_rollout_of_a_model_is_409(rollouts: Rollouts) -> None:
    headers = as_key(DEPLOY_KEY)
    assert (await rollouts.http.post("/admin/rollouts", json=plan(), headers=headers)).is_success

    again = await rollouts.http.post(
        "/admin/rollouts", json=plan(canary_version="3"), headers=headers
    )

    assert again.status_code == 409
    assert "iris" in again.json()["error"]
    assert len(await rollouts.service.list()) == 1


async def test_only_an_admin_starts_a_plan_whose_metric_calls_python(rollouts: Rollouts) -> None:
    guardrail = {
        "name": "revenue",
        "metric": {"kind": "business", "name": "revenue", "function": "os:getpid"},
        "min": 1,
    }
    analysis = {"interval_s": 30, "count": 1, "guardrails": [guardrail]}
    body = plan(steps=[{"set_weight": 10}, {"analysis": analysis}])

    refused = await rollouts.http.post("/admin/rollouts", json=body, headers=as_key(DEPLOY_KEY))
    assert refused.status_code == 403
    assert refused.json()["error"] == (
        "API key 'release' may not start a plan whose metrics call Python functions "
        "(`function:`): that needs the role 'admin'"
    )
    assert await rollouts.service.list() == []
    started = await rollouts.http.post("/admin/rollouts", json=body, headers=as_key(ADMIN_KEY))
    assert started.status_code == 201
    assert started.json()["created_by"] == "ops"


# --- read ------------------------------------------------------------------------------------


async def test_status_shows_every_analysis_run_per_guardrail_with_values_and_thresholds(
    rollouts: Rollouts,
) -> None:
    healthy(rollouts.source)
    await rollouts.http.post("/admin/rollouts", json=plan(), headers=as_key(DEPLOY_KEY))
    await rollouts.settled("iris", lambda r: r.step_index == 1)
    await rollouts.advance(30)
    await rollouts.settled("iris", lambda r: len(r.state["analysis_runs"]) == 1)
    rollouts.source.set("error_rate", "2", 0.05)  # the second run fails on errors
    await rollouts.advance(30)
    record = await rollouts.settled("iris", lambda r: r.status.terminal)

    response = await rollouts.http.get("/admin/rollouts/iris", headers=as_key(VIEW_KEY))

    assert response.status_code == 200
    body = response.json()
    assert RolloutView.model_validate(body).id == record.id
    assert (body["status"], body["weight"]) == ("rolled_back", 0.0)
    assert rollouts.traffic["iris"].rolled_back
    runs = body["state"]["analysis_runs"]
    assert [run["verdict"] for run in runs] == ["pass", "fail"]
    first = {r["name"]: r for r in runs[0]["results"]}
    assert first["errors"] == {
        "name": "errors",
        "value": 0.002,
        "stable_value": None,
        "threshold": 0.01,
        "threshold_min": None,
        "verdict": "pass",
        "reason": "error_rate 0.002 within <= 0.01",
    }
    assert first["latency"]["value"] == 0.11
    assert first["latency"]["stable_value"] == 0.1
    assert first["latency"]["threshold"] == pytest.approx(0.12)
    second = {r["name"]: r for r in runs[1]["results"]}
    assert (second["errors"]["value"], second["errors"]["verdict"]) == (0.05, "fail")
    assert runs[1]["at"] - runs[0]["at"] == 30


async def test_history_lists_the_decisions_oldest_first(rollouts: Rollouts) -> None:
    healthy(rollouts.source)
    await rollouts.http.post("/admin/rollouts", json=plan(), headers=as_key(DEPLOY_KEY))
    await rollouts.settled("iris", lambda r: r.step_index == 1)
    await rollouts.advance(30)
    await rollouts.settled("iris", lambda r: len(r.state["analysis_runs"]) == 1)

    response = await rollouts.http.get("/admin/rollouts/iris/history", headers=as_key(APPROVE_KEY))

    assert response.status_code == 200
    decisions = [DecisionView.model_validate(d) for d in response.json()]
    assert [(d.kind.value, d.step_index, d.weight) for d in decisions] == [
        ("weight", 0, 10.0),
        ("step", 1, 10.0),
        ("analysis", 1, 10.0),
    ]
    assert {d.actor for d in decisions} == {"system"}
    assert [r.name for r in decisions[2].results] == ["errors", "latency"]
    limited = await rollouts.http.get(
        "/admin/rollouts/iris/history?limit=1", headers=as_key(VIEW_KEY)
    )
    assert [d["kind"] for d in limited.json()] == ["analysis"]


async def test_the_listing_is_newest_first_filtered_and_limited(rollouts: Rollouts) -> None:
    headers = as_key(DEPLOY_KEY)
    for model in ("a", "b", "c"):
        response = await rollouts.http.post("/admin/rollouts", json=plan(model), headers=headers)
        assert response.status_code == 201
    await rollouts.settled("b", lambda r: r.step_index == 1)  # its controller is running
    aborted = await rollouts.http.post(
        "/admin/rollouts/b/abort", json={"reason": "no"}, headers=headers
    )
    assert aborted.status_code == 200, aborted.text

    async def models(query: str) -> list[str]:
        response = await rollouts.http.get(f"/admin/rollouts{query}", headers=as_key(VIEW_KEY))
        assert response.status_code == 200
        return [r["model"] for r in response.json()]

    assert await models("") == ["c", "b", "a"]
    assert await models("?active_only=true") == ["c", "a"]
    assert await models("?limit=2") == ["c", "b"]
    bad = await rollouts.http.get("/admin/rollouts?limit=0", headers=as_key(VIEW_KEY))
    assert (bad.status_code, bad.json()["error"]) == (
        422,
        "limit: Input should be greater than or equal to 1",
    )


async def test_an_unknown_model_is_404(rollouts: Rollouts) -> None:
    for method, path in (
        ("GET", "/admin/rollouts/nothing"),
        ("GET", "/admin/rollouts/nothing/history"),
        ("POST", "/admin/rollouts/nothing/pause"),
    ):
        response = await rollouts.http.request(method, path, headers=as_key(ADMIN_KEY))
        assert response.status_code == 404, f"{method} {path}: {response.text}"
        assert "nothing" in response.json()["error"]


# --- commands --------------------------------------------------------------------------------


async def test_pause_resume_abort_and_the_409s_the_status_forbids(rollouts: Rollouts) -> None:
    http, headers = rollouts.http, as_key(DEPLOY_KEY)
    await http.post("/admin/rollouts", json=plan(), headers=headers)
    await rollouts.settled("iris", lambda r: r.step_index == 1)

    async def command(name: str, body: dict[str, str] | None = None) -> httpx.Response:
        return await http.post(f"/admin/rollouts/iris/{name}", json=body, headers=headers)

    paused = await command("pause", {"reason": "checking the dashboards"})
    assert paused.status_code == 200
    assert (paused.json()["status"], paused.json()["reason"]) == (
        "paused",
        "checking the dashboards",
    )
    again = await command("pause")
    assert again.status_code == 409
    assert again.json()["error"] == (
        "pause: the rollout of iris 2 is paused, not running or waiting_approval"
    )
    resumed = await command("resume")  # no body: the reason says it was by hand
    assert (resumed.json()["status"], resumed.json()["reason"]) == ("running", "resumed by hand")
    assert (await command("resume")).status_code == 409
    aborted = await command("abort", {"reason": ""})
    assert aborted.status_code == 200
    assert (aborted.json()["status"], aborted.json()["weight"]) == ("aborted", 0.0)
    assert rollouts.traffic["iris"].rolled_back
    for name in ("pause", "resume", "abort", "promote"):
        late = await command(name)
        assert late.status_code == 409, name
        assert "is aborted" in late.json()["error"]
    decisions = await rollouts.history("iris")
    kinds = [(d.kind.value, d.actor, d.reason) for d in decisions[-3:]]
    assert kinds == [
        ("paused", "release", "checking the dashboards"),
        ("resumed", "release", "resumed by hand"),
        ("aborted", "release", "aborted by hand"),
    ]


async def test_promote_makes_the_canary_stable_now(rollouts: Rollouts) -> None:
    await rollouts.http.post("/admin/rollouts", json=plan(), headers=as_key(DEPLOY_KEY))
    await rollouts.settled("iris", lambda r: r.step_index == 1)

    response = await rollouts.http.post(
        "/admin/rollouts/iris/promote", json={"reason": "looks fine"}, headers=as_key(ADMIN_KEY)
    )

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["weight"]) == ("promoted", 100.0)
    assert rollouts.traffic["iris"].promoted


async def test_a_reason_no_database_could_store_is_422(rollouts: Rollouts) -> None:
    await rollouts.http.post("/admin/rollouts", json=plan(), headers=as_key(DEPLOY_KEY))
    for reason, words in (
        ("\x00", "reason: Value error, text contains a NUL character"),
        ("x" * 10_001, "reason: String should have at most 10000 characters"),
    ):
        response = await rollouts.http.post(
            "/admin/rollouts/iris/pause", json={"reason": reason}, headers=as_key(DEPLOY_KEY)
        )
        assert (response.status_code, response.json()["error"]) == (422, words)


# --- pushed metrics --------------------------------------------------------------------------


async def test_pushed_business_metrics_are_what_the_analysis_judges(rollouts: Rollouts) -> None:
    conversion = {
        "name": "conversion",
        "metric": {"kind": "business", "name": "conversion", "pushed": True},
        "min": 0.02,
    }
    analysis = {"interval_s": 30, "count": 1, "guardrails": [conversion]}
    body = plan(steps=[{"set_weight": 10}, {"analysis": analysis}, {"set_weight": 50}])
    await rollouts.http.post("/admin/rollouts", json=body, headers=as_key(DEPLOY_KEY))
    await rollouts.settled("iris", lambda r: r.step_index == 1)

    pushed = await rollouts.http.post(
        "/admin/rollouts/iris/metrics",
        json={"name": "conversion", "version": "2", "value": 0.01},
        headers=as_key(DEPLOY_KEY),
    )
    assert pushed.status_code == 202
    assert pushed.json() == {"name": "conversion", "version": "2", "value": 0.01}
    await rollouts.advance(30)

    record = await rollouts.settled("iris", lambda r: r.status.terminal)
    assert record.status.value == "rolled_back"
    result = record.state["analysis_runs"][0]["results"][0]
    assert (result["value"], result["threshold_min"], result["verdict"]) == (0.01, 0.02, "fail")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"name": "conversion", "version": "2"}, "value: Field required"),
        ({"name": "conversion", "version": "2", "value": "0.5"}, "value: Input should be a"),
        ({"name": "conv ersion", "version": "2", "value": 1}, "name: String should match"),
        ({"name": "c", "version": "2", "value": 1, "at": 5}, "at: Extra inputs"),
    ],
)
async def test_a_bad_metric_push_is_422_naming_the_field(
    rollouts: Rollouts, body: dict[str, Any], words: str
) -> None:
    response = await rollouts.http.post(
        "/admin/rollouts/iris/metrics", json=body, headers=as_key(DEPLOY_KEY)
    )
    assert response.status_code == 422
    assert response.json()["error"].startswith(words)


# --- who may ---------------------------------------------------------------------------------


async def test_a_key_for_other_models_is_refused_on_every_rollout_route(
    rollouts: Rollouts,
) -> None:
    await rollouts.http.post("/admin/rollouts", json=plan(), headers=as_key(DEPLOY_KEY))
    headers = as_key(SCOPED_KEY)
    wrong = []
    for method, path, body in (
        ("POST", "/admin/rollouts", plan()),
        ("GET", "/admin/rollouts/iris", None),
        ("GET", "/admin/rollouts/iris/history", None),
        ("POST", "/admin/rollouts/iris/pause", {"reason": "x"}),
        ("POST", "/admin/rollouts/iris/resume", None),
        ("POST", "/admin/rollouts/iris/abort", None),
        ("POST", "/admin/rollouts/iris/promote", None),
        ("POST", "/admin/rollouts/iris/metrics", {"name": "c", "version": "2", "value": 1}),
    ):
        response = await rollouts.http.request(method, path, json=body, headers=headers)
        expected = "API key 'other-team' may not act on model 'iris' (it may on: other)"
        if response.status_code != 403 or response.json()["error"] != expected:
            wrong.append(f"{method} {path}: {response.status_code} {response.text}")
    assert wrong == []
    # Nor does it see the rollout in the listing; its own model it may roll out.
    listing = await rollouts.http.get("/admin/rollouts", headers=headers)
    assert listing.json() == []
    own = await rollouts.http.post("/admin/rollouts", json=plan("other"), headers=headers)
    assert own.status_code == 201
    listing = await rollouts.http.get("/admin/rollouts", headers=headers)
    assert [r["model"] for r in listing.json()] == ["other"]


async def test_viewers_read_and_deployers_steer(rollouts: Rollouts) -> None:
    viewer = as_key(VIEW_KEY)
    refused = await rollouts.http.post("/admin/rollouts", json=plan(), headers=viewer)
    assert refused.status_code == 403
    assert refused.json()["error"] == (
        "API key 'dashboards' lacks the role 'deployer' (it has: viewer)"
    )
    await rollouts.http.post("/admin/rollouts", json=plan(), headers=as_key(DEPLOY_KEY))
    assert (await rollouts.http.get("/admin/rollouts/iris", headers=viewer)).status_code == 200
    paused = await rollouts.http.post("/admin/rollouts/iris/pause", headers=viewer)
    assert paused.status_code == 403
    assert (await rollouts.service.get("iris")).status.value == "running"
    unauthenticated = await rollouts.http.get("/admin/rollouts")
    assert unauthenticated.status_code == 401


# --- without a rollout controller -------------------------------------------------------------


async def test_a_gateway_without_a_rollout_controller_answers_503(
    serve: Serve, tmp_path: Any
) -> None:
    _, http = await serve(CONFIG.format(url=f"sqlite:///{tmp_path / 'gw.db'}"))
    for method, path in (("GET", "/admin/rollouts"), ("POST", "/admin/rollouts/iris/abort")):
        response = await http.request(method, path, headers=as_key(ADMIN_KEY))
        assert response.status_code == 503
        assert response.json() == {"error": "this gateway runs no rollout controller"}
    invalid = await http.post("/admin/rollouts", json={}, headers=as_key(ADMIN_KEY))
    assert invalid.status_code == 400  # a bad plan is refused before the service is looked for


async def test_a_gateway_without_a_database_answers_503(serve: Serve) -> None:
    keys = f"auth: {{keys: [{{name: ops, key: {ADMIN_KEY}, roles: [admin]}}]}}\n"
    _, http = await serve(keys + "models: []\n")
    response = await http.get("/admin/rollouts/iris", headers=as_key(ADMIN_KEY))
    assert response.status_code == 503
    assert "no database is configured" in response.json()["error"]


async def test_the_schema_documents_every_rollout_route(rollouts: Rollouts) -> None:
    schema = (await rollouts.http.get("/openapi.json")).json()
    paths = {p: sorted(ops) for p, ops in schema["paths"].items() if "rollouts" in p}
    commands = {f"/admin/rollouts/{{model}}/{c}": ["post"] for c in ("pause", "resume")}
    commands |= {f"/admin/rollouts/{{model}}/{c}": ["post"] for c in ("abort", "promote")}
    assert paths == {
        "/admin/rollouts": ["get", "post"],
        "/admin/rollouts/{model}": ["get"],
        "/admin/rollouts/{model}/history": ["get"],
        "/admin/rollouts/{model}/metrics": ["post"],
        **commands,
    }
    start = schema["paths"]["/admin/rollouts"]["post"]
    assert sorted(start["responses"]) == ["201", "400", "401", "403", "404", "409", "422", "503"]
    example = start["requestBody"]["content"]["application/json"]["schema"]["examples"][0]
    assert example["model"] == "iris"
    view = schema["components"]["schemas"]["GuardrailResultView"]["properties"]
    assert {"value", "stable_value", "threshold", "threshold_min", "verdict"} <= set(view)
