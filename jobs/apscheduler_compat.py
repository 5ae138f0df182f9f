"""The one place Playbill uses APScheduler 3 internals: `_process_jobs` and `_jobstores_lock`,
and the SQLAlchemy job store's row format (read without owning the store or importing the jobs).

Why: after `shutdown()` APScheduler 3's scheduler thread makes one last pass over the due
jobs with its executors already shut down; the submission fails and the job's next run time
is advanced anyway, so a run that was due is lost. APScheduler 3 offers no public hook to
skip that pass, so `NoPassAfterShutdown` wraps the pass and the shutdown in the scheduler's
own (re-entrant) job-store lock, which makes "is shutdown under way?" and the pass one step.

`require_internals()` runs at import: if an APScheduler release renames or drops what this
relies on, Playbill stops at once with a message, instead of silently losing runs again.
`stored_run_times` and `stored_states` read the job store's rows directly: `playbill jobs`
shows the stored jobs while another process owns the store, and a restart keeps a missed run,
both without unpickling the jobs' functions (APScheduler's own readers would import them).

tests/test_jobs_apscheduler_compat.py checks the internals, the row format, and that the race is real.
"""

from __future__ import annotations

import logging
import pickle
from datetime import UTC, datetime
from typing import Any

import apscheduler
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy import select

log = logging.getLogger(__name__)


def require_internals() -> None:
    """Fail loudly when APScheduler no longer has what `NoPassAfterShutdown` wraps."""
    if not callable(getattr(BaseScheduler, "_process_jobs", None)):
        raise ImportError(
            f"APScheduler {apscheduler.__version__} has no BaseScheduler._process_jobs; "
            "jobs/apscheduler_compat.py must be updated for this release"
        )


class NoPassAfterShutdown:
    """Scheduler mixin: once `shutdown()` has begun, the scheduler thread runs no more passes."""

    _playbill_stopping = False

    def start(self, *args: Any, **kwargs: Any) -> None:
        self._playbill_stopping = False
        super().start(*args, **kwargs)  # type: ignore[misc]

    def shutdown(self, wait: bool = True) -> None:
        with self._jobstores_lock:  # type: ignore[attr-defined]
            self._playbill_stopping = True
        super().shutdown(wait)  # type: ignore[misc]

    def _process_jobs(self) -> float | None:
        with self._jobstores_lock:  # type: ignore[attr-defined]
            if self._playbill_stopping:
                return None
            return super()._process_jobs()  # type: ignore[misc]


def stored_run_times(store: SQLAlchemyJobStore) -> dict[str, datetime | None]:
    """Job id -> stored next run time (None: paused), from the store's `next_run_time` column."""
    table = store.jobs_t
    with store.engine.begin() as conn:
        rows = conn.execute(select(table.c.id, table.c.next_run_time)).all()
    return {row.id: None if row.next_run_time is None else datetime.fromtimestamp(row.next_run_time, UTC)
            for row in rows}


def stored_states(store: SQLAlchemyJobStore) -> dict[str, dict[str, Any]]:
    """Job id -> its stored state (name, trigger, next_run_time, ...): the pickled `Job.__getstate__`
    dict in the `job_state` column, unpickled without importing the job's function."""
    table = store.jobs_t
    with store.engine.begin() as conn:
        rows = conn.execute(select(table.c.id, table.c.job_state)).all()
    states = {}
    for row in rows:
        try:
            states[row.id] = pickle.loads(row.job_state)  # noqa: S301 - our own job store
        except Exception as exc:
            log.warning("cannot read stored job %s: %s", row.id, exc)
    return states


require_internals()
