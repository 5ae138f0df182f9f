"""job references in one namespace: stored APScheduler jobs point into `playbill.*`

Releases before 0.2 installed `jobs`, `history`, ... as top-level packages, and APScheduler's job
store (the `apscheduler_jobs` table beside ours) holds each job's function as a text reference
such as `jobs.retrain:retrain_from_checkpoint` inside a pickled state. Since the wheel installs one
package, `playbill`, such a reference no longer imports, and APScheduler would drop the job (and
its next run time) when it reads it. This rewrites the references; the table is APScheduler's, so
only the `func` field of each state is touched, and a database without the table is left alone.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 06:30:00
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOBSTORE_TABLE = "apscheduler_jobs"  # playbill.jobs.scheduler.JOBSTORE_TABLE; migrations never import our code
OLD_TOP_LEVEL = ("bot", "engine", "jobs", "history", "migrations")


def _rewrite(old: str, new: str, names: tuple[str, ...]) -> None:
    bind = op.get_bind()
    if not sa.inspect(bind).has_table(JOBSTORE_TABLE):
        return
    table = sa.table(JOBSTORE_TABLE, sa.column("id", sa.String), sa.column("job_state", sa.LargeBinary))
    for job_id, blob in bind.execute(sa.select(table.c.id, table.c.job_state)).all():
        state = pickle.loads(blob)
        func = state.get("func")
        if isinstance(func, str) and func.split(".", 1)[0] in names and func.startswith(old):
            state["func"] = new + func.removeprefix(old)
            bind.execute(table.update().where(table.c.id == job_id).values(job_state=pickle.dumps(state, pickle.HIGHEST_PROTOCOL)))


def upgrade() -> None:
    for name in OLD_TOP_LEVEL:
        _rewrite(f"{name}.", f"playbill.{name}.", OLD_TOP_LEVEL)


def downgrade() -> None:
    for name in OLD_TOP_LEVEL:
        _rewrite(f"playbill.{name}.", f"{name}.", ("playbill",))
