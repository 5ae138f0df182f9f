"""interaction request keys: a row replayed from the spool after an outage is never stored twice

A history write that cannot reach the database is kept in a local spool (playbill.history.spool)
and written when the database answers again. Each such row carries a request key; the unique
index finds a row already written (say, committed just before the connection dropped) instead
of storing it twice. Rows written once, before this revision or straight away, have none.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-07 06:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
# 0004 (the model store) comes between once it is on main; until then this follows 0003.
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("interactions") as batch:
        batch.add_column(sa.Column("request_key", sa.String(length=36), nullable=True))
    op.create_index("ix_interactions_request_key", "interactions", ["request_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_interactions_request_key", table_name="interactions")
    with op.batch_alter_table("interactions") as batch:
        batch.drop_column("request_key")
