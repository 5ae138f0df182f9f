"""Data safety: one verdict per input line, bounded input, spreadsheet- and terminal-safe output,
Unicode search, undecodable input recorded, rows kept through a locked database, Ctrl-C at the
console prompt, and votes only where the row was asked."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from playbill.history import api, db
from playbill.history.errors import HistoryError
from playbill.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def critic_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fakes import train_tiny_sentiment

    root = tmp_path_factory.mktemp("critic")
    train_tiny_sentiment(root / "home", root / "work")
    return root / "home"


# --- predict --file ----------------------------------------------------------------------

SEPARATORS = "\u0085\x0c\x0b\x1c\x1d\x1e\u2028\u2029"


def test_predict_file_one_verdict_per_line(capsys, critic_home: Path, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PLAYBILL_HOME", str(critic_home))
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("".join(f"great film {ch} superb\n" for ch in SEPARATORS) + "\nawful, dull\r\n",
                       encoding="utf-8", newline="")
    code, out, _ = run(capsys, "predict", "--file", str(reviews), "--json")
    verdicts = [json.loads(line) for line in out.splitlines()]
    assert (code, [v["line"] for v in verdicts]) == (0, [*range(1, len(SEPARATORS) + 1), len(SEPARATORS) + 2])


def test_predict_file_dash_reads_standard_input(capsys, critic_home: Path, monkeypatch) -> None:
    monkeypatch.setenv("PLAYBILL_HOME", str(critic_home))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a wonderful film\nthe worst movie\n")))
    code, out, _ = run(capsys, "predict", "--file", "-", "--json")
    assert (code, len(out.splitlines())) == (0, 2)


def test_predict_file_dev_zero_is_refused_in_one_line(capsys, home: Path) -> None:
    code, out, err = run(capsys, "predict", "--file", "/dev/zero")
    assert (code, out, err.count("\n"), "looks binary" in err) == (2, "", 1, True)


def test_predict_file_larger_than_the_limit_is_refused(capsys, home: Path, monkeypatch, tmp_path: Path) -> None:
    from playbill.cli import sentiment

    monkeypatch.setattr(sentiment, "MAX_FILE_BYTES", 1000)
    big = tmp_path / "big.txt"
    big.write_text("a fine film\n" * 200)
    code, _, err = run(capsys, "predict", "--file", str(big))
    assert (code, "larger than" in err) == (2, True)


# --- what admins see -----------------------------------------------------------------------

HOSTILE = ['=HYPERLINK("http://x","y")', "@SUM(1+1)", "+1+1", "-2+3", "\tTAB", "\rCR"]


@pytest.fixture
def history_url(home: Path, monkeypatch) -> str:
    url = f"sqlite:///{home / 'playbill.db'}"
    monkeypatch.setenv("PLAYBILL_DATABASE_URL", url)
    monkeypatch.setenv("COLUMNS", "160")
    return url


def write_rows(url: str, prompts: list[str], **fields) -> list[int]:
    engine, sessions = db.open_history(url)
    try:
        return [api.record_interaction(sessions, kind="sentiment", prompt=p, label="positive", probability=0.9,
                                       **fields) for p in prompts]
    finally:
        engine.dispose()


def test_csv_neutralises_formulas(capsys, history_url: str) -> None:
    write_rows(history_url, HOSTILE, user_name="=cmd|'/C calc'!A0")
    code, out, _ = run(capsys, "history", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    cells = [row["prompt"] for row in rows] + [row["user_name"] for row in rows]
    assert (code, [c for c in cells if not c.startswith("'")]) == (0, [])


def test_csv_keeps_ordinary_text_as_it_is(capsys, history_url: str) -> None:
    write_rows(history_url, ["a plain review - with a dash"])
    rows = list(csv.DictReader(io.StringIO(run(capsys, "history", "--format", "csv")[1])))
    assert rows[0]["prompt"] == "a plain review - with a dash"


def test_table_strips_terminal_control_sequences(capsys, history_url: str) -> None:
    write_rows(history_url, ["nice\x1b[2J\x1b]0;pwned\x07 film\x1b[31m red\u202e\x9b1m"])
    code, out, _ = run(capsys, "history")
    assert (code, "\x1b" in out, "\x07" in out, "\u202e" in out, "\x9b" in out, "nice film red" in out) == (
        0, False, False, False, False, True)


def test_csv_writes_terminal_controls_out_visibly(capsys, history_url: str) -> None:
    write_rows(history_url, ["nice\x1b]0;pwned\x07 film\x1b[2J\u202e\x9b1m\nline two\ttab"])
    code, out, _ = run(capsys, "history", "--format", "csv")
    (row,) = csv.DictReader(io.StringIO(out))
    assert (code, row["prompt"]) == (0, "nice\\x1b]0;pwned\\x07 film\\x1b[2J\\u202e\\x9b1m\nline two\ttab")
    assert not any(ch in out for ch in "\x1b\x07\u202e\x9b")


def test_json_keeps_the_exact_text_and_escapes_it(capsys, history_url: str) -> None:
    prompt = "nice\x1b[2J film\u202e"
    write_rows(history_url, [prompt])
    code, out, _ = run(capsys, "history", "--format", "json")
    assert (code, json.loads(out)[0]["prompt"], "\x1b" in out, "\u202e" in out) == (0, prompt, False, False)


def test_a_closed_pipe_ends_the_listing_quietly(history_url: str, home: Path) -> None:
    write_rows(history_url, [f"review {i}" for i in range(50)])
    read, write = os.pipe()
    os.close(read)  # the reader (`| head -1`) has gone before the first line
    env = {**os.environ, "PLAYBILL_HOME": str(home), "PLAYBILL_DATABASE_URL": history_url}
    done = subprocess.run([sys.executable, "-m", "playbill", "history", "--format", "csv"], stdout=write,
                          stderr=subprocess.PIPE, env=env, timeout=120)
    os.close(write)
    assert (done.returncode, done.stderr) == (141, b"")


def test_search_finds_non_ascii_capitals_on_sqlite(history_url: str) -> None:
    write_rows(history_url, ["ÉLÉGANT ET ÉMOUVANT", "ΚΑΛΗ ΤΑΙΝΙΑ", "plain"])
    engine, sessions = db.open_history(history_url)
    try:
        found = [[r.prompt for r in api.query_interactions(sessions, search=term)] for term in ("élégant", "καλη")]
    finally:
        engine.dispose()
    assert found == [["ÉLÉGANT ET ÉMOUVANT"], ["ΚΑΛΗ ΤΑΙΝΙΑ"]]


# --- the console ---------------------------------------------------------------------------


def console_process(home: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PLAYBILL_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONFAULTHANDLER": "1"}
    return subprocess.Popen([sys.executable, "-m", "playbill", "console"], env=env, **kwargs)


def test_invalid_utf8_on_the_console_is_answered_and_recorded(home: Path) -> None:
    proc = console_process(home, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, _ = proc.communicate(b"/review-sentiment caf\xe9 \xff great\n", timeout=300)
    engine, sessions = db.open_history(f"sqlite:///{home / 'playbill.db'}")
    try:
        prompts = [r.prompt for r in api.query_interactions(sessions)]
    finally:
        engine.dispose()
    assert (proc.returncode, prompts) == (0, ["caf\ufffd \ufffd great"])


def test_ctrl_c_at_the_console_prompt_exits_at_once(home: Path) -> None:
    import fcntl
    import pty
    import termios

    from fakes import ctrl_c_as_at_a_terminal

    master, slave = pty.openpty()

    def own_terminal() -> None:  # the pty becomes the console's controlling terminal, so ^C is SIGINT
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        ctrl_c_as_at_a_terminal()

    proc = console_process(home, stdin=slave, stdout=slave, stderr=slave, preexec_fn=own_terminal)
    os.close(slave)
    seen = b""
    try:
        while b"playbill> " not in seen and select.select([master], [], [], 120)[0]:
            seen += os.read(master, 4096)
        os.write(master, b"\x03")  # Ctrl-C, and no Enter after it
        try:
            code = proc.wait(timeout=120)  # a guard against a hang, not a speed check
        except subprocess.TimeoutExpired:  # say where it hangs: faulthandler dumps every thread on SIGABRT
            proc.send_signal(signal.SIGABRT)
            dump = b""
            while select.select([master], [], [], 5)[0]:
                try:
                    dump += os.read(master, 65536)
                except OSError:
                    break
            pytest.fail(f"the console did not exit after Ctrl-C:\n{dump.decode('utf-8', 'replace')[-6000:]}")
    finally:
        proc.kill()
        os.close(master)
    assert code == 130


# --- a locked database ---------------------------------------------------------------------


async def test_rows_kept_through_a_locked_database_are_written_in_order(tmp_path: Path) -> None:
    from playbill.bot.recording import HistoryGateway

    url = f"sqlite:///{tmp_path / 'locked.db'}"
    db.open_history(url)[0].dispose()
    engine = db.make_engine(url, busy_timeout=0.05)
    gateway = HistoryGateway(db.make_session_factory(engine), retry_seconds=(0.05, 0.2))
    holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock past the busy timeout
    writes = [asyncio.create_task(gateway.record_interaction(kind="sentiment", prompt=p, source="console"))
              for p in ("first", "second", "third")]
    while gateway.pending < 3:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # the writer meets the lock a few times
    waiting = gateway.pending
    holder.execute("COMMIT")
    ids = await asyncio.gather(*writes)
    rows = api.query_interactions(db.make_session_factory(engine))
    engine.dispose()
    assert (waiting, [r.prompt for r in reversed(rows)], ids == sorted(ids)) == (3, ["first", "second", "third"], True)


# --- votes ---------------------------------------------------------------------------------


def test_a_vote_from_another_guild_is_refused(tmp_path: Path) -> None:
    engine, sessions = db.open_history(f"sqlite:///{tmp_path / 'votes.db'}")
    try:
        (row,) = write_rows(str(engine.url), ["a fine film"], guild_id=10)
        with pytest.raises(HistoryError, match="another place"):
            api.record_feedback(sessions, row, 7, "right", guild_id=20)
    finally:
        engine.dispose()


def test_a_vote_in_the_rows_own_guild_is_kept(tmp_path: Path) -> None:
    engine, sessions = db.open_history(f"sqlite:///{tmp_path / 'votes.db'}")
    try:
        (row,) = write_rows(str(engine.url), ["a fine film"], guild_id=10)
        assert api.record_feedback(sessions, row, 7, "right", guild_id=10) == "created"
    finally:
        engine.dispose()
