"""How `seawall rollout` shows rollouts to a person (`--json` prints the admin API's JSON instead).

The input is what the admin API answers (`RolloutView`, `DecisionView` as JSON): a rollout's
status shows each analysis run's verdict and, per guardrail, the canary's value, the stable
version's, the bounds it was held to and the guardrail's verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import typer

from seawall.cli.output import echo_table, when

__all__ = ["bounds", "print_decisions", "print_rollout", "print_rollouts", "summary"]


def summary(rollout: Mapping[str, Any]) -> str:
    """One line: model, versions, status, step, canary weight."""
    return (
        f"{rollout['model']} {rollout['stable_version']} -> {rollout['canary_version']}: "
        f"{rollout['status']}, step {_step(rollout)}, canary weight {rollout['weight']:g}%"
    )


def print_rollouts(rollouts: Sequence[Mapping[str, Any]]) -> None:
    """One line per rollout, newest first."""
    if not rollouts:
        typer.echo("no rollouts")
        return
    echo_table(
        ("model", "stable", "canary", "status", "step", "weight", "updated", "reason"),
        (
            (
                r["model"],
                r["stable_version"],
                r["canary_version"],
                r["status"],
                _step(r),
                f"{r['weight']:g}%",
                when(datetime.fromisoformat(r["updated_at"])),
                r["reason"],
            )
            for r in rollouts
        ),
    )


def print_rollout(rollout: Mapping[str, Any]) -> None:
    """A rollout's status, then every analysis run: each guardrail's values and verdict."""
    typer.echo(f"rollout {rollout['id']}: {summary(rollout)}")
    typer.echo(f"  reason:  {rollout['reason']}")
    started = when(datetime.fromisoformat(rollout["created_at"]))
    typer.echo(f"  started: {started} by {rollout['created_by']}")
    typer.echo(f"  updated: {when(datetime.fromisoformat(rollout['updated_at']))}")
    runs = rollout["state"]["analysis_runs"]
    if not runs:
        typer.echo("no analysis runs yet")
        return
    typer.echo("")
    rows: list[tuple[str, ...]] = []
    numbers: dict[int, int] = {}
    for run in runs:
        numbers[run["step_index"]] = numbers.get(run["step_index"], 0) + 1
        for result in run["results"]:
            rows.append(
                (
                    str(run["step_index"] + 1),
                    str(numbers[run["step_index"]]),
                    _moment(run["at"]),
                    run["verdict"],
                    *_result_cells(result),
                )
            )
    headers = ("step", "run", "at", "run_verdict", "guardrail", "value", "stable", "bounds")
    echo_table((*headers, "verdict", "reason"), rows)


def print_decisions(decisions: Sequence[Mapping[str, Any]]) -> None:
    """The decisions of a rollout, oldest first; under each, the guardrails it measured."""
    if not decisions:
        typer.echo("no decisions")
        return
    rows: list[tuple[str, ...]] = []
    for d in decisions:
        at = when(datetime.fromisoformat(d["at"]))
        step = str(d["step_index"] + 1)
        weight = f"{d['weight']:g}%"
        rows.append((at, d["kind"], step, d["status"], weight, d["actor"], d["reason"]))
        for result in d["results"]:
            guardrail, value, stable, limit, verdict, _ = _result_cells(result)
            detail = f"{guardrail}: {value} (stable {stable}), bounds {limit}: {verdict}"
            rows.append(("", "", "", "", "", "", f"  {detail}"))
    echo_table(("at", "kind", "step", "status", "weight", "actor", "reason"), rows)


def bounds(result: Mapping[str, Any]) -> str:
    """The bounds a guardrail's value was held to: `<= 0.01`, `>= 2`, `1..2`, `-` for none."""
    low, high = result.get("threshold_min"), result.get("threshold")
    if low is None and high is None:
        return "-"
    if low is None:
        return f"<= {_number(high)}"
    if high is None:
        return f">= {_number(low)}"
    return f"{_number(low)}..{_number(high)}"


def _result_cells(result: Mapping[str, Any]) -> tuple[str, str, str, str, str, str]:
    return (
        result["name"],
        _number(result["value"]),
        _number(result["stable_value"]),
        bounds(result),
        result["verdict"],
        result["reason"],
    )


def _step(rollout: Mapping[str, Any]) -> str:
    steps = rollout.get("plan", {}).get("steps")
    total = len(steps) if isinstance(steps, list) else None
    done = min(rollout["step_index"] + 1, total) if total else rollout["step_index"] + 1
    return f"{done}/{total}" if total else str(done)


def _moment(seconds: float) -> str:
    return when(datetime.fromtimestamp(seconds, UTC))


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"
