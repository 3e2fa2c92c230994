"""`seawall rollout` against a real gateway served over HTTP (uvicorn, in a thread of its own),
with a real rollout service on an SQLite file: output, `--json`, exit statuses, the key."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
import yaml
from typer.testing import CliRunner, Result

from seawall.assemble import assemble
from seawall.assemble.control import ControlPlane
from seawall.cli.main import app
from seawall.clock import FakeClock
from seawall.config import parse_config
from seawall.gateway import Gateway
from seawall.release import RolloutPlan, StaticSource
from seawall.release.records import RolloutRecord
from seawall.release.service import RolloutService

T = TypeVar("T")
runner = CliRunner()

DEPLOY_KEY = "cli-deployer-secret-0123456789"
VIEW_KEY = "cli-viewer-secret-0123456789"
CONFIG = f"""
database_url: "sqlite:///{{db}}"
auth:
  keys:
    - {{{{name: release, key: {DEPLOY_KEY}, roles: [deployer, viewer]}}}}
    - {{{{name: dashboards, key: {VIEW_KEY}, roles: [viewer]}}}}
models: [{{{{name: echo, backend: {{{{kind: mock}}}}}}}}]
"""
PLAN = {
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


class Traffic:
    async def set_canary_weight(self, percent: float) -> None:
        pass

    async def promote(self) -> None:
        pass

    async def rollback(self) -> None:
        pass


class NoApprovals:
    async def approved(self, model: str, version: str) -> bool:
        return False


@dataclass
class Served:
    """A gateway listening on `url`, its event loop in another thread, and its rollouts."""

    url: str
    loop: asyncio.AbstractEventLoop
    control: ControlPlane
    service: RolloutService
    clock: FakeClock
    source: StaticSource

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the gateway's loop; its result."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=10)

    def settled(self, model: str, done: Callable[[RolloutRecord], bool]) -> RolloutRecord:
        """The model's rollout once `done` holds (its controller runs in a task)."""
        deadline = time.monotonic() + 10
        while True:
            record = self.run(self.service.get(model))
            if done(record):
                return record
            assert time.monotonic() < deadline, f"still {record.status}: {record.reason}"
            time.sleep(0.01)

    def advance(self, seconds: float) -> None:
        """Move the clock once the controller sleeps on it."""
        deadline = time.monotonic() + 10
        while self.clock.sleepers == 0:
            assert time.monotonic() < deadline, "no controller is waiting on the clock"
            time.sleep(0.001)
        self.loop.call_soon_threadsafe(self.clock.advance, seconds)


async def _serve(tmp_path: Path, clock: FakeClock, stop: asyncio.Event, ready: Any) -> None:
    config = parse_config(CONFIG.format(db=tmp_path / "gw.db"), environ={}, base_dir=tmp_path)
    gateway = Gateway(assemble(config, clock=clock))
    await gateway.startup()
    assert gateway.assembly.shared is not None
    control = gateway.assembly.shared.control
    assert control is not None
    source = StaticSource()

    def traffic(plan: RolloutPlan) -> Traffic:
        return Traffic()

    service = RolloutService(
        await control.database(),
        await control.audit(),
        clock=clock,
        traffic=traffic,
        metrics=lambda plan: source,
        approvals=NoApprovals(),
    )

    async def provide() -> RolloutService:
        return service

    control.provide_rollouts(provide)
    listener = socket.create_server(("127.0.0.1", 0))  # listening: connections queue up at once
    server = uvicorn.Server(uvicorn.Config(gateway, lifespan="off", log_config=None))
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        port = listener.getsockname()[1]
        ready(f"http://127.0.0.1:{port}", control, service, source)
        await stop.wait()
    finally:
        server.should_exit = True
        await serving
        listener.close()
        await service.aclose()
        await gateway.shutdown()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="gateway", daemon=True)
    thread.start()
    clock = FakeClock()
    stop = asyncio.Event()
    started: list[Served] = []
    up = threading.Event()

    def ready(url: str, control: ControlPlane, service: RolloutService, source: Any) -> None:
        started.append(Served(url, loop, control, service, clock, source))
        up.set()

    serving = asyncio.run_coroutine_threadsafe(_serve(tmp_path, clock, stop, ready), loop)
    try:
        assert up.wait(timeout=30), serving.result(timeout=1)
        yield started[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        serving.result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def seawall(served: Served, *args: str, key: str | None = DEPLOY_KEY, **env: str) -> Result:
    """`seawall rollout ARGS --gateway URL`, the key in SEAWALL_ADMIN_KEY."""
    environ = {"SEAWALL_ADMIN_KEY": key, "SEAWALL_ADMIN_KEY_FILE": None, **env}
    result = runner.invoke(app, ["rollout", *args, "--gateway", served.url], env=environ)
    for secret in (DEPLOY_KEY, VIEW_KEY):
        assert secret not in result.output  # the key is never printed
    return result


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(PLAN), encoding="utf-8")
    return path


