"""`playbill history` and `playbill db` on real databases (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from playbill.history import api, db
from playbill.cli import main
from test_history import db_url  # noqa: F401  (the shared SQLite/PostgreSQL fixture)


@pytest.fixture
def cli_db(db_url: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> str:  # noqa: F811
    monkeypatch.setenv("PLAYBILL_DATABASE_URL", db_url)
    monkeypatch.setenv("COLUMNS", "160")
    return db_url


@pytest.fixture
def seeded(cli_db: str) -> dict[str, int]:
    """Five interactions, newest first: a, e, b, c, d."""
    now = datetime.now(UTC)
    engine, sessions = db.open_history(cli_db, auto_upgrade=True)
    ids = {
        "a": api.record_interaction(
            sessions, kind="sentiment", prompt="A witty, warm film", label="positive", probability=0.91,
            user_id=1, user_name="Ann", guild_id=10, channel_id=100, latency_ms=15, created_at=now - timedelta(hours=1),
        ),
        "b": api.record_interaction(
            sessions, kind="sentiment", prompt='Dull, "long", and\nslow 🎭', label="negative", probability=0.08,
            user_id=2, guild_id=10, channel_id=101, latency_ms=25, created_at=now - timedelta(days=2),
        ),
        "c": api.record_interaction(
            sessions, kind="scene", prompt="ROMEO:", output="ROMEO: But soft, what light", params={"length": 40},
            user_id=1, guild_id=20, channel_id=200, latency_ms=800, created_at=now - timedelta(days=10),
        ),
        "d": api.record_interaction(
            sessions, kind="scene", prompt="JULIET:", source="console", status="error", error="unknown characters: ✨",
            created_at=now - timedelta(days=30),
        ),
        "e": api.record_interaction(
            sessions, kind="sentiment", prompt="[bold]not markup[/bold] " + "very " * 40 + "long", label="positive",
            probability=0.7, user_id=3, guild_id=20, channel_id=201, created_at=now - timedelta(hours=3),
        ),
    }
    api.record_feedback(sessions, ids["a"], 2, "right")
    api.record_feedback(sessions, ids["b"], 1, "wrong")
    api.record_feedback(sessions, ids["b"], 3, "right")
    engine.dispose()
    return ids


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse rejects bad arguments this way
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def listed(capsys, ids: dict[str, int], *filters: str) -> list[str]:
    code, out, err = run(capsys, "history", "--format", "json", *filters)
    assert code == 0, err
    by_id = {v: k for k, v in ids.items()}
    return [by_id[row["id"]] for row in json.loads(out)]


def test_every_filter(capsys, seeded: dict[str, int]) -> None:
    five_days_ago = (datetime.now(UTC) - timedelta(days=5)).date().isoformat()
    cases = {
        (): ["a", "e", "b", "c", "d"],  # newest first
        ("--user", "1"): ["a", "c"],
        ("--user", "<@1>"): ["a", "c"],  # a pasted mention works too
        ("--guild", "20"): ["e", "c"],
        ("--channel", "101"): ["b"],
        ("--kind", "scene"): ["c", "d"],
        ("--label", "negative"): ["b"],
        ("--status", "error"): ["d"],
        ("--source", "console"): ["d"],
        ("--since", "1d"): ["a", "e"],
        ("--since", five_days_ago): ["a", "e", "b"],
        ("--until", five_days_ago): ["c", "d"],
        ("--since", "20d", "--until", "1d"): ["b", "c"],
        ("--search", "DULL"): ["b"],
        ("--search", "soft"): ["c"],  # the answer is searched too
        ("--search", "%"): [],  # LIKE wildcards are literal
        ("--limit", "2"): ["a", "e"],
        ("--user", "1", "--kind", "sentiment"): ["a"],
    }
    for filters, expected in cases.items():
        assert listed(capsys, seeded, *filters) == expected, filters


def test_json_and_csv_parse_back(capsys, seeded: dict[str, int]) -> None:
    code, out, _ = run(capsys, "history", "--format", "json")
    assert code == 0
    records = json.loads(out)
    b = next(r for r in records if r["id"] == seeded["b"])
    assert b["prompt"] == 'Dull, "long", and\nslow 🎭'
    assert (b["feedback_right"], b["feedback_wrong"]) == (1, 1)
    assert datetime.fromisoformat(b["created_at"]).tzinfo is not None

    code, out, _ = run(capsys, "history", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["id"]) for r in rows] == [r["id"] for r in records]
    for row, record in zip(rows, records, strict=True):
        assert row["prompt"] == record["prompt"]  # commas, quotes, newlines and emoji survive
        assert row["label"] == (record["label"] or "")
        assert json.loads(row["params"] or "null") == record["params"]


def test_table_is_readable_and_cut_short(capsys, seeded: dict[str, int]) -> None:
    code, out, _ = run(capsys, "history")
    assert code == 0
    assert "A witty, warm film" in out and "positive (0.91)" in out
    assert "[bold]not markup[/bold]" in out  # shown as typed, not as rich markup
    assert "very " * 40 not in out and "…" in out  # long text cut in the table only
    assert "Dull, \"long\", and slow" in out  # one line per row
    assert "error: unknown characters" in out
    code, out, _ = run(capsys, "history", "--user", "999")
    assert code == 0 and "no interactions match" in out


def test_bad_arguments_are_clear_errors(capsys, cli_db: str) -> None:
    for argv, message in [
        (("history", "--since", "yesterday"), "not a time: 'yesterday'"),
        (("history", "--until", "2026-02-30"), "not a time"),
        (("history", "--user", "bob"), "not a Discord id"),
        (("history", "--limit", "0"), "from 1 to"),
        (("history", "--kind", "poem"), "invalid choice"),
        (("history", "stats", "--search", "x"), "playbill history stats: unrecognized arguments: --search x"),
        (("history", "forget"), "needs --user"),
        (("history", "--model", "scene"), "playbill history list: unrecognized arguments: --model"),
        (("history", "forget", "--user", "1", "--kind", "scene"), "unrecognized arguments: --kind"),
        (("history", "stats", "--since", "1d", "--until", "2d"), "--since must be before --until"),
        (("history", "--since", "1d", "--until", "2d"), "--since must be before --until"),
        (("db", "downgrade", "base"), "--yes"),
    ]:
        code, out, err = run(capsys, *argv)
        assert code == 2, argv
        assert message in err, (argv, err)
        assert "Traceback" not in err


def test_stats(capsys, seeded: dict[str, int]) -> None:
    code, out, _ = run(capsys, "history", "stats", "--format", "json")
    assert code == 0
    stats = json.loads(out)
    assert stats["total"] == 5 and stats["errors"] == 1
    assert stats["by_kind"] == {"sentiment": 3, "scene": 2}
    assert stats["labels"] == {"positive": 2, "negative": 1}
    assert stats["feedback"]["agreement"] == pytest.approx(2 / 3)
    assert stats["busiest_users"][0]["user_id"] == 1
    code, out, _ = run(capsys, "history", "stats", "--since", "1d", "--format", "json")
    assert json.loads(out)["total"] == 2
    code, out, _ = run(capsys, "history", "stats")
    assert code == 0
    assert "5 interactions" in out and "per day" in out and "agreement 67%" in out and "busiest users" in out
    code, out, _ = run(capsys, "history", "stats", "--format", "csv")
    assert sum(int(r["count"]) for r in csv.DictReader(io.StringIO(out))) == 5


def test_forget(capsys, seeded: dict[str, int]) -> None:
    code, out, _ = run(capsys, "history", "forget", "--user", "1")
    assert code == 0
    # user 1's two interactions, the vote on one of them, and user 1's vote on b
    assert "deleted 2 interaction(s) and 2 feedback vote(s)" in out
    assert listed(capsys, seeded, "--user", "1") == []
    assert listed(capsys, seeded) == ["e", "b", "d"]
    code, out, _ = run(capsys, "history", "--format", "json")
    b = next(r for r in json.loads(out) if r["id"] == seeded["b"])
    assert (b["feedback_right"], b["feedback_wrong"]) == (1, 0)


def test_training_runs(capsys, cli_db: str) -> None:
    engine, sessions = db.open_history(cli_db, auto_upgrade=True)
    first = api.record_training_run(sessions, model_name="sentiment", epochs=1, checkpoint_from="run-3/epoch-0002.keras")
    api.finish_training_run(sessions, first, status="promoted", candidate_metric=0.86, current_metric=0.85, version="v2")
    second = api.record_training_run(sessions, model_name="scene")
    api.finish_training_run(sessions, second, status="failed", error="out of memory")
    engine.dispose()
    code, out, _ = run(capsys, "history", "runs", "--format", "json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [second, first]
    code, out, _ = run(capsys, "history", "runs", "--model", "sentiment", "--format", "csv")
    [row] = list(csv.DictReader(io.StringIO(out)))
    assert (row["status"], row["promoted"], row["version"]) == ("promoted", "True", "v2")
    code, out, _ = run(capsys, "history", "runs")
    assert code == 0 and "out of memory" in out and "promoted" in out
    code, _, err = run(capsys, "history", "runs", "--user", "1")
    assert code == 2 and "playbill history runs: unrecognized arguments: --user 1" in err


def test_db_upgrade_and_current(capsys, cli_db: str) -> None:
    head = db.head_revision()
    code, out, _ = run(capsys, "db", "current")
    assert code == 0 and "(empty)" in out and "playbill db upgrade" in out
    if not cli_db.startswith("sqlite"):
        code, _, err = run(capsys, "history")  # a server database is never migrated behind one's back
        assert code == 2 and "playbill db upgrade" in err
    code, out, _ = run(capsys, "db", "upgrade")
    assert code == 0 and f"-> {head}" in out
    code, out, _ = run(capsys, "db", "upgrade")
    assert code == 0 and f"already at {head}" in out
    code, out, _ = run(capsys, "db", "current")
    assert f"current:  {head}" in out and "up to date" in out


def test_db_revision_writes_nothing_when_models_match(capsys, cli_db: str) -> None:
    versions = db.MIGRATIONS_DIR / "versions"
    before = sorted(p.name for p in versions.glob("*.py"))
    assert run(capsys, "db", "upgrade")[0] == 0
    code, _, err = run(capsys, "db", "revision", "-m", "nothing")
    assert code == 2 and "agree" in err
    assert sorted(p.name for p in versions.glob("*.py")) == before


def test_db_backup(capsys, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAYBILL_JOBS__BACKUPS_KEEP", "1")
    assert run(capsys, "db", "upgrade")[0] == 0
    for _ in range(2):
        code, out, _ = run(capsys, "db", "backup")
        assert code == 0 and "backed up to" in out
    assert len(list((home / "backups").glob("playbill-*.db"))) == 1
