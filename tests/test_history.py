"""The history database: migrations, the API, concurrent writers, locks, backups.

Every test runs on a real SQLite file and, when PLAYBILL_TEST_DATABASE_URL is set, on a
real PostgreSQL server too (each test in its own fresh schema).
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from playbill.history import api, db
from playbill.history.backup import backup_sqlite, list_backups
from playbill.history.errors import DatabaseBusy, HistoryError, SchemaOutdated
from playbill.history.models import Base, Feedback, Interaction
from playbill.history.timeparse import parse_time

PG_ENV = "PLAYBILL_TEST_DATABASE_URL"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a fresh SQLite file, or a fresh schema on the test PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'history.db'}"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set")
    schema = f"pbtest_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    # libpq's options put every connection of this URL (CLI, subprocesses too) in that schema
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = db.make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: sa.Engine):
    db.upgrade(engine)
    return db.make_session_factory(engine)


def _count(sessions, model) -> int:
    with sessions() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(model))


# --- migrations --------------------------------------------------------------------------


def test_upgrade_downgrade_upgrade_and_models_match_migrations(engine: sa.Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    head = db.head_revision()
    assert db.schema_status(engine) == (None, head)
    with pytest.raises(SchemaOutdated, match="playbill db upgrade"):
        db.require_current_schema(engine)

    assert db.upgrade(engine) == (None, head)
    db.require_current_schema(engine)
    assert {"interactions", "feedback", "training_runs"} <= set(sa.inspect(engine).get_table_names())

    assert db.downgrade(engine, "base") == (head, None)
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}

    db.upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models and migrations disagree; write a migration: {diff}"


def test_ensure_schema_upgrades_sqlite_and_refuses_servers(engine: sa.Engine) -> None:
    with pytest.raises(SchemaOutdated, match="playbill db upgrade"):
        db.ensure_schema(engine, auto_upgrade=False)
    if engine.dialect.name == "sqlite":
        db.ensure_schema(engine)  # the embedded default upgrades itself
    else:
        with pytest.raises(SchemaOutdated, match="playbill db upgrade"):
            db.ensure_schema(engine)
        db.ensure_schema(engine, auto_upgrade=True)
    current, head = db.schema_status(engine)
    assert current == head is not None


def test_unknown_revision_is_refused(sessions, engine: sa.Engine) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaOutdated, match="does not know"):
        db.ensure_schema(engine, auto_upgrade=True)


def test_sqlite_connection_settings(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'deeper' / 'h.db'}"
    engine = db.make_engine(url)
    try:
        with engine.connect() as connection:
            pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
            assert pragma("journal_mode") == "wal"
            assert pragma("foreign_keys") == 1
            assert pragma("busy_timeout") == 10_000
    finally:
        engine.dispose()
    assert (tmp_path / "new" / "deeper" / "h.db").is_file()


# --- writing and reading -----------------------------------------------------------------


def test_record_and_read_back_odd_text(sessions) -> None:
    text = "**bold** @everyone <@123> 🎭 ünïcödé\n\ttabs \x00nul"
    huge = "x" * (api.MAX_TEXT + 10)
    iid = api.record_interaction(
        sessions, kind="scene", prompt=text, output=huge, source="cli", user_id=2**63 - 1,
        params={"length": 400, "temperature": 0.8, "top_k": None, "odd": float("inf"), "p": Path("a")},
        latency_ms=12.5, model_name="scene", model_version="20261128-1",
    )
    [row] = api.query_interactions(sessions)
    assert row.id == iid and row.user_id == 2**63 - 1
    assert row.prompt == text.replace("\x00", "\ufffd")
    assert row.output.startswith("x" * api.MAX_TEXT) and "10 more characters not kept" in row.output
    assert row.params == {"length": 400, "temperature": 0.8, "top_k": None, "odd": None, "p": "a"}
    assert row.created_at.tzinfo is not None and abs(datetime.now(UTC) - row.created_at) < timedelta(minutes=1)
    assert row.to_dict()["created_at"].endswith("+00:00")


def test_bad_values_are_refused_and_nothing_is_written(sessions) -> None:
    for bad in ({"kind": "poem"}, {"source": "irc"}, {"label": "meh"}, {"status": "fine"}, {"user_id": "bob"}):
        kwargs = {"kind": "sentiment", "prompt": "p", **bad}
        with pytest.raises(HistoryError):
            api.record_interaction(sessions, **kwargs)
    assert _count(sessions, Interaction) == 0


def test_feedback_is_one_changeable_vote_per_user(sessions) -> None:
    iid = api.record_interaction(sessions, kind="sentiment", prompt="fine film", label="positive", probability=0.8)
    assert api.record_feedback(sessions, iid, 7, "right") == "created"
    assert api.record_feedback(sessions, iid, 7, "right") == "unchanged"
    assert api.record_feedback(sessions, iid, 7, "wrong") == "updated"
    assert api.record_feedback(sessions, iid, 8, "right") == "created"
    assert _count(sessions, Feedback) == 2
    [row] = api.query_interactions(sessions)
    assert (row.feedback_right, row.feedback_wrong) == (1, 1)
    with pytest.raises(HistoryError, match="not in the history"):
        api.record_feedback(sessions, iid + 100, 7, "right")
    with pytest.raises(HistoryError, match="verdict"):
        api.record_feedback(sessions, iid, 7, "maybe")
    # the foreign key cascades: an interaction deleted by hand takes its votes along
    with sessions() as session, session.begin():
        session.execute(sa.delete(Interaction).where(Interaction.id == iid))
    assert _count(sessions, Feedback) == 0


def test_settled_feedback_keeps_or_flips_the_label_by_majority(sessions) -> None:
    def review(text: str, label: str) -> int:
        return api.record_interaction(sessions, kind="sentiment", prompt=text, label=label, probability=0.5)

    kept, flipped, tied, unvoted = review("kept", "positive"), review("flipped", "positive"), review("tie", "negative"), review("none", "negative")
    scene = api.record_interaction(sessions, kind="scene", prompt="ROMEO:", output="...")
    api.record_feedback(sessions, kept, 1, "right")
    api.record_feedback(sessions, flipped, 1, "wrong")
    api.record_feedback(sessions, flipped, 2, "wrong")
    api.record_feedback(sessions, flipped, 3, "right")
    api.record_feedback(sessions, tied, 1, "right")
    api.record_feedback(sessions, tied, 2, "wrong")
    api.record_feedback(sessions, scene, 1, "wrong")
    settled = api.settle_feedback(sessions, "sentiment", member_cap=20)
    assert [(text, label) for text, label, _ in settled.examples()] == [("kept", 1), ("flipped", 0)]
    assert settled.ties == [tied] and unvoted
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert api.feedback_votes(sessions, "sentiment", since=later) == []


def test_training_runs(sessions) -> None:
    run = api.record_training_run(sessions, model_name="sentiment", checkpoint_from="run-1/epoch-0003.keras", epochs=1)
    [started] = api.list_training_runs(sessions)
    assert started.status == "running" and started.finished_at is None
    api.finish_training_run(
        sessions, run, status="rejected", metrics={"accuracy": 0.81}, candidate_metric=0.81, current_metric=0.84,
        version="v7",
    )
    [done] = api.list_training_runs(sessions, model_name="sentiment")
    assert (done.status, done.promoted, done.metrics, done.current_metric) == ("rejected", False, {"accuracy": 0.81}, 0.84)
    assert api.list_training_runs(sessions, model_name="scene") == []
    with pytest.raises(HistoryError):
        api.finish_training_run(sessions, run + 1, status="failed", error="boom")
    with pytest.raises(HistoryError):
        api.finish_training_run(sessions, run, status="running")


def test_forget_removes_exactly_that_users_rows(sessions) -> None:
    mine = [api.record_interaction(sessions, kind="sentiment", prompt=f"mine {i}", user_id=1, label="positive") for i in range(3)]
    theirs = [api.record_interaction(sessions, kind="scene", prompt=f"theirs {i}", user_id=2) for i in range(2)]
    anonymous = api.record_interaction(sessions, kind="scene", prompt="console", source="console")
    api.record_feedback(sessions, mine[0], 2, "right")  # someone else's vote on my row: goes
    api.record_feedback(sessions, mine[0], 1, "right")  # my vote on my row: goes
    api.record_feedback(sessions, theirs[0], 1, "wrong")  # my vote on their row: goes
    api.record_feedback(sessions, theirs[0], 2, "right")  # their vote on their row: stays
    assert api.forget_user(sessions, 1) == {"interactions": 3, "feedback": 3}
    assert {row.id for row in api.query_interactions(sessions)} == {*theirs, anonymous}
    with sessions() as session:
        assert session.execute(sa.select(Feedback.interaction_id, Feedback.user_id)).all() == [(theirs[0], 2)]
    assert api.forget_user(sessions, 1) == {"interactions": 0, "feedback": 0}


def test_purge_older_than(sessions) -> None:
    now = datetime.now(UTC)
    old = api.record_interaction(sessions, kind="sentiment", prompt="old", label="negative", created_at=now - timedelta(days=40))
    new = api.record_interaction(sessions, kind="sentiment", prompt="new", label="negative", created_at=now - timedelta(days=2))
    api.record_feedback(sessions, old, 1, "right")
    assert api.purge_older_than(sessions, 30) == {"interactions": 1, "feedback": 1}
    assert [row.id for row in api.query_interactions(sessions)] == [new]
    with pytest.raises(HistoryError):
        api.purge_older_than(sessions, -1)


def test_stats(sessions) -> None:
    day1 = datetime(2026, 3, 1, 23, 59, tzinfo=UTC)
    day2 = datetime(2026, 3, 2, 0, 1, tzinfo=UTC)
    latencies = [10, 20, 30, 40, 1000]
    for i, ms in enumerate(latencies):
        api.record_interaction(
            sessions, kind="sentiment", prompt=f"r{i}", label="positive" if i < 3 else "negative",
            latency_ms=ms, user_id=5, user_name="five", guild_id=9, channel_id=90, created_at=day1,
        )
    iid = api.record_interaction(sessions, kind="scene", prompt="s", latency_ms=500, user_id=6, channel_id=91, created_at=day2)
    api.record_interaction(sessions, kind="scene", prompt="bad", status="error", error="x", latency_ms=1, created_at=day2)
    api.record_feedback(sessions, iid, 1, "right")
    api.record_feedback(sessions, iid, 2, "right")
    api.record_feedback(sessions, iid, 3, "wrong")

    stats = api.history_stats(sessions)
    assert (stats.total, stats.errors) == (7, 1)
    assert stats.per_day == [api.DayCount("2026-03-01", "sentiment", 5), api.DayCount("2026-03-02", "scene", 2)]
    assert stats.labels == {"positive": 3, "negative": 2}
    assert (stats.latency["sentiment"].n, stats.latency["sentiment"].median_ms) == (5, 30.0)
    assert stats.latency["sentiment"].p95_ms == pytest.approx(808.0)
    assert stats.latency["scene"].n == 1  # the failed request's latency is left out
    assert stats.busiest_users[0] == api.UserCount(user_id=5, user_name="five", count=5)
    assert stats.busiest_channels[0] == api.ChannelCount(guild_id=9, channel_id=90, count=5)
    assert (stats.feedback.right, stats.feedback.wrong, stats.feedback.votes) == (2, 1, 3)
    assert stats.feedback.agreement == pytest.approx(2 / 3)
    assert stats.to_dict()["feedback"] == {"right": 2, "wrong": 1, "votes": 3, "agreement": pytest.approx(2 / 3)}

    later = api.history_stats(sessions, since=datetime(2026, 3, 2, tzinfo=UTC))
    assert later.total == 2 and later.by_kind == {"sentiment": 0, "scene": 2}
    assert api.history_stats(sessions, guild_id=9).total == 5


# --- two processes writing at once -------------------------------------------------------


def _writer(url: str, who: int, n: int, start) -> None:
    engine = db.make_engine(url)
    sessions = db.make_session_factory(engine)
    start.wait(30)
    for i in range(n):
        iid = api.record_interaction(sessions, kind="sentiment", prompt=f"{who}:{i}", user_id=who, label="positive")
        if i % 10 == 0:
            api.record_feedback(sessions, iid, who, "right")
    engine.dispose()


def _run_at_once(target, args_per_process: list[tuple]) -> list[int | None]:
    """Start one spawned process per args tuple, release them together (a shared Event is
    passed last), wait for them and return their exit codes."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    workers = [ctx.Process(target=target, args=(*args, start)) for args in args_per_process]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(90)
    return [worker.exitcode for worker in workers]


