"""`seawall models`: the model registry, and signed manifests of model artifacts.

Registry commands (`create`, `register`, `list`, `show`, `alias`, `promote`, `approve`,
`reject`, `history`, `lineage`) work on the database chosen as for `seawall db` (`--url`, else
`--config`'s `database_url`, else `SEAWALL_DATABASE_URL`, else `./seawall.db`), migrated
beforehand by `seawall db upgrade`, with the rules and artifact store of `--config`'s
`registry:` section (defaults without one). They act as `cli:<login name>`, which is what the
four-eyes rule compares. Exit 2 on bad input (a malformed option, an unknown model or
version, an unreadable file), 1 when the registry refuses (a stage rule, missing approvals, four
eyes) or the database fails; one line on standard error says why, naming the field.

`sign` writes `<artifact>.manifest.json` (or `--manifest`); `verify` checks it against the
`--trusted` public keys exactly as the gateway does before loading, and exits 0 if it holds,
1 naming the reason if not, and 2 on bad input (an unreadable key, a missing artifact).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from seawall.cli.actor import cli_actor
from seawall.cli.dbcmd import UrlOption
from seawall.cli.modelsview import (
    approval_line,
    print_artifact,
    print_history,
    print_lineage,
    print_model,
    print_models,
    print_version,
)
from seawall.cli.output import echo_json, when
from seawall.cli.registration import (
    VersionRequest,
    json_value,
    key_values,
    number_value,
    read_signature,
    text_value,
)
from seawall.cli.registryaccess import reported, run_registry
from seawall.errors import ConfigError, InvalidInputError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from seawall.registry import (
        ApprovalRecord,
        ApprovalStatus,
        ModelRecord,
        Registry,
        VersionRecord,
    )

__all__ = ["models_app"]

models_app = typer.Typer(
    help="Register, approve and promote models; sign and verify artifacts.", no_args_is_help=True
)

ManifestOption = Annotated[
    Path | None,
    typer.Option("--manifest", "-m", help="Manifest file (default: <PATH>.manifest.json)."),
]


@models_app.command("sign")
def sign(
    path: Annotated[Path, typer.Argument(help="Model file or directory.")],
    key: Annotated[Path, typer.Option("--key", "-k", help="Private signing key (PEM).")],
    name: Annotated[str, typer.Option("--name", "-n", help="Model name.")],
    version: Annotated[str, typer.Option("--version", "-v", help="Model version.")],
    manifest: ManifestOption = None,
) -> None:
    """Hash every file of PATH and write its signed manifest."""
    from seawall.security import (
        SecurityError,
        load_private_key,
        manifest_path,
        passphrase_from_env,
        sign_artifact,
    )

    try:
        private = load_private_key(key, passphrase_from_env(os.environ))
        signed = sign_artifact(path, private, name=name, version=version, manifest=manifest)
    except (ConfigError, SecurityError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    written = manifest or manifest_path(path)
    typer.echo(
        f"signed {path}: {signed.name} version {signed.version}, {len(signed.files)} file(s), "
        f"{signed.total_bytes} bytes, key {signed.key_id}"
    )
    typer.echo(f"wrote {written}")


@models_app.command("verify")
def verify(
    path: Annotated[Path, typer.Argument(help="Model file or directory.")],
    trusted: Annotated[
        list[Path],
        typer.Option("--trusted", "-t", help="Trusted public key (PEM); repeat for several."),
    ],
    manifest: ManifestOption = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Expected model name.")] = None,
    version: Annotated[
        str | None, typer.Option("--version", "-v", help="Expected model version.")
    ] = None,
) -> None:
    """Check PATH against its manifest and the trusted keys; exit 1 with the reason if it fails."""
    from seawall.security import ArtifactVerificationError, read_public_key, verify_artifact

    try:
        keys = [read_public_key(p) for p in trusted]
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        signed = verify_artifact(path, keys, manifest=manifest, name=name, version=version)
    except ArtifactVerificationError as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:  # unreadable despite existing: permissions, I/O errors
        typer.echo(f"error: {path}: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"ok: {path}: {signed.name} version {signed.version}, {len(signed.files)} file(s) "
        f"match, signed by key {signed.key_id} at {signed.created_at}"
    )


# ------------------------------------------------------------------------------- registry

RegistryConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Use this config file's database_url and registry rules."),
]
NameArgument = Annotated[str, typer.Argument(help="The registered model's name.")]
VersionArgument = Annotated[int, typer.Argument(help="The version number.", min=1)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
CommentOption = Annotated[str, typer.Option("--comment", help="Why (kept in the history).")]
TagOption = Annotated[
    list[str] | None, typer.Option("--tag", help="KEY=VALUE label; repeat for several.")
]


@models_app.command("create")
def create(
    name: NameArgument,
    description: Annotated[str, typer.Option(help="What the model is for.")] = "",
    required_approvals: Annotated[
        int | None,
        typer.Option(help="Approvals its versions need for production (default: the config's)."),
    ] = None,
    tag: TagOption = None,
    config: RegistryConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Register a model name (`register` also creates a missing one, with the defaults)."""
    with reported():
        tags = key_values("--tag", tag, text_value)
        model = run_registry(
            config,
            url,
            lambda r: r.create_model(
                name,
                actor=cli_actor(),
                description=description,
                required_approvals=required_approvals,
                tags=tags,
            ),
        )
    typer.echo(
        f"created model {model.name}: versions need {model.required_approvals} approval(s) "
        "for production"
    )


