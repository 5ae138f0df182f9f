"""`playbill run`'s bot: a thin commands.AutoShardedBot that loads Playbill's extension, as any
host bot would, and `serve`, which keeps its first connection to Discord within bounds.

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
from discord.ext import commands

from playbill import metrics
from playbill.bot.discord_compat import StopsLaunchingWhenClosed, point_at, watch_gateway_failures
from playbill.bot.discord_io import NO_MENTIONS, http_error_line, playbill_of
from playbill.bot.extension import Playbill, configure
from playbill.bot.services import Services
from playbill.engine.serving import ModelHolder
from playbill.history.identify import IdentifyTurns, IdentifyTurnUnavailable
from playbill.jobs.leader import on_server_database
from playbill.settings import BotSettings, Settings

log = logging.getLogger("playbill.bot")


EXTENSION = "playbill.bot"  # what `playbill run` loads, as any host bot would


class PlaybillBot(StopsLaunchingWhenClosed, commands.AutoShardedBot):
    """`playbill run`: a bot of its own that loads Playbill's extension (the one path; see
    playbill.bot.extension), and bounds its first connection to Discord."""

    def __init__(self, settings: Settings, *, holders: dict[str, ModelHolder] | None = None, load_models: bool = True,
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
            help_command=None,
            shard_count=settings.bot.shard_count,
            shard_ids=settings.bot.shard_ids,
        )
        self.settings = settings
        configure(self, settings=settings, holders=holders, load_models=load_models,
                  start_scheduler=start_scheduler, sync_on_start=sync_on_start)
        self.ready_once = False  # READY seen: from then on discord.py reconnects by itself
        self.gateway_failures = 0  # failed gateway connections before the first READY
        self.gave_up: str | None = None  # why the bot stopped trying to connect, if it did
        self.gave_up_event = asyncio.Event()
        self._playbill: Playbill | None = None
        # On a server database every process of the fleet takes its identify turns there (history.identify)
        self.identify_turns = IdentifyTurns(settings.database_url) if on_server_database(settings.database_url) else None
        self.max_concurrency: int | None = None  # Discord's, asked once (GET /gateway/bot)

    async def setup_hook(self) -> None:
        try:
            await self.load_extension(EXTENSION)
        except commands.ExtensionFailed as exc:
            raise start_error(exc.original, self.settings) from None
        self._playbill = playbill_of(self)

    @property
    def playbill(self) -> Playbill:
        """The extension's running parts (services, owners, scheduler); after a close, as they were."""
        return self._playbill

    @property
    def services(self) -> Services:
        return self.playbill.services

    @property
    def app_owner_ids(self) -> set[int]:
        return self.playbill.app_owner_ids

    def gateway_failed(self, exc: BaseException) -> None:
        """Bound the first connection: discord.py would retry the gateway forever; a bot that has
        never been connected gives up after `[bot] connect_retries` more failures."""
        if self.ready_once or self.gave_up is not None:
            return
        self.gateway_failures += 1
        if self.gateway_failures > self.settings.bot.connect_retries:
            self.gave_up = f"its gateway failed: {type(exc).__name__}: {exc}, {self.gateway_failures} tries"
            self.gave_up_event.set()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py calls this before each IDENTIFY. On a server database: wait for this
        shard's bucket turn (`shard_id % max_concurrency`, one IDENTIFY per 5 s across every
        process; history.identify), so processes started together are never refused. On SQLite
        (one process), or if the database gives no turn: discord.py's own spacing."""
        if self.identify_turns is None:
            return await super().before_identify_hook(shard_id, initial=initial)
        if self.max_concurrency is None:
            try:
                _, _, limits = await self.http.get_bot_gateway()
                self.max_concurrency = max(1, int(limits.get("max_concurrency") or 1))
            except (discord.HTTPException, discord.GatewayNotFound, aiohttp.ClientError, ValueError, TypeError):
                self.max_concurrency = 1  # the strictest: one bucket
        bucket = (shard_id or 0) % self.max_concurrency
        try:
            waited = await asyncio.to_thread(self.identify_turns.take, bucket, f"shard {shard_id}")
        except IdentifyTurnUnavailable as exc:
            log.warning("shard %s: no identify turn from the database (%s); spacing identifies in this process only",
                        shard_id, exc)
            return await super().before_identify_hook(shard_id, initial=initial)
        metrics.observe_identify_wait(waited)
        log.info("shard %s identifies (bucket %d of %d, waited %.1f s for its turn)", shard_id, bucket,
                 self.max_concurrency, waited)

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            if self.identify_turns is not None:
                self.identify_turns.close()

    async def on_ready(self) -> None:
        self.ready_once = True
        log.info("logged in as %s (%s) in %d servers on shards %s of %s", self.user, getattr(self.user, "id", "?"),
                 len(self.guilds), ",".join(map(str, sorted(self.shards))), self.shard_count)


def start_error(error: BaseException, settings: Settings) -> BaseException:
    """What a failed extension start means for `playbill run`: Discord unavailable (retried by
    `serve`), a refused sync (one line), or the error as it is."""
    if isinstance(error, RETRYABLE):
        return error
    if isinstance(error, discord.HTTPException):
        return StartRefused(http_error_line(error, doing=f"syncing the commands to the development server "
                                                         f"{settings.bot.dev_guild_id} ([bot] dev_guild_id)"))
    return error


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


async def serve(settings: Settings, token: str, *, holders: dict[str, ModelHolder] | None = None,
                start_scheduler: bool, stop: asyncio.Event | None = None) -> None:
    """`playbill run`: log in and stay connected until `stop` is set (or the bot is closed). While
    Discord answers 5xx or cannot be reached before the bot first connects, try again with backoff
    (one log line a try), each time with a fresh client; then give up with DiscordUnavailable.
    Once connected, discord.py reconnects by itself."""
    stop = stop or asyncio.Event()
    delays = retry_delays(settings.bot)
    for attempt in range(len(delays) + 1):
        async with PlaybillBot(settings, holders=holders, start_scheduler=start_scheduler) as bot:
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
