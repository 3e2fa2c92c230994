"""The audit log over the admin API: pages in seq order, the head, and verification."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
from sqlalchemy import text

from seawall.gateway import Gateway
from seawall.store import AuditLog

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.gateway.admin.conftest import Serve

ADMIN_KEY = "admin-secret-0123456789"
VIEW_KEY = "view-secret-0123456789a"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
CONFIG = f"""
database_url: "{{url}}"
auth:
  keys:
    - {{{{name: ops, key: {ADMIN_KEY}, roles: [admin]}}}}
    - {{{{name: dashboards, key: {VIEW_KEY}, roles: [viewer]}}}}
models: []
"""


@pytest.fixture
async def started(serve: Serve, database_url: str) -> tuple[Gateway, httpx.AsyncClient]:
    return await serve(CONFIG.format(url=database_url))


async def audit_of(gateway: Gateway) -> AuditLog:
    assert gateway.assembly.shared is not None
    assert gateway.assembly.shared.control is not None
    return await gateway.assembly.shared.control.audit()


async def test_records_come_in_pages_with_where_the_next_starts(
    started: tuple[Gateway, httpx.AsyncClient],
) -> None:
    gateway, client = started
    log = await audit_of(gateway)
    for i in range(5):
        await log.append("cli:alice", "model.promote", f"iris:{i}", {"n": i})
    first = (await client.get("/admin/audit/records?limit=2", headers=ADMIN)).json()
    assert [r["seq"] for r in first["records"]] == [1, 2]
    assert first["next_after_seq"] == 2
    record = first["records"][0]
    assert (record["actor"], record["action"], record["target"]) == (
        "cli:alice",
        "model.promote",
        "iris:0",
    )
    assert record["details"] == {"n": 0}
    assert record["prev_hash"] == "0" * 64
    assert first["records"][1]["prev_hash"] == record["hash"]
    rest = await client.get("/admin/audit/records?after_seq=2&limit=10", headers=ADMIN)
    assert [r["seq"] for r in rest.json()["records"]] == [3, 4, 5]
    assert rest.json()["next_after_seq"] is None
    default = (await client.get("/admin/audit/records", headers=ADMIN)).json()
    assert len(default["records"]) == 5


async def test_head_and_verify_follow_the_log(started: tuple[Gateway, httpx.AsyncClient]) -> None:
    gateway, client = started
    empty = (await client.get("/admin/audit/head", headers=ADMIN)).json()
    assert empty == {"seq": 0, "hash": "0" * 64}
    appended = await (await audit_of(gateway)).append("ops", "circuit.mode", "echo:1")
    assert (await client.get("/admin/audit/head", headers=ADMIN)).json() == {
        "seq": 1,
        "hash": appended.hash,
    }
    verified = (await client.get("/admin/audit/verify", headers=ADMIN)).json()
    assert verified == {
        "ok": True,
        "checked": 1,
        "head_seq": 1,
        "head_hash": appended.hash,
        "first_bad_seq": None,
        "problem": None,
        "reason": "",
    }


async def test_a_tampered_log_verifies_as_not_ok_with_the_first_bad_record(
    serve: Serve, tmp_path_factory: pytest.TempPathFactory
) -> None:
    url = f"sqlite:///{tmp_path_factory.mktemp('audit') / 'seawall.db'}"
    gateway, client = await serve(CONFIG.format(url=url))
    log = await audit_of(gateway)
    for i in range(3):
        await log.append("ops", "circuit.mode", f"echo:{i}")
    with log.database.begin() as connection:  # as an owner of the database could
        for (name,) in connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        ).all():
            connection.exec_driver_sql(f"DROP TRIGGER {name}")
        connection.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2"))
    response = await client.get("/admin/audit/verify", headers=ADMIN)
    assert response.status_code == 200
    result = response.json()
    assert (result["ok"], result["checked"], result["first_bad_seq"], result["problem"]) == (
        False,
        1,
        2,
        "edited",
    )
    assert result["reason"]


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("limit=0", "limit: Input should be greater than or equal to 1"),
        ("limit=1001", "limit: Input should be less than or equal to 1000"),
        ("after_seq=-1", "after_seq: Input should be greater than or equal to 0"),
        ("after_seq=9223372036854775808", "after_seq: Input should be less than or equal to"),
        ("after_seq=x", "after_seq: Input should be a valid integer"),
    ],
)
async def test_bad_paging_names_the_field(serve: Serve, query: str, error: str) -> None:
    _, client = await serve(CONFIG.format(url="sqlite://"))
    response = await client.get(f"/admin/audit/records?{query}", headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["error"].startswith(error)


async def test_viewers_may_not_read_it_and_without_a_database_it_is_503(serve: Serve) -> None:
    text_ = CONFIG.replace('database_url: "{url}"\n', "").replace("{{", "{").replace("}}", "}")
    _, client = await serve(text_)
    for path in ("/admin/audit/records", "/admin/audit/head", "/admin/audit/verify"):
        viewer = await client.get(path, headers={"x-api-key": VIEW_KEY})
        assert viewer.status_code == 403
        assert viewer.json() == {
            "error": "API key 'dashboards' lacks the role 'admin' (it has: viewer)"
        }
        assert (await client.get(path, headers=ADMIN)).status_code == 503
