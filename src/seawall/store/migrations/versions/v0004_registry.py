"""The model registry: registered models, versions, aliases, approvals, deployments.

Revision ID: 0004
Revises: 0003

`registered_models` holds names and the approvals each needs; `model_versions` one row per
version (numbered per model from 1), with its artifact's files and digests, the signed
manifest's digest, provenance (dataset snapshot, code version, parent version, author),
evaluation metrics and stage. `model_aliases` maps (model, alias) to a version;
`model_approvals` keeps every approval and rejection; `model_deployments` records which version
served where, at what traffic share, from when to when, and by whom; `model_events` is each
model's history (what changed, by whom, when), written with the matching audit record.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "registered_models",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("required_approvals", sa.Integer(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registered_models"),
        sa.UniqueConstraint("name", name="uq_registered_models_name"),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("framework", sa.String(32), nullable=False),
        sa.Column("artifact_kind", sa.String(16), nullable=False),
        sa.Column("artifact_files", sa.JSON(), nullable=False),
        sa.Column("artifact_bytes", sa.BigInteger(), nullable=False),
        sa.Column("artifact_uri", sa.Text(), nullable=False),
        sa.Column("manifest_digest", sa.String(64), nullable=True),
        sa.Column("signed_by", sa.String(64), nullable=True),
        sa.Column("signature", sa.JSON(), nullable=True),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("dataset_snapshot", sa.Text(), nullable=True),
        sa.Column("code_version", sa.Text(), nullable=True),
        sa.Column("parent_version", sa.Integer(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("author", sa.Text(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("stage_changed_at", _AT, nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registered_models.id"],
            name="fk_model_versions_model_id_registered_models",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_model_id_version"),
    )
    op.create_table(
        "model_aliases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
        sa.Column("updated_by", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registered_models.id"],
            name="fk_model_aliases_model_id_registered_models",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_model_aliases"),
        sa.UniqueConstraint("model_id", "alias", name="uq_model_aliases_model_id_alias"),
    )
    op.create_table(
        "model_approvals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("approver", sa.Text(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("expires_at", _AT, nullable=True),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registered_models.id"],
            name="fk_model_approvals_model_id_registered_models",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_model_approvals"),
    )
    op.create_index(
        "ix_model_approvals_model_id_version", "model_approvals", ["model_id", "version"]
    )
    op.create_table(
        "model_deployments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("traffic_share", sa.Float(), nullable=False),
        sa.Column("started_at", _AT, nullable=False),
        sa.Column("started_by", sa.Text(), nullable=False),
        sa.Column("ended_at", _AT, nullable=True),
        sa.Column("ended_by", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registered_models.id"],
            name="fk_model_deployments_model_id_registered_models",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_model_deployments"),
    )
    op.create_index(
        "ix_model_deployments_model_id_target", "model_deployments", ["model_id", "target"]
    )
    op.create_table(
        "model_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("at", _AT, nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registered_models.id"],
            name="fk_model_events_model_id_registered_models",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_model_events"),
    )
    op.create_index("ix_model_events_model_id", "model_events", ["model_id"])


def downgrade() -> None:
    op.drop_index("ix_model_events_model_id", table_name="model_events")
    op.drop_table("model_events")
    op.drop_index("ix_model_deployments_model_id_target", table_name="model_deployments")
    op.drop_table("model_deployments")
    op.drop_index("ix_model_approvals_model_id_version", table_name="model_approvals")
    op.drop_table("model_approvals")
    op.drop_table("model_aliases")
    op.drop_table("model_versions")
    op.drop_table("registered_models")
