"""Shards that start together: Discord's identify limit (one IDENTIFY per max_concurrency bucket
every 5 s, across the whole application) coordinated through PostgreSQL, so bots started at the
same moment, each with a home of its own, all connect without a refused IDENTIFY.

The stand-in enforces the rule as Discord does (a second IDENTIFY of a bucket within 5 s gets
INVALID_SESSION); the first test shows it bites when nothing coordinates.
"""

from __future__ import annotations

import asyncio
import contextlib

import discord
import pytest
from standin import StandIn
from test_cluster import pg_url  # noqa: F401 - the fixture: a fresh, migrated database

from fakes import fake_holders
from playbill import metrics
from playbill.bot.client import PlaybillBot
from playbill.bot.services import refresh_models
from playbill.history.identify import IdentifyTurns
from playbill.history.model_store import forget_stores, use_model_store
from playbill.settings import load_settings

SHARDS = 4
PROCESSES = ([0, 1], [2], [3])  # the shard ids of each bot, as three `playbill run --shard-ids`
READY_TIMEOUT = 120  # generous: a busy CI machine


@contextlib.asynccontextmanager
async def bots_started_together(standin: StandIn, settings_of_each: list) -> list[PlaybillBot]:
    bots = []
    for settings in settings_of_each:
        holders = fake_holders(settings)
        refresh_models(holders)
        bots.append(PlaybillBot(settings, holders=holders, load_models=False, sync_on_start=False))
    tasks = [asyncio.create_task(bot.start(standin.token)) for bot in bots]  # the same moment
    try:
        yield bots
    finally:
        for bot in bots:
            await bot.close()
        # Bounded: a shard still retrying a refused connection when its bot closes can keep its
        # start() task alive (discord.py's launch_shard retries on any error, and Python 3.11's
        # wait_for waits for a cancellation the task may swallow), so no wait here is unbounded.
        _, running = await asyncio.wait(tasks, timeout=10)
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=5)


@contextlib.asynccontextmanager
async def bots_on(standin: StandIn, settings_of_each: list):
    with standin.point_discord_py():
        async with bots_started_together(standin, settings_of_each) as bots:
            yield bots


def fleet_settings(tmp_path, url: str | None) -> list:
    """Each bot's settings: a home of its own, one shard count, its shard ids, the same database."""
    out = []
    for i, ids in enumerate(PROCESSES):
        home = tmp_path / f"host-{i}"
        home.mkdir()
        settings = load_settings(home=home, **({"database_url": url} if url else {}))
        settings.bot.shard_count, settings.bot.shard_ids = SHARDS, ids
        settings.bot.cooldown_seconds = 0
        out.append(settings)
    return out


async def test_uncoordinated_processes_are_refused(tmp_path) -> None:
    """Without a shared database (each bot its own SQLite), bots started together identify in
    the same bucket within 5 s: the stand-in refuses some, as Discord would."""
    async with StandIn(guilds=4, shards=SHARDS, identify_interval_s=5.0) as standin, \
            bots_on(standin, fleet_settings(tmp_path, None)):
        await standin.wait_until(lambda: standin.identify_refusals, timeout=READY_TIMEOUT)
        assert standin.identify_refusals


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("max_concurrency", [1, 2])
async def test_bots_started_together_on_one_database_all_connect_unrefused(tmp_path, pg_url, max_concurrency) -> None:
    settings_of_each = fleet_settings(tmp_path, pg_url)
    turns_before = metrics.REGISTRY.get_sample_value("playbill_identify_wait_seconds_count") or 0
    try:
        async with StandIn(guilds=8, shards=SHARDS, identify_interval_s=5.0, max_concurrency=max_concurrency,
                           response_deadline_s=30.0) as standin, bots_on(standin, settings_of_each) as bots:
            for shard in range(SHARDS):
                await standin.wait_ready(shard, timeout=READY_TIMEOUT)
            assert standin.identify_refusals == []
            assert standin.identifies == SHARDS
            assert sorted(s for bot in bots for s in bot.shards) == list(range(SHARDS))
            assert sum(len(bot.guilds) for bot in bots) == len(standin.guilds)
            assert metrics.REGISTRY.get_sample_value("playbill_identify_wait_seconds_count") - turns_before == SHARDS
    finally:
        for settings in settings_of_each:  # this process's registries back to the folders
            use_model_store(load_settings(home=settings.home))
        forget_stores()


@pytest.mark.postgres
def test_a_turn_is_marked_by_the_database_clock_with_who_took_it(pg_url) -> None:
    turns = IdentifyTurns(pg_url, interval=0.2, margin=0.0)
    try:
        turns.take(3, "shard 3")
        turns.take(3, "shard 7")  # the same bucket: waits for the interval, then takes it
        with turns.engine.connect() as conn:
            [(bucket, taken_by, last_at)] = conn.exec_driver_sql(
                "SELECT bucket, taken_by, last_at FROM identify_turns").all()
    finally:
        turns.close()
    assert bucket == 3 and taken_by.startswith("shard 7, ") and last_at is not None


def test_a_bot_on_sqlite_keeps_discord_py_spacing(settings) -> None:
    bot = PlaybillBot(settings, load_models=False)
    assert bot.identify_turns is None
    assert isinstance(bot, discord.AutoShardedClient)
