"""The APScheduler 3 scheduler: jobs by stable id in a persistent store in the history database.

`create_scheduler(settings)` returns a scheduler, not started, with every job registered
idempotently (`replace_existing=True`, same ids every time). Starting it takes the schedule
lock (jobs/leader.py: a file lock under PLAYBILL_HOME on SQLite, an advisory lock on
PostgreSQL), so exactly one process owns the job store; `playbill scheduler` started while
another holds it is refused with a message saying which process has it, and `playbill run`
waits to take over (jobs.leader.ScheduleElection).

Re-registering a job would normally recompute its next run time from "now", silently
dropping a night missed while nobody was running: here a stored run time that is earlier
(a missed run) is kept, so it runs once at start (coalesced, within the misfire grace).
A due run is not lost at shutdown either (jobs/apscheduler_compat.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.engine import Engine

from playbill.engine.errors import InvalidInput
from playbill.engine.models import MODEL_NAMES, MODELS
from playbill.jobs.apscheduler_compat import NoPassAfterShutdown, stored_run_times, stored_states
from playbill.jobs.common import JobBusy, retrain_lock, run_jobs_with
from playbill.jobs.leader import ScheduleLock, schedule_lock
from playbill.settings import Settings

log = logging.getLogger(__name__)

JOBSTORE_TABLE = "apscheduler_jobs"  # lives in the history database; not part of its Alembic models
RETRAIN_PREFIX = "retrain-"  # a model's nightly retrain is the job "retrain-<model name>"


def retrain_job_id(model_name: str) -> str:
    """The id of `model_name`'s retrain job (the one place it is spelled)."""
    return f"{RETRAIN_PREFIX}{model_name}"


def retrained_model(job_id: str) -> str | None:
    """The model a job id retrains, or None for another job."""
    return job_id.removeprefix(RETRAIN_PREFIX) if job_id.startswith(RETRAIN_PREFIX) else None


JOB_IDS = (*(retrain_job_id(name) for name in MODEL_NAMES), "purge-history", "backup-database")
TRAINING_EXECUTOR = "training"  # one worker: two retrains never compete for the CPU


@dataclass(frozen=True)
class JobSpec:
    id: str
    name: str
    func: str  # "module:function", as stored
    args: tuple[Any, ...]
    trigger: CronTrigger
    executor: str = "default"


def job_specs(settings: Settings) -> list[JobSpec]:
    """The jobs Playbill runs, from the settings. Their arguments are names only: a job reads
    the settings when it runs (`jobs.common.run_jobs_with`), so no secret is stored."""
    tz = ZoneInfo(settings.jobs.timezone)

    def cron(expr: str) -> CronTrigger:
        return CronTrigger.from_crontab(expr, timezone=tz)

    return [
        *(JobSpec(retrain_job_id(model.name), f"retrain the {model.title} ({model.name})",
                  "playbill.jobs.retrain:retrain_from_checkpoint", (model.name,), cron(settings.jobs.retrain_cron),
                  TRAINING_EXECUTOR) for model in MODELS),
        JobSpec("purge-history", "purge old history", "playbill.jobs.maintenance:purge_history",
                (), cron(settings.jobs.purge_cron)),
        JobSpec("backup-database", "back up the history database", "playbill.jobs.maintenance:backup_database",
                (), cron(settings.jobs.backup_cron)),
    ]


class _OwnsJobStore:
    """Scheduler mixin: `start()` takes the job-store lock, `shutdown()` gives it back."""

    playbill_lock: ScheduleLock

    def start(self, *args: Any, **kwargs: Any) -> None:
        try:
            with _store_errors(self.playbill_settings.database_url):  # type: ignore[attr-defined]
                self.playbill_lock.acquire()
        except JobBusy as exc:
            raise JobBusy(
                f"{exc}: it owns the job store, so this one will not start. Stop it first, "
                "or run the bot and the scheduler in one process with `playbill run`"
            ) from None
        try:
            with _store_errors(self.playbill_settings.database_url):  # type: ignore[attr-defined]
                super().start(*args, **kwargs)  # type: ignore[misc]
        except BaseException:
            self.playbill_lock.release()
            raise

    def shutdown(self, wait: bool = True) -> None:
        try:
            super().shutdown(wait)  # type: ignore[misc]
        finally:
            self.playbill_lock.release()


class PlaybillBackgroundScheduler(_OwnsJobStore, NoPassAfterShutdown, BackgroundScheduler):
    pass


class PlaybillBlockingScheduler(_OwnsJobStore, NoPassAfterShutdown, BlockingScheduler):
    pass


def _store_engine(url: str) -> Engine:
    from playbill.history.db import make_engine  # the history database's engine: busy timeout, clear errors

    return make_engine(url)


@contextmanager
def _store_errors(url: str) -> Iterator[None]:
    """An unreachable or damaged job-store database: one HistoryError line (the CLI's `error:`)."""
    from sqlalchemy.exc import DBAPIError

    from playbill.history.db import database_error

    try:
        yield
    except DBAPIError as exc:
        raise database_error(exc, url) from None


