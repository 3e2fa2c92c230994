"""`Registry`, the facade: options, model creation, refusals before any write, aliases, blobs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from seawall.errors import ConflictError, InvalidInputError
from seawall.registry import ArtifactInfo, Registry, RegistryOptions
from seawall.store import BlobStore, Database

from .conftest import ARTIFACT, AUTHOR


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="approval_ttl_s"):
        RegistryOptions(approval_ttl_s=0)
    with pytest.raises(ValueError, match="protected_aliases"):
        RegistryOptions(protected_aliases=frozenset({"Champion!"}))
    with pytest.raises(ValueError, match="default_required_approvals"):
        RegistryOptions(default_required_approvals=11)


async def test_a_model_is_created_once_and_listed(registry: Registry) -> None:
    created = await registry.create_model(
        "iris", actor=AUTHOR, description="flowers", required_approvals=2, tags={"team": "ml"}
    )
    assert (created.name, created.required_approvals, created.tags) == ("iris", 2, {"team": "ml"})
    assert created.latest_version is None
    with pytest.raises(ConflictError, match="name: model 'iris' is registered already"):
        await registry.create_model("iris", actor=AUTHOR)
    await registry.create_model("adult", actor=AUTHOR)
    assert [m.name for m in await registry.list_models()] == ["adult", "iris"]
    updated = await registry.update_model("iris", actor=AUTHOR, required_approvals=0)
    assert updated.required_approvals == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "bad name"}, "name"),
        ({"name": "iris", "required_approvals": -1}, "required_approvals"),
        ({"name": "iris", "required_approvals": True}, "required_approvals"),
        ({"name": "iris", "tags": {"x": float("nan")}}, "tags"),
        ({"name": "iris", "description": "a\x00b"}, "description"),
    ],
)
async def test_bad_models_are_refused_naming_the_field(
    registry: Registry, kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInputError, match=f"^{field}:"):
        await registry.create_model(actor=AUTHOR, **kwargs)  # type: ignore[arg-type]
    assert await registry.list_models() == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"framework": "Sk Learn"}, "framework"),
        ({"version": 0}, "version"),
        ({"version": 2**31}, "version"),
        ({"parent_version": 9}, "parent_version"),
        ({"metrics": {"accuracy": "high"}}, "metrics.accuracy"),
        ({"parameters": {"x": object()}}, "parameters"),
        (
            {"artifact": dataclasses.replace(ARTIFACT, files={"../etc/passwd": "a" * 64})},
            "artifact.files",
        ),
        ({"artifact": dataclasses.replace(ARTIFACT, files={"m": "xyz"})}, "artifact.files"),
        ({"artifact": dataclasses.replace(ARTIFACT, files={})}, "artifact.files"),
        ({"artifact": dataclasses.replace(ARTIFACT, kind="zip")}, "artifact.kind"),
    ],
)
async def test_bad_versions_are_refused_naming_the_field(
    registry: Registry, kwargs: dict[str, object], field: str
) -> None:
    arguments: dict[str, object] = {"framework": "sklearn", "artifact": ARTIFACT, **kwargs}
    artifact = arguments.pop("artifact")
    with pytest.raises(InvalidInputError, match=f"^{field}:"):
        await registry.register_version(
            "iris",
            artifact,  # type: ignore[arg-type]
            actor=AUTHOR,
            **arguments,  # type: ignore[arg-type]
        )
    assert await registry.list_models() == []  # nothing half-written, not even the model


async def test_the_blob_store_must_hold_the_artifact(migrated: Database, tmp_path: object) -> None:

    blobs = BlobStore(Path(str(tmp_path)) / "blobs")
    registry = Registry(migrated, blobs=blobs)
    with pytest.raises(InvalidInputError, match="is not in the artifact store"):
        await registry.register_version("iris", ARTIFACT, actor=AUTHOR, framework="sklearn")
    digest = blobs.put(b"model bytes")
    stored = ArtifactInfo(kind="file", files={"m.joblib": digest}, total_bytes=11, uri=blobs.root)
    record = await registry.register_version("iris", stored, actor=AUTHOR, framework="sklearn")
    assert record.artifact.files == {"m.joblib": digest}
