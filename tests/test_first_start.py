"""Answers from the first half-minute: a first start serves as soon as the critic is ready, while
the playwright's first model trains in a spawned background process; until it is ready,
/write-scene says the playwright is still learning its lines and when it expects to be ready,
then the holder's refresh serves the new playwright. Real (tiny) training, the real console;
nothing is timed."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import time
from pathlib import Path

import pytest

from fakes import TINY_PLAY
from playbill.bot.console import run_console
from playbill.engine.models import spec
from playbill.jobs.warmup import learning, start_first_start
from playbill.settings import Settings

WAIT = 300  # seconds a test waits for the background training before it fails
LEARNING = "The playwright is still learning its lines"


@pytest.fixture
def first_start_settings(home: Path) -> Settings:
    """The quick profile of the playwright, two epochs on a small corpus (seconds, not minutes)."""
    corpus = home / "play.txt"
    corpus.write_text(TINY_PLAY * 10, encoding="utf-8")
    return Settings(home=home, data_dir=home, scene={"corpus": corpus, "profile": "quick", "epochs": 2},
                    bot={"model_refresh_seconds": 0.2, "cooldown_seconds": 0},
                    jobs={"training_niceness": 0, "warmup": False})


def test_write_scene_says_still_learning_then_writes_a_scene(first_start_settings: Settings) -> None:
    settings = first_start_settings
    lines: list[str] = []

    class Out:  # the console's output, line by line, readable from the test
        def write(self, text: str) -> None:
            lines.extend(text.splitlines())

        def flush(self) -> None:
            pass

    async def scenario() -> tuple[list[str], str | None]:
        process = start_first_start(settings, ["scene"])
        assert process is not None
        read_fd, write_fd = os.pipe()
        commands_in, commands = os.fdopen(read_fd, "r"), os.fdopen(write_fd, "w", buffering=1)
        console = asyncio.create_task(run_console(settings, commands_in, Out()))
        learning_answers: list[str] = []
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            before = len(lines)
            commands.write("/write-scene ROMEO: length=20\n")
            while len(lines) == before and not console.done():
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.1)
            answer = "\n".join(lines[before:])
            if "(playwright " in answer:
                break
            learning_answers.append(answer)
            await asyncio.sleep(0.5)
        commands.close()
        await console
        await asyncio.to_thread(process.join, 60)
        return learning_answers, spec("scene").registry(settings.home).current_version()

    learning_answers, version = asyncio.run(scenario())
    assert version is not None
    assert f"(playwright {version})" in lines
    assert learning_answers and all(LEARNING in answer for answer in learning_answers)
    assert "The critic answers meanwhile." in learning_answers[0]
    assert learning(settings, "scene") is None  # trained: nothing is learning any more


def test_the_expected_time_comes_from_the_epochs_done(first_start_settings: Settings) -> None:
    """After an epoch: 'epoch 1 of 2 done ... ready in about N min (about HH:MM UTC)'."""
    from playbill.bot.cogs.playwright import still_learning

    settings = first_start_settings
    process = start_first_start(settings, ["scene"])
    try:
        deadline = time.monotonic() + WAIT
        answer = None
        while time.monotonic() < deadline and process.is_alive():
            progress = learning(settings, "scene")
            if progress is not None and progress["seconds_left"] is not None:
                answer = still_learning(settings)
                break
            time.sleep(0.1)
    finally:
        process.terminate()
        process.join(30)
    if answer is None:  # the two epochs ended between two looks: nothing left to estimate
        pytest.skip("the training finished before its progress was read")
    assert "epoch 1 of 2 done" in str(answer) and "expects to be ready in about" in str(answer)


def test_run_train_missing_serves_the_critic_while_the_playwright_trains(home: Path, monkeypatch, capsys) -> None:
    """`playbill run --train-missing` trains the critic first and starts the console; the
    playwright goes to the background (here a stand-in that records the call)."""
    import playbill.jobs.warmup
    from playbill.cli import main

    asked: list[tuple] = []

    def train_first(settings, say, names):
        asked.append(("now", tuple(names)))
        return {"sentiment": 12.0}

    def start_first_start(settings, names, warm_up):
        asked.append(("background", tuple(names), warm_up))
        return object()

    monkeypatch.setattr(playbill.jobs.warmup, "train_first", train_first)
    monkeypatch.setattr(playbill.jobs.warmup, "start_first_start", start_first_start)
    monkeypatch.setattr(sys, "stdin", io.StringIO("/help\n"))
    assert main(["run", "--train-missing", "--no-scheduler"]) == 0
    captured = capsys.readouterr()
    assert asked == [("now", ("sentiment",)), ("background", ("scene",), False)]
    assert "sentiment model ready after 12 s" in captured.err
    assert "training a quick scene model in the background" in captured.err
    assert "/write-scene PROMPT" in captured.out  # the console started


async def test_on_discord_write_scene_says_still_learning_ephemerally(first_start_settings: Settings) -> None:
    """The same answer on Discord: an ephemeral reply at once, nothing deferred."""
    from standin import StandIn
    from test_bot import refusal, running

    settings = first_start_settings
    process = start_first_start(settings, ["scene"])
    try:
        async with StandIn(guilds=1, response_deadline_s=30.0) as standin:
            with standin.point_discord_py():
                async with running(settings, standin, publish=False):
                    asked = await standin.slash(next(iter(standin.guilds)), "write-scene", prompt="ROMEO:")
                    answer = await refusal(asked)
    finally:
        process.terminate()
        await asyncio.to_thread(process.join, 30)
    assert answer["content"].startswith(LEARNING)
