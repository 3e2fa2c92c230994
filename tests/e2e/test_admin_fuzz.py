"""Schemathesis fuzzes a running gateway's admin API from its OpenAPI schema, on SQLite and on
PostgreSQL: no 5xx, every response one the schema documents (status, content type, headers,
body), invalid requests refused, the declared auth enforced.

It runs schemathesis's own command line (`st run`): its coverage phase (boundary values, wrong
types, unsupported methods) finds what plain generation misses, and its pytest plugin reads a
private attribute that pytest 9.2 no longer has.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.e2e.conftest import Launch

pytestmark = pytest.mark.e2e

ADMIN_KEY = "fuzz-admin-secret-0123456789"
# Registers the model version the fuzzer acts on, so the admin's approvals are four-eyes valid.
DEPLOYER_KEY = "fuzz-deployer-secret-0123456789"
#: Fuzzed examples per operation (the coverage and stateful phases come on top).
EXAMPLES = 12
# The one breaker there is, and the model, version and alias `registered` makes, so the circuit
# and registry routes get past 404 and write to the database and the audit log.
#
# Schemathesis's coverage phase puts a fixed value over its own invalid one (`version: 0`) and
# then reports the request, now valid, as accepted; it does so only on routes with two
# constrained path parameters. Those skip that one check (negative_data_rejection): the unit
# tests cover their path bounds (tests/gateway/admin/test_registry.py).
ST_CONFIG = """
[parameters]
"path.model" = "echo"
"path.version" = "1"
"path.alias" = "candidate"

# Every check but positive_data_acceptance, which expects whatever the schema allows to succeed:
# rules no JSON schema states (an expiry in the future, a name not taken yet, printable
# characters) are refused with 409 or 422, as documented.
[checks]
positive_data_acceptance = {enabled = false}

[[operations]]
include-path-regex = "^/admin/models/[{]model[}]/(versions/[{]version[}]|aliases/[{]alias[}])"
checks = {negative_data_rejection = {enabled = false}}
"""
MODEL_BYTES = b"a model to fuzz around"
#: A rollout of echo's canary that waits an hour after its first step (no approval to ask for).
ROLLOUT = {
    "model": "echo",
    "stable_version": "1",
    "canary_version": "2",
    "steps": [{"set_weight": 10}, {"pause": {"duration_s": 3600}}, {"set_weight": 50}],
}


def registered(url: str) -> None:
    """Model `echo`, its version 1 (registered by the deployer), the alias `candidate`, and a
    rollout of echo's version 2 for the rollout commands to steer."""
    digest = hashlib.sha256(MODEL_BYTES).hexdigest()
    deployer = {"authorization": f"Bearer {DEPLOYER_KEY}"}
    artifact = {"kind": "file", "files": {"model.pkl": digest}}
    with httpx.Client(base_url=url, headers=deployer, timeout=10) as http:
        for method, path, body in (
            ("PUT", f"/admin/artifacts/{digest}", MODEL_BYTES),
            ("POST", "/admin/models", {"name": "echo"}),
            ("POST", "/admin/models/echo/versions", {"framework": "mock", "artifact": artifact}),
            ("PUT", "/admin/models/echo/aliases/candidate", {"version": 1}),
            ("POST", "/admin/rollouts", ROLLOUT),
        ):
            content = body if isinstance(body, bytes) else None
            json = None if isinstance(body, bytes) else body
            response = http.request(method, path, content=content, json=json)
            assert response.is_success, f"{method} {path}: {response.text}"


def test_the_admin_api_answers_every_request_as_its_schema_says(
    launch: Launch, tmp_path: Path, database_url: str
) -> None:
    config = tmp_path / "seawall.yaml"
    config.write_text(
        "server: {log_level: info}\n"
        f'database_url: "{database_url}"\n'
        "auth:\n"
        f"  keys: [{{name: fuzz-admin, key: {ADMIN_KEY}, roles: [admin]}},\n"
        f"         {{name: fuzz-deployer, key: {DEPLOYER_KEY}, roles: [deployer]}}]\n"
        "  database_keys: true\n"
        "models:\n"
        '  - {name: echo, version: "1", backend: {kind: mock}, policies: {circuit_breaker: {}}}\n'
        '  - {name: echo, version: "2", backend: {kind: mock}, policies: {circuit_breaker: {}}}\n'
        # Routed: the gateway runs a rollout controller for echo's versions.
        'traffic: {echo: {stable: "1", canary: "2"}}\n',
        encoding="utf-8",
    )
    gateway = launch(config)
    registered(gateway.url)
    st_config = tmp_path / "schemathesis.toml"
    st_config.write_text(ST_CONFIG, encoding="utf-8")
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--no-color"),
        *("--config-file", str(st_config)),
        *("run", f"{gateway.url}/openapi.json"),
        # Spelled as the schema names it, so the auth checks know it is the real key and
        # check that requests without it, or with another, are refused.
        *("--header", f"Authorization: Bearer {ADMIN_KEY}"),
        *("--phases", "examples,coverage,fuzzing,stateful"),
        # Every check (schemathesis's default), less those ST_CONFIG turns off: there, as
        # `--checks all` here would turn them back on for the routes that skip one.
        *("--max-examples", str(EXAMPLES), "--workers", "1", "--request-timeout", "10"),
    ]
    # In tmp_path: schemathesis keeps a cache directory where it runs.
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=240, check=False, cwd=tmp_path
    )
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    assert "Tested: 36" in run.stdout  # every admin route was fuzzed
    assert "Traceback" not in gateway.log()
