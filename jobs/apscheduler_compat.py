"""The one place Playbill uses APScheduler 3 internals (`_process_jobs`, `_jobstores_lock`).

Why: after `shutdown()` APScheduler 3's scheduler thread makes one last pass over the due
jobs with its executors already shut down; the submission fails and the job's next run time
is advanced anyway, so a run that was due is lost. APScheduler 3 offers no public hook to
skip that pass, so `NoPassAfterShutdown` wraps the pass and the shutdown in the scheduler's
own (re-entrant) job-store lock, which makes "is shutdown under way?" and the pass one step.

`require_internals()` runs at import: if an APScheduler release renames or drops what this
relies on, Playbill stops at once with a message, instead of silently losing runs again.
tests/test_jobs_apscheduler_compat.py checks both the internals and that the race is real.
"""

from __future__ import annotations

from typing import Any

import apscheduler
from apscheduler.schedulers.base import BaseScheduler


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


require_internals()
