"""jobs/apscheduler_compat.py: what it relies on in APScheduler is there, and still needed.

These tests look at APScheduler's internals on purpose (the adapter is the one place that
does): when an APScheduler release changes them, this file fails and names what moved.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from threading import RLock

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from playbill.jobs.apscheduler_compat import NoPassAfterShutdown, require_internals, stored_run_times, stored_states


class Guarded(NoPassAfterShutdown, BackgroundScheduler):
    pass


def _due_job_after_shutdown(cls: type, folder: Path) -> tuple[datetime, datetime]:
    """A job due now; the scheduler shut down; then the pass its thread makes on waking up."""
    url = f"sqlite:///{folder / 'jobs.db'}"
    scheduler = cls(jobstores={"default": SQLAlchemyJobStore(url=url)}, timezone=UTC)
    scheduler.start(paused=True)
    due = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    scheduler.add_job("playbill.jobs.apscheduler_compat:require_internals", "interval", hours=1, next_run_time=due,
                      id="due", misfire_grace_time=None)
    scheduler.shutdown(wait=True)
    scheduler._process_jobs()  # what the scheduler thread does once shutdown wakes it
    (stored,) = SQLAlchemyJobStore(url=url).get_all_jobs()
    return due, stored.next_run_time


def test_the_internals_the_adapter_wraps_are_there() -> None:
    require_internals()  # raises ImportError naming the release when _process_jobs is gone
    scheduler = BackgroundScheduler()
    assert isinstance(scheduler._jobstores_lock, type(RLock()))


def test_apscheduler_still_loses_a_due_run_in_its_last_pass(tmp_path: Path) -> None:
    # If this fails, APScheduler fixed the race: the adapter can go.
    due, after = _due_job_after_shutdown(BackgroundScheduler, tmp_path)
    assert after > due


def test_the_adapter_keeps_the_due_run(tmp_path: Path) -> None:
    due, after = _due_job_after_shutdown(Guarded, tmp_path)
    assert after == due


def test_the_store_rows_read_without_the_scheduler(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    scheduler = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=url)}, timezone=UTC)
    scheduler.start(paused=True)
    due = datetime(2030, 1, 1, tzinfo=UTC)
    scheduler.add_job("playbill.jobs.apscheduler_compat:require_internals", "interval", hours=1, next_run_time=due,
                      id="job", name="a job")
    scheduler.shutdown()
    store = SQLAlchemyJobStore(url=url)
    assert stored_run_times(store) == {"job": due}
    assert stored_states(store)["job"]["name"] == "a job"