@pytest.mark.timeout(120)
def test_two_processes_write_at_once_without_losing_a_row(db_url: str, sessions) -> None:
    n = 150
    assert _run_at_once(_writer, [(db_url, who, n) for who in (1, 2)]) == [0, 0]
    rows = api.query_interactions(sessions, limit=None)
    assert sorted(row.prompt for row in rows) == sorted(f"{who}:{i}" for who in (1, 2) for i in range(n))
    assert _count(sessions, Feedback) == 2 * len(range(0, n, 10))


def _start_up(url: str, start) -> None:
    engine = db.make_engine(url, busy_timeout=30)
    sa.event.listen(engine, "before_cursor_execute", lambda *_: time.sleep(0.02))  # widen the race
    start.wait(30)
    db.ensure_schema(engine, auto_upgrade=True)
    engine.dispose()


@pytest.mark.timeout(120)
def test_two_processes_starting_at_once_migrate_once(db_url: str, engine: sa.Engine) -> None:
    assert _run_at_once(_start_up, [(db_url,), (db_url,)]) == [0, 0]
    current, head = db.schema_status(engine)
    assert current == head is not None


def test_a_lock_held_too_long_is_an_error_not_a_lost_row(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    db.upgrade(f"sqlite:///{path}")
    engine = db.make_engine(f"sqlite:///{path}", busy_timeout=0.2)
    sessions = db.make_session_factory(engine)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a long write
    try:
        with pytest.raises(DatabaseBusy, match="locked"):
            api.record_interaction(sessions, kind="sentiment", prompt="waits", label="positive")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert api.query_interactions(sessions) == []
    api.record_interaction(sessions, kind="sentiment", prompt="waits", label="positive")
    assert [row.prompt for row in api.query_interactions(sessions)] == ["waits"]
    engine.dispose()


# --- backups and little helpers ----------------------------------------------------------


def test_backup_sqlite_keeps_the_newest(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    engine, sessions = db.open_history(url)
    api.record_interaction(sessions, kind="scene", prompt="kept in the backup")
    made = [backup_sqlite(url, tmp_path / "backups", keep=2) for _ in range(3)]
    assert list_backups(tmp_path / "backups") == made[1:]
    copy = sqlite3.connect(made[-1])
    assert copy.execute("SELECT prompt FROM interactions").fetchall() == [("kept in the backup",)]
    copy.close()
    engine.dispose()
    assert backup_sqlite("postgresql+psycopg://u@h/db", tmp_path / "backups", keep=2) is None
    with pytest.raises(HistoryError, match="no database"):
        backup_sqlite(f"sqlite:///{tmp_path / 'missing.db'}", tmp_path / "backups", keep=2)


def test_parse_time() -> None:
    now = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)
    assert parse_time("7d", now=now) == now - timedelta(days=7)
    assert parse_time(" 12h ", now=now) == now - timedelta(hours=12)
    assert parse_time("2026-05-01", now=now) == datetime(2026, 5, 1, tzinfo=UTC)
    assert parse_time("2026-05-01", end_of_day=True) == datetime(2026, 5, 2, tzinfo=UTC)
    assert parse_time("2026-05-01T18:30+02:00") == datetime(2026, 5, 1, 16, 30, tzinfo=UTC)
    for bad in ("", "yesterday", "7x", "2026-13-01", "-3d"):
        with pytest.raises(HistoryError, match="not a time"):
            parse_time(bad)


def test_unreachable_server_is_a_clear_error() -> None:
    engine = db.make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    try:
        with pytest.raises(HistoryError, match="127.0.0.1"):
            db.schema_status(engine)
    finally:
        engine.dispose()
    with pytest.raises(HistoryError, match="not a database URL"):
        db.make_engine("not a url")


def test_a_damaged_sqlite_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    path.write_bytes(b"this is not an SQLite database" * 200)
    engine = db.make_engine(f"sqlite:///{path}")
    try:
        with pytest.raises(HistoryError, match="is damaged"):
            db.ensure_schema(engine)
    finally:
        engine.dispose()
