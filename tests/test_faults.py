"""Faults an admin meets on a bad day (issue 18): no history row lost in an outage, a deleted or
damaged database named as such, nothing raw in warnings or on a terminal, one line and the
right exit code for a closed pipe, a server database without tables, a data folder that is a file.

Outages are real where a test can make them: an SQLite path that stops being a database file,
a PostgreSQL server behind a TCP relay the test stops and starts. A full disk is injected as
the OS error it raises (a test cannot mount a small filesystem here)."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from playbill.cli import main
from playbill.history import api, db
from playbill.history.errors import DamagedDatabase, SpoolUnavailable
from playbill.history.spool import InteractionWriter, Spool
from test_history import db_url  # noqa: F401  (a fresh SQLite file, or a fresh PostgreSQL schema)

SECRET = "a lovely film, says member 42"  # must never reach a log line


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def row(prompt: str) -> dict:
    return {"kind": "sentiment", "prompt": prompt, "label": "positive", "probability": 0.9, "source": "console"}


def prompts(sessions) -> list[str]:
    return [r.prompt for r in reversed(api.query_interactions(sessions, limit=None))]


# --- an SQLite database that goes away and comes back ---------------------------------------


class SqliteOutage:
    """The database path stops being a database file (a folder stands there), then comes back."""

    def __init__(self, path: Path) -> None:
        self.path, self.aside = path, path.with_name("aside")

    def __enter__(self) -> SqliteOutage:
        self.aside.mkdir()
        for suffix in ("", "-wal", "-shm"):
            found = Path(f"{self.path}{suffix}")
            if found.exists():
                found.rename(self.aside / f"db{suffix}")
        self.path.mkdir()
        return self

    def __exit__(self, *exc: object) -> None:
        self.path.rmdir()
        for suffix in ("", "-wal", "-shm"):
            kept = self.aside / f"db{suffix}"
            if kept.exists():
                kept.rename(f"{self.path}{suffix}")
        self.aside.rmdir()


def test_rows_written_during_an_sqlite_outage_are_kept_and_replayed_in_order(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    path = tmp_path / "playbill.db"
    writer = InteractionWriter.open(f"sqlite:///{path}", tmp_path / "spool")
    first = writer.record(row("before"))
    with SqliteOutage(path):
        kept = [writer.record(row(f"{SECRET} {i}")) for i in range(3)]
        waiting = writer.pending()
    after = writer.record(row("after"))
    assert (first is not None, kept, waiting, after is not None) == (True, [None, None, None], 3, True)
    assert prompts(writer.sessions) == ["before", *(f"{SECRET} {i}" for i in range(3)), "after"]
    assert (writer.pending(), (tmp_path / "spool" / "interactions.jsonl").exists()) == (0, False)
    lines = [r.getMessage() for r in caplog.records]
    assert lines and not [line for line in lines if SECRET in line or "INSERT" in line or "\n" in line]


def test_the_spool_is_private_to_its_owner(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.append(row(SECRET))
    assert (spool.path.stat().st_mode & 0o777, spool.folder.stat().st_mode & 0o777) == (0o600, 0o700)


def test_a_replayed_row_already_written_is_not_stored_twice(db_url: str, tmp_path: Path) -> None:  # noqa: F811
    """The database committed the row, then the connection dropped before the answer came: the
    writer spooled it. Replaying finds it by its request key."""
    writer = InteractionWriter(*db.open_history(db_url, auto_upgrade=True), Spool(tmp_path / "spool"))
    fields = {**row("committed, then the connection dropped"), "request_key": "k-1"}
    stored = writer.record(dict(fields))
    writer.spool.append(fields)
    try:
        assert (writer.replay(), prompts(writer.sessions), writer.record(dict(fields))) == (
            1, ["committed, then the connection dropped"], stored)
    finally:
        writer.engine.dispose()


def test_two_processes_replaying_one_spool_store_each_row_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'playbill.db'}"
    spool = Spool(tmp_path / "spool")
    for i in range(40):
        spool.append({**row(f"review {i}"), "request_key": f"key-{i}"})
    code = ("import sys; from pathlib import Path; from playbill.history.spool import InteractionWriter; "
            "InteractionWriter.open(sys.argv[1], Path(sys.argv[2]))")
    procs = [subprocess.Popen([sys.executable, "-c", code, url, str(spool.folder)]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    engine, sessions = db.open_history(url)
    try:
        assert (sorted(prompts(sessions)), spool.pending()) == (sorted(f"review {i}" for i in range(40)), 0)
    finally:
        engine.dispose()


def test_a_full_disk_keeps_the_row_for_a_retry_and_leaves_no_half_line(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "playbill.db"
    writer = InteractionWriter.open(f"sqlite:///{path}", tmp_path / "spool")
    with SqliteOutage(path):
        writer.record(row("kept before the disk filled"))
        real_fsync = os.fsync

        def full(fd: int) -> None:
            if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == "interactions.jsonl":
                raise OSError(errno.ENOSPC, "No space left on device")
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", full)
        with pytest.raises(SpoolUnavailable, match="No space left on device"):
            writer.record(row(SECRET))
        monkeypatch.setattr(os, "fsync", real_fsync)
        assert writer.spool.pending() == 1  # the half-written line was taken back
    writer.replay()
    assert prompts(writer.sessions) == ["kept before the disk filled"]


# --- PostgreSQL stopped and started again ----------------------------------------------------


class Relay:
    """A TCP relay to the test PostgreSQL server: stopping it is an outage for whoever connects
    through it (open connections are cut too), starting it again ends the outage."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        for sock in [self._listener, *self._sockets]:
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
        self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.mark.postgres
