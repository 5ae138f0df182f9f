"""The scheduler: jobs registered once by id, one owner, missed runs run once, restarts don't duplicate."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import create_engine, text

from playbill.engine.errors import InvalidInput
from playbill.engine import models
from playbill.jobs.common import JobBusy
from playbill.jobs.scheduler import JOB_IDS, create_scheduler, list_jobs, next_run_time, run_now
from test_jobs_fakes import FAKE_SENTIMENT, calls, control, make_initial_model, training_runs


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def stored_rows(settings) -> dict[str, float | None]:
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(text("SELECT id, next_run_time FROM apscheduler_jobs")).all())
    finally:
        engine.dispose()


@pytest.fixture
def fake_trainer(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(models.SPECS, "sentiment", FAKE_SENTIMENT)
    make_initial_model(settings.home)


def finished(settings) -> list[str]:
    return [run.status for run in training_runs(settings).values() if run.status != "running"]


def test_jobs_registered_once_with_the_right_next_run_time(settings) -> None:
    settings.jobs.timezone = "America/New_York"
    settings.jobs.retrain_cron = "15 3 * * *"
    for _ in range(2):  # a second start registers the same jobs again: still one of each
        scheduler = create_scheduler(settings)
        scheduler.start(paused=True)
        jobs = {job.id: job for job in scheduler.get_jobs()}
        scheduler.shutdown()
        assert sorted(jobs) == sorted(JOB_IDS)
        assert sorted(stored_rows(settings)) == sorted(JOB_IDS)
        tz = ZoneInfo("America/New_York")
        expected = CronTrigger.from_crontab("15 3 * * *", timezone=tz).get_next_fire_time(None, datetime.now(tz))
        for job_id in ("retrain-sentiment", "retrain-scene"):
            job = jobs[job_id]
            assert job.next_run_time == expected and job.next_run_time.tzinfo.key == "America/New_York"
            assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, 6 * 3600)
            assert job.args[0] == job_id.removeprefix("retrain-") and job.func_ref == "playbill.jobs.retrain:retrain_from_checkpoint"


def test_one_process_owns_the_job_store(settings) -> None:
    first = create_scheduler(settings)
    first.start(paused=True)
    try:
        second = create_scheduler(settings)
        with pytest.raises(JobBusy, match="already running .*process"):
            second.start(paused=True)
        out = subprocess.run([sys.executable, "-m", "playbill.cli", "scheduler", "--once"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and "error: the Playbill scheduler is already running" in out.stderr
        assert "Traceback" not in out.stderr
    finally:
        first.shutdown()
    second.start(paused=True)  # free again once the first one stopped
    second.shutdown()


def test_a_missed_night_runs_once_after_a_restart(settings, fake_trainer) -> None:
    missed = (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)
    settings.jobs.retrain_cron = f"{missed.minute} {missed.hour} * * *"
    scheduler = create_scheduler(settings)
    scheduler.start(paused=True)
    scheduler.modify_job("retrain-sentiment", next_run_time=missed)  # due while "the bot was down"
    scheduler.shutdown()

    restarted = create_scheduler(settings)  # registers the jobs again, keeping the missed run
    restarted.start()
    try:
        wait_for(lambda: finished(settings))
        time.sleep(1.0)  # room for a duplicate to show up
    finally:
        restarted.shutdown()
    assert [r.status for r in training_runs(settings).values()] == ["promoted"]
    assert len(calls(settings.home)) == 1
    next_time = datetime.fromtimestamp(stored_rows(settings)["retrain-sentiment"], UTC)
    assert next_time == missed + timedelta(days=1)  # back on schedule, nothing lost


def test_restart_during_a_run_does_not_start_it_again(settings, fake_trainer, tmp_path) -> None:
    gate = tmp_path / "go"
    control(settings.home, delta=0.1, block_on=str(gate))
    scheduler = create_scheduler(settings)
    scheduler.start()
    run_now(scheduler, "retrain-sentiment")
    wait_for(lambda: len(calls(settings.home)) == 1)  # training in progress
    scheduler.shutdown(wait=False)  # the bot goes down mid-run...

    restarted = create_scheduler(settings)  # ...and comes back
    restarted.start()
    try:
        job = restarted.get_job("retrain-sentiment")
        assert job.next_run_time > datetime.now(UTC) + timedelta(minutes=1)  # not due again
        time.sleep(1.0)
        gate.write_text("go")
        wait_for(lambda: finished(settings))
    finally:
        restarted.shutdown()
    assert len(calls(settings.home)) == 1 and [r.status for r in training_runs(settings).values()] == ["promoted"]


def test_run_now_runs_the_job_and_reports_the_promotion(settings, fake_trainer) -> None:
    promoted = []
    scheduler = create_scheduler(settings, on_promoted=lambda model, version: promoted.append((model, version)))
    scheduler.start()
    try:
        with pytest.raises(InvalidInput, match="unknown job"):
            run_now(scheduler, "retrain-everything")
        run_now(scheduler, "retrain-sentiment")
        wait_for(lambda: promoted)
        job = scheduler.get_job("retrain-sentiment")
    finally:
        scheduler.shutdown()
    (row,) = training_runs(settings).values()
    assert promoted == [("sentiment", row.version)]
    expected = CronTrigger.from_crontab(settings.jobs.retrain_cron, timezone="UTC").get_next_fire_time(None, datetime.now(UTC))
    assert job.next_run_time == expected


def test_list_jobs_before_and_after_registration(settings) -> None:
    before = list_jobs(settings)
    assert [j.id for j in before] == list(JOB_IDS) and not any(j.registered for j in before)
    scheduler = create_scheduler(settings)
    scheduler.start(paused=True)
    scheduler.pause_job("purge-history")
    scheduler.shutdown()
    after = {j.id: j for j in list_jobs(settings)}
    assert all(j.registered for j in after.values())
    assert after["purge-history"].next_run_time is None  # paused stays paused
    assert after["retrain-scene"].next_run_time is not None


def test_a_second_scheduler_stands_by_and_takes_over(settings, monkeypatch) -> None:
    import os
    import signal

    first = create_scheduler(settings)
    first.start(paused=True)
    env = {**os.environ, "PLAYBILL_JOBS__LEADER_POLL_SECONDS": "0.2"}
    proc = subprocess.Popen([sys.executable, "-m", "playbill.cli", "scheduler"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        waiting = proc.stdout.readline().strip()  # one line, then it waits (no exit, no crash loop)
        time.sleep(1.0)
        assert proc.poll() is None
        first.shutdown()  # the holder stops: the standby takes the schedule within two polls
        taking = proc.stdout.readline().strip()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill() if proc.poll() is None else None
        first.shutdown() if first.running else None
    assert waiting.startswith(f"standing by: process {os.getpid()} on {socket.gethostname()} (since ")
    assert waiting.endswith("holds the schedule; this one takes over when it stops "
                            "(`playbill scheduler --once` exits instead)")
    assert taking.startswith("scheduler running (time zone UTC); this process holds the schedule")
    assert proc.returncode == 0 and "Traceback" not in err


def test_scheduler_command_stops_cleanly_on_ctrl_c(settings) -> None:
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "playbill.cli", "scheduler"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(5)]  # the banner and the four jobs
        assert "scheduler running" in lines[0] and "retrain-sentiment  next run" in lines[1]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0 and "scheduler stopped" in err and "Traceback" not in err
    scheduler = create_scheduler(settings)  # the lock was given back
    scheduler.start(paused=True)
    scheduler.shutdown()


@pytest.mark.postgres
def test_job_store_in_postgresql(settings) -> None:
    import os

    url = os.environ.get("PLAYBILL_TEST_DATABASE_URL")
    if not url:
        pytest.skip("PLAYBILL_TEST_DATABASE_URL is not set")
    settings.database_url = url
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS apscheduler_jobs"))
        for _ in range(2):
            scheduler = create_scheduler(settings)
            scheduler.start(paused=True)
            scheduler.shutdown()
        with engine.connect() as conn:
            ids = sorted(conn.execute(text("SELECT id FROM apscheduler_jobs")).scalars())
        assert ids == sorted(JOB_IDS)
        assert {j.id for j in list_jobs(settings) if j.registered} == set(JOB_IDS)
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS apscheduler_jobs"))
        engine.dispose()


def test_next_run_time_from_the_scheduler_else_from_the_cron(settings) -> None:
    settings.jobs.retrain_cron = "15 3 * * *"
    tz = ZoneInfo(settings.jobs.timezone)
    expected = CronTrigger.from_crontab("15 3 * * *", timezone=tz).get_next_fire_time(None, datetime.now(tz))
    assert next_run_time(settings, "scene") == expected
    scheduler = create_scheduler(settings)
    scheduler.start(paused=True)
    try:
        scheduler.pause_job("retrain-scene")
        assert next_run_time(settings, "scene", scheduler) is None  # paused by an admin
    finally:
        scheduler.shutdown()


def test_a_job_store_written_before_one_namespace_still_runs_its_jobs(settings) -> None:
    """Releases before 0.2 stored `jobs.retrain:...`; migration 0003 points them into playbill.*"""
    import pickle

    from playbill.history.db import upgrade

    upgrade(settings.database_url, "0002")
    scheduler = create_scheduler(settings)
    scheduler.start(paused=True)
    due = {job.id: job.next_run_time for job in scheduler.get_jobs()}
    scheduler.shutdown()
    engine = create_engine(settings.database_url)
    try:
        with engine.begin() as conn:  # what the previous release wrote, at its schema revision
            for job_id, blob in conn.execute(text("SELECT id, job_state FROM apscheduler_jobs")).all():
                state = pickle.loads(blob)
                state["func"] = state["func"].removeprefix("playbill.")
                conn.execute(text("UPDATE apscheduler_jobs SET job_state = :s WHERE id = :i"),
                             {"s": pickle.dumps(state), "i": job_id})
        upgrade(settings.database_url)
        with engine.connect() as conn:
            refs = {job_id: pickle.loads(blob)["func"]
                    for job_id, blob in conn.execute(text("SELECT id, job_state FROM apscheduler_jobs")).all()}
    finally:
        engine.dispose()
    assert refs and all(ref.startswith("playbill.jobs.") for ref in refs.values())
    scheduler = create_scheduler(settings)
    scheduler.start(paused=True)
    try:
        jobs = {job.id: job for job in scheduler.get_jobs()}
    finally:
        scheduler.shutdown()
    assert sorted(jobs) == sorted(JOB_IDS)
    assert {job_id: job.next_run_time for job_id, job in jobs.items()} == due
