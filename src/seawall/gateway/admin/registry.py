"""The model registry over HTTP: models, versions, stages, approvals, aliases, history.

Readers (viewer, deployer, approver, data-steward) see; deployers create models, register
versions, move stages and aliases; approvers approve and reject; only admins change a model's
required approvals, since lowering them weakens four eyes. Every route about one model checks the
key's model scope, and the model listing shows only the models the key may act on. The calling
key's name is the actor of every change (its audit record and the model's history), and the
author of a version it registers, whom the registry then refuses as its approver (403).

The rules themselves are `seawall.registry.Registry`'s, whoever calls: its refusals map to 400
(a field), 404, 409 (a stage, approval or alias rule) and 403 (four eyes). Without a database,
503.
"""

from __future__ import annotations

import asyncio
from enum import Enum
from typing import Annotated

from fastapi import Depends, FastAPI, Path, Query

from seawall.gateway.admin.access import Control, check_model_scope, requires
from seawall.gateway.admin.artifacts import MAX_VERSION, artifact_info, blob_store
from seawall.gateway.admin.errors import responses
from seawall.gateway.admin.records import (
    ALIAS_PATTERN,
    MODEL_NAME_PATTERN,
    AliasChange,
    AliasView,
    ApprovalStatusView,
    ApprovalView,
    DecisionRequest,
    DeploymentView,
    EventView,
    LineageNodeView,
    ModelChange,
    ModelCreate,
    ModelView,
    RejectionRequest,
    StageChange,
    VersionCreate,
    VersionDetail,
    VersionView,
    approval_status_view,
    version_view,
)
from seawall.policies import ApiKey

__all__ = ["DEFAULT_HISTORY", "MAX_HISTORY", "registry_routes"]

Reader = Annotated[ApiKey, Depends(requires("viewer", "deployer", "approver", "data-steward"))]
Deployer = Annotated[ApiKey, Depends(requires("deployer"))]
Approver = Annotated[ApiKey, Depends(requires("approver"))]
Admin = Annotated[ApiKey, Depends(requires("admin"))]
Model = Annotated[str, Path(pattern=MODEL_NAME_PATTERN, description="The model's name.")]
Version = Annotated[int, Path(ge=1, le=MAX_VERSION, description="The version's number.")]
Alias = Annotated[str, Path(pattern=ALIAS_PATTERN, description="A lower-case word.")]

#: Events in a history when no limit is given, and the most in one answer.
DEFAULT_HISTORY = 1000
MAX_HISTORY = 10_000

_TAGS: list[str | Enum] = ["registry"]
_READ = responses(404, 422, 503)
_CHANGE = responses(400, 404, 409, 422, 503)


def registry_routes(app: FastAPI) -> None:
    """`/admin/models...` over the gateway database's model registry."""
    _model_routes(app)
    _version_routes(app)
    _approval_routes(app)
    _alias_routes(app)
    _history_routes(app)


def _model_routes(app: FastAPI) -> None:
    @app.get(
        "/admin/models",
        tags=_TAGS,
        response_model=list[ModelView],
        responses=responses(503),
    )
    async def list_models(key: Reader, control: Control) -> list[ModelView]:
        """The registered models the key may act on, by name."""
        registry = await control.registry()
        return [
            ModelView.model_validate(m.to_json())
            for m in await registry.list_models()
            if key.may_call(m.name)
        ]

    @app.post(
        "/admin/models",
        tags=_TAGS,
        status_code=201,
        response_model=ModelView,
        responses=responses(400, 409, 422, 503),
    )
    async def create_model(body: ModelCreate, key: Deployer, control: Control) -> ModelView:
        """Register a model name; its versions are registered under it."""
        check_model_scope(key, body.name)
        registry = await control.registry()
        record = await registry.create_model(
            body.name,
            actor=key.name,
            description=body.description,
            required_approvals=body.required_approvals,
            tags=body.tags,
        )
        return ModelView.model_validate(record.to_json())

    @app.get("/admin/models/{model}", response_model=ModelView, tags=_TAGS, responses=_READ)
    async def get_model(model: Model, key: Reader, control: Control) -> ModelView:
        """One model, with its aliases and latest version."""
        check_model_scope(key, model)
        record = await (await control.registry()).get_model(model)
        return ModelView.model_validate(record.to_json())

    @app.patch("/admin/models/{model}", response_model=ModelView, tags=_TAGS, responses=_CHANGE)
    async def change_model(
        model: Model, body: ModelChange, key: Admin, control: Control
    ) -> ModelView:
        """Change a model's description or the approvals its versions need (admin only)."""
        check_model_scope(key, model)
        record = await (await control.registry()).update_model(
            model,
            actor=key.name,
            description=body.description,
            required_approvals=body.required_approvals,
        )
        return ModelView.model_validate(record.to_json())


