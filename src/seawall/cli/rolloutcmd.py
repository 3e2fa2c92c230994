"""`seawall rollout start | status | history | pause | resume | abort | promote`: rollouts on a
running gateway, through its admin API.

`--gateway` (default http://127.0.0.1:8000, or `SEAWALL_GATEWAY_URL`) names the gateway; the
admin API key comes from `--key-file`, else `SEAWALL_ADMIN_KEY` (or the file
`SEAWALL_ADMIN_KEY_FILE` names), and is never printed. `start` checks the plan file before
sending it. `--json` prints what the admin API answered. Exit 2 on bad input (a plan that does
not parse, an unknown model, a bad option), 1 on a refusal (no key or the wrong one, a command
the rollout's status forbids), an error of the gateway, or a gateway that cannot be reached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml

from seawall.cli.adminclient import DEFAULT_GATEWAY, AdminClient, GatewayError, admin_key
from seawall.cli.output import echo_json
from seawall.cli.rolloutview import print_decisions, print_rollout, print_rollouts, summary
from seawall.errors import ConfigError

__all__ = ["rollout_app"]

rollout_app = typer.Typer(
    help="Start, watch and steer rollouts on a running gateway (its admin API).",
    no_args_is_help=True,
)

#: HTTP statuses that mean the input was wrong (exit 2); other failures exit 1.
_BAD_INPUT = frozenset({400, 404, 405, 413, 422})

GatewayOption = Annotated[
    str,
    typer.Option(
        "--gateway", "-g", envvar="SEAWALL_GATEWAY_URL", help="The gateway's URL.", show_envvar=True
    ),
]
KeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        help="File holding the admin API key (default: SEAWALL_ADMIN_KEY, or the file "
        "SEAWALL_ADMIN_KEY_FILE names).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the admin API's JSON.")]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=0.1, max=3600, help="Seconds to wait for an answer.")
]
ModelArgument = Annotated[str, typer.Argument(help="The model whose rollout it is.")]
ReasonOption = Annotated[
    str, typer.Option("--reason", "-r", help="Why (kept in the decision and the audit log).")
]
LimitOption = Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many.")]


@rollout_app.command("start")
def start(
    plan: Annotated[Path, typer.Argument(help="The rollout plan (YAML).")],
    gateway: GatewayOption = DEFAULT_GATEWAY,
    key_file: KeyFileOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Start rolling a canary version out, step by step, as PLAN says."""
    document = _plan_or_exit(plan)
    with _client(gateway, key_file, timeout) as client:
        rollout = client.post("/admin/rollouts", document)
    _show(rollout, as_json, lambda r: typer.echo(f"started rollout {r['id']}: {summary(r)}"))


@rollout_app.command("status")
def status(
    model: Annotated[str | None, typer.Argument(help="One model (default: every rollout).")] = None,
    active: Annotated[bool, typer.Option("--active", help="Only unfinished rollouts.")] = False,
    limit: LimitOption = 100,
    gateway: GatewayOption = DEFAULT_GATEWAY,
    key_file: KeyFileOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 30.0,
) -> None:
    """A model's rollout with its analysis runs (values, thresholds, verdicts); or a list."""
    with _client(gateway, key_file, timeout) as client:
        if model is None:
            rollouts = client.get("/admin/rollouts", {"active_only": active, "limit": limit})
            _show(rollouts, as_json, print_rollouts)
            return
        rollout = client.get(f"/admin/rollouts/{model}")
    _show(rollout, as_json, print_rollout)


@rollout_app.command("history")
def history(
    model: ModelArgument,
    limit: LimitOption = 100,
    gateway: GatewayOption = DEFAULT_GATEWAY,
    key_file: KeyFileOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 30.0,
) -> None:
    """The decisions of the model's latest rollout, oldest first, with what they measured."""
    with _client(gateway, key_file, timeout) as client:
        decisions = client.get(f"/admin/rollouts/{model}/history", {"limit": limit})
    _show(decisions, as_json, print_decisions)


def _command(name: str, done: str, doc: str) -> None:
    def command(
        model: ModelArgument,
        reason: ReasonOption = "",
        gateway: GatewayOption = DEFAULT_GATEWAY,
        key_file: KeyFileOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = 30.0,
    ) -> None:
        with _client(gateway, key_file, timeout) as client:
            rollout = client.post(f"/admin/rollouts/{model}/{name}", {"reason": reason})
        _show(rollout, as_json, lambda r: typer.echo(f"{done}: {summary(r)}"))

    command.__doc__ = doc
    rollout_app.command(name)(command)


_command("pause", "paused", "Hold the rollout where it is (traffic stays) until resumed.")
_command("resume", "resumed", "Carry on after a pause.")
_command("abort", "aborted", "Roll the canary back now: it gets no more traffic.")
_command("promote", "promoted", "Make the canary the stable version now, skipping what is left.")


def _plan_or_exit(path: Path) -> dict[str, Any]:
    """The plan file's document, checked as the gateway will check it (exit 2 if it is bad)."""
    from seawall.config.release import parse_plan  # deferred: pydantic models

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        _exit(2, f"error: {path}: {exc.strerror or exc}")
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        _exit(2, f"error: {path}: not YAML: {exc}")
    if not isinstance(document, dict):
        _exit(2, f"error: {path}: a rollout plan is a mapping, got {type(document).__name__}")
    try:
        parse_plan(document, source=str(path))
    except ConfigError as exc:
        _exit(2, f"error: {exc}")
    return document


@contextmanager
def _client(gateway: str, key_file: Path | None, timeout_s: float) -> Iterator[AdminClient]:
    """The admin API client; a failure of a call in the block exits with its message."""
    try:
        client = AdminClient(gateway, admin_key(key_file), timeout_s=timeout_s)
    except ConfigError as exc:
        _exit(2, f"error: {exc}")
    try:
        yield client
    except GatewayError as exc:
        if exc.status in _BAD_INPUT:
            _exit(2, f"error: {exc.message}")
        if exc.status in (401, 403, 409):
            _exit(1, f"refused: {exc.message}")
        _exit(1, f"error: {exc.message}")


def _show(value: Any, as_json: bool, show: Callable[[Any], None]) -> None:
    if as_json:
        echo_json(value)
    else:
        show(value)


def _exit(status: int, message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(status)
