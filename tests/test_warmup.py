"""The warm-up (jobs/warmup.py) on a tiny playwright: gating, live swap while answering, resume
after the warm-up process is killed. Real training (tiny configs, a tiny corpus), real registry,
real console; nothing is timed."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from playbill.bot.console import run_console
from fakes import TINY_PLAY
from playbill.engine.models import spec
from playbill.engine.scene import SceneConfig
from playbill.jobs.warmup import enrol, read_state, run_stage, run_warmup, start_warmup, status_line
from playbill.settings import Settings
from test_jobs_fakes import training_runs

SCENE = spec("scene")
WAIT = 300  # seconds a test waits for a spawned process or a console answer before it fails


def tiny(name: str = "tiny", epochs: int = 20) -> SceneConfig:
    return SceneConfig(name=name, embedding_dim=8, rnn_units=16, seq_length=20, batch_size=8, epochs=epochs, seed=7)


@pytest.fixture
def warm_settings(home: Path) -> Settings:
    corpus = home / "play.txt"
    corpus.write_text(TINY_PLAY * 3, encoding="utf-8")
    return Settings(home=home, data_dir=home, scene={"corpus": corpus}, bot={"model_refresh_seconds": 0.2},
                    jobs={"training_niceness": 0})


def first_model(settings: Settings, epochs: int) -> str:
    """The quick first model a first start leaves behind, enrolled for the warm-up."""
    version = SCENE.train(tiny(), settings.home, settings.data_dir, epochs=epochs, data=settings.scene.corpus,
                          progress=False).version
    enrol(settings.home, "scene")
    return version


def test_a_worse_stage_is_not_promoted(warm_settings: Settings) -> None:
    current = first_model(warm_settings, epochs=6)
    record = run_stage(warm_settings, "scene", config=tiny("fresh"), epochs=1)  # a new profile, one epoch in
    assert (record["promoted"], SCENE.registry(warm_settings.home).current_version()) == (False, current)
    (run,) = training_runs(warm_settings, "scene").values()  # `playbill history runs` shows the stage
    assert (run.status, run.version, run.metrics["by"]) == ("rejected", record["candidate"], "warm-up")


def test_a_rejected_candidate_is_removed_but_the_next_stage_continues_its_run(warm_settings: Settings) -> None:
    first_model(warm_settings, epochs=6)
    rejected = run_stage(warm_settings, "scene", config=tiny("fresh"), epochs=1)
    versions = [v.version for v in SCENE.registry(warm_settings.home).versions()]
    assert rejected["candidate"] not in versions
    assert run_stage(warm_settings, "scene", config=tiny("fresh"), epochs=1)["last_epoch"] == 2


def test_the_console_answers_throughout_and_then_with_the_promoted_version(warm_settings: Settings) -> None:
    first = first_model(warm_settings, epochs=1)
    answers: list[str] = []

    class Out:  # the console's output, line by line, readable from the test
        def write(self, text: str) -> None:
            answers.extend(line for line in text.splitlines() if line.startswith("(playwright "))

        def flush(self) -> None:
            pass

    async def scenario() -> tuple[dict, int, list[str]]:
        read_fd, write_fd = os.pipe()
        lines, commands = os.fdopen(read_fd, "r"), os.fdopen(write_fd, "w", buffering=1)
        console = asyncio.create_task(run_console(warm_settings, lines, Out()))
        stage = asyncio.create_task(asyncio.to_thread(run_stage, warm_settings, "scene", config=tiny(), epochs=3))
        during = 0
        while not stage.done():  # ask for a scene, wait for the answer, again, while the stage trains
            before = len(answers)
            commands.write("/write-scene ROMEO: length=20\n")
            while len(answers) == before and not console.done():
                await asyncio.sleep(0.05)
            during += 1
        record = await stage
        deadline = time.monotonic() + WAIT
        while f"(playwright {record['candidate']})" not in answers and time.monotonic() < deadline:
            before = len(answers)
            commands.write("/write-scene ROMEO: length=20\n")
            while len(answers) == before and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
        commands.close()
        await console
        return record, during, list(answers)

    record, during, seen = asyncio.run(scenario())
    assert record["promoted"] is True  # three more epochs of the same run beat one
    assert during >= 1
    assert seen[0] == f"(playwright {first})"
    assert seen[-1] == f"(playwright {record['candidate']})"


def test_a_killed_warmup_resumes_from_its_checkpoint_not_from_scratch(warm_settings: Settings) -> None:
    first_model(warm_settings, epochs=1)
    process = start_warmup(warm_settings, configs={"scene": tiny(epochs=40)}, epochs=1)
    deadline = time.monotonic() + WAIT
    while not read_state(warm_settings.home)["models"]["scene"]["stages"] and time.monotonic() < deadline:
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.join()
    before = read_state(warm_settings.home)["models"]["scene"]["stages"]
    records = run_warmup(warm_settings, configs={"scene": tiny(epochs=40)}, epochs=1, max_stages=1)
    assert records[0]["last_epoch"] > before[0]["last_epoch"]


def test_the_status_says_warming_up_and_when_it_should_be_done(warm_settings: Settings) -> None:
    first_model(warm_settings, epochs=1)
    run_warmup(warm_settings, configs={"scene": tiny(epochs=40)}, epochs=1, max_stages=1)
    assert "done in ~" in status_line(warm_settings, "scene")


def test_a_home_warms_up_once_at_a_time(warm_settings: Settings) -> None:
    first_model(warm_settings, epochs=1)
    from playbill.jobs.warmup import warmup_lock

    with warmup_lock(warm_settings):
        assert start_warmup(warm_settings) is None


def test_the_setting_turns_it_off(warm_settings: Settings) -> None:
    first_model(warm_settings, epochs=1)
    off = warm_settings.model_copy(update={"jobs": warm_settings.jobs.model_copy(update={"warmup": False})})
    assert start_warmup(off) is None


def test_a_model_trained_by_hand_is_not_warmed_up(warm_settings: Settings) -> None:
    SCENE.train(tiny(), warm_settings.home, warm_settings.data_dir, epochs=1, data=warm_settings.scene.corpus,
                progress=False)
    assert start_warmup(warm_settings) is None