def test_rows_written_while_postgresql_is_down_are_replayed_when_it_is_back(db_url: str, tmp_path: Path,  # noqa: F811
                                                                           caplog) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("the relay is for the PostgreSQL server")
    caplog.set_level(logging.WARNING)
    db.upgrade(db_url)
    url = make_url(db_url)
    relay = Relay(url.host or "127.0.0.1", url.port or 5432)
    relay.start()
    through = url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    writer = InteractionWriter.open(through, tmp_path / "spool")
    try:
        writer.record(row("before"))
        relay.stop()
        during = [writer.record(row(f"{SECRET} {i}")) for i in range(5)]
        relay.start()
        writer.record(row("after"))
        assert (during, prompts(writer.sessions), writer.pending()) == (
            [None] * 5, ["before", *(f"{SECRET} {i}" for i in range(5)), "after"], 0)
    finally:
        relay.stop()
        writer.engine.dispose()
    assert not [r for r in caplog.records if SECRET in r.getMessage() or "INSERT" in r.getMessage()]


@pytest.mark.postgres
def test_the_console_loses_no_review_while_postgresql_is_down(db_url: str, home: Path) -> None:  # noqa: F811
    """The issue's case, as an admin meets it: a console answering while the server stops and
    starts again; every review answered is in the history afterwards, once."""
    if not db_url.startswith("postgresql"):
        pytest.skip("the relay is for the PostgreSQL server")
    db.upgrade(db_url)
    url = make_url(db_url)
    relay = Relay(url.host or "127.0.0.1", url.port or 5432)
    relay.start()
    through = url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    env = {**os.environ, "PLAYBILL_HOME": str(home), "PLAYBILL_DATABASE_URL": through, "TF_CPP_MIN_LOG_LEVEL": "2"}
    console = subprocess.Popen([sys.executable, "-m", "playbill", "console"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def review(text: str) -> None:
        console.stdin.write(f"/review-sentiment {text}\n")
        console.stdin.flush()
        while "error:" not in (line := console.stdout.readline()) and line:  # answered (no model: an error reply)
            pass

    try:
        review("before the outage")
        relay.stop()
        for i in range(3):
            review(f"{SECRET} {i}")
        relay.start()
        review("after the outage")
        _, err = console.communicate("/quit\n", timeout=120)
    finally:
        console.kill()
        relay.stop()
    engine, sessions = db.open_history(db_url)
    try:
        assert prompts(sessions) == ["before the outage", *(f"{SECRET} {i}" for i in range(3)), "after the outage"]
    finally:
        engine.dispose()
    assert (console.returncode, SECRET in err, "INSERT" in err) == (0, False, False)


# --- the bot's gateway -------------------------------------------------------------------------


async def test_rows_still_queued_at_shutdown_go_to_the_spool(tmp_path: Path) -> None:
    from playbill.bot.recording import HistoryGateway

    url = f"sqlite:///{tmp_path / 'locked.db'}"
    db.open_history(url)[0].dispose()
    engine = db.make_engine(url, busy_timeout=0.05)
    writer = InteractionWriter(engine, db.make_session_factory(engine), Spool(tmp_path / "spool"))
    gateway = HistoryGateway(writer.sessions, retry_seconds=(0.05, 0.2), writer=writer)
    holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock past the busy timeout
    pending = [asyncio.ensure_future(gateway.record_interaction(**row(f"queued {i}"))) for i in range(3)]
    while gateway.pending < 3:
        await asyncio.sleep(0.02)
    gateway.close()
    holder.execute("ROLLBACK")
    for task in pending:
        task.cancel()
    assert (gateway.pending, gateway.spooled, writer.replay()) == (0, 3, 3)
    assert prompts(writer.sessions) == ["queued 0", "queued 1", "queued 2"]
    writer.engine.dispose()


async def test_the_gateway_replays_the_spool_when_the_database_is_back_without_new_rows(tmp_path: Path) -> None:
    from playbill.bot.recording import HistoryGateway

    path = tmp_path / "playbill.db"
    writer = InteractionWriter.open(f"sqlite:///{path}", tmp_path / "spool")
    gateway = HistoryGateway(writer.sessions, retry_seconds=(0.05, 0.2), writer=writer)
    with SqliteOutage(path):
        ids = [await gateway.record_interaction(**row(f"during {i}")) for i in range(3)]
    for _ in range(200):  # no new row comes: the gateway tries the spool on its own
        if not writer.spool.has_rows():
            break
        await asyncio.sleep(0.05)
    gateway.close()
    assert (ids, writer.pending(), prompts(writer.sessions)) == ([None] * 3, 0, [f"during {i}" for i in range(3)])
    writer.engine.dispose()


# --- an SQLite file deleted or damaged -------------------------------------------------------


def test_a_deleted_sqlite_file_is_noticed_and_new_rows_are_kept(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    path = tmp_path / "playbill.db"
    writer = InteractionWriter.open(f"sqlite:///{path}", tmp_path / "spool")
    writer.record(row("in the old file"))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    writer.record(row("after the file was deleted"))
    engine, sessions = db.open_history(f"sqlite:///{path}")  # another process, reading the path
    try:
        assert prompts(sessions) == ["after the file was deleted"]
    finally:
        engine.dispose()
        writer.engine.dispose()
    assert any("was deleted while Playbill had it open" in r.getMessage() for r in caplog.records)


def test_a_replaced_sqlite_file_is_noticed(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    path = tmp_path / "playbill.db"
    writer = InteractionWriter.open(f"sqlite:///{path}", tmp_path / "spool")
    writer.record(row("one"))
    backup = tmp_path / "backup.db"
    with sqlite3.connect(path) as source, sqlite3.connect(backup) as copy:
        source.backup(copy)
    os.replace(backup, path)  # a restore put another file in its place
    writer.record(row("two"))
    engine, sessions = db.open_history(f"sqlite:///{path}")
    try:
        assert prompts(sessions) == ["one", "two"]
    finally:
        engine.dispose()
        writer.engine.dispose()
    assert any("was replaced while Playbill had it open" in r.getMessage() for r in caplog.records)


def _history_with_rows(path: Path) -> None:
    engine, sessions = db.open_history(f"sqlite:///{path}")
    for i in range(500):
        api.record_interaction(sessions, kind="sentiment", prompt=f"review {i} " * 10, label="positive")
    engine.dispose()
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _page_of(path: Path, table: str) -> int:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]


@pytest.mark.parametrize("damage", ["a table's pages", "the schema revision's page"])
def test_damaged_pages_are_reported_as_damage(capsys, home: Path, monkeypatch, damage: str) -> None:
    path = home / "playbill.db"
    _history_with_rows(path)
    page_size = 4096
    with path.open("r+b") as fh:
        if damage == "a table's pages":
            fh.seek((_page_of(path, "interactions") - 1) * page_size)
            fh.write(b"\xff" * page_size * 3)
        else:  # an empty but well-formed page where alembic_version's row was
            fh.seek((_page_of(path, "alembic_version") - 1) * page_size)
            fh.write(bytes([0x0D, 0, 0, 0, 0, 0x10, 0, 0]) + bytes(page_size - 8))
    code, out, err = run(capsys, "history")
    assert (code, err.count("\n"), "is damaged" in err, "restore the newest copy from the backups" in err) == (
        2, 1, True, True)
    assert "already exists" not in err and "Traceback" not in err


def test_the_console_refuses_a_damaged_database(home: Path) -> None:
    path = home / "playbill.db"
    _history_with_rows(path)
    with path.open("r+b") as fh:
        fh.seek((_page_of(path, "alembic_version") - 1) * 4096)
        fh.write(bytes([0x0D, 0, 0, 0, 0, 0x10, 0, 0]) + bytes(4096 - 8))
    with pytest.raises(DamagedDatabase, match="is damaged"):
        InteractionWriter.open(f"sqlite:///{path}", home / "spool")


# --- a server database without tables ----------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("command", [["console"], ["run", "--no-scheduler"]])
def test_console_and_run_refuse_a_server_database_without_tables(db_url: str, home: Path, monkeypatch,  # noqa: F811
                                                                  capsys, command: list[str]) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("an SQLite database is given its tables at start")
    monkeypatch.setenv("PLAYBILL_DATABASE_URL", db_url)
    monkeypatch.setattr(sys, "stdin", open(os.devnull))  # noqa: SIM115 - a console reading nothing
    code, out, err = run(capsys, *command)
    assert (code, "has no tables yet" in err, "run `playbill db upgrade`" in err) == (2, True, True), err
    assert "Traceback" not in err


# --- settings and the command line -------------------------------------------------------------


def test_a_data_dir_that_is_a_file_is_named_as_such(capsys, home: Path, monkeypatch) -> None:
    data = home / "shakespeare.txt"
    data.write_text("ROMEO: hello\n")
    monkeypatch.setenv("PLAYBILL_DATA_DIR", str(data))
    code, _, err = run(capsys, "config")
    assert (code, err.count("\n"), "is a file, not a folder" in err, f"({home})" in err) == (2, 1, True, True)


def test_tests_run_away_from_the_checkout() -> None:
    """conftest moves every test into an empty folder: a developer's ./config.toml is not read."""
    root = Path(__file__).resolve().parents[1]
    assert Path.cwd().resolve() != root and not (Path.cwd() / "config.toml").exists()


@pytest.mark.parametrize("argv", [["config", "--example"], ["history", "--format", "csv"]])
def test_a_closed_pipe_stops_any_command_quietly(home: Path, argv: list[str]) -> None:
    read, write = os.pipe()
    os.close(read)  # `| head -1` that has already gone
    env = {**os.environ, "PLAYBILL_HOME": str(home)}
    done = subprocess.run([sys.executable, "-m", "playbill", *argv], stdout=write, stderr=subprocess.PIPE,
                          env=env, timeout=120)
    os.close(write)
    assert (done.returncode, done.stderr) == (141, b"")


# --- what a terminal shows -------------------------------------------------------------------


HOSTILE = "nice\x1b]0;pwned\x07 film\x1b[2J\u202e\x9b1m"


def test_the_console_never_writes_terminal_controls(home: Path) -> None:
    env = {**os.environ, "PLAYBILL_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-m", "playbill", "console"], input=f"/review-sentiment {HOSTILE}\n/history\n",
                          capture_output=True, text=True, env=env, timeout=300)
    assert "nice" in done.stdout and "film" in done.stdout
    assert not [ch for ch in "\x1b\x07\u202e\x9b" if ch in done.stdout]


def test_stats_show_the_spool_backlog(capsys, home: Path) -> None:
    path = home / "playbill.db"
    db.open_history(f"sqlite:///{path}")[0].dispose()
    with sqlite3.connect(path) as connection:  # the database answers, but cannot store interactions now
        connection.execute("CREATE TRIGGER refuse BEFORE INSERT ON interactions "
                           "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")
    Spool(home / "spool").append(row("waiting"))
    code, out, err = run(capsys, "history", "stats", "--format", "json")
    assert (code, json.loads(out)["spooled"]) == (0, 1), err
    code, out, err = run(capsys, "history", "stats")
    assert (code, "1 interaction(s) wait in the spool" in out) == (0, True)
    code, out, err = run(capsys, "history")
    assert (code, "1 interaction(s) wait in the spool" in err) == (0, True)


def test_log_lines_never_carry_terminal_controls() -> None:
    from playbill.logs import RedactSecrets

    record = logging.LogRecord("playbill.bot", logging.WARNING, __file__, 1, "review from %s: %s", ("ann", HOSTILE), None)
    RedactSecrets().filter(record)
    assert record.getMessage() == "review from ann: nice film"


def test_forgetting_a_user_drops_their_rows_waiting_in_the_spool(capsys, home: Path) -> None:
    path = home / "playbill.db"
    db.open_history(f"sqlite:///{path}")[0].dispose()
    with sqlite3.connect(path) as connection:  # the database answers, but cannot store interactions now
        connection.execute("CREATE TRIGGER refuse BEFORE INSERT ON interactions "
                           "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")
    spool = Spool(home / "spool")
    spool.append({**row("theirs"), "user_id": 7})
    spool.append({**row("someone else's"), "user_id": 8})
    code, out, err = run(capsys, "history", "forget", "--user", "7", "--format", "json")
    assert (code, json.loads(out)["interactions"], spool.pending()) == (0, 1, 1), err
    assert "someone else" in spool.path.read_text() and "theirs" not in spool.path.read_text()


@pytest.mark.parametrize("error, said", [
    (OSError(errno.ENOSPC, "No space left on device", "/srv/playbill/backups/playbill-1.db"), "the disk is full"),
    (OSError(errno.EROFS, "Read-only file system", "/srv/playbill/backups"), "read-only"),
    (OSError(errno.EIO, "Input/output error", "/srv/playbill/playbill.db"), "Input/output error"),
])
def test_an_os_error_no_command_expected_is_one_line(capsys, home: Path, monkeypatch, error: OSError, said: str) -> None:
    from playbill.history import backup

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(backup, "backup_sqlite", fail)
    code, out, err = run(capsys, "db", "backup")
    assert (code, err.count("\n"), err.startswith("error: "), said in err, error.filename in err) == (2, 1, True, True, True)


def test_the_log_file_keeps_playbills_own_lines(capsys, home: Path) -> None:
    assert run(capsys, "db", "upgrade")[0] == 0
    logged = "".join(path.read_text() for path in (home / "logs").glob("*.log"))
    assert "history database" in logged and "alembic" not in logged
