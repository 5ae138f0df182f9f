"""identify turns: Discord's identify limit shared by every process of one database

Discord lets one shard per max_concurrency bucket (shard_id % max_concurrency) IDENTIFY every
5 seconds, across the whole application. A row per bucket holds the last identify's time (the
database's clock); a process takes its turn under the row's lock (playbill.history.identify).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 15:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "identify_turns",
        sa.Column("bucket", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("taken_by", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("bucket", name=op.f("pk_identify_turns")),
    )


def downgrade() -> None:
    op.drop_table("identify_turns")