def _version_routes(app: FastAPI) -> None:
    @app.get(
        "/admin/models/{model}/versions",
        response_model=list[VersionView],
        tags=_TAGS,
        responses=_READ,
    )
    async def list_versions(model: Model, key: Reader, control: Control) -> list[VersionView]:
        """Every version of the model, newest first."""
        check_model_scope(key, model)
        registry = await control.registry()
        return [version_view(v) for v in await registry.list_versions(model)]

    @app.post(
        "/admin/models/{model}/versions",
        status_code=201,
        response_model=VersionView,
        tags=_TAGS,
        responses=_CHANGE,
    )
    async def register_version(
        model: Model, body: VersionCreate, key: Deployer, control: Control
    ) -> VersionView:
        """Register a version of the model from blobs already in the artifact store.

        The artifact's size, store and signer are read from the store, not taken from the
        client. The key becomes the version's author, who may not approve it.
        """
        check_model_scope(key, model)
        registry = await control.registry()
        blobs = blob_store(registry)
        info, number = await asyncio.to_thread(
            artifact_info, blobs, model, body.version, body.artifact
        )
        record = await registry.register_version(
            model,
            info,
            actor=key.name,
            framework=body.framework,
            version=number,
            signature=body.signature,
            parameters=body.parameters,
            metrics=body.metrics,
            tags=body.tags,
            dataset_snapshot=body.dataset_snapshot,
            code_version=body.code_version,
            parent_version=body.parent_version,
            description=body.description,
            create_model=False,
        )
        return version_view(record)

    @app.get(
        "/admin/models/{model}/versions/{version}",
        response_model=VersionDetail,
        tags=_TAGS,
        responses=_READ,
    )
    async def get_version(
        model: Model, version: Version, key: Reader, control: Control
    ) -> VersionDetail:
        """One version, with who approved or rejected it."""
        check_model_scope(key, model)
        registry = await control.registry()
        record = await registry.get_version(model, version)
        status = await registry.approval_status(model, version)
        view = version_view(record).model_dump()
        return VersionDetail.model_validate({**view, "approvals": approval_status_view(status)})

    @app.post(
        "/admin/models/{model}/versions/{version}/stage",
        response_model=VersionView,
        tags=_TAGS,
        responses=_CHANGE,
    )
    async def change_stage(
        model: Model, version: Version, body: StageChange, key: Deployer, control: Control
    ) -> VersionView:
        """Move the version to another stage; production needs its approvals (else 409)."""
        check_model_scope(key, model)
        record = await (await control.registry()).transition(
            model,
            version,
            body.stage,
            actor=key.name,
            comment=body.comment,
            alias=body.alias,
            archive_previous=body.archive_previous,
        )
        return version_view(record)


