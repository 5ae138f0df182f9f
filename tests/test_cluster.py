"""Several processes on one PostgreSQL: shard options, the schedule's advisory lock and its
failover, job requests reaching the holder, and `playbill jobs` naming the holder.

Each PostgreSQL test gets a database of its own (advisory locks are per database), created
and dropped here.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from playbill.history import db
from playbill.history.models import JobRequest
from playbill.jobs.common import JobBusy
from playbill.jobs.leader import AdvisoryLock, ScheduleElection, request_job, schedule_holder
from playbill.jobs.scheduler import create_scheduler, run_now
from playbill.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
PG_ENV = "PLAYBILL_TEST_DATABASE_URL"
HOLD_LOCK = ("import sys, time; from playbill.jobs.leader import AdvisoryLock; AdvisoryLock(sys.argv[1]).acquire(); "
             "print('held', flush=True); time.sleep(600)")


def fresh_database(base: str) -> Iterator[str]:
    """A new, migrated database on the server of `base`; dropped afterwards (its sessions too)."""
    name = f"pbcluster_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        db.upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set")
    yield from fresh_database(base)


@pytest.fixture
def pg_settings(home: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PLAYBILL_DATABASE_URL", pg_url)
    monkeypatch.setenv("PLAYBILL_JOBS__LEADER_POLL_SECONDS", "0.2")
    return load_settings()


def wait_for(predicate, timeout: float, every: float = 0.05):
    """The predicate's first true value, polled; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not true within {timeout} s")


@pytest.fixture
def holder_process(pg_url: str) -> Iterator[subprocess.Popen]:
    """Another process holding the schedule's lock (killed by the test or afterwards)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, pg_url], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def playbill(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "playbill.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=120)


# --------------------------------------------------------------------------- shards
def test_shard_settings_take_ranges_from_the_environment(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAYBILL_BOT__SHARD_COUNT", "4")
    monkeypatch.setenv("PLAYBILL_BOT__SHARD_IDS", "0-1,3")
    assert load_settings().bot.shard_ids == [0, 1, 3]


@pytest.mark.parametrize(("options", "message"), [
    (["--shard-count", "4", "--shard-ids", "4"], "error: shard ids run from 0 to 3 with shard_count 4 (not 4)"),
    (["--shard-ids", "0,1"], "error: shard_ids needs shard_count too"),
    (["--shard-count", "4", "--shard-ids", "1,1"], "error: shard ids are named twice in 1,1"),
    (["--shard-count", "0"], "error: shard_count must be a whole number from 1 (got 0)"),
    (["--shard-count", "2", "--shard-ids", "one"], "error: shard ids are numbers or ranges"),
])
def test_wrong_shard_options_are_refused_in_one_line(home: Path, options: list[str], message: str) -> None:
    result = playbill("run", *options)
    assert (result.returncode, result.stderr.splitlines()[:1][0][:len(message)]) == (2, message)


def test_wrong_shard_settings_are_refused_in_one_line(home: Path) -> None:
    result = playbill("jobs", env={"PLAYBILL_BOT__SHARD_COUNT": "2", "PLAYBILL_BOT__SHARD_IDS": "0,2"})
    [line] = result.stderr.splitlines()
    assert line.startswith("error: bad settings: bot: shard ids run from 0 to 1 with shard_count 2 (not 2)")


# --------------------------------------------------------------------------- the schedule's lock
@pytest.mark.postgres
def test_the_schedule_lock_is_held_by_one_process_at_a_time(pg_url: str) -> None:
    first = AdvisoryLock(pg_url).acquire()
    try:
        with pytest.raises(JobBusy) as refused:
            AdvisoryLock(pg_url).acquire()
    finally:
        first.release()
    assert f"process {os.getpid()} on {socket.gethostname()}" in str(refused.value)


@pytest.mark.postgres
def test_a_released_lock_can_be_taken_by_the_next_process(pg_url: str) -> None:
    AdvisoryLock(pg_url).acquire().release()
    second = AdvisoryLock(pg_url).acquire()
    try:
        assert second.alive()
    finally:
        second.release()


@pytest.mark.postgres
def test_playbill_jobs_names_the_process_holding_the_schedule(pg_settings, holder_process) -> None:
    result = playbill("jobs", "--json")
    holders = [json.loads(line)["scheduler"] for line in result.stdout.splitlines()]
    assert {(h["host"], h["pid"]) for h in holders} == {(socket.gethostname(), holder_process.pid)}


@pytest.mark.postgres
def test_a_killed_holder_is_named_no_more(pg_settings, holder_process) -> None:
    holder_process.send_signal(signal.SIGKILL)
    holder_process.wait()
    wait_for(lambda: schedule_holder(pg_settings) is None, timeout=30)
    result = playbill("jobs", "--json")
    assert {json.dumps(json.loads(line)["scheduler"]) for line in result.stdout.splitlines()} == {"null"}


@pytest.mark.postgres
def test_a_waiting_process_takes_over_the_schedule_when_its_holder_is_killed(pg_settings, holder_process) -> None:
    election = ScheduleElection(pg_settings, lambda: create_scheduler(pg_settings),
                                lambda scheduler: scheduler and scheduler.pause(), run_now=run_now).start()
    try:
        waited = election.scheduler is None
        holder_process.send_signal(signal.SIGKILL)
        wait_for(lambda: election.scheduler is not None, timeout=30)
        holder = schedule_holder(pg_settings)
    finally:
        election.stop()
    assert (waited, holder["pid"]) == (True, os.getpid())


@pytest.mark.postgres
def test_a_retrain_asked_on_another_process_is_queued_by_the_holder(pg_settings) -> None:
    election = ScheduleElection(pg_settings, lambda: create_scheduler(pg_settings),
                                lambda scheduler: scheduler and scheduler.pause(), run_now=run_now).start()
    engine = db.make_engine(pg_settings.database_url)
    try:
        request_job(pg_settings, "retrain-scene")  # what /admin retrain does on a process without the schedule
        with engine.connect() as conn:
            outcome = wait_for(lambda: conn.execute(sa.select(JobRequest.outcome)).scalar(), timeout=30)
        due = election.scheduler.get_job("retrain-scene").next_run_time
    finally:
        election.stop()
        engine.dispose()
    assert (outcome.split()[0], (due - datetime.now(UTC)).total_seconds() < 60) == ("queued,", True)


@pytest.mark.postgres
def test_a_standby_scheduler_takes_over_when_the_holder_is_killed(pg_settings, holder_process) -> None:
    standby = subprocess.Popen([sys.executable, "-m", "playbill.cli", "scheduler", "--standby"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        first = standby.stdout.readline().strip()
        holder_process.send_signal(signal.SIGKILL)
        second = standby.stdout.readline().strip()  # blocks until it holds the schedule
        holder = wait_for(lambda: schedule_holder(pg_settings), timeout=30)
    finally:
        standby.terminate()
        standby.wait(timeout=30)
    assert first.startswith("standing by: process ") and "holds the schedule; this one takes over" in first
    assert second.startswith("scheduler running") and holder["pid"] == standby.pid
