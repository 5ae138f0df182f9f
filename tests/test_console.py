"""`playbill console` and `playbill run` without a Discord connection."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from playbill.bot.console import run_console
from playbill.bot.recording import HistoryGateway
from playbill.bot.services import Services
from fakes import engine_refusal, fake_holders, history_rows
from playbill.engine.sentiment import ReviewRequest

REPO = Path(__file__).resolve().parents[1]


def playbill(*args: str, stdin: str = "", env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH", ""), str(REPO)) if p)
    full_env = {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, "-m", "playbill.cli", *args], input=stdin, capture_output=True,
                          text=True, env=full_env, timeout=timeout)



class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal, refused", [(False, 0), (True, 1)])
async def test_cooldown_throttles_a_person_at_the_terminal_not_a_script(settings, terminal, refused) -> None:
    settings.bot.cooldown_seconds = 30
    services = Services.create(settings, holders=fake_holders(settings),
                               history=HistoryGateway.open(settings.database_url))
    script = "/review-sentiment A great film\n/review-sentiment A dull film\n"
    out = io.StringIO()
    assert await run_console(settings, (_Terminal if terminal else io.StringIO)(script), out, services=services) == 0
    assert out.getvalue().count("Slow down") == refused
    assert out.getvalue().count("The critic says") == 2 - refused


async def test_console_answers_through_the_shared_features(settings) -> None:
    settings.bot.cooldown_seconds = 0
    services = Services.create(settings, holders=fake_holders(settings),
                               history=HistoryGateway.open(settings.database_url))
    script = "\n".join([
        "/review-sentiment What a great, wonderful film",
        "/feedback 1 wrong",
        "/feedback one wrong",
        "/write-scene ROMEO: length=120 temperature=0.5",
        "/write-scene Romeo \N{GRINNING FACE}",
        "/review-sentiment    ",
        "/history kind=sentiment limit=5",
        "/history colour=blue",
        "/dance",
        "hello",
        "/model-status",
        "/quit",
        "/review-sentiment never read: after /quit",
    ]) + "\n"
    out = io.StringIO()
    code = await run_console(settings, io.StringIO(script), out, services=services)
    text = out.getvalue()
    assert code == 0
    assert "The critic says: positive" in text and "sentiment v0001" in text
    assert "/feedback 1 right|wrong" in text and "noted that the critic was wrong" in text
    assert "usage: /feedback ID right|wrong" in text
    assert "ROMEO:\nBut soft" in text and "(playwright v0001" in text
    assert "never seen these characters" in text
    assert "error: " + engine_refusal(services.holders["sentiment"].limits.check, ReviewRequest("    ")) in text
    assert "History: 2 interaction(s)" in text  # the answer and the refusal
    assert "unknown option 'colour=blue'" in text
    assert text.count("type /help") == 2  # /dance and a line without a command
    assert "saved " in text and list((settings.home / "console").glob("*model-metrics.png"))
    rows = history_rows(services.history)[::-1]  # oldest first
    assert [r.source for r in rows] == ["console"] * 4  # review, scene, refused scene, refused review
    assert sorted(r.status for r in rows) == ["error", "error", "ok", "ok"]
    assert (rows[0].feedback_right, rows[0].feedback_wrong) == (0, 1)
    scene = next(r for r in rows if r.kind == "scene" and r.status == "ok")
    assert scene.params == {"length": 120, "temperature": 0.5, "top_k": None}


def test_console_over_a_pipe_without_models_says_how_to_train(home: Path) -> None:
    result = playbill("console", stdin="/help\n/review-sentiment good\n/write-scene ROMEO:\n/nope\n")
    assert result.returncode == 0, result.stderr
    assert "playbill train sentiment" in result.stdout and "playbill train scene" in result.stdout
    assert "/review-sentiment TEXT" in result.stdout  # the help
    assert "unknown command '/nope'" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_run_without_a_token_explains_and_falls_back_to_the_console(home: Path) -> None:
    result = playbill("run", stdin="/help\n")
    assert result.returncode == 0
    assert "PLAYBILL_DISCORD_TOKEN" in result.stderr and "playbill console" in result.stderr
    assert "/write-scene PROMPT" in result.stdout


def test_sync_commands_needs_a_token(home: Path) -> None:
    result = playbill("sync-commands", "--global")
    assert result.returncode == 2 and "PLAYBILL_DISCORD_TOKEN" in result.stderr and "playbill console" in result.stderr


@pytest.mark.parametrize("failure, message", [
    ("login", "rejected the token"),
    ("network", "Cannot reach Discord"),
])
def test_a_rejected_token_or_no_network_is_a_clear_error(home: Path, monkeypatch: pytest.MonkeyPatch, capsys,
                                                          failure, message) -> None:
    import aiohttp
    import discord

    from playbill.bot.client import PlaybillBot
    from playbill.cli import main

    async def refuse(self, token, *, reconnect=True):
        if failure == "login":
            raise discord.LoginFailure("Improper token has been passed.")
        raise aiohttp.ClientConnectionError("Cannot connect to host discord.com:443")

    monkeypatch.setattr(PlaybillBot, "start", refuse)
    monkeypatch.setenv("DISCORD_TOKEN", "not-a-real-token")
    monkeypatch.setenv("PLAYBILL_BOT__CONNECT_RETRIES", "1")  # one retry, soon
    monkeypatch.setenv("PLAYBILL_BOT__CONNECT_BACKOFF_SECONDS", "0.01")
    assert main(["run", "--no-scheduler"]) == 2
    err = capsys.readouterr().err
    assert message in err and "playbill console" in err and "not-a-real-token" not in err


def test_run_train_missing_starts_the_console_even_if_one_quick_model_fails(home: Path, monkeypatch, capsys) -> None:
    """A failed first-start model is one warning line; the other model and the console still serve."""
    import playbill.jobs.warmup
    from playbill.cli import main

    asked = []

    def train_first(settings, say, names):
        asked.append(settings.home)
        return {"sentiment": "training failed (exit code 1)"}

    monkeypatch.setattr(playbill.jobs.warmup, "train_first", train_first)
    monkeypatch.setattr(playbill.jobs.warmup, "start_first_start", lambda settings, names, warm_up: None)
    monkeypatch.setenv("PLAYBILL_JOBS__WARMUP", "false")
    monkeypatch.setattr(sys, "stdin", io.StringIO("/help\n"))
    assert main(["run", "--train-missing"]) == 0
    captured = capsys.readouterr()
    assert len(asked) == 1
    assert "warning: sentiment: training failed (exit code 1); starting without it" in captured.err
    assert "/write-scene PROMPT" in captured.out  # the console started anyway


async def test_console_acts_as_the_member_given(settings) -> None:
    from playbill.bot.console import console_member

    settings.bot.cooldown_seconds = 0
    services = Services.create(settings, holders=fake_holders(settings),
                               history=HistoryGateway.open(settings.database_url))
    first, second = console_member("1001", "Ada"), console_member(1002)
    out = io.StringIO()
    await run_console(settings, io.StringIO("/review-sentiment A great film\n"), out, services=services, member=first)
    await run_console(settings, io.StringIO("/feedback 1 wrong\n/forget-me\n"), out, services=services, member=second)
    rows = history_rows(services.history)
    assert "Acting as Ada (user 1001)" in out.getvalue()
    assert [(r.user_id, r.user_name) for r in rows] == [(1001, "Ada")]  # member 1002's /forget-me kept Ada's review
    assert (rows[0].feedback_right, rows[0].feedback_wrong) == (0, 0)  # ... but took back 1002's vote


@pytest.mark.parametrize("args, message", [(("--user", "abc"), "--user must be a Discord user id"),
                                           (("--user", "5", "--name", ""), "--name must be 1 to 100 characters")])
def test_console_refuses_a_bad_member_in_one_line(home: Path, args, message) -> None:
    result = playbill("console", *args, stdin="/help\n")
    assert (result.returncode, message in result.stderr, "Traceback" in result.stderr) == (2, True, False)


async def test_member_text_cannot_drive_the_terminal(services, settings) -> None:
    """A review carrying escape sequences (retitle, clear screen) and a bidi override is shown,
    in its answer and in /history, without them."""
    review = "a great film\x1b]0;pwned\x07\x1b[2J \u202eevil"
    out = io.StringIO()
    await run_console(settings, io.StringIO(f"/review-sentiment {review}\n/history\n"), out, services=services)
    text = out.getvalue()
    assert "The critic says: positive" in text and text.count("a great film") == 2
    assert not any(c in text for c in "\x1b\x07\u202e")
    assert history_rows(services.history)[0].prompt == review  # stored as typed


def test_the_console_help_is_the_command_table(services) -> None:
    """Every command of every feature is in /help with its usage and help line; aliases are not."""
    from playbill.bot.console import Console
    from playbill.bot.features import CONSOLE_COMMANDS, FEATURES

    console = Console(services, io.StringIO(), member=(1, "Ada"))
    text = console.help_text()
    listed = [c for c in CONSOLE_COMMANDS if c.summary]
    assert {f.__name__.rsplit(".", 1)[-1] for f in FEATURES} == {"critic", "playwright", "privacy", "admin", "help"}
    assert all(f"{c.name} {c.usage}".rstrip() in text and c.summary in text for c in listed)
    assert not any(line.startswith("/exit") for line in text.splitlines())  # an alias, named by /quit's line
    assert console.find("/feedback", "") is not console.find("/feedback", "3 right")  # two forms of one name
    assert console.find("/dance", "") is None
