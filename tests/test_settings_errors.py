"""Bad settings and arguments: refused in one line that names the key (and the closest valid one),
exit 2; secrets masked wherever settings are printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from playbill.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own refusals
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("toml", "named", "suggested"),
    [
        ("[bot]\ncooldown_second = 10\n", "[bot] cooldown_second", "[bot] cooldown_seconds"),
        ("[scene]\ntemprature = 0.7\n", "[scene] temprature", "[scene] temperature"),
        ("[sentiment]\nepoch = 3\n", "[sentiment] epoch", "[sentiment] epochs"),
        ("[jobs]\nretrain_corn = '0 3 * * *'\n", "[jobs] retrain_corn", "[jobs] retrain_cron"),
        ("hom = 'x'\n", "unknown setting hom", "did you mean home"),
    ],
)
def test_unknown_keys_in_any_section_are_refused(capsys, home: Path, toml: str, named: str, suggested: str) -> None:
    Path("config.toml").write_text(toml)
    code, out, err = run(capsys, "config")
    assert (code, out, err.count("\n"), named in err, suggested in err) == (2, "", 1, True, True)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("PLAYBILL_LOG_LEVEL", "bogus", "log_level (from $PLAYBILL_LOG_LEVEL): must be one of DEBUG"),
        ("PLAYBILL_LOG_LEVEL", "INFOO", "did you mean 'INFO'?"),
        ("PLAYBILL_BOT__COOLDOWN_SECONDS", "abc", "[bot] cooldown_seconds (from $PLAYBILL_BOT__COOLDOWN_SECONDS)"),
        ("PLAYBILL_SCENE__BACKEND", "int9", "did you mean 'int8'?"),
        ("PLAYBILL_BOT__COOLDOWN_SECOND", "10", "did you mean [bot] cooldown_seconds?"),
    ],
)
def test_bad_environment_values_are_one_line(capsys, home: Path, monkeypatch, variable: str, value: str,
                                             expected: str) -> None:
    monkeypatch.setenv(variable, value)
    code, _, err = run(capsys, "config")
    assert (code, err.count("\n"), expected in err) == (2, 1, True)


def test_log_level_is_any_case(home: Path, monkeypatch) -> None:
    from playbill.settings import load_settings

    monkeypatch.setenv("PLAYBILL_LOG_LEVEL", "debug")
    assert load_settings().log_level == "DEBUG"


def test_broken_toml_is_one_line(capsys, home: Path) -> None:
    Path("config.toml").write_text("home = \n")
    code, _, err = run(capsys, "config")
    assert (code, err.count("\n"), "config.toml is not valid TOML" in err) == (2, 1, True)


def test_config_masks_the_database_password(capsys, home: Path, monkeypatch) -> None:
    monkeypatch.setenv("PLAYBILL_DATABASE_URL", "postgresql+psycopg://bob:hunter2@db.example/playbill?password=hunter3")
    code, out, _ = run(capsys, "config")
    assert json.loads(out)["database_url"] == "postgresql+psycopg://bob:***@db.example/playbill?password=***"


def test_no_secret_anywhere_in_the_printed_settings(capsys, home: Path, monkeypatch) -> None:
    monkeypatch.setenv("PLAYBILL_DATABASE_URL", "postgresql+psycopg://bob:hunter2@db.example/playbill")
    monkeypatch.setenv("PLAYBILL_DISCORD_API_BASE", "https://proxy:hunter2@proxy.example/api/v10")
    monkeypatch.setenv("PLAYBILL_DISCORD_TOKEN", "tok-hunter2")
    code, out, err = run(capsys, "config")
    assert (code, "hunter2" in out + err) == (0, False)


@pytest.mark.parametrize("limit", ["99999999999999999999", "0", "-3", "many"])
def test_history_limit_out_of_range_is_one_line(capsys, home: Path, limit: str) -> None:
    code, _, err = run(capsys, "history", "--limit", limit)
    assert (code, err.count("\n"), "--limit" in err) == (2, 1, True)


def test_history_api_refuses_an_overflowing_limit(home: Path) -> None:
    from playbill.history.api import query_interactions
    from playbill.history.db import open_history
    from playbill.history.errors import HistoryError

    engine, sessions = open_history(f"sqlite:///{home / 'h.db'}")
    try:
        with pytest.raises(HistoryError, match="limit must be a whole number"):
            query_interactions(sessions, limit=10**20)
    finally:
        engine.dispose()
