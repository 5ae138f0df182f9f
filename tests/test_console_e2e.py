"""`playbill console` end to end: a subprocess fed over a pipe, with tiny real models trained
here on tiny data, and the real SQLite history database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fakes import train_tiny_scene, train_tiny_sentiment
from playbill.history import api, db

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PLAYBILL_HOME with a tiny critic and a tiny playwright (seconds to train)."""
    root = tmp_path_factory.mktemp("e2e")
    home = root / "home"
    home.mkdir()
    train_tiny_sentiment(home, root / "work")
    train_tiny_scene(home, root / "work")
    return home


def test_console_over_a_pipe_with_real_models(trained_home: Path) -> None:
    script = "\n".join([
        "/review-sentiment a wonderful film with a superb cast",
        "/write-scene ROMEO: length=80 temperature=0.8",
        "/write-scene ROMEO \N{GRINNING FACE} é",
        "/review-sentiment @everyone **bold** ```",
        "/history limit=10",
        "/nonsense",
    ]) + "\n"
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH", ""), str(REPO)) if p)
    env = {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2", "PLAYBILL_HOME": str(trained_home),
           "PLAYBILL_BOT__COOLDOWN_SECONDS": "0"}
    result = subprocess.run([sys.executable, "-m", "playbill.cli", "console"], input=script, capture_output=True,
                            text=True, env=env, cwd=trained_home.parent, timeout=120)
    out = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in out + result.stderr
    assert "Models: sentiment v0001" in out and "scene v0001" in out
    assert "The critic says: " in out and re.search(r"Positive: [█░]{10} \d+%", out)
    assert "\nROMEO:" in out and "(playwright v0001" in out
    assert "never seen these characters" in out
    assert "unknown command '/nonsense'" in out
    assert "History: 4 interaction(s)" in out  # two answers, two refusals, all with source console

    _, sessions = db.open_history(f"sqlite:///{trained_home / 'playbill.db'}")
    rows = api.query_interactions(sessions, limit=None)
    assert {r.source for r in rows} == {"console"}
    assert sorted((r.kind, r.status) for r in rows) == [("scene", "error"), ("scene", "ok"),
                                                        ("sentiment", "ok"), ("sentiment", "ok")]
    for row in rows:
        if row.status == "ok":
            assert row.model_version.startswith("v0001") and row.latency_ms > 0
