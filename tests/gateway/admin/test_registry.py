"""The model registry over HTTP, on SQLite and PostgreSQL: blobs uploaded, a version registered,
staged, refused to its own author's approval (four eyes), approved by another key, promoted with
an alias; every change in the history and the audit log under the calling key's name; the rules'
refusals (409), unknown names (404), bad fields (400, 422) and model scopes (403)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from seawall.clock import FakeClock
from seawall.gateway import Gateway

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.gateway.admin.conftest import Serve

KEYS = {
    "ops": ["admin"],
    "lead": ["deployer", "approver"],  # registers, and approves others' versions
    "alice": ["approver"],
    "bob": ["approver"],
    "dev": ["deployer"],
    "viewer": ["viewer"],
}
CONFIG = """
database_url: "{url}"
registry: {{approval_ttl_s: 3600}}
auth:
  keys:
{keys}
    - {{name: iris-team, key: iris-team-secret-0123456789, roles: [deployer], models: ["iris*"]}}
models: []
"""
MODEL_BYTES = b"\x80\x04 a pickled model " * 100
WEIGHTS = b"weights " * 50


def as_(name: str) -> dict[str, str]:
    """The headers of the key `name` (its secret is `<name>-secret-0123456789`)."""
    return {"authorization": f"Bearer {name}-secret-0123456789"}


@pytest.fixture
async def started(serve: Serve, database_url: str) -> tuple[Gateway, httpx.AsyncClient]:
    keys = "\n".join(
        f"    - {{name: {n}, key: {n}-secret-0123456789, roles: [{', '.join(r)}]}}"
        for n, r in KEYS.items()
    )
    return await serve(CONFIG.format(url=database_url, keys=keys))


@pytest.fixture
def http(started: tuple[Gateway, httpx.AsyncClient]) -> httpx.AsyncClient:
    return started[1]


async def upload(http: httpx.AsyncClient, data: bytes, who: str = "lead") -> str:
    digest = hashlib.sha256(data).hexdigest()
    response = await http.put(f"/admin/artifacts/{digest}", content=data, headers=as_(who))
    assert response.status_code in (200, 201), response.text
    return digest


async def register(
    http: httpx.AsyncClient, model: str = "iris", who: str = "lead", **fields: Any
) -> httpx.Response:
    """Register a one-file version of `model` (created first if missing) as `who`."""
    if (await http.get(f"/admin/models/{model}", headers=as_("ops"))).status_code == 404:
        created = await http.post("/admin/models", json={"name": model}, headers=as_("ops"))
        assert created.status_code == 201, created.text
    files = {"model.pkl": await upload(http, MODEL_BYTES, who)}
    body = {"framework": "sklearn", "artifact": {"kind": "file", "files": files}, **fields}
    return await http.post(f"/admin/models/{model}/versions", json=body, headers=as_(who))


async def stage(
    http: httpx.AsyncClient, version: int, target: str, who: str = "lead", **fields: Any
) -> httpx.Response:
    body = {"stage": target, **fields}
    url = f"/admin/models/iris/versions/{version}/stage"
    return await http.post(url, json=body, headers=as_(who))


async def approve(http: httpx.AsyncClient, version: int, who: str) -> httpx.Response:
    url = f"/admin/models/iris/versions/{version}/approvals"
    return await http.post(url, json={"comment": f"{who} checked it"}, headers=as_(who))


async def test_upload_register_stage_approve_promote_and_the_history_names_each_key(
    started: tuple[Gateway, httpx.AsyncClient],
) -> None:
    gateway, http = started
    created = await http.post(
        "/admin/models",
        json={"name": "iris", "description": "flowers", "tags": {"team": "ml"}},
        headers=as_("lead"),
    )
    assert created.status_code == 201
    assert created.json()["created_by"] == "lead"
    assert created.json()["required_approvals"] == 1  # registry.required_approvals

    weights = await upload(http, WEIGHTS)
    config = await upload(http, b'{"depth": 3}')
    body = {
        "framework": "sklearn",
        "artifact": {"kind": "directory", "files": {"weights.bin": weights, "cfg.json": config}},
        "metrics": {"accuracy": 0.97},
        "dataset_snapshot": "snap-1",
        "code_version": "abc123",
    }
    registered = await http.post("/admin/models/iris/versions", json=body, headers=as_("lead"))
    assert registered.status_code == 201, registered.text
    version = registered.json()
    assert (version["version"], version["stage"], version["author"]) == (1, "none", "lead")
    assert version["uri"] == "models:/iris/1"
    # Computed from the store, not the client: the size of both blobs, the store's root.
    assert version["artifact"]["total_bytes"] == len(WEIGHTS) + len(b'{"depth": 3}')
    assert gateway.assembly.shared is not None
    assert gateway.assembly.shared.control is not None
    registry = await gateway.assembly.shared.control.registry()
    assert registry.blobs is not None
    assert version["artifact"]["uri"] == registry.blobs.root
    assert version["artifact"]["signed_by"] is None

    assert (await stage(http, 1, "staging")).status_code == 200
    own = await approve(http, 1, "lead")
    assert own.status_code == 403
    assert own.json() == {
        "error": "four eyes: 'lead' registered 'iris' version 1 and cannot approve it; another "
        "approver must"
    }
    early = await stage(http, 1, "production", alias="champion")
    assert early.status_code == 409
    assert early.json()["error"].startswith("approvals: 'iris' version 1 needs 1 approval(s)")

    approved = await approve(http, 1, "alice")
    assert approved.status_code == 201
    assert (approved.json()["approver"], approved.json()["decision"]) == ("alice", "approve")
    promoted = await stage(http, 1, "production", alias="champion", comment="go")
    assert promoted.status_code == 200, promoted.text
    assert (promoted.json()["stage"], promoted.json()["aliases"]) == ("production", ["champion"])

    detail = (await http.get("/admin/models/iris/versions/1", headers=as_("viewer"))).json()
    assert detail["approvals"]["approved_by"] == ["alice"]
    assert detail["approvals"]["satisfied"] is True
    model = (await http.get("/admin/models/iris", headers=as_("viewer"))).json()
    assert (model["aliases"], model["latest_version"]) == ({"champion": 1}, 1)

    history = (await http.get("/admin/models/iris/history", headers=as_("viewer"))).json()
    assert [(e["action"], e["version"], e["actor"]) for e in history] == [
        ("model.create", None, "lead"),
        ("model.register", 1, "lead"),
        ("model.stage", 1, "lead"),
        ("model.approve", 1, "alice"),
        ("model.stage", 1, "lead"),
        ("model.alias", 1, "lead"),
    ]
    assert history[-2]["details"]["approved_by"] == ["alice"]
    last = await http.get("/admin/models/iris/history?limit=2", headers=as_("viewer"))
    assert [e["action"] for e in last.json()] == ["model.stage", "model.alias"]
    # The same actors in the hash-chained audit log, with the blobs' uploads.
    audit = await (await gateway.assembly.shared.control.audit()).records(after_seq=0, limit=100)
    assert [(r.action, r.actor) for r in audit if r.action.startswith("artifact.")] == [
        ("artifact.put", "lead"),
        ("artifact.put", "lead"),
    ]
    assert [r.actor for r in audit if r.action == "model.approve"] == ["alice"]


async def test_protected_aliases_and_stage_rules_are_409(http: httpx.AsyncClient) -> None:
    assert (await register(http)).status_code == 201
    assert (await register(http)).status_code == 201
    # champion points only at a version in production.
    early = await http.put(
        "/admin/models/iris/aliases/champion", json={"version": 1}, headers=as_("dev")
    )
    assert early.status_code == 409
    assert early.json()["error"] == (
        "alias: 'champion' is protected and points only at a version in production; version 1 "
        "is in none"
    )
    # Any other alias points anywhere; moving it is audited under the key's name.
    moved = await http.put(
        "/admin/models/iris/aliases/candidate", json={"version": 2}, headers=as_("dev")
    )
    assert (moved.status_code, moved.json()["updated_by"]) == (200, "dev")
    skipped = await stage(http, 1, "production", who="dev")
    assert skipped.status_code == 409
    assert skipped.json()["error"].startswith("stage: none → production is not allowed")

    for version in (1, 2):
        assert (await stage(http, version, "staging", who="dev")).status_code == 200
        assert (await approve(http, version, "alice")).status_code == 201
    assert (await stage(http, 1, "production", who="dev", alias="champion")).status_code == 200
    # The champion's version cannot leave production until the alias moves.
    held = await stage(http, 1, "archived", who="dev")
    assert held.status_code == 409
    assert "the protected alias 'champion' points at 'iris' version 1" in held.json()["error"]
    # Promoting 2 with the alias moves it; 1 is archived (archive_previous defaults to true).
    assert (await stage(http, 2, "production", who="dev", alias="champion")).status_code == 200
    one = (await http.get("/admin/models/iris/versions/1", headers=as_("dev"))).json()
    assert one["stage"] == "archived"
    # An archived version is approved again before it serves again.
    late = await approve(http, 1, "bob")
    assert late.status_code == 409
    assert late.json()["error"].startswith("stage: version 1 is in archived")

    removed = await http.delete("/admin/models/iris/aliases/candidate", headers=as_("dev"))
    assert (removed.status_code, removed.json()["version"]) == (200, 2)
    model = (await http.get("/admin/models/iris", headers=as_("dev"))).json()
    assert model["aliases"] == {"champion": 2}


async def test_a_rejection_or_an_expired_approval_blocks_production(
    http: httpx.AsyncClient, clock: FakeClock
) -> None:
    assert (await register(http)).status_code == 201
    assert (await stage(http, 1, "staging")).status_code == 200
    assert (await approve(http, 1, "alice")).status_code == 201
    clock.advance(3600)  # registry.approval_ttl_s
    expired = await stage(http, 1, "production")
    assert expired.status_code == 409
    assert expired.json()["error"].endswith("it has 0 (1 expired: alice)")

    rejected = await http.post(
        "/admin/models/iris/versions/1/rejections",
        json={"comment": "drift on the new data"},
        headers=as_("bob"),
    )
    assert (rejected.status_code, rejected.json()["decision"]) == (201, "reject")
    assert rejected.json()["expires_at"] is None
    assert (await approve(http, 1, "alice")).status_code == 201
    blocked = await stage(http, 1, "production")
    assert blocked.status_code == 409
    assert blocked.json()["error"] == "approvals: 'iris' version 1 is rejected by bob"
    status = (await http.get("/admin/models/iris/versions/1/approvals", headers=as_("bob"))).json()
    assert (status["approved_by"], status["rejected_by"], status["satisfied"]) == (
        ["alice"],
        ["bob"],
        False,
    )
    assert [d["decision"] for d in status["decisions"]] == ["approve", "reject", "approve"]
    # bob's own later approval replaces his rejection.
    assert (await approve(http, 1, "bob")).status_code == 201
    assert (await stage(http, 1, "production")).status_code == 200


async def test_an_admin_raises_the_approvals_a_model_needs(http: httpx.AsyncClient) -> None:
    assert (await register(http)).status_code == 201
    refused = await http.patch(
        "/admin/models/iris", json={"required_approvals": 0}, headers=as_("lead")
    )
    assert refused.status_code == 403
    assert refused.json()["error"] == (
        "API key 'lead' lacks the role 'admin' (it has: approver, deployer)"
    )
    changed = await http.patch(
        "/admin/models/iris",
        json={"required_approvals": 2, "description": "two pairs of eyes"},
        headers=as_("ops"),
    )
    assert changed.status_code == 200
    assert (changed.json()["required_approvals"], changed.json()["description"]) == (
        2,
        "two pairs of eyes",
    )
    assert (await stage(http, 1, "staging")).status_code == 200
    assert (await approve(http, 1, "alice")).status_code == 201
    one_short = await stage(http, 1, "production")
    assert one_short.status_code == 409
    assert "needs 2 approval(s)" in one_short.json()["error"]
    assert (await approve(http, 1, "bob")).status_code == 201
    assert (await stage(http, 1, "production")).status_code == 200
    history = (await http.get("/admin/models/iris/history", headers=as_("ops"))).json()
    update = next(e for e in history if e["action"] == "model.update")
    assert (update["actor"], update["details"]["required_approvals"]) == ("ops", 2)


async def test_lineage_versions_and_deployments(
    started: tuple[Gateway, httpx.AsyncClient],
) -> None:
    gateway, http = started
    assert (await register(http, dataset_snapshot="snap-1")).status_code == 201
    child = await register(http, parent_version=1, code_version="def456", version=5)
    assert (child.status_code, child.json()["version"]) == (201, 5)
    lineage = await http.get("/admin/models/iris/versions/5/lineage", headers=as_("viewer"))
    assert [(n["version"], n["parent_version"]) for n in lineage.json()] == [(5, 1), (1, None)]
    assert lineage.json()[1]["dataset_snapshot"] == "snap-1"
    versions = await http.get("/admin/models/iris/versions", headers=as_("viewer"))
    assert [v["version"] for v in versions.json()] == [5, 1]

    assert gateway.assembly.shared is not None
    assert gateway.assembly.shared.control is not None
    registry = await gateway.assembly.shared.control.registry()
    await registry.record_deployment("iris", 1, "gw-a", 1.0, actor="system")
    await registry.record_deployment("iris", 5, "gw-b", 0.1, actor="system")
    await registry.record_deployment("iris", 1, "gw-a", 0.0, actor="system")
    everything = await http.get("/admin/models/iris/deployments", headers=as_("viewer"))
    assert [(d["target"], d["version"]) for d in everything.json()] == [
        ("gw-b", 5),
        ("gw-a", 1),
    ]
    serving = await http.get(
        "/admin/models/iris/deployments?open_only=true&target=gw-a", headers=as_("viewer")
    )
    assert serving.json() == []
    at_b = await http.get("/admin/models/iris/deployments?target=gw-b", headers=as_("viewer"))
    assert [(d["traffic_share"], d["ended_at"]) for d in at_b.json()] == [(0.1, None)]


async def test_unknown_models_versions_and_aliases_are_404(http: httpx.AsyncClient) -> None:
    assert (await register(http)).status_code == 201
    viewer = as_("viewer")
    cases = [
        ("GET", "/admin/models/wine", None, "model 'wine' is not registered"),
        ("GET", "/admin/models/iris/versions/9", None, "model 'iris' has no version 9"),
        ("GET", "/admin/models/wine/history", None, "model 'wine' is not registered"),
        ("GET", "/admin/models/iris/versions/9/lineage", None, "model 'iris' has no version 9"),
        ("GET", "/admin/models/wine/deployments", None, "model 'wine' is not registered"),
    ]
    for method, url, body, error in cases:
        response = await http.request(method, url, json=body, headers=viewer)
        assert (response.status_code, response.json()) == (404, {"error": error}), url
    lead = as_("lead")
    cases = [
        ("DELETE", "/admin/models/iris/aliases/nope", None, "model 'iris' has no alias 'nope'"),
        ("PUT", "/admin/models/iris/aliases/x", {"version": 9}, "model 'iris' has no version 9"),
        ("POST", "/admin/models/iris/versions/9/stage", {"stage": "staging"}, "no version 9"),
    ]
    for method, url, body, error in cases:
        response = await http.request(method, url, json=body, headers=lead)
        assert response.status_code == 404, url
        assert response.json()["error"].endswith(error)
    # Registering needs the model registered first (with its approval rule).
    digest = await upload(http, MODEL_BYTES)
    body = {"framework": "sklearn", "artifact": {"kind": "file", "files": {"m": digest}}}
    unknown = await http.post("/admin/models/wine/versions", json=body, headers=lead)
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"error": "model 'wine' is not registered"},
    )


async def test_bad_input_is_refused_naming_the_field(http: httpx.AsyncClient) -> None:
    assert (await register(http)).status_code == 201
    digest = await upload(http, MODEL_BYTES)
    missing = hashlib.sha256(b"never uploaded").hexdigest()
    lead = as_("lead")

    def version(**artifact: Any) -> dict[str, Any]:
        return {"framework": "sklearn", "artifact": artifact}

    url = "/admin/models/iris/versions"
    cases: list[tuple[str, str, Any, int, str]] = [
        ("POST", url, version(kind="file", files={"m": missing}), 400, "artifact.files: m: blob"),
        (
            "POST",
            url,
            version(kind="file", files={"a": digest, "b": digest}),
            400,
            "artifact.files: a one-file artifact has exactly one file",
        ),
        ("POST", url, version(kind="file", files={"../m": digest}), 400, "artifact.files: '../m'"),
        ("POST", url, version(kind="file", files={"m": "abc"}), 422, "artifact.files.m: String"),
        ("POST", url, version(kind="zip", files={"m": digest}), 422, "artifact.kind: Input"),
        (
            "POST",
            url,
            {**version(kind="file", files={"m": digest}), "parent_version": 7},
            400,
            "parent_version: 'iris' has no version 7",
        ),
        (
            "POST",
            url,
            {**version(kind="file", files={"m": digest}), "metrics": {"auc": "high"}},
            422,
            "metrics.auc: Input should be a valid number",
        ),
        (
            "POST",
            url,
            {**version(kind="file", files={"m": digest}), "tags": {"t": "\x00"}},
            400,
            "tags: contains a NUL character",
        ),
        (
            "POST",
            url,
            {**version(kind="file", files={"m": digest}), "version": 1},
            409,
            "version: 'iris' version 1 exists",
        ),
        ("POST", url, {"framework": "Sklearn!", "artifact": {}}, 422, "framework: String should"),
        ("POST", url, version(kind="file", files={}), 422, "artifact.files: Dictionary should"),
        (
            "POST",
            url,
            {**version(kind="file", files={"m": digest}), "author": "someone"},
            422,
            "author: Extra inputs are not permitted",
        ),
        ("POST", "/admin/models", {"name": "iris"}, 409, "name: model 'iris' is registered"),
        ("POST", "/admin/models", {"name": "-x"}, 422, "name: String should match pattern"),
        (
            "POST",
            "/admin/models",
            {"name": "x", "required_approvals": 11},
            422,
            "required_approvals: Input should be less than or equal to 10",
        ),
        ("PATCH", "/admin/models/iris", {}, 400, "body: nothing to change"),
        ("GET", "/admin/models/iris/versions/0", None, 422, "version: Input should be greater"),
        ("GET", "/admin/models/iris/versions/x", None, 422, "version: Input should be a valid"),
        ("GET", "/admin/models/%20iris", None, 422, "model: String should match pattern"),
        ("POST", "/admin/models/iris/versions/1/stage", {"stage": "live"}, 422, "stage: Input"),
        (
            "POST",
            "/admin/models/iris/versions/1/stage",
            {"stage": "staging", "alias": "candidate"},
            400,
            "alias: an alias is moved with a promotion to production",
        ),
        ("PUT", "/admin/models/iris/aliases/7", {"version": 1}, 422, "alias: String should"),
        ("PUT", "/admin/models/iris/aliases/x", {"version": True}, 422, "version: Input should"),
        ("GET", "/admin/models/iris/history?limit=0", None, 422, "limit: Input should be greater"),
        ("GET", "/admin/models/iris/deployments?target=a%00", None, 422, "target: String should"),
    ]
    wrong = []
    for method, path, body, status, error in cases:
        response = await http.request(method, path, json=body, headers=as_("ops"))
        if response.status_code != status or not response.json()["error"].startswith(error):
            wrong.append(f"{method} {path} {body}: {response.status_code} {response.text}")
    assert wrong == []
    for comment, status, error in (
        ("", 422, "comment: String should have at least 1"),
        (" ", 400, "comment: a rejection says why"),
    ):
        response = await http.post(
            "/admin/models/iris/versions/1/rejections", json={"comment": comment}, headers=lead
        )
        assert (response.status_code, response.json()["error"][: len(error)]) == (status, error)


async def test_a_scoped_key_sees_and_changes_only_its_models(http: httpx.AsyncClient) -> None:
    for model in ("iris", "iris-v2", "wine"):
        assert (await register(http, model)).status_code == 201
    team = as_("iris-team")
    listed = await http.get("/admin/models", headers=team)
    assert [m["name"] for m in listed.json()] == ["iris", "iris-v2"]
    everything = await http.get("/admin/models", headers=as_("viewer"))
    assert [m["name"] for m in everything.json()] == ["iris", "iris-v2", "wine"]

    assert (await http.get("/admin/models/iris-v2/versions", headers=team)).status_code == 200
    for method, url, body in (
        ("GET", "/admin/models/wine", None),
        ("GET", "/admin/models/wine/versions/1", None),
        ("POST", "/admin/models", {"name": "wine-2"}),
        ("POST", "/admin/models/wine/versions/1/stage", {"stage": "staging"}),
        ("PUT", "/admin/models/wine/aliases/candidate", {"version": 1}),
    ):
        response = await http.request(method, url, json=body, headers=team)
        target = "wine-2" if method == "POST" and url == "/admin/models" else "wine"
        assert (response.status_code, response.json()) == (
            403,
            {"error": f"API key 'iris-team' may not act on model {target!r} (it may on: iris*)"},
        ), url
    # Its own models it registers versions of.
    assert (await register(http, "iris", who="iris-team")).status_code == 201


async def test_without_a_database_the_registry_routes_are_503(serve: Serve) -> None:
    _, http = await serve(
        "auth: {keys: [{name: ops, key: ops-secret-0123456789, roles: [admin]}]}\nmodels: []\n"
    )
    for method, url in (
        ("GET", "/admin/models"),
        ("GET", "/admin/models/iris/history"),
        ("PUT", f"/admin/artifacts/{hashlib.sha256(b'x').hexdigest()}"),
    ):
        response = await http.request(method, url, content=b"x", headers=as_("ops"))
        assert (response.status_code, response.json()) == (
            503,
            {"error": "no database is configured: set database_url (or auth.database_keys)"},
        ), url
