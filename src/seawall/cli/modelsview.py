"""How `seawall models` shows registry records to a person (`--json` prints `to_json()` instead).

Digests are printed whole where a person may copy one (a version's files), shortened to 12
hex digits in tables, where they only tell versions apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import typer

from seawall.cli.output import echo_table, when

if TYPE_CHECKING:
    from seawall.registry import (
        ApprovalStatus,
        ArtifactInfo,
        EventRecord,
        LineageNode,
        ModelRecord,
        VersionRecord,
    )

__all__ = [
    "approval_line",
    "event_summary",
    "print_artifact",
    "print_history",
    "print_lineage",
    "print_model",
    "print_models",
    "print_version",
]

_SHORT = 12


def print_models(models: Sequence[ModelRecord]) -> None:
    """One line per model: latest version, aliases, approvals needed, who created it."""
    if not models:
        typer.echo("no registered models")
        return
    echo_table(
        ("name", "latest", "aliases", "approvals", "created_by", "created"),
        (
            (
                m.name,
                "-" if m.latest_version is None else str(m.latest_version),
                _aliases(m.aliases),
                str(m.required_approvals),
                m.created_by,
                when(m.created_at),
            )
            for m in models
        ),
    )


def print_model(model: ModelRecord, versions: Sequence[VersionRecord]) -> None:
    """A model, its aliases, and a table of its versions (newest first)."""
    typer.echo(f"{model.name}" + (f": {model.description}" if model.description else ""))
    _field("approvals", f"{model.required_approvals} needed for production")
    _field("aliases", _aliases(model.aliases))
    if model.tags:
        _field("tags", _pairs(model.tags))
    _field("created", f"{when(model.created_at)} by {model.created_by}")
    if not versions:
        typer.echo("no versions")
        return
    typer.echo("")
    echo_table(
        ("version", "stage", "framework", "author", "created", "signed_by", "metrics"),
        (
            (
                str(v.version) + (f" @{',@'.join(v.aliases)}" if v.aliases else ""),
                v.stage.value,
                v.framework,
                v.author,
                when(v.created_at),
                v.artifact.signed_by or "unsigned",
                _pairs(v.metrics) or "-",
            )
            for v in versions
        ),
    )


def print_version(record: VersionRecord, status: ApprovalStatus) -> None:
    """Everything about one version: provenance, artifact files and digests, approvals."""
    typer.echo(f"{record.name} version {record.version} ({record.uri})")
    _field("stage", f"{record.stage.value} since {when(record.stage_changed_at)}")
    _field("aliases", ", ".join(record.aliases) or "none")
    _field("framework", record.framework)
    _field("author", f"{record.author}, {when(record.created_at)}")
    if record.description:
        _field("description", record.description)
    _field("dataset", record.dataset_snapshot or "-")
    _field("code version", record.code_version or "-")
    _field("parent", "-" if record.parent_version is None else str(record.parent_version))
    _field("parameters", _pairs(record.parameters) or "-")
    _field("metrics", _pairs(record.metrics) or "-")
    _field("tags", _pairs(record.tags) or "-")
    _field("signature", _signature(record.signature))
    print_artifact(record.artifact)
    _field("approvals", approval_line(status))
    for d in status.decisions:
        expiry = f", expires {when(d.expires_at)}" if d.expires_at is not None else ""
        comment = f": {d.comment}" if d.comment else ""
        typer.echo(f"  - {when(d.created_at)} {d.decision} by {d.approver}{expiry}{comment}")


def print_artifact(artifact: ArtifactInfo) -> None:
    """The artifact's store, files with their sha256, manifest and signer."""
    files = len(artifact.files)
    _field("artifact", f"{artifact.kind}, {files} file(s), {artifact.total_bytes} bytes")
    _field("store", artifact.uri)
    width = max(len(path) for path in [*artifact.files, "manifest"])
    for path, digest in artifact.files.items():
        typer.echo(f"  - {path:<{width}}  sha256:{digest}")
    if artifact.manifest_digest is not None:
        typer.echo(f"  - {'manifest':<{width}}  sha256:{artifact.manifest_digest}")
    _field("signed by", f"key {artifact.signed_by}" if artifact.signed_by else "unsigned")


def approval_line(status: ApprovalStatus) -> str:
    """`1 of 1 (cli:bob): may enter production`, or what is missing."""
    approvers = f" ({', '.join(status.approved_by)})" if status.approved_by else ""
    line = f"{len(status.approved_by)} of {status.required}{approvers}"
    if status.rejected_by:
        return f"{line}: rejected by {', '.join(status.rejected_by)}"
    if status.expired:
        line += f"; expired: {', '.join(status.expired)}"
    if status.satisfied:
        return f"{line}: may enter production"
    return f"{line}: needs {status.required - len(status.approved_by)} more"


def print_history(events: Sequence[EventRecord]) -> None:
    """One line per event, oldest first."""
    echo_table(
        ("at", "actor", "version", "action", "details"),
        (
            (
                when(e.at),
                e.actor,
                "-" if e.version is None else str(e.version),
                e.action,
                event_summary(e),
            )
            for e in events
        ),
    )


def event_summary(event: EventRecord) -> str:
    """The details of an event, in a few words."""
    d = event.details
    if event.action == "model.create":
        description = f": {d['description']}" if d.get("description") else ""
        return f"needs {d.get('required_approvals')} approval(s){description}"
    if event.action == "model.stage":
        approved = d.get("approved_by")
        extra = f" (approved by {', '.join(approved)})" if approved else ""
        comment = f": {d['comment']}" if d.get("comment") else ""
        return f"{d.get('from')} → {d.get('to')}{extra}{comment}"
    if event.action == "model.alias":
        before, after = d.get("from"), d.get("to")
        return f"@{d.get('alias')}: {_or_dash(before)} → {'deleted' if after is None else after}"
    if event.action in ("model.approve", "model.reject"):
        return str(d.get("comment") or "")
    if event.action == "model.register":
        signed = d.get("signed_by")
        files = d.get("artifact_files") or {}
        return f"{d.get('framework')}, {len(files)} file(s), " + (
            f"signed by key {signed}" if signed else "unsigned"
        )
    if event.action == "model.deploy":
        return f"{d.get('target')}: {d.get('traffic_share')} of traffic"
    return _pairs(d)


def print_lineage(nodes: Sequence[LineageNode]) -> None:
    """The version, then its parent, and so on."""
    echo_table(
        ("version", "stage", "author", "created", "dataset", "code_version", "files"),
        (
            (
                str(n.version),
                n.stage.value,
                n.author,
                when(n.created_at),
                n.dataset_snapshot or "-",
                n.code_version or "-",
                ", ".join(f"{p}={d[:_SHORT]}" for p, d in n.artifact_digests.items()),
            )
            for n in nodes
        ),
    )


def _field(label: str, value: str) -> None:
    typer.echo(f"  {label + ':':<14} {value}")


def _aliases(aliases: Mapping[str, int]) -> str:
    return ", ".join(f"@{a}→{v}" for a, v in aliases.items()) or "-"


def _pairs(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_scalar(v)}" for k, v in values.items())


def _scalar(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _signature(signature: Mapping[str, Any] | None) -> str:
    if not signature:
        return "-"
    halves = []
    for half in ("inputs", "outputs"):
        specs = signature.get(half) or []
        text = ", ".join(
            f"{s.get('name')} {s.get('datatype')} {s.get('shape')}"
            for s in specs
            if isinstance(s, Mapping)
        )
        halves.append(f"{half} {text or '-'}")
    return "; ".join(halves)