def create_scheduler(
    settings: Settings,
    *,
    background: bool = True,
    on_promoted: Callable[[str, str], None] | None = None,
) -> BaseScheduler:
    """A scheduler (not started) with Playbill's jobs registered by stable id.

    `on_promoted(model, version)` is called (in the job's thread) after a retrain job
    promoted a new version: the bot refreshes its ModelHolder there.
    """
    tz = ZoneInfo(settings.jobs.timezone)
    settings.home.mkdir(parents=True, exist_ok=True)
    run_jobs_with(settings)
    store = SQLAlchemyJobStore(engine=_store_engine(settings.database_url), tablename=JOBSTORE_TABLE)
    with _store_errors(settings.database_url):
        store.jobs_t.create(store.engine, checkfirst=True)
        stored = stored_run_times(store)
    cls = PlaybillBackgroundScheduler if background else PlaybillBlockingScheduler
    scheduler = cls(
        jobstores={"default": store},
        executors={"default": ThreadPoolExecutor(4), TRAINING_EXECUTOR: ThreadPoolExecutor(1)},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": int(settings.jobs.misfire_grace_hours * 3600),
        },
        timezone=tz,
    )
    scheduler.playbill_lock = schedule_lock(settings)
    scheduler.playbill_settings = settings
    now = datetime.now(tz)
    for spec in job_specs(settings):
        options: dict[str, Any] = {}
        if spec.id in stored:
            options["next_run_time"] = _keep_missed_run(stored[spec.id], spec.trigger, now)
        scheduler.add_job(spec.func, spec.trigger, args=spec.args, id=spec.id, name=spec.name,
                          executor=spec.executor, replace_existing=True, **options)
    if on_promoted is not None:
        scheduler.add_listener(_promotion_listener(on_promoted), EVENT_JOB_EXECUTED)
    return scheduler


def _keep_missed_run(stored: datetime | None, trigger: CronTrigger, now: datetime) -> datetime | None:
    """The stored run time if it is earlier than the trigger's next one (a missed or moved-up run)."""
    if stored is None:
        return None  # paused by an admin: stays paused
    fresh = trigger.get_next_fire_time(None, now)
    return stored if fresh is None or stored < fresh else fresh


def _promotion_listener(callback: Callable[[str, str], None]) -> Callable[[JobExecutionEvent], None]:
    def listener(event: JobExecutionEvent) -> None:
        outcome = event.retval
        if getattr(outcome, "status", None) == "promoted":
            try:
                callback(outcome.model, outcome.candidate_version)
            except Exception:
                log.exception("on_promoted callback failed for %s %s", outcome.model, outcome.candidate_version)

    return listener


def run_now(scheduler: BaseScheduler, job_id: str) -> datetime:
    """Queue `job_id` to run at once (the admin `retrain` command); returns when it is due.

    Refuses (JobBusy) when a retrain of that model is already running, so the request is
    never dropped silently by max_instances.
    """
    if job_id not in JOB_IDS:
        raise InvalidInput(f"unknown job {job_id!r}; the jobs are {', '.join(JOB_IDS)}")
    settings = getattr(scheduler, "playbill_settings", None)
    model = retrained_model(job_id)
    if settings is not None and model is not None:
        holder = retrain_lock(settings, model).holder()
        if holder is not None:
            raise JobBusy(f"a {model} retrain is already running "
                          f"(process {holder.get('pid', '?')}, since {holder.get('since', '?')})")
    due = datetime.now(scheduler.timezone)
    scheduler.modify_job(job_id, next_run_time=due)
    return due


def next_run_time(settings: Settings, model_name: str, scheduler: BaseScheduler | None = None) -> datetime | None:
    """When `model_name` is next retrained: the running scheduler's job when it has one (None:
    paused), else the next time of the configured cron."""
    if scheduler is not None:
        job = scheduler.get_job(retrain_job_id(model_name))
        if job is not None:
            return job.next_run_time
    tz = ZoneInfo(settings.jobs.timezone)
    return CronTrigger.from_crontab(settings.jobs.retrain_cron, timezone=tz).get_next_fire_time(None, datetime.now(tz))


@dataclass(frozen=True)
class JobInfo:
    id: str
    name: str
    schedule: str
    next_run_time: datetime | None
    registered: bool
    running: str | None  # "process 123, since ..." while a retrain holds its lock


def list_jobs(settings: Settings) -> list[JobInfo]:
    """The jobs as stored (what a running scheduler will do), or as configured if never registered.

    Reads the store's rows directly, without owning the store or changing it, so it works
    while `playbill run` is up.
    """
    from sqlalchemy import inspect

    tz = ZoneInfo(settings.jobs.timezone)
    engine = _store_engine(settings.database_url)
    try:
        stored: dict[str, dict[str, Any]] = {}
        with _store_errors(settings.database_url):
            if inspect(engine).has_table(JOBSTORE_TABLE):
                stored = stored_states(SQLAlchemyJobStore(engine=engine, tablename=JOBSTORE_TABLE))
    finally:
        engine.dispose()
    now = datetime.now(tz)
    infos = []
    for spec in job_specs(settings):
        running = None
        if retrained_model(spec.id) is not None:
            holder = retrain_lock(settings, retrained_model(spec.id)).holder()
            if holder is not None:
                running = f"process {holder.get('pid', '?')}, since {holder.get('since', '?')}"
        state = stored.get(spec.id)
        if state is not None:
            infos.append(JobInfo(spec.id, state.get("name", spec.name), describe_trigger(state.get("trigger")),
                                 state.get("next_run_time"), True, running))
        else:
            infos.append(JobInfo(spec.id, spec.name, describe_trigger(spec.trigger),
                                 spec.trigger.get_next_fire_time(None, now), False, running))
    return infos


def describe_trigger(trigger: Any) -> str:
    """A cron trigger as its crontab line and time zone: `0 3 * * * (Europe/Paris)`."""
    if not isinstance(trigger, CronTrigger):
        return str(trigger or "")
    fields = {f.name: str(f) for f in trigger.fields}
    line = " ".join(fields[k] for k in ("minute", "hour", "day", "month", "day_of_week"))
    return f"{line} ({trigger.timezone})"
