"""One job schedule across every process: who holds it, waiting for it, and asking its holder.

APScheduler 3 cannot share a job store between schedulers, so exactly one process runs the
scheduler. On SQLite (one host) that is the process holding a file lock under PLAYBILL_HOME.
On PostgreSQL it is the process holding an advisory lock on a connection of its own
(`AdvisoryLock`): a dedicated connection, never pooled, with TCP keep-alives on both ends, so
the lock goes the moment that process dies (kill -9 closes its socket at once; a vanished host
is noticed by keep-alive within about 25 s).

`ScheduleElection` runs in every `playbill run`: it tries the lock every
`[jobs] leader_poll_seconds`; the process that gets it waits one more poll (so a holder cut off
from the database, which notices at its next check, has stopped) and then starts the scheduler.
The holder checks its lock connection every poll too: losing it means losing leadership, and
its scheduler stops at once. A job due while nobody held the schedule is not lost and never
runs twice: the job store's next_run_time moves on only once a run has been handed to an
executor, so the next holder finds it either done or still due (then run once, coalesced,
within the misfire grace).

`/admin retrain` on a process that does not hold the schedule leaves a row in job_requests;
the holder takes the waiting rows at each poll and queues them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import create_engine, delete, insert, select, text, update
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from playbill.history.models import JobRequest, ScheduleHolder
from playbill.jobs.common import FileLock, JobBusy, scheduler_lock
from playbill.settings import Settings

log = logging.getLogger(__name__)

LOCK_KEY = (int.from_bytes(b"PLAY", "big"), 1)  # pg_try_advisory_lock(int4, int4): per database
WHAT = "the Playbill scheduler"
# Both ends of the lock connection probe it: a dead peer is noticed in about 10 + 5 * 3 seconds.
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
             "tcp_user_timeout": 25_000,
             "options": "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"}
_HOLDER_SQL = text(
    "SELECT h.host, h.pid, h.since FROM schedule_holder h JOIN pg_locks l ON l.pid = h.backend_pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :a AND l.objid = :b AND l.objsubid = 2 "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def lock_connect_args(url: str) -> dict[str, Any]:
    """libpq parameters of the lock connection: keep-alives, a name, and the URL's own `options`."""
    own = make_url(url).query.get("options")
    own = " ".join(own) if isinstance(own, tuple) else own
    options = " ".join(part for part in (own, KEEPALIVE["options"]) if part)
    return {**KEEPALIVE, "options": options, "application_name": "playbill-scheduler"}


