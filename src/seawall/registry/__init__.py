"""The model registry: registered models, versions, aliases, stages, approvals, deployments.

`Registry` keeps them in the database (SQLite by default, PostgreSQL at scale), each change
audited in the same commit; `store_artifact` and `materialize` move artifacts in and out of the
content-addressed artifact store. Uses `seawall.store` and `seawall.security`; never the
gateway. Imported on first use (PEP 562), as `seawall.store` is: a gateway that serves no
registry model does not load SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seawall.registry.artifacts import Materialized, materialize, store_artifact
    from seawall.registry.fields import ALIAS_PATTERN, MODEL_NAME_PATTERN, parse_model_uri
    from seawall.registry.records import (
        AliasRecord,
        ApprovalRecord,
        ApprovalStatus,
        ArtifactInfo,
        DeploymentRecord,
        EventRecord,
        LineageNode,
        ModelRecord,
        VersionRecord,
    )
    from seawall.registry.registry import Registry, RegistryOptions
    from seawall.registry.stages import TRANSITIONS, Stage

__all__ = [
    "ALIAS_PATTERN",
    "MODEL_NAME_PATTERN",
    "TRANSITIONS",
    "AliasRecord",
    "ApprovalRecord",
    "ApprovalStatus",
    "ArtifactInfo",
    "DeploymentRecord",
    "EventRecord",
    "LineageNode",
    "Materialized",
    "ModelRecord",
    "Registry",
    "RegistryOptions",
    "Stage",
    "VersionRecord",
    "materialize",
    "parse_model_uri",
    "store_artifact",
]

_LAZY = {
    "Materialized": "artifacts",
    "materialize": "artifacts",
    "store_artifact": "artifacts",
    "ALIAS_PATTERN": "fields",
    "MODEL_NAME_PATTERN": "fields",
    "parse_model_uri": "fields",
    "Registry": "registry",
    "RegistryOptions": "registry",
    "TRANSITIONS": "stages",
    "Stage": "stages",
    **dict.fromkeys(
        (
            "AliasRecord",
            "ApprovalRecord",
            "ApprovalStatus",
            "ArtifactInfo",
            "DeploymentRecord",
            "EventRecord",
            "LineageNode",
            "ModelRecord",
            "VersionRecord",
        ),
        "records",
    ),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
