"""Shared fixtures: every test gets its own PLAYBILL_HOME; real data only via PLAYBILL_DATA_DIR."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# Tests never see a developer's token, config file or settings: of the environment's PLAYBILL_*
# variables only those the test run itself is given are kept (the last: where `playbill bench
# cluster` has tests/test_cluster_e2e.py write its figures).
KEPT_SETTINGS = ("PLAYBILL_DATA_DIR", "PLAYBILL_TEST_DATABASE_URL", "PLAYBILL_BENCH_CLUSTER_FIGURES")
for _name in [n for n in os.environ if n.startswith("PLAYBILL_") and n not in KEPT_SETTINGS] + ["DISCORD_TOKEN"]:
    os.environ.pop(_name, None)


@pytest.fixture(scope="session", autouse=True)
def _away_from_the_checkout(tmp_path_factory: pytest.TempPathFactory):
    """Run every test in an empty working directory, so a developer's ./config.toml (read by
    default) and ./var (the default home) are never read or written; `home` moves each test on
    into its own folder."""
    folder = tmp_path_factory.mktemp("cwd")
    before = os.getcwd()
    os.chdir(folder)
    yield folder
    os.chdir(before)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh PLAYBILL_HOME (and working directory) for one test."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("PLAYBILL_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture
def settings(home: Path):
    from playbill.settings import load_settings

    return load_settings()


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The folder with the real datasets (CI: ../shared/data); tests needing it skip without it."""
    value = os.environ.get("PLAYBILL_DATA_DIR")
    if not value or not Path(value).is_dir():
        pytest.skip("PLAYBILL_DATA_DIR is not set to the real datasets")
    return Path(value)


@pytest.fixture
async def services(settings):
    """The bot's services over tiny models and a real SQLite history, as the bot and console build them."""
    from playbill.bot.recording import HistoryGateway
    from playbill.bot.services import Services
    from fakes import fake_holders

    settings.bot.cooldown_seconds = 0
    s = Services.create(settings, holders=fake_holders(settings), history=HistoryGateway.open(settings.database_url))
    s.refresh_models()
    yield s
    await s.drain()
    s.close()
