"""The bot: a thin commands.AutoShardedBot that wires services, cogs, dynamic buttons and the scheduler.

Sharded because a bot past 2,500 servers must be: `[bot] shard_count` / `shard_ids` (or
`playbill run --shard-count N --shard-ids 0,1`) run those shards in this process, and several
processes with the same count cover them all (docs/deploy.md). Both unset: every shard Discord
recommends, in this one process (one shard for a small bot, as an unsharded client would run).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from playbill.bot.discord_compat import point_at, watch_gateway_failures
from playbill.bot.discord_io import NO_MENTIONS, http_error_line, report_error, sync_commands
from playbill.bot.errors import describe
from playbill.bot.features import DYNAMIC_ITEMS, feature_cogs
from playbill.bot.services import Services, missing_models_message
from playbill.jobs.leader import ScheduleElection
from playbill.jobs.scheduler import create_scheduler, run_now
from playbill.jobs.warmup import start_warmup
from playbill.settings import BotSettings, Settings

log = logging.getLogger("playbill.bot")


class PlaybillTree(app_commands.CommandTree):
    """The one error handler for every slash command."""

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        await report_error(interaction, error)


class PlaybillBot(commands.AutoShardedBot):
    def __init__(self, settings: Settings, *, services: Services | None = None, load_models: bool = True,
                 start_scheduler: bool = False, sync_on_start: bool = True) -> None:
        point_at(settings.discord_api_base, settings.discord_gateway_url)
        discord.VoiceClient.warn_nacl = False  # Playbill has no voice: no warning about voice libraries
        discord.VoiceClient.warn_dave = False
        intents = discord.Intents.none()
        intents.guilds = True  # slash commands need no message content or member lists
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            allowed_mentions=NO_MENTIONS,
            tree_cls=PlaybillTree,
            help_command=None,
            shard_count=settings.bot.shard_count,
            shard_ids=settings.bot.shard_ids,
        )
        self.settings = settings
        self.owns_services = services is None  # services passed in are closed by whoever made them
        self.services = services if services is not None else Services.create(settings)
        self.load_models = load_models
        self.start_scheduler = start_scheduler
        self.sync_on_start = sync_on_start
        self.app_owner_ids: set[int] = set()
        self.ready_once = False  # READY seen: from then on discord.py reconnects by itself
        self.gateway_failures = 0  # failed gateway connections before the first READY
        self.gave_up: str | None = None  # why the bot stopped trying to connect, if it did
        self.gave_up_event = asyncio.Event()
        self._refresher: asyncio.Task | None = None
        self._election: ScheduleElection | None = None

    async def setup_hook(self) -> None:
        if self.load_models:
            await self.services.refresh_models_async()  # TensorFlow loads in a worker thread
            missing = self.services.missing_models()
            if missing:
                log.warning("%s The other commands work meanwhile.", missing_models_message(missing, self.services.holders))
            self._refresher = asyncio.create_task(self.services.keep_models_fresh(), name="model-refresh")
        await self.add_cogs()
        if self.start_scheduler:
            await self.start_jobs()
        await self._fetch_owners()
        guild_id = self.settings.bot.dev_guild_id
        if self.sync_on_start and guild_id:
            try:
                synced = await sync_commands(self.tree, guild_id)
            except discord.DiscordServerError:
                raise  # Discord is unavailable: `serve` tries again
            except discord.HTTPException as exc:
                raise StartRefused(http_error_line(
                    exc, doing=f"syncing the commands to the development server {guild_id} ([bot] dev_guild_id)")) from None
            log.info("synced %d commands to the development guild %s", len(synced), guild_id)

    async def add_cogs(self) -> None:
        """Add every feature's cog and register the dynamic buttons (no network needed)."""
        for cog in feature_cogs(self.services):
            await self.add_cog(cog)
        self.add_dynamic_items(*DYNAMIC_ITEMS)

    async def _fetch_owners(self) -> None:
        """The application's owners as discord.py counts them (`Bot.is_owner`: the owner, or a
        team's admins and developers, never its read-only members); the settings' owner_ids add to them."""
        try:
            await self.is_owner(self.user)  # discord.py fills owner_id / owner_ids from the application
        except (discord.HTTPException, AttributeError):  # offline (tests) or a hiccup: settings' owners only
            return
        self.app_owner_ids = {self.owner_id} if self.owner_id else set(self.owner_ids or ())

    async def start_jobs(self) -> None:
        """Hold the nightly jobs' schedule in this process whenever no other process does: at once
        if it is free, else by taking over when its holder stops or dies (jobs.leader). The bot
        runs either way."""
        loop = asyncio.get_running_loop()

        def on_promoted(model: str, version: str) -> None:  # a job thread: hand over to the loop
            log.info("retraining promoted %s %s; swapping it in", model, version)
            loop.call_soon_threadsafe(lambda: self.services.spawn(self.services.refresh_models_async()))

        def on_change(scheduler) -> None:  # the election's thread
            self.services.scheduler = scheduler
            if scheduler is not None:  # the schedule's holder also runs the warm-up (one per cluster)
                try:
                    start_warmup(self.settings)
                except Exception as exc:
                    log.warning("the warm-up did not start: %s", describe(exc, context="starting the warm-up")[0])
            log.info("job scheduler %s", "started: this process holds the schedule" if scheduler else "stopped")

        self._election = ScheduleElection(
            self.settings, lambda: create_scheduler(self.settings, background=True, on_promoted=on_promoted),
            on_change, run_now=run_now)
        try:
            await asyncio.to_thread(self._election.start)
        except Exception as exc:
            message, _ = describe(exc, context="starting the job scheduler")
            log.warning("the job scheduler did not start, the bot runs without it: %s", message)
            self._election = None

    def gateway_failed(self, exc: BaseException) -> None:
        """Bound the first connection: discord.py would retry the gateway forever; a bot that has
        never been connected gives up after `[bot] connect_retries` more failures."""
        if self.ready_once or self.gave_up is not None:
            return
        self.gateway_failures += 1
        if self.gateway_failures > self.settings.bot.connect_retries:
            self.gave_up = f"its gateway failed: {type(exc).__name__}: {exc}, {self.gateway_failures} tries"
            self.gave_up_event.set()

    async def on_ready(self) -> None:
        self.ready_once = True
        log.info("logged in as %s (%s) in %d servers on shards %s of %s", self.user, getattr(self.user, "id", "?"),
                 len(self.guilds), ",".join(map(str, sorted(self.shards))), self.shard_count)

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        election, self._election = self._election, None
        if election is not None:
            await asyncio.to_thread(election.stop)  # stops the scheduler, lets go of the schedule
        if self.owns_services:
            self.services.close()
        await super().close()


