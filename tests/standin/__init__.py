"""A stand-in for Discord that the real discord.py client talks to over real sockets.

    from standin import StandIn          # tests/ is on sys.path under pytest
    async with StandIn(guilds=4) as discord, discord.point_discord_py():
        client = discord_py.AutoShardedClient(intents=..., shard_ids=[0, 1], shard_count=2)
        ...
        handle = await discord.slash(guild_id, "review", text="Great film")
        body = await handle.response()

``python -m tests.standin --port 8765`` runs one by itself for manual tries. server.py serves
(gateway and REST), records.py holds what it keeps (logs, sessions, interaction handles),
schema.py has Discord's validation rules.
"""

from .records import (
    ADMINISTRATOR,
    APPLICATION_COMMAND,
    MEMBER_PERMISSIONS,
    MESSAGE_COMPONENT,
    Call,
    DiscordError,
    Fault,
    Frame,
    InteractionHandle,
    Session,
    shard_of,
    snowflake,
)
from .process import BotProcess, bot_process
from .server import StandIn

__all__ = [
    "ADMINISTRATOR",
    "APPLICATION_COMMAND",
    "MEMBER_PERMISSIONS",
    "MESSAGE_COMPONENT",
    "BotProcess",
    "Call",
    "DiscordError",
    "Fault",
    "Frame",
    "InteractionHandle",
    "Session",
    "StandIn",
    "bot_process",
    "shard_of",
    "snowflake",
]
