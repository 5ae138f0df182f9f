"""The one place Playbill reaches into discord.py's private parts, because it has no public API
for them. tests/test_bot_discord_compat.py fails loudly when discord.py changes what is used here.

- Option bounds known only at run time: discord.py reads an option's bounds from the
  callback's annotations when the class is created, but the engine's limits (review length,
  prompt length, scene length, temperature range) come from the settings. The bounds are set
  on a cog's own copy of the command, so Discord's client enforces them before a request is
  sent; the engine still checks every request with the same numbers.
- Where Discord is: discord.py has no setting for its REST base or its gateway URL (a plain or
  explicitly sharded client always connects to `DiscordWebSocket.DEFAULT_GATEWAY`, also after an
  INVALID_SESSION), so a proxy or a test stand-in is reached by setting both class attributes.
- Reconnect logs: discord.py logs every failed gateway connection ("Attempting a reconnect in
  %.2fs", or "Failed to connect for shard_id" at a shard's launch, retried every 5 s without end)
  with a full traceback, and says so nowhere else; Playbill keeps each to one line naming the
  error, and counts them to give up on a first connection that never succeeds.
- A closed bot stops launching shards: `AutoShardedClient.launch_shard` retries a failed shard
  connection every 5 s without end, also after `close()`, and a cancellation that meets a
  connection failing at the same moment is taken for that failure (Python 3.11's `wait_for`),
  so `start()` of a bot closed while a shard was failing could run forever.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route


class DiscordChanged(RuntimeError):
    """discord.py no longer looks the way this module expects: update it (and its test)."""


def set_option_bounds(command: app_commands.Command, name: str, *, min_value: int | float | None = None,
                      max_value: int | float | None = None) -> None:
    """Bounds of one option of `command` (for a string option: its length). None leaves a bound as it is."""
    params = getattr(command, "_params", None)
    if not isinstance(params, dict) or not all(dataclasses.is_dataclass(p) for p in params.values()):
        raise DiscordChanged(f"discord.py {discord.__version__} stores command options differently; "
                             "update bot/discord_compat.py")
    if name not in params:
        raise KeyError(f"/{command.qualified_name} has no option {name!r}")
    changes = {k: v for k, v in (("min_value", min_value), ("max_value", max_value)) if v is not None}
    params[name] = dataclasses.replace(params[name], **changes)


def point_at(api_base: str | None, gateway_url: str | None) -> None:
    """Send discord.py's REST calls to `api_base` and its gateway connections to `gateway_url`
    (each None: leave discord.py's own). Process-wide, set before login."""
    if not isinstance(getattr(Route, "BASE", None), str) or not isinstance(
            getattr(DiscordWebSocket, "DEFAULT_GATEWAY", None), yarl.URL):
        raise DiscordChanged(f"discord.py {discord.__version__} keeps its base URLs elsewhere; "
                             "update bot/discord_compat.py")
    if api_base:
        Route.BASE = api_base.rstrip("/")
    if gateway_url:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


RECONNECT_MESSAGE = "Attempting a reconnect in %.2fs"  # discord.client's line for a failed connection
SHARD_RETRY_MESSAGE = "Failed to connect for shard_id: %s. Retrying..."  # discord.shard's, at a shard's launch
RECONNECT_LOGGERS = ("discord.client", "discord.shard")


class OneLineReconnects(logging.Filter):
    """discord.py's records of a failed gateway connection with the error in their text, not a
    traceback; `on_failure(exc)` is told of each (a bot counts them before it first connects)."""

    def __init__(self, on_failure: Callable[[BaseException], None] | None = None) -> None:
        super().__init__()
        self.on_failure = on_failure

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in (RECONNECT_MESSAGE, SHARD_RETRY_MESSAGE) and record.exc_info and record.exc_info[1]:
            exc = record.exc_info[1]
            error = f"{type(exc).__name__}: {exc}".replace("%", "%%")
            then = "reconnecting in %.2f s" if record.msg == RECONNECT_MESSAGE else "shard %s retries in 5 s"
            record.msg = f"Discord's gateway failed ({error}); {then}"
            record.exc_info, record.exc_text = None, None
            if self.on_failure is not None:
                self.on_failure(exc)
        return True


def watch_gateway_failures(on_failure: Callable[[BaseException], None] | None = None) -> Callable[[], None]:
    """Install a OneLineReconnects on discord.py's client and shard loggers; returns its removal."""
    watcher = OneLineReconnects(on_failure)
    loggers = [logging.getLogger(name) for name in RECONNECT_LOGGERS]
    for logger in loggers:
        logger.addFilter(watcher)

    def remove() -> None:
        for logger in loggers:
            logger.removeFilter(watcher)

    return remove


class StopsLaunchingWhenClosed:
    """Mixed in before `discord.AutoShardedClient`: a closed client launches no more shards
    (discord.py's retry calls `self.launch_shard` again, so the check meets every retry)."""

    async def launch_shard(self, gateway: yarl.URL, shard_id: int, *, initial: bool = False) -> None:
        if self.is_closed():  # type: ignore[attr-defined]
            return
        await super().launch_shard(gateway, shard_id, initial=initial)  # type: ignore[misc]
