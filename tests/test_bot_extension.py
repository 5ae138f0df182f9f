"""Playbill loaded into someone else's bot: a plain discord.ext.commands.Bot with a command of its
own loads the extension with one line, against the Discord stand-in (tests/standin) over real
REST and gateway traffic. Fake models (no TensorFlow), the real history database."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import threading

import discord
import pytest
from discord.ext import commands

import playbill.bot
from fakes import fake_holders, history_rows
from playbill.jobs import scheduler as scheduler_module
from standin import ADMINISTRATOR, StandIn

EPHEMERAL = 64
PLAYBILL_THREADS = ("sentiment-worker", "scene-worker", "schedule-election", "APScheduler")
PLAYBILL_COMMANDS = {"review-sentiment", "write-scene", "forget-me", "admin", "help"}


@pytest.fixture
async def standin():
    async with StandIn(guilds=2, owner_id=42, response_deadline_s=30.0) as server:
        with server.point_discord_py():
            yield server


@pytest.fixture
def guilds(standin) -> list[int]:
    return sorted(standin.guilds)


@pytest.fixture(autouse=True)
def quick_settings(settings):
    settings.bot.cooldown_seconds = 0
    settings.bot.stream_edit_interval = 0.0


class HostBot(commands.Bot):
    """Somebody's bot: its own /ping and (with `own_help`) its own /help; it loads Playbill in
    its setup_hook with the one line, and syncs its tree itself."""

    def __init__(self, sync_guilds: list[int], *, own_help: bool = False) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(command_prefix="!", intents=intents)
        self.sync_guilds = sync_guilds

        @self.tree.command(name="ping", description="The host's own command.")
        async def ping(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("pong")

        if own_help:
            @self.tree.command(name="help", description="The host's own help.")
            async def help(interaction: discord.Interaction) -> None:
                await interaction.response.send_message("the host's help")

    async def setup_hook(self) -> None:
        await self.load_extension("playbill.bot")
        await self.sync()

    async def sync(self) -> None:
        for guild_id in self.sync_guilds:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)


@contextlib.asynccontextmanager
async def host(settings, standin: StandIn, sync_guilds: list[int], **options):
    own_help = options.pop("own_help", False)
    bot = HostBot(sync_guilds, own_help=own_help)
    playbill.bot.configure(bot, settings=settings, holders=fake_holders(settings), **options)
    task = asyncio.create_task(bot.start(standin.token))
    try:
        await standin.wait_ready(0)
        yield bot
    finally:
        await bot.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


def playbill_threads(before: set[threading.Thread]) -> list[str]:
    return [t.name for t in threading.enumerate() if t not in before and t.name.startswith(PLAYBILL_THREADS)]


async def review_and_vote(standin: StandIn, guild: int, path: str = "review-sentiment") -> tuple[dict, dict]:
    review = await standin.slash(guild, path, user=standin.make_user(111, "alice"), text="a great film, I loved it")
    await review.wait("followup")
    [answer] = review.followups.values()
    wrong = answer["components"][0]["components"][1]["custom_id"]
    vote = await standin.click(answer, wrong, user=standin.make_user(222, "bob"))
    await vote.wait("followup")
    [thanks] = vote.followups.values()
    return answer, thanks


async def test_a_host_bot_loads_playbill_with_one_line_and_keeps_its_own_command(settings, standin, guilds) -> None:
    guild = guilds[0]
    async with host(settings, standin, [guild], start_scheduler=False) as bot:
        synced = {c["name"] for c in standin.commands[guild]}
        ping = await standin.slash(guild, "ping")
        pong = await ping.response()
        answer, thanks = await review_and_vote(standin, guild)
        scene = await standin.slash(guild, "write-scene", prompt="ROMEO:", length=200)
        await scene.wait_until(lambda h: any("-# playwright" in m["content"] for m in h.followups.values()))
        shown = await standin.slash(guild, "help")
        listed = (await shown.response())["data"]["embeds"][0]["description"]
        [row] = [r for r in history_rows(bot.get_cog("Playbill").services.history) if r.kind == "sentiment"]
    assert synced == PLAYBILL_COMMANDS | {"ping"}
    assert pong["data"]["content"] == "pong"  # the host's own command still answers
    assert answer["embeds"][0]["title"] == "The critic says: positive"
    assert "noted that the critic was **wrong**" in thanks["content"] and thanks["flags"] & EPHEMERAL
    assert (row.feedback_right, row.feedback_wrong) == (0, 1)
    assert list(scene.followups.values())[0]["content"].startswith("```\nROMEO:")
    assert "/review-sentiment" in listed and "/ping" not in listed  # Playbill's help lists Playbill's commands


async def test_unload_stops_everything_and_reload_serves_again(settings, standin, guilds, monkeypatch) -> None:
    start = scheduler_module.PlaybillBackgroundScheduler.start
    monkeypatch.setattr(scheduler_module.PlaybillBackgroundScheduler, "start",
                        lambda self, *args, **kwargs: start(self, paused=True))  # no real retrain in a test
    guild = guilds[0]
    before = set(threading.enumerate())
    async with host(settings, standin, [guild], start_scheduler=True) as bot:
        first = bot.get_cog("Playbill")
        scheduler = first.services.scheduler
        running = playbill_threads(before)
        with pytest.raises(commands.ExtensionAlreadyLoaded):
            await bot.load_extension("playbill.bot")  # loading twice is refused, nothing doubled

        await bot.unload_extension("playbill.bot")
        left_threads = playbill_threads(before)
        left_tasks = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("playbill-")]
        left_cogs, left_commands = list(bot.cogs), [c.name for c in bot.tree.get_commands()]
        ping = await standin.slash(guild, "ping")
        pong = await ping.response()

        await bot.load_extension("playbill.bot")
        await bot.reload_extension("playbill.bot")
        await bot.sync()
        answer, thanks = await review_and_vote(standin, guild)
        second = bot.get_cog("Playbill")
    assert scheduler is not None and {"sentiment-worker", "schedule-election"} <= {n.split("_")[0] for n in running}
    assert left_threads == [] and left_tasks == [] and multiprocessing.active_children() == []
    assert not scheduler.running
    assert left_cogs == [] and left_commands == ["ping"]  # only the host's own is left
    assert pong["data"]["content"] == "pong"
    assert second is not first and answer["embeds"][0]["title"] == "The critic says: positive"
    assert "noted that the critic was **wrong**" in thanks["content"]
    assert playbill_threads(before) == []  # and after the host's close


async def test_a_group_and_a_guild_allow_list_for_a_host_with_its_own_help(settings, standin, guilds) -> None:
    settings.bot.command_group = "playbill"
    settings.bot.guild_ids = [guilds[0]]
    async with host(settings, standin, guilds, start_scheduler=False, own_help=True):
        allowed = {c["name"] for c in standin.commands[guilds[0]]}
        other = {c["name"] for c in standin.commands[guilds[1]]}
        host_help = await standin.slash(guilds[0], "help")
        answer, thanks = await review_and_vote(standin, guilds[0], "playbill review-sentiment")
        stats = await standin.slash(guilds[0], "playbill admin stats", permissions=ADMINISTRATOR)
        await stats.wait("followup")
        ours = await standin.slash(guilds[0], "playbill help")
        listed = (await ours.response())["data"]["embeds"][0]
    assert allowed == {"ping", "help", "playbill"} and other == {"ping", "help"}
    assert (await host_help.response())["data"]["content"] == "the host's help"
    assert answer["embeds"][0]["title"] == "The critic says: positive" and "wrong" in thanks["content"]
    assert next(iter(stats.followups.values()))["embeds"][0]["title"].startswith("History since")
    assert "`/playbill review-sentiment`" in listed["description"]
    assert "`/playbill admin stats`" in listed["fields"][0]["value"]


async def test_a_command_name_the_host_already_has_is_one_clear_error(settings, standin, guilds) -> None:
    bot = HostBot(guilds[:1], own_help=True)
    playbill.bot.configure(bot, settings=settings, holders=fake_holders(settings), start_scheduler=False)
    before = set(threading.enumerate())
    async with bot:
        with pytest.raises(commands.ExtensionFailed) as failed:
            await bot.load_extension("playbill.bot")
        left = playbill_threads(before)
        kept = [c.name for c in bot.tree.get_commands()]
    assert "already has a /help command: set [bot] command_group" in str(failed.value.original)
    assert left == [] and sorted(kept) == ["help", "ping"]


async def test_the_example_host_bot_in_the_docs_works(settings, standin, guilds, monkeypatch) -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "examples" / "host_bot.py"
    spec = importlib.util.spec_from_file_location("host_bot_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    monkeypatch.setenv("SYNC_GUILD", str(guilds[0]))
    bot = example.HostBot()
    playbill.bot.configure(bot, settings=settings, holders=fake_holders(settings), start_scheduler=False)
    task = asyncio.create_task(bot.start(standin.token))
    try:
        await standin.wait_ready(0)
        ping = await standin.slash(guilds[0], "ping")
        pong = await ping.response()
        answer, _ = await review_and_vote(standin, guilds[0])
    finally:
        await bot.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
    assert pong["data"]["content"] == "pong"
    assert answer["embeds"][0]["title"] == "The critic says: positive"


def _sleep_a_minute() -> None:  # the stand-in warm-up's process body (importable by a spawned child)
    import time

    time.sleep(60)


async def test_unload_stops_the_warm_up_process(settings, standin, guilds, monkeypatch) -> None:
    """The schedule's holder starts the warm-up in a process (jobs.warmup.start_warmup); an unload
    stops it (the next start continues it). A sleeping process stands in for the training."""
    import importlib

    extension = importlib.import_module("playbill.bot.extension")
    start = scheduler_module.PlaybillBackgroundScheduler.start
    monkeypatch.setattr(scheduler_module.PlaybillBackgroundScheduler, "start",
                        lambda self, *args, **kwargs: start(self, paused=True))
    started = []

    def start_warmup(settings):
        process = multiprocessing.get_context("spawn").Process(target=_sleep_a_minute, daemon=True)
        process.start()
        started.append(process)
        return process

    monkeypatch.setattr(extension, "start_warmup", start_warmup)
    async with host(settings, standin, guilds[:1], start_scheduler=True) as bot:
        [warmup] = started
        running = warmup.is_alive()
        await bot.unload_extension("playbill.bot")
        stopped = not warmup.is_alive()
    assert running and stopped


async def test_with_an_allow_list_an_unload_leaves_a_same_named_host_command_elsewhere(settings, standin,
                                                                                        guilds) -> None:
    settings.bot.guild_ids = [guilds[0]]  # Playbill's /help only there; the host's global /help stays its own
    async with host(settings, standin, [], start_scheduler=False, own_help=True) as bot:
        ours = sorted(c.name for c in bot.tree.get_commands(guild=discord.Object(id=guilds[0])))
        await bot.unload_extension("playbill.bot")
        global_after = sorted(c.name for c in bot.tree.get_commands())
        ours_after = [c.name for c in bot.tree.get_commands(guild=discord.Object(id=guilds[0]))]
    assert ours == sorted(PLAYBILL_COMMANDS)
    assert global_after == ["help", "ping"] and ours_after == []