def started(served: Served, plan_file: Path) -> RolloutRecord:
    """The plan started through the CLI, its controller at the analysis step."""
    result = seawall(served, "start", str(plan_file))
    assert result.exit_code == 0, result.output
    return served.settled("iris", lambda r: r.step_index == 1)


# --- start -----------------------------------------------------------------------------------


def test_start_sends_the_plan_and_says_what_started(served: Served, plan_file: Path) -> None:
    result = seawall(served, "start", str(plan_file))

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "started rollout 1: iris 1 -> 2: running, step 1/3, canary weight 0%\n"
    )
    record = served.run(served.service.get("iris"))
    assert (record.created_by, record.plan["steps"][0]) == ("release", {"set_weight": 10.0})


def test_start_json_prints_the_rollout_the_gateway_answered(
    served: Served, plan_file: Path
) -> None:
    result = seawall(served, "start", str(plan_file), "--json")

    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert (body["id"], body["model"], body["status"], body["created_by"]) == (
        1,
        "iris",
        "running",
        "release",
    )


def test_a_bad_plan_file_is_exit_2_naming_the_field_and_nothing_is_sent(
    served: Served, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**PLAN, "steps": [{"set_weight": 150}]}), encoding="utf-8")

    result = seawall(served, "start", str(bad))

    assert result.exit_code == 2
    assert f"error: {bad}: 1 problem(s):" in result.stderr
    assert "steps[0].set_weight: Input should be less than or equal to 100" in result.stderr
    assert served.run(served.service.list()) == []


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "No such file or directory"),
        ("steps: [a", "not YAML"),
        ("- 1\n- 2\n", "a rollout plan is a mapping, got list"),
    ],
)
def test_an_unreadable_plan_is_exit_2(
    served: Served, tmp_path: Path, content: str | None, words: str
) -> None:
    path = tmp_path / "plan.yaml"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    result = seawall(served, "start", str(path))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {path}: ")
    assert words in result.stderr


def test_a_second_start_is_refused_with_exit_1(served: Served, plan_file: Path) -> None:
    started(served, plan_file)
    again = seawall(served, "start", str(plan_file))
    assert again.exit_code == 1
    assert again.stderr.startswith("refused: ")
    assert "iris" in again.stderr


# --- status and history ----------------------------------------------------------------------


def test_status_prints_each_runs_verdict_per_guardrail_with_values_and_thresholds(
    served: Served, plan_file: Path
) -> None:
    served.source.set("error_rate", "2", 0.002)
    served.source.set("latency_p95_s", "2", 0.11)
    served.source.set("latency_p95_s", "1", 0.1)
    started(served, plan_file)
    served.advance(30)
    served.settled("iris", lambda r: len(r.state["analysis_runs"]) == 1)
    served.source.set("error_rate", "2", 0.05)
    served.advance(30)
    served.settled("iris", lambda r: r.status.terminal)

    result = seawall(served, "status", "iris")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "rollout 1: iris 1 -> 2: rolled_back, step 2/3, canary weight 0%"
    assert lines[1].startswith("  reason:  1 failed run(s), over the limit of 0: error_rate 0.05")
    assert lines[2] == "  started: 2023-11-14T22:13:20+00:00 by release"
    table = lines[lines.index("") + 1 :]
    assert table[0].split() == [
        *("step", "run", "at", "run_verdict", "guardrail", "value", "stable", "bounds"),
        *("verdict", "reason"),
    ]
    rows = [line.split(maxsplit=9) for line in table[1:]]
    assert [row[:9] for row in rows] == [
        ["2", "1", "2023-11-14T22:13:50+00:00", "pass", "errors", "0.002", "-", "<=", "0.01"],
        ["2", "1", "2023-11-14T22:13:50+00:00", "pass", "latency", "0.11", "0.1", "<=", "0.12"],
        ["2", "2", "2023-11-14T22:14:20+00:00", "fail", "errors", "0.05", "-", "<=", "0.01"],
        ["2", "2", "2023-11-14T22:14:20+00:00", "fail", "latency", "0.11", "0.1", "<=", "0.12"],
    ]
    assert [row[9].split()[0] for row in rows] == ["pass", "pass", "fail", "pass"]


