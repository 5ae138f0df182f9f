"""The job store holds no secret; `playbill jobs` / `playbill scheduler` on a bad database: one line."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest
from sqlalchemy import create_engine, text

from playbill.jobs.scheduler import JOB_IDS, create_scheduler
from playbill.cli import main

PASSWORD = "s3cret-Pa55word"


def job_rows(url: str) -> list[tuple[str, bytes]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [(row[0], bytes(row[1])) for row in conn.execute(text("SELECT id, job_state FROM apscheduler_jobs"))]
    finally:
        engine.dispose()


def register_jobs(settings) -> None:
    scheduler = create_scheduler(settings)
    scheduler.start(paused=True)
    scheduler.shutdown()


def test_job_rows_carry_no_settings(settings) -> None:
    register_jobs(settings)
    rows = job_rows(settings.database_url)
    assert [job for job, state in rows if str(settings.home).encode() in state] == []


def test_every_job_is_stored(settings) -> None:
    register_jobs(settings)
    assert sorted(job for job, _ in job_rows(settings.database_url)) == sorted(JOB_IDS)


@pytest.fixture
def database_with_password():
    """A PostgreSQL database of this test's own, reached by a URL that carries a password."""
    base = os.environ.get("PLAYBILL_TEST_DATABASE_URL")
    if not base:
        pytest.skip("PLAYBILL_TEST_DATABASE_URL is not set")
    name = f"faults_{uuid.uuid4().hex[:10]}"
    psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"]
    subprocess.run([*psql, f"CREATE DATABASE {name}"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:5432/{name}"
    finally:
        subprocess.run([*psql, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=False, capture_output=True)


@pytest.mark.postgres
def test_no_password_in_the_job_store(settings, database_with_password: str) -> None:
    settings.database_url = database_with_password
    register_jobs(settings)
    rows = job_rows(database_with_password)
    assert rows and [job for job, state in rows if PASSWORD.encode() in state] == []


BAD_DATABASES = {
    "unreachable": "postgresql+psycopg://postgres:pw@127.0.0.1:9/none",
    "damaged": "damaged",
}


@pytest.mark.parametrize("command", ["jobs", "scheduler"])
@pytest.mark.parametrize("database", sorted(BAD_DATABASES))
def test_a_bad_database_is_one_error_line(home, monkeypatch, capsys, command: str, database: str) -> None:
    url = BAD_DATABASES[database]
    if database == "damaged":
        (home / "history.db").write_bytes(b"this is no SQLite database " * 100)
        url = f"sqlite:///{home / 'history.db'}"
    monkeypatch.setenv("PLAYBILL_DATABASE_URL", url)
    assert main([command]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_a_bad_database_error_is_a_single_line(home, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PLAYBILL_DATABASE_URL", BAD_DATABASES["unreachable"])
    main(["jobs"])
    assert len(capsys.readouterr().err.splitlines()) == 1
