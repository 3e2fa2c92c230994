"""Schemathesis fuzzes a running gateway's admin API from its OpenAPI schema, on SQLite and on
PostgreSQL: no 5xx, every response one the schema documents (status, content type, headers,
body), invalid requests refused, the declared auth enforced.

It runs schemathesis's own command line (`st run`): its coverage phase (boundary values, wrong
types, unsupported methods) finds what plain generation misses, and its pytest plugin reads a
private attribute that pytest 9.2 no longer has.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.e2e.conftest import Launch

pytestmark = pytest.mark.e2e

ADMIN_KEY = "fuzz-admin-secret-0123456789"
#: Fuzzed examples per operation (the coverage and stateful phases come on top).
EXAMPLES = 25
# The one breaker there is, so the circuit routes get past 404 and write to the audit log.
ST_CONFIG = '[parameters]\n"path.model" = "echo"\n"path.version" = "1"\n'


def test_the_admin_api_answers_every_request_as_its_schema_says(
    launch: Launch, tmp_path: Path, database_url: str
) -> None:
    config = tmp_path / "seawall.yaml"
    config.write_text(
        "server: {log_level: info}\n"
        f'database_url: "{database_url}"\n'
        "auth:\n"
        f"  keys: [{{name: fuzz-admin, key: {ADMIN_KEY}, roles: [admin]}}]\n"
        "  database_keys: true\n"
        "models:\n"
        "  - {name: echo, backend: {kind: mock}, policies: {circuit_breaker: {}}}\n",
        encoding="utf-8",
    )
    gateway = launch(config)
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
        # Every check but positive_data_acceptance, which expects whatever the schema allows to
        # succeed: rules no JSON schema states (an expiry in the future, a name not taken yet,
        # printable characters) are refused with 409 or 422, as documented.
        *("--checks", "all", "--exclude-checks", "positive_data_acceptance"),
        *("--max-examples", str(EXAMPLES), "--workers", "1", "--request-timeout", "10"),
    ]
    # In tmp_path: schemathesis keeps a cache directory where it runs.
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path
    )
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    assert "Tested: 10" in run.stdout  # every admin route was fuzzed
    assert "Traceback" not in gateway.log()