def test_status_of_a_rollout_without_runs_says_so(served: Served, plan_file: Path) -> None:
    started(served, plan_file)
    result = seawall(served, "status", "iris")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "no analysis runs yet"
    as_json = json.loads(seawall(served, "status", "iris", "--json").stdout)
    assert (as_json["step_index"], as_json["weight"]) == (1, 10.0)


def test_status_without_a_model_lists_the_rollouts(served: Served, tmp_path: Path) -> None:
    assert seawall(served, "status").stdout == "no rollouts\n"
    for model in ("a", "b"):
        path = tmp_path / f"{model}.yaml"
        path.write_text(yaml.safe_dump({**PLAN, "model": model}), encoding="utf-8")
        assert seawall(served, "start", str(path)).exit_code == 0
        served.settled(model, lambda r: r.step_index == 1)
    assert seawall(served, "abort", "a", "--reason", "wrong build").exit_code == 0

    listed = seawall(served, "status")
    active = seawall(served, "status", "--active", "--json")

    assert listed.exit_code == 0, listed.output
    lines = [line.split(maxsplit=7) for line in listed.stdout.splitlines()]
    assert lines[0] == [
        *("model", "stable", "canary", "status", "step", "weight", "updated", "reason"),
    ]
    assert [line[:6] for line in lines[1:]] == [
        ["b", "1", "2", "running", "2/3", "10%"],
        ["a", "1", "2", "aborted", "2/3", "0%"],
    ]
    assert lines[2][7] == "wrong build"
    assert [r["model"] for r in json.loads(active.stdout)] == ["b"]


def test_history_lists_the_decisions_with_what_they_measured(
    served: Served, plan_file: Path
) -> None:
    served.source.set("error_rate", "2", 0.002)
    served.source.set("latency_p95_s", "2", 0.11)
    served.source.set("latency_p95_s", "1", 0.1)
    started(served, plan_file)
    served.advance(30)
    served.settled("iris", lambda r: len(r.state["analysis_runs"]) == 1)
    assert seawall(served, "pause", "iris", "-r", "dashboards").exit_code == 0

    result = seawall(served, "history", "iris")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["at", "kind", "step", "status", "weight", "actor", "reason"]
    kinds = [line.split()[1] for line in lines[1:] if not line.startswith(" ")]
    assert kinds == ["weight", "step", "analysis", "paused"]
    details = [line.strip() for line in lines if line.startswith(" ")]
    assert details == [
        "errors: 0.002 (stable -), bounds <= 0.01: pass",
        "latency: 0.11 (stable 0.1), bounds <= 0.12: pass",
    ]
    assert lines[-1].split()[5:] == ["release", "dashboards"]
    limited = json.loads(seawall(served, "history", "iris", "--limit", "1", "--json").stdout)
    assert [(d["kind"], d["actor"], d["reason"]) for d in limited] == [
        ("paused", "release", "dashboards")
    ]


# --- commands --------------------------------------------------------------------------------


