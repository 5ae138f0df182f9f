"""Playbill as a discord.py extension: `await bot.load_extension("playbill.bot")` in any
`commands.Bot` gives it the critic and the playwright, their buttons, the history, the nightly
jobs and the warm-up; `playbill run` is a bot of its own that loads the same extension.

`setup(bot)` reads the settings (`configure`'s, else the file and environment as `playbill`
reads them), opens the history database (an SQLite one brought to head, a server database
whose schema is behind refused with a warning, as the standalone bot does), loads the models
in a thread, starts the inference workers, the model refresh, the schedule election (whose
holder runs the warm-up), and adds one cog per feature and the dynamic buttons to the host's
tree: under `[bot] command_group` when it is set, for `[bot] guild_ids` when set. The host's
other commands, checks and error handler are left alone: Playbill's commands report their own
errors (each cog's `cog_app_command_error`). Commands are synced only to `[bot] dev_guild_id`
when it is set; otherwise the host syncs its tree as it does for its own commands.

`teardown(bot)` stops all of it (workers joined, scheduler and warm-up stopped, tasks
cancelled) and removes what setup added; discord.py has removed the cogs and their commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from playbill import metrics
from playbill.bot.discord_io import CORE_COG, sync_commands
from playbill.bot.errors import describe
from playbill.bot.features import DYNAMIC_ITEMS, feature_cogs
from playbill.bot.health import watch_client, watch_services
from playbill.bot.services import Services, missing_models_message, open_history
from playbill.engine.serving import ModelHolder
from playbill.history.model_store import use_model_store
from playbill.jobs.leader import ScheduleElection
from playbill.jobs.scheduler import create_scheduler, run_now
from playbill.jobs.warmup import learning, start_warmup
from playbill.settings import Settings, load_settings

log = logging.getLogger("playbill.bot")

OPTIONS_ATTRIBUTE = "playbill_options"  # where `configure` leaves the host's choices on its bot
STOP_SECONDS = 5.0  # how long an unload waits for history rows still being written
GROUP_DESCRIPTION = "Playbill: the critic and the playwright."


@dataclass(frozen=True)
class Options:
    """What the host chose for the next load (see `configure`)."""

    settings: Settings | None = None
    config: Path | None = None
    holders: dict[str, ModelHolder] | None = None
    load_models: bool = True
    start_scheduler: bool = True
    sync_on_start: bool = True


def configure(bot: commands.Bot, *, settings: Settings | None = None, config: str | Path | None = None,
              holders: dict[str, ModelHolder] | None = None, load_models: bool = True,
              start_scheduler: bool = True, sync_on_start: bool = True) -> None:
    """Choose, before `load_extension("playbill.bot")`, what the extension starts with: `settings`
    (a `playbill.settings.Settings`) or `config` (the settings file's path; the environment still
    applies); by default the file and environment as the `playbill` command reads them.
    `start_scheduler=False` leaves the nightly jobs and the warm-up to another process (`playbill
    scheduler`); `sync_on_start=False` never syncs, even with `[bot] dev_guild_id`. `holders` and
    `load_models` are for `playbill run` and tests (models already loaded, or none needed). The
    choice stays with the bot, so a reload starts the same way."""
    setattr(bot, OPTIONS_ATTRIBUTE, Options(settings, Path(config) if config is not None else None, holders,
                                            load_models, start_scheduler, sync_on_start))


class Playbill(commands.Cog, name=CORE_COG):
    """Playbill's running parts inside one bot: the services every feature uses, the model
    refresh, the schedule election and the warm-up, the application's owners, and what was
    added to the host's command tree. Its own commands: none."""

    def __init__(self, bot: commands.Bot, services: Services, options: Options) -> None:
        self.bot = bot
        self.services = services
        self.settings = services.settings
        self.options = options
        self.app_owner_ids: set[int] = set()
        self.group: app_commands.Group | None = None  # [bot] command_group, once placed
        self.features: list[commands.Cog] = []  # one cog per feature
        self._added: list[commands.Cog] = []  # the cogs added to the bot (without a group)
        self._guilds = [discord.Object(id=g) for g in self.settings.bot.guild_ids or ()]
        self._refresher: asyncio.Task | None = None
        self._election: ScheduleElection | None = None
        self._warmup: BaseProcess | None = None
        self._stopped = False
        self._unwatch: list[Callable[[], None]] = []  # metrics and readiness (bot.health)
        self._heartbeat: asyncio.Task | None = None

    # ------------------------------------------------------------------ start
    async def start(self) -> None:
        self.watch_health()
        if self.options.load_models:
            await self.services.refresh_models_async()  # TensorFlow loads in a worker thread
            missing = [name for name in self.services.missing_models()
                       if await asyncio.to_thread(learning, self.settings, name) is None]  # not a first start's
            if missing:
                log.warning("%s The other commands work meanwhile.", missing_models_message(missing, self.services.holders))
            self._refresher = asyncio.create_task(self.services.keep_models_fresh(), name="playbill-model-refresh")
        if self.options.start_scheduler:
            await self._start_jobs()
        await self.learn_owners()

    def watch_health(self) -> None:
        """Metrics and readiness of this process (`[metrics] port`): its services and shards, and
        the event loop's heartbeat for /healthz."""
        self._unwatch = [watch_services(self.services), watch_client(self.bot)]
        self._heartbeat = asyncio.get_running_loop().create_task(metrics.keep_heartbeat(), name="playbill-heartbeat")

    async def _start_jobs(self) -> None:
        """Hold the nightly jobs' schedule in this process whenever no other process does: at once
        if it is free, else by taking over when its holder stops or dies (jobs.leader). The bot
        runs either way; the holder also runs the warm-up (one per cluster)."""
        loop = asyncio.get_running_loop()
        services = self.services

        def on_promoted(model: str, version: str) -> None:  # a job thread: hand over to the loop
            log.info("retraining promoted %s %s; swapping it in", model, version)
            loop.call_soon_threadsafe(lambda: services.spawn(services.refresh_models_async()))

        def on_change(scheduler: Any) -> None:  # the election's thread
            services.scheduler = scheduler
            if scheduler is not None and not self._stopped:
                try:
                    self._warmup = start_warmup(self.settings) or self._warmup
                except Exception as exc:
                    log.warning("the warm-up did not start: %s", describe(exc, context="starting the warm-up")[0])
            log.info("job scheduler %s", "started: this process holds the schedule" if scheduler else "stopped")

        election = ScheduleElection(
            self.settings, lambda: create_scheduler(self.settings, background=True, on_promoted=on_promoted),
            on_change, run_now=run_now)
        try:
            await asyncio.to_thread(election.start)
        except Exception as exc:
            message, _ = describe(exc, context="starting the job scheduler")
            log.warning("the job scheduler did not start, the bot runs without it: %s", message)
        else:
            self._election = election

    async def learn_owners(self) -> None:
        """The application's owners as discord.py counts them (`Bot.is_owner`: the owner, or a
        team's admins and developers, never its read-only members); `[bot] owner_ids` add to
        them. Asked once logged in (at once when loaded into a running bot, else on ready)."""
        if self.app_owner_ids or self.bot.user is None:
            return
        try:
            await self.bot.is_owner(self.bot.user)  # discord.py fills owner_id / owner_ids from the application
        except (discord.HTTPException, AttributeError):  # offline or a hiccup: the settings' owners only
            return
        self.app_owner_ids = {self.bot.owner_id} if self.bot.owner_id else set(self.bot.owner_ids or ())

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        await self.learn_owners()

    @property
    def owner_ids(self) -> set[int]:
        return set(self.settings.bot.owner_ids) | self.app_owner_ids

    # ------------------------------------------------------------------ the host's tree
    async def add_features(self) -> None:
        """One cog per feature and the dynamic buttons. The commands go to `[bot] guild_ids` only
        when that is set; with `[bot] command_group`, under one group: then the features'
        commands (still bound to their cogs, which answer their errors) are the group's, and
        only the group is added to the tree, so no name of the host's can clash with ours."""
        where = {"guilds": self._guilds} if self._guilds else {}
        self.features = feature_cogs(self.services)
        group_name = self.settings.bot.command_group
        if group_name:
            group = app_commands.Group(name=group_name, description=GROUP_DESCRIPTION)
            for cog in self.features:
                for command in top_level(cog):
                    group.add_command(command)
            try:
                self.bot.tree.add_command(group, **where)
            except app_commands.CommandAlreadyRegistered as exc:
                raise CommandNameTaken(exc.name, grouped=True) from None
            self.group = group
        else:
            for cog in self.features:
                try:
                    await self.bot.add_cog(cog, **where)
                except app_commands.CommandAlreadyRegistered as exc:
                    raise CommandNameTaken(exc.name) from None
                self._added.append(cog)
        self.bot.add_dynamic_items(*DYNAMIC_ITEMS)

    def top_commands(self) -> list[app_commands.Command | app_commands.Group]:
        """Playbill's commands at the tree's top level, in the features' order."""
        if self.group is not None:
            return [self.group]
        return [command for cog in self.features for command in top_level(cog)]

    async def sync_on_start(self) -> None:
        """`[bot] dev_guild_id` set: publish the commands there at once (an HTTP error propagates:
        the host, or `playbill run`, says what Discord refused)."""
        guild_id = self.settings.bot.dev_guild_id
        if self.options.sync_on_start and guild_id:
            synced = await sync_commands(self.bot.tree, guild_id)
            log.info("synced %d commands to the development guild %s", len(synced), guild_id)

    # ------------------------------------------------------------------ stop
    async def stop(self) -> None:
        """Stop everything `start` started; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        for unwatch in self._unwatch:
            unwatch()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
        election, self._election = self._election, None
        if election is not None:
            await asyncio.to_thread(election.stop)  # stops the scheduler, lets go of the schedule
        warmup, self._warmup = self._warmup, None
        if warmup is not None and warmup.is_alive():  # the next start continues it
            warmup.terminate()
            await asyncio.to_thread(warmup.join, 10)
        await self.services.aclose(STOP_SECONDS)

    async def cog_unload(self) -> None:
        """discord.py's unload (and a bot's close) removes this cog first: Playbill stops here."""
        await self.remove_from(self.bot)
        await self.stop()

    async def remove_from(self, bot: commands.Bot) -> None:
        """Take out of the host's bot what `add_features` put in: the cogs (from the guilds they
        were added to, so a host's command of the same name elsewhere stays), the group, the
        dynamic buttons."""
        where = {"guilds": self._guilds} if self._guilds else {}
        while self._added:
            await bot.remove_cog(self._added.pop().__cog_name__, **where)
        if self.group is not None:
            for guild in self._guilds or [None]:
                bot.tree.remove_command(self.group.name, guild=guild)
            self.group = None
        bot.remove_dynamic_items(*DYNAMIC_ITEMS)


def top_level(cog: commands.Cog) -> list[app_commands.Command | app_commands.Group]:
    """A cog's commands at the top of a tree: a GroupCog's group, or its commands."""
    return [cog.app_command] if cog.app_command is not None else cog.get_app_commands()


class CommandNameTaken(ValueError):
    def __init__(self, name: str, *, grouped: bool = False) -> None:
        what = "another [bot] command_group" if grouped else "[bot] command_group (for example \"playbill\")"
        super().__init__(f"the bot already has a /{name} command: set {what} to put Playbill's commands under one")


async def setup(bot: commands.Bot) -> None:
    options = getattr(bot, OPTIONS_ATTRIBUTE, None) or Options()
    settings = options.settings or load_settings(options.config)
    use_model_store(settings)  # the models folder's registries: files, or the database (history.model_store)
    services = Services.create(settings, holders=options.holders, history=open_history(settings))
    playbill = Playbill(bot, services, options)
    try:
        await playbill.start()
        await bot.add_cog(playbill)
        await playbill.add_features()
        await playbill.sync_on_start()
    except BaseException:
        with contextlib.suppress(Exception):
            await playbill.remove_from(bot)
        await playbill.stop()
        raise


async def teardown(bot: commands.Bot) -> None:
    """After discord.py removed Playbill's cogs (the core cog's unload stopped everything) and
    their commands: what may be left after a failed setup."""
    playbill = bot.get_cog(CORE_COG)
    if playbill is not None:
        await bot.remove_cog(CORE_COG)
    bot.remove_dynamic_items(*DYNAMIC_ITEMS)