@models_app.command("register")
def register(
    name: NameArgument,
    path: Annotated[Path, typer.Argument(help="Model file or directory.")],
    framework: Annotated[str, typer.Option(help="sklearn, onnx, pytorch, ... (lower case).")],
    version: Annotated[
        int | None, typer.Option(min=1, help="Version number to take (default: the next).")
    ] = None,
    key: Annotated[
        Path | None, typer.Option("--key", "-k", help="Private signing key (PEM): sign it.")
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(help="Without --key: its signed manifest (default: <PATH>.manifest.json)."),
    ] = None,
    metric: Annotated[
        list[str] | None, typer.Option(help="KEY=NUMBER evaluation metric; repeat for several.")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(help="KEY=VALUE training parameter (VALUE read as JSON, else text)."),
    ] = None,
    tag: TagOption = None,
    dataset: Annotated[
        str | None, typer.Option(help="Snapshot id of the data it was trained on.")
    ] = None,
    code_version: Annotated[str | None, typer.Option(help="Commit it was trained with.")] = None,
    parent: Annotated[
        int | None, typer.Option(min=1, help="Version it was derived from (lineage).")
    ] = None,
    description: Annotated[str, typer.Option(help="What changed in this version.")] = "",
    signature: Annotated[
        Path | None,
        typer.Option(help="JSON or YAML file: inputs and outputs (name, datatype, shape)."),
    ] = None,
    artifact_store: Annotated[
        str | None,
        typer.Option(help="Directory or fsspec URL of the store (default: the config's)."),
    ] = None,
    config: RegistryConfigOption = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Store PATH's files by digest (signed with --key) and register them as a new version."""
    with reported():
        if key is not None and manifest is not None:
            raise InvalidInputError("--manifest", "not with --key, which signs a new manifest")
        request = VersionRequest(
            name=name,
            path=path,
            framework=framework,
            version=version,
            signing_key=None if key is None else _signing_key(key),
            manifest=manifest,
            fields={
                "metrics": key_values("--metric", metric, number_value),
                "parameters": key_values("--param", param, json_value),
                "tags": key_values("--tag", tag, text_value),
                "dataset_snapshot": dataset,
                "code_version": code_version,
                "parent_version": parent,
                "description": description,
                "signature": None if signature is None else read_signature(signature),
            },
        )
        record, created = run_registry(
            config, url, request.register, blobs=True, artifact_store=artifact_store
        )
    if as_json:
        echo_json(record.to_json())
        return
    new = ", a new model" if created else ""
    typer.echo(f"registered {name} version {record.version} ({record.uri}), stage none{new}")
    print_artifact(record.artifact)


@models_app.command("list")
def list_models(
    config: RegistryConfigOption = None, url: UrlOption = None, as_json: JsonOption = False
) -> None:
    """Show every registered model."""
    with reported():
        models = run_registry(config, url, lambda r: r.list_models())
    if as_json:
        echo_json([m.to_json() for m in models])
    else:
        print_models(models)


@models_app.command("show")
def show(
    name: NameArgument,
    ref: Annotated[
        str | None,
        typer.Argument(metavar="[VERSION|@ALIAS]", help="Show one version (default: the model)."),
    ] = None,
    config: RegistryConfigOption = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a model with its aliases and versions, or one version in full."""
    with reported():
        if ref is None:
            model, versions = run_registry(config, url, lambda r: _model_and_versions(r, name))
        else:
            record, status = run_registry(config, url, lambda r: _version_and_status(r, name, ref))
    if ref is None:
        if as_json:
            echo_json({**model.to_json(), "versions": [v.to_json() for v in versions]})
        else:
            print_model(model, versions)
    elif as_json:
        approval = {**status.to_json(), "satisfied": status.satisfied}
        echo_json({**record.to_json(), "uri": record.uri, "approval": approval})
    else:
        print_version(record, status)


@models_app.command("alias")
def alias(
    name: NameArgument,
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="champion, challenger, ...")],
    version: Annotated[
        int | None, typer.Argument(min=1, help="The version it points at from now on.")
    ] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the alias.")] = False,
    config: RegistryConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Point ALIAS at VERSION (a protected alias: only a version in production), or delete it."""
    with reported():
        if delete and version is not None:
            raise InvalidInputError("VERSION", "not with --delete")
        if delete:
            gone = run_registry(
                config, url, lambda r: r.delete_alias(name, alias_name, actor=cli_actor())
            )
            typer.echo(f"deleted {name}@{alias_name} (it pointed at version {gone.version})")
            return
        if version is None:
            raise InvalidInputError("VERSION", "the version to point the alias at (or --delete)")
        number = version
        run_registry(
            config, url, lambda r: r.set_alias(name, alias_name, number, actor=cli_actor())
        )
    typer.echo(f"{name}@{alias_name} → version {version}")


@models_app.command("promote")
def promote(
    name: NameArgument,
    version: VersionArgument,
    stage: Annotated[
        str, typer.Option(help="production, staging, archived or none.")
    ] = "production",
    alias_name: Annotated[
        str | None,
        typer.Option("--alias", help="With production: point this alias at it, atomically."),
    ] = None,
    comment: CommentOption = "",
    keep_previous: Annotated[
        bool,
        typer.Option(help="With production: leave the other production versions there."),
    ] = False,
    config: RegistryConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Move VERSION to a stage; production needs its approvals (and archives the one before)."""
    with reported():
        before, after = run_registry(
            config,
            url,
            lambda r: _transition(
                r,
                name,
                version,
                stage,
                comment=comment,
                alias=alias_name,
                archive_previous=not keep_previous,
            ),
        )
    stages = {v.version: v.stage for v in before}
    for record in after:
        if record.version == version:
            typer.echo(f"{name} version {version}: {stages[version]} → {record.stage}")
        elif stages.get(record.version) != record.stage:
            typer.echo(
                f"{name} version {record.version}: {stages.get(record.version)} → {record.stage}"
            )
    if alias_name is not None:
        typer.echo(f"{name}@{alias_name} → version {version}")


@models_app.command("approve")
def approve(
    name: NameArgument,
    version: VersionArgument,
    comment: CommentOption = "",
    config: RegistryConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Approve VERSION for production (not its author's to give); it expires after a while."""
    with reported():
        decision, status = run_registry(
            config, url, lambda r: _decide(r, name, version, "approve", comment)
        )
    typer.echo(
        f"approved {name} version {version} as {decision.approver} "
        f"(counts until {when(decision.expires_at)})"
    )
    typer.echo(f"approvals: {approval_line(status)}")


@models_app.command("reject")
def reject(
    name: NameArgument,
    version: VersionArgument,
    comment: Annotated[str, typer.Option("--comment", help="Why (required).")],
    config: RegistryConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Reject VERSION: it cannot enter production while this is your latest decision on it."""
    with reported():
        decision, status = run_registry(
            config, url, lambda r: _decide(r, name, version, "reject", comment)
        )
    typer.echo(f"rejected {name} version {version} as {decision.approver}: {decision.comment}")
    typer.echo(f"approvals: {approval_line(status)}")


@models_app.command("history")
def history(
    name: NameArgument,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="The last N events.")] = 1000,
    config: RegistryConfigOption = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """What happened to the model and its versions, who did it and when, oldest first."""
    with reported():
        events = run_registry(config, url, lambda r: r.history(name, limit=limit))
    if as_json:
        echo_json([e.to_json() for e in events])
    else:
        print_history(events)


@models_app.command("lineage")
def lineage(
    name: NameArgument,
    version: VersionArgument,
    config: RegistryConfigOption = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """VERSION, the version it was derived from, and so on: data, code and artifact of each."""
    with reported():
        nodes = run_registry(config, url, lambda r: r.lineage(name, version))
    if as_json:
        echo_json([n.to_json() for n in nodes])
    else:
        print_lineage(nodes)


def _signing_key(path: Path) -> Ed25519PrivateKey:
    from seawall.security import load_private_key, passphrase_from_env

    return load_private_key(path, passphrase_from_env(os.environ))


async def _model_and_versions(
    registry: Registry, name: str
) -> tuple[ModelRecord, list[VersionRecord]]:
    return await registry.get_model(name), await registry.list_versions(name)


async def _version_and_status(
    registry: Registry, name: str, ref: str
) -> tuple[VersionRecord, ApprovalStatus]:
    record = await registry.resolve(name, ref)
    return record, await registry.approval_status(name, record.version)


async def _transition(
    registry: Registry, name: str, version: int, stage: str, **options: Any
) -> tuple[list[VersionRecord], list[VersionRecord]]:
    before = await registry.list_versions(name)
    await registry.transition(name, version, stage, actor=cli_actor(), **options)
    return before, await registry.list_versions(name)


async def _decide(
    registry: Registry, name: str, version: int, decision: str, comment: str
) -> tuple[ApprovalRecord, ApprovalStatus]:
    if decision == "approve":
        record = await registry.approve(name, version, actor=cli_actor(), comment=comment)
    else:
        record = await registry.reject(name, version, actor=cli_actor(), comment=comment)
    return record, await registry.approval_status(name, version)