def this_process() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def on_server_database(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


class ScheduleLock(Protocol):
    """What the scheduler needs of its lock (jobs.common.FileLock, AdvisoryLock)."""

    def acquire(self) -> Any: ...
    def release(self) -> None: ...
    def alive(self) -> bool: ...


class AdvisoryLock:
    """The schedule's PostgreSQL advisory lock, held on a dedicated connection while acquired."""

    def __init__(self, url: str, what: str = WHAT) -> None:
        self.url = url
        self.what = what
        self._engine: Engine | None = None
        self._conn: Connection | None = None
        self.took_over = False  # the last acquire found a holder that had not let go

    def acquire(self) -> AdvisoryLock:
        if self._conn is not None:
            return self  # already ours
        engine = create_engine(self.url, poolclass=NullPool, connect_args=lock_connect_args(self.url))
        try:
            conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            got = conn.execute(text("SELECT pg_try_advisory_lock(:a, :b)"), dict(zip("ab", LOCK_KEY))).scalar()
        except SQLAlchemyError as exc:
            engine.dispose()
            raise JobBusy(f"cannot reach the database to take the schedule: {exc.__class__.__name__}") from None
        if not got:
            conn.close()
            engine.dispose()
            holder = schedule_holder_on(self.url)
            who = f"process {holder['pid']} on {holder['host']}, since {holder['since']}" if holder else "another process"
            raise JobBusy(f"{self.what} is already running ({who}); try again when it has finished")
        self._engine, self._conn = engine, conn
        try:
            # a row left behind: its holder died or was cut off rather than letting go
            self.took_over = conn.execute(select(ScheduleHolder.pid)).first() is not None
            conn.execute(delete(ScheduleHolder))
            conn.execute(insert(ScheduleHolder).values(
                id=1, **this_process(), since=datetime.now(UTC),
                backend_pid=conn.execute(text("SELECT pg_backend_pid()")).scalar()))
        except SQLAlchemyError as exc:  # an old schema: the lock holds, only `playbill jobs` cannot name it
            log.warning("the schedule is held, but its holder is not recorded (run `playbill db upgrade`): %s",
                        exc.__class__.__name__)
        return self

    def alive(self) -> bool:
        """Whether the lock connection still answers (so the lock is still ours)."""
        conn = self._conn
        if conn is None:
            return False
        try:
            return conn.execute(text("SELECT pg_backend_pid()")).scalar() is not None
        except SQLAlchemyError:
            return False

    def release(self) -> None:
        conn, engine, self._conn, self._engine = self._conn, self._engine, None, None
        if conn is not None:
            try:
                conn.execute(delete(ScheduleHolder).where(ScheduleHolder.backend_pid == text("pg_backend_pid()")))
                conn.execute(text("SELECT pg_advisory_unlock(:a, :b)"), dict(zip("ab", LOCK_KEY)))
            except SQLAlchemyError:
                pass  # the connection is gone, and the lock with it
            finally:
                conn.close()
        if engine is not None:
            engine.dispose()


def schedule_lock(settings: Settings) -> ScheduleLock:
    """The advisory lock on a server database, else the file lock under PLAYBILL_HOME."""
    if on_server_database(settings.database_url):
        return AdvisoryLock(settings.database_url)
    return scheduler_lock(settings)


def schedule_holder_on(url: str) -> dict[str, Any] | None:
    """{"host", "pid", "since"} of the process holding the schedule on the server database at `url`."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            row = conn.execute(_HOLDER_SQL, dict(zip("ab", LOCK_KEY))).first()
    except SQLAlchemyError:
        return None  # no table yet (old schema) or no database: nobody can be named
    finally:
        engine.dispose()
    if row is None:
        return None
    return {"host": row.host, "pid": row.pid, "since": row.since.astimezone(UTC).isoformat(timespec="seconds")}


def schedule_holder(settings: Settings) -> dict[str, Any] | None:
    """Who holds the schedule now: {"host", "pid", "since"}, or None when no process does."""
    if on_server_database(settings.database_url):
        return schedule_holder_on(settings.database_url)
    info = scheduler_lock(settings).holder()
    if info is None:
        return None
    return {"host": info.get("host"), "pid": info.get("pid"), "since": info.get("since")}


# --------------------------------------------------------------------------- requests
def _engine(settings: Settings) -> Engine:
    from playbill.history.db import make_engine

    return make_engine(settings.database_url)


def request_job(settings: Settings, job_id: str) -> None:
    """Ask the schedule's holder, wherever it runs, to run `job_id` now (taken at its next poll)."""
    engine = _engine(settings)
    try:
        with engine.begin() as conn:
            me = this_process()
            conn.execute(insert(JobRequest).values(job_id=job_id, requested_at=datetime.now(UTC),
                                                   requested_by=f"{me['pid']}@{me['host']}"))
    finally:
        engine.dispose()


def take_requests(engine: Engine, queue: Callable[[str], str]) -> int:
    """Queue every waiting request with `queue(job_id)` (its return value or error is the outcome)."""
    with engine.begin() as conn:
        query = select(JobRequest.id, JobRequest.job_id).where(JobRequest.taken_at.is_(None)).order_by(JobRequest.id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = conn.execute(query).all()
        for row in rows:
            try:
                outcome = queue(row.job_id)
            except Exception as exc:  # JobBusy, unknown job: said in the row, never raised here
                outcome = f"not queued: {exc}"
            conn.execute(update(JobRequest).where(JobRequest.id == row.id)
                         .values(taken_at=datetime.now(UTC), outcome=outcome[:2000]))
    return len(rows)


# --------------------------------------------------------------------------- election
class ScheduleElection:
    """Holds the schedule in this process whenever it can; see the module docstring.

    `make_scheduler()` builds a scheduler (jobs.scheduler.create_scheduler), called only once
    the schedule lock is held; its `playbill_lock` becomes that lock. `on_change(scheduler or
    None)` is told when this process starts or stops holding the schedule.
    """

    def __init__(self, settings: Settings, make_scheduler: Callable[[], Any],
                 on_change: Callable[[Any | None], None] | None = None, *,
                 run_now: Callable[[Any, str], Any] | None = None) -> None:
        self.settings = settings
        self.poll = settings.jobs.leader_poll_seconds
        self._make = make_scheduler
        self._on_change = on_change or (lambda scheduler: None)
        self._run_now = run_now
        self.lock = schedule_lock(settings)
        self.scheduler: Any | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="schedule-election", daemon=True)
        self._requests: Engine | None = None

    def start(self) -> ScheduleElection:
        """Try once now (blocking: call it off the event loop), then keep trying in a thread."""
        self._waiting_said = self._try_to_hold(False)
        self._thread.start()
        return self

    def _loop(self) -> None:
        waiting_said = self._waiting_said
        while not self._stop.wait(self.poll):
            if self.scheduler is None:
                waiting_said = self._try_to_hold(waiting_said)
            elif not self.lock.alive():
                log.error("lost the schedule lock (its database connection is gone); stopping the scheduler")
                self._let_go()
            else:
                self._take_requests()

    def _try_to_hold(self, waiting_said: bool) -> bool:
        try:
            self.lock.acquire()
        except JobBusy as exc:
            if not waiting_said:
                log.info("waiting to hold the schedule: %s", exc)
            return True
        # The lock is ours. A holder that did not let go may only have lost its connection:
        # it notices at its next check, within one poll, and stops; wait that long first.
        if getattr(self.lock, "took_over", False) and self._stop.wait(self.poll):
            self.lock.release()
            return waiting_said
        try:
            scheduler = self._make()  # reads the job store only now, as the previous holder left it
            scheduler.playbill_lock = self.lock
            scheduler.start()
        except Exception:
            log.exception("the job scheduler did not start; trying again in %s s", self.poll)
            self.lock.release()
            return waiting_said
        self.scheduler = scheduler
        log.info("this process holds the job schedule")
        self._on_change(scheduler)
        return False

    def _take_requests(self) -> None:
        if self._run_now is None:
            return
        try:
            if self._requests is None:
                self._requests = _engine(self.settings)
            taken = take_requests(self._requests, lambda job_id: f"queued, due {self._run_now(self.scheduler, job_id)}")
            if taken:
                log.info("queued %d job request(s) from other processes", taken)
        except SQLAlchemyError as exc:
            log.warning("cannot read the job requests: %s", exc.__class__.__name__)

    def _let_go(self) -> None:
        scheduler, self.scheduler = self.scheduler, None
        if scheduler is not None:
            self._on_change(None)
            try:
                scheduler.shutdown(wait=False)
            except Exception:
                log.exception("stopping the job scheduler failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.poll + 5)
        self._let_go()
        if self._requests is not None:
            self._requests.dispose()


__all__ = ["AdvisoryLock", "FileLock", "ScheduleElection", "request_job", "schedule_holder", "schedule_lock"]