def test_the_commands_steer_the_rollout_and_a_forbidden_one_exits_1(
    served: Served, plan_file: Path
) -> None:
    started(served, plan_file)

    paused = seawall(served, "pause", "iris", "--reason", "dashboards")
    twice = seawall(served, "pause", "iris")
    resumed = seawall(served, "resume", "iris")
    promoted = seawall(served, "promote", "iris", "--json")
    late = seawall(served, "abort", "iris")

    assert paused.exit_code == 0, paused.output
    assert paused.stdout == "paused: iris 1 -> 2: paused, step 2/3, canary weight 10%\n"
    assert twice.exit_code == 1
    assert twice.stderr == (
        "refused: pause: the rollout of iris 2 is paused, not running or waiting_approval\n"
    )
    assert resumed.stdout == "resumed: iris 1 -> 2: running, step 2/3, canary weight 10%\n"
    assert json.loads(promoted.stdout)["status"] == "promoted"
    assert late.exit_code == 1
    assert late.stderr.startswith("refused: ")
    decisions = served.run(served.service.history("iris"))
    assert [(d.kind.value, d.reason) for d in decisions[-3:]] == [
        ("paused", "dashboards"),
        ("resumed", "resumed by hand"),
        ("promoted", "promoted by hand"),
    ]


def test_an_unknown_model_is_exit_2(served: Served) -> None:
    for command in ("status", "history", "pause", "resume", "abort", "promote"):
        result = seawall(served, command, "nothing")
        assert result.exit_code == 2, command
        assert result.stderr.startswith("error: ")
        assert "nothing" in result.stderr


def test_a_key_without_the_role_is_refused_with_exit_1(served: Served, plan_file: Path) -> None:
    started(served, plan_file)
    result = seawall(served, "abort", "iris", key=VIEW_KEY)
    assert result.exit_code == 1
    assert result.stderr == (
        "refused: API key 'dashboards' lacks the role 'deployer' (it has: viewer)\n"
    )
    assert seawall(served, "status", "iris", key=VIEW_KEY).exit_code == 0
    wrong = seawall(served, "status", key="not-a-key-0123456789")
    assert (wrong.exit_code, wrong.stderr.startswith("refused: ")) == (1, True)


def test_a_gateway_without_a_rollout_controller_is_exit_1(served: Served) -> None:
    served.control.provide_rollouts(None)  # an attribute: the gateway's next call sees it
    result = seawall(served, "status")
    assert result.exit_code == 1
    assert result.stderr == "error: this gateway runs no rollout controller\n"


# --- the key and the gateway -----------------------------------------------------------------


def test_the_key_comes_from_a_file_too(served: Served, tmp_path: Path) -> None:
    key_file = tmp_path / "admin.key"
    key_file.write_text(DEPLOY_KEY + "\n", encoding="utf-8")
    by_option = runner.invoke(
        app,
        ["rollout", "status", "--gateway", served.url, "--key-file", str(key_file)],
        env={"SEAWALL_ADMIN_KEY": None, "SEAWALL_ADMIN_KEY_FILE": None},
    )
    by_env = seawall(served, "status", key=None, SEAWALL_ADMIN_KEY_FILE=str(key_file))
    assert (by_option.exit_code, by_option.stdout) == (0, "no rollouts\n")
    assert (by_env.exit_code, by_env.stdout) == (0, "no rollouts\n")


def test_no_key_is_exit_2_saying_where_to_put_one(served: Served) -> None:
    result = seawall(served, "status", key=None)
    assert result.exit_code == 2
    assert result.stderr == (
        "error: no admin API key: set SEAWALL_ADMIN_KEY (or SEAWALL_ADMIN_KEY_FILE to a file "
        "holding it), or pass --key-file\n"
    )


def test_a_gateway_that_does_not_answer_is_exit_1() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    result = runner.invoke(
        app,
        ["rollout", "status", "--gateway", f"http://127.0.0.1:{port}"],
        env={"SEAWALL_ADMIN_KEY": DEPLOY_KEY},
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot reach http://127.0.0.1:{port}: ")
    assert DEPLOY_KEY not in result.output


def test_a_gateway_url_that_is_not_http_is_exit_2() -> None:
    result = runner.invoke(
        app,
        ["rollout", "status", "--gateway", "file:///etc/passwd"],
        env={"SEAWALL_ADMIN_KEY": DEPLOY_KEY},
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "error: --gateway: an http:// or https:// URL, got 'file:///etc/passwd'\n"
    )