class StartRefused(Exception):
    """Discord refused something the start needs (its message is one line for a person)."""


class DiscordUnavailable(Exception):
    """Discord could not be reached (5xx answers, connection failures) within the retry schedule."""


RETRYABLE = (discord.DiscordServerError, aiohttp.ClientConnectionError, OSError, asyncio.TimeoutError)


def retry_delays(bot_settings: BotSettings) -> list[float]:
    """Seconds before each retry of the first connection: doubling from connect_backoff_seconds,
    at most connect_backoff_max_seconds, connect_retries of them."""
    base, top = bot_settings.connect_backoff_seconds, bot_settings.connect_backoff_max_seconds
    return [min(base * 2 ** i, top) for i in range(bot_settings.connect_retries)]


def unavailable_reason(exc: BaseException) -> str:
    if isinstance(exc, discord.HTTPException):
        return f"Discord answered {exc.status} {getattr(exc.response, 'reason', '') or ''}".rstrip()
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def serve(settings: Settings, services: Services, token: str, *, start_scheduler: bool,
                stop: asyncio.Event | None = None) -> None:
    """`playbill run`: log in and stay connected until `stop` is set (or the bot is closed). While
    Discord answers 5xx or cannot be reached before the bot first connects, try again with backoff
    (one log line a try), each time with a fresh client; then give up with DiscordUnavailable.
    Once connected, discord.py reconnects by itself."""
    stop = stop or asyncio.Event()
    delays = retry_delays(settings.bot)
    for attempt in range(len(delays) + 1):
        async with PlaybillBot(settings, services=services, start_scheduler=start_scheduler) as bot:
            stop_watching = watch_gateway_failures(bot.gateway_failed)
            running = asyncio.ensure_future(bot.start(token))
            ends = {running, asyncio.ensure_future(bot.gave_up_event.wait()), asyncio.ensure_future(stop.wait())}
            try:
                await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
                if bot.gave_up is not None:
                    raise DiscordUnavailable(bot.gave_up)
                if stop.is_set():
                    await bot.close()
                if running.done():
                    running.result()  # raises what ended the bot, if anything did
                return  # closed on purpose
            except RETRYABLE as exc:
                if bot.ready_once:
                    raise
                reason = unavailable_reason(exc)
            finally:
                stop_watching()
                for task in ends:
                    task.cancel()
                await asyncio.gather(*ends, return_exceptions=True)
        if attempt == len(delays):
            raise DiscordUnavailable(f"{reason}, {attempt + 1} tries")
        log.warning("Discord is unavailable (%s); try %d of %d in %.1f s", reason, attempt + 2, len(delays) + 1,
                    delays[attempt])
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), delays[attempt])
            return  # stopped while waiting to retry