def _approval_routes(app: FastAPI) -> None:
    @app.get(
        "/admin/models/{model}/versions/{version}/approvals",
        response_model=ApprovalStatusView,
        tags=_TAGS,
        responses=_READ,
    )
    async def approvals(
        model: Model, version: Version, key: Reader, control: Control
    ) -> ApprovalStatusView:
        """Who approved or rejected the version, and whether it may enter production now."""
        check_model_scope(key, model)
        status = await (await control.registry()).approval_status(model, version)
        return approval_status_view(status)

    @app.post(
        "/admin/models/{model}/versions/{version}/approvals",
        status_code=201,
        response_model=ApprovalView,
        tags=_TAGS,
        responses=_CHANGE,
    )
    async def approve(
        model: Model,
        version: Version,
        key: Approver,
        control: Control,
        body: DecisionRequest | None = None,
    ) -> ApprovalView:
        """Approve the version for production; 403 if the key registered it (four eyes)."""
        check_model_scope(key, model)
        comment = "" if body is None else body.comment
        record = await (await control.registry()).approve(
            model, version, actor=key.name, comment=comment
        )
        return ApprovalView.model_validate(record.to_json())

    @app.post(
        "/admin/models/{model}/versions/{version}/rejections",
        status_code=201,
        response_model=ApprovalView,
        tags=_TAGS,
        responses=_CHANGE,
    )
    async def reject(
        model: Model, version: Version, body: RejectionRequest, key: Approver, control: Control
    ) -> ApprovalView:
        """Reject the version: it cannot enter production while this is the key's last word."""
        check_model_scope(key, model)
        record = await (await control.registry()).reject(
            model, version, actor=key.name, comment=body.comment
        )
        return ApprovalView.model_validate(record.to_json())


def _alias_routes(app: FastAPI) -> None:
    @app.put(
        "/admin/models/{model}/aliases/{alias}",
        response_model=AliasView,
        tags=_TAGS,
        responses=_CHANGE,
    )
    async def set_alias(
        model: Model, alias: Alias, body: AliasChange, key: Deployer, control: Control
    ) -> AliasView:
        """Point the alias at a version (creating it); a protected one needs production."""
        check_model_scope(key, model)
        record = await (await control.registry()).set_alias(
            model, alias, body.version, actor=key.name
        )
        return AliasView.model_validate(record.to_json())

    @app.delete(
        "/admin/models/{model}/aliases/{alias}",
        response_model=AliasView,
        tags=_TAGS,
        responses=_READ,
    )
    async def delete_alias(
        model: Model, alias: Alias, key: Deployer, control: Control
    ) -> AliasView:
        """Remove the alias; where it pointed."""
        check_model_scope(key, model)
        record = await (await control.registry()).delete_alias(model, alias, actor=key.name)
        return AliasView.model_validate(record.to_json())


def _history_routes(app: FastAPI) -> None:
    @app.get(
        "/admin/models/{model}/history", response_model=list[EventView], tags=_TAGS, responses=_READ
    )
    async def history(
        model: Model,
        key: Reader,
        control: Control,
        limit: Annotated[int, Query(ge=1, le=MAX_HISTORY, description="The last this many.")] = (
            DEFAULT_HISTORY
        ),
    ) -> list[EventView]:
        """What happened to the model and its versions, and who did it, oldest first."""
        check_model_scope(key, model)
        events = await (await control.registry()).history(model, limit=limit)
        return [EventView.model_validate(e.to_json()) for e in events]

    @app.get(
        "/admin/models/{model}/versions/{version}/lineage",
        response_model=list[LineageNodeView],
        tags=_TAGS,
        responses=_READ,
    )
    async def lineage(
        model: Model, version: Version, key: Reader, control: Control
    ) -> list[LineageNodeView]:
        """The version, then the version it came from, and so on."""
        check_model_scope(key, model)
        nodes = await (await control.registry()).lineage(model, version)
        return [LineageNodeView.model_validate(n.to_json()) for n in nodes]

    @app.get(
        "/admin/models/{model}/deployments",
        response_model=list[DeploymentView],
        tags=_TAGS,
        responses=_READ,
    )
    async def deployments(
        model: Model,
        key: Reader,
        control: Control,
        target: Annotated[
            str | None,
            Query(min_length=1, max_length=1000, pattern=r"^[^\x00]+$", description="Where."),
        ] = None,
        open_only: Annotated[bool, Query(description="Only those serving now.")] = False,
    ) -> list[DeploymentView]:
        """Where the model's versions served, at what share, and who moved them; newest first."""
        check_model_scope(key, model)
        records = await (await control.registry()).deployments(
            model, target=target, open_only=open_only
        )
        return [DeploymentView.model_validate(d.to_json()) for d in records]
