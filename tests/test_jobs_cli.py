"""`playbill models|jobs|retrain` and the backup job."""

from __future__ import annotations

import json
import sqlite3

import pytest

from fakes import publish_numpy_scene
from playbill.engine import models
from playbill.jobs.common import retrain_lock
from playbill.jobs.maintenance import backup_database
from playbill.cli import main
from test_jobs_fakes import FAKE_SENTIMENT, control, make_initial_model, training_runs


def make_versions(home, n: int) -> list[str]:
    """n promoted playwright versions that can really be served (`models promote` loads them)."""
    return [publish_numpy_scene(home, {"val_loss": 2.0 - i / 10}, seed=i) for i in range(n)]


def test_models_list_promote_rollback(home, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = make_versions(home, 2)
    assert main(["models", "list", "scene"]) == 0
    out = capsys.readouterr().out
    assert f"* {second}" in out and f"  {first}" in out and "val_loss=1.9000" in out
    assert main(["models", "list"]) == 0
    assert "sentiment: 0 version(s) - train one with `playbill train sentiment`" in capsys.readouterr().out

    assert main(["models", "rollback", "scene"]) == 0
    assert f"rolled back from {second} to {first}" in capsys.readouterr().out
    assert main(["models", "promote", "scene", second]) == 0
    assert main(["models", "list", "scene", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [(r["version"], r["current"]) for r in rows] == [(first, False), (second, True)]

    assert main(["models", "promote", "scene", "v9999-nope"]) == 2
    assert "has no version 'v9999-nope'" in capsys.readouterr().err
    assert main(["models", "rollback", "sentiment"]) == 2
    assert "no sentiment model yet" in capsys.readouterr().err


def test_retrain_command_reports_and_refuses_while_running(settings, monkeypatch, capsys) -> None:
    monkeypatch.setitem(models.SPECS, "sentiment", FAKE_SENTIMENT)
    first = make_initial_model(settings.home)
    control(settings.home, delta=0.05)
    assert main(["retrain", "sentiment"]) == 0
    out = capsys.readouterr().out
    assert f"continuing {first} from run-" in out and "sentiment: promoted: promoted v0002" in out
    with retrain_lock(settings, "sentiment"):
        assert main(["retrain", "sentiment", "--json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["status"] == "skipped"
    assert "error: a sentiment retrain is already running (process" in captured.err


def test_jobs_command_lists_jobs(home, capsys) -> None:
    assert main(["jobs"]) == 0
    out = capsys.readouterr().out
    for job_id in ("retrain-sentiment", "retrain-scene", "purge-history", "backup-database"):
        assert job_id in out
    assert "not registered yet" in out


def test_bad_cron_or_timezone_is_a_clear_settings_error(home, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PLAYBILL_JOBS__RETRAIN_CRON", "every night")
    assert main(["jobs"]) == 2
    assert "bad cron expression 'every night'" in capsys.readouterr().err
    monkeypatch.delenv("PLAYBILL_JOBS__RETRAIN_CRON")
    monkeypatch.setenv("PLAYBILL_JOBS__TIMEZONE", "Mars/Olympus")
    assert main(["jobs"]) == 2
    assert "unknown time zone 'Mars/Olympus'" in capsys.readouterr().err


def test_backup_job_is_a_consistent_copy_and_keeps_the_last_n(settings) -> None:
    settings.jobs.backups_keep = 2
    db = sqlite3.connect(settings.home / "playbill.db")
    db.execute("CREATE TABLE t (x INTEGER)")
    db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
    db.commit()
    made = []
    for _ in range(3):
        made.append(backup_database(settings))  # while a connection is open on the database
    db.close()
    kept = sorted(settings.backups_dir.glob("playbill-*.db"))
    assert kept == made[1:]
    copy = sqlite3.connect(kept[-1])
    assert copy.execute("SELECT count(*) FROM t").fetchone() == (100,)
    copy.close()
    assert not list(settings.backups_dir.glob(".*partial"))


def test_backup_skips_a_server_database(settings) -> None:
    settings.database_url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    assert backup_database(settings) is None


def test_purge_job_deletes_only_old_history(settings) -> None:
    from datetime import timedelta

    from playbill.history import api
    from playbill.history.db import open_history
    from playbill.history.models import utcnow

    from playbill.jobs.maintenance import purge_history

    settings.jobs.history_retention_days = 30
    engine, sessions = open_history(settings.database_url)
    try:
        old = api.record_interaction(sessions, kind="sentiment", prompt="old review", label="positive",
                                     created_at=utcnow() - timedelta(days=31))
        api.record_feedback(sessions, old, 1, "right")
        new = api.record_interaction(sessions, kind="sentiment", prompt="new review", label="negative")
        assert purge_history(settings) == {"interactions": 1, "feedback": 1}
        assert api.get_interaction(sessions, old) is None and api.get_interaction(sessions, new) is not None
    finally:
        engine.dispose()


CLI_HOST = """
import sys
from playbill.engine import models
from playbill.cli import main
from test_jobs_fakes import FAKE_SENTIMENT

if __name__ == "__main__":
    models.SPECS["sentiment"] = FAKE_SENTIMENT
    sys.exit(main(["retrain", "sentiment"]))
"""


def test_ctrl_c_during_playbill_retrain_stops_the_training_process(settings, tmp_path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from fakes import ctrl_c_as_at_a_terminal
    from test_jobs import running
    from test_jobs_fakes import calls

    make_initial_model(settings.home)
    control(settings.home, block_on=str(tmp_path / "never"))
    script = tmp_path / "cli.py"
    script.write_text(CLI_HOST)
    env = {**os.environ, "PYTHONFAULTHANDLER": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=ctrl_c_as_at_a_terminal)
    try:
        deadline = time.monotonic() + 30
        while not calls(settings.home) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = calls(settings.home)[0]["pid"]
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)  # a guard against a hang, not a speed check
        except subprocess.TimeoutExpired:  # say where it hangs: faulthandler dumps every thread on SIGABRT
            proc.send_signal(signal.SIGABRT)
            out, err = proc.communicate(timeout=30)
            pytest.fail(f"playbill retrain did not exit after Ctrl-C:\n{err[-6000:]}")
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert not running(child)
    assert retrain_lock(settings, "sentiment").holder() is None
    assert not (settings.home / "locks" / "retrain-sentiment.run").exists()
    (run,) = training_runs(settings).values()
    assert run.status == "failed" and run.error == "interrupted"


def test_the_old_jobs_keys_still_work_with_one_warning_line(home, tmp_path) -> None:
    import subprocess
    import sys

    config = tmp_path / "old.toml"
    config.write_text("[jobs]\nretrain_epochs_scene = 3\ngate_tolerance_sentiment = 0.01\n", "utf-8")
    run = subprocess.run([sys.executable, "-m", "playbill.cli", "--config", str(config), "config"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    shown = json.loads(run.stdout)
    assert (shown["scene"]["retrain_epochs"], shown["sentiment"]["gate_tolerance"]) == (3, 0.01)
    assert "retrain_epochs_scene" not in shown["jobs"]
    assert run.stderr.splitlines() == [
        "[jobs] retrain_epochs_scene is deprecated; use [scene] retrain_epochs (or PLAYBILL_SCENE__RETRAIN_EPOCHS)",
        "[jobs] gate_tolerance_sentiment is deprecated; use [sentiment] gate_tolerance "
        "(or PLAYBILL_SENTIMENT__GATE_TOLERANCE)"]
