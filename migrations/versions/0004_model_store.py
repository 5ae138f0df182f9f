"""model store: published model versions, their files and the current version in the database

A fleet on a server database shares its models through these tables instead of a shared
folder (playbill.history.model_store): a version's files with their SHA-256, the current
version of each model (one row, changed in the same transaction as its promotion record),
and the promotion steps that `playbill models rollback` walks back.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 06:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", BigId, nullable=False),
        sa.Column("model_name", sa.String(length=32), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_by", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("model_name", "version", name=op.f("uq_model_versions_model_name_version")),
    )
    op.create_table(
        "model_files",
        sa.Column("version_id", sa.BigInteger(), nullable=False),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["model_versions.id"], ondelete="CASCADE",
                                name=op.f("fk_model_files_version_id_model_versions")),
        sa.PrimaryKeyConstraint("version_id", "path", name=op.f("pk_model_files")),
    )
    op.create_table(
        "model_current",
        sa.Column("model_name", sa.String(length=32), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model_name", name=op.f("pk_model_current")),
    )
    op.create_table(
        "model_promotions",
        sa.Column("id", BigId, nullable=False),
        sa.Column("model_name", sa.String(length=32), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("previous", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("promoted_by", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_promotions")),
    )
    op.create_index("ix_model_promotions_model_name_id", "model_promotions", ["model_name", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_model_promotions_model_name_id", table_name="model_promotions")
    op.drop_table("model_promotions")
    op.drop_table("model_current")
    op.drop_table("model_files")
    op.drop_table("model_versions")
