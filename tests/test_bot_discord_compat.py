"""bot/discord_compat.py against the installed discord.py: these fail loudly when discord.py
changes what the adapter relies on, before any member sees a wrong option bound."""

from __future__ import annotations

import asyncio

import discord
import pytest
from discord import app_commands

from playbill.bot.discord_compat import set_option_bounds


def make_command() -> app_commands.Command:
    async def write(interaction: discord.Interaction, prompt: app_commands.Range[str, 1, 6000],
                    temperature: float | None = None) -> None:
        pass

    return app_commands.Command(name="write", description="test", callback=write)


def option(command: app_commands.Command, name: str) -> dict:
    return next(o for o in command.to_dict(app_commands.CommandTree(discord.Client(intents=discord.Intents.none())))
                ["options"] if o["name"] == name)


def test_bounds_reach_the_payload_discord_receives() -> None:
    command = make_command()
    set_option_bounds(command, "prompt", max_value=500)
    set_option_bounds(command, "temperature", min_value=0.1, max_value=2.0)
    assert (option(command, "prompt")["min_length"], option(command, "prompt")["max_length"]) == (1, 500)
    assert (option(command, "temperature")["min_value"], option(command, "temperature")["max_value"]) == (0.1, 2.0)


def test_bounds_reach_the_public_parameter_view() -> None:
    command = make_command()
    set_option_bounds(command, "temperature", min_value=0.5, max_value=1.5)
    parameter = command.get_parameter("temperature")
    assert (parameter.min_value, parameter.max_value) == (0.5, 1.5)


def test_a_bound_left_out_is_kept() -> None:
    command = make_command()
    set_option_bounds(command, "prompt", max_value=500)
    assert option(command, "prompt")["min_length"] == 1


def test_an_unknown_option_is_an_error() -> None:
    with pytest.raises(KeyError, match="no option 'colour'"):
        set_option_bounds(make_command(), "colour", max_value=1)


async def test_point_at_sends_rest_and_gateway_to_the_given_discord() -> None:
    """A plain client (which never asks /gateway/bot) reaches a stand-in through point_at alone."""
    import contextlib

    from discord.gateway import DiscordWebSocket
    from discord.http import Route
    from standin import StandIn

    from playbill.bot.discord_compat import point_at

    before = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    async with StandIn(guilds=1) as server:
        try:
            point_at(server.api_base, server.gateway_url)
            client = discord.Client(intents=discord.Intents.none())
            await client.login(server.token)
            task = asyncio.create_task(client.connect())
            try:
                await asyncio.wait_for(client.wait_until_ready(), 15)
                assert {g.id for g in client.guilds} == set(server.guilds)
            finally:
                await client.close()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = before


def test_point_at_none_leaves_discord_py_as_it_is() -> None:
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

    from playbill.bot.discord_compat import point_at

    before = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    point_at(None, None)
    assert (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY) == before


def test_discord_py_still_logs_failed_connections_with_the_message_we_shorten() -> None:
    import inspect

    from playbill.bot.discord_compat import RECONNECT_MESSAGE

    assert f"'{RECONNECT_MESSAGE}'" in inspect.getsource(discord.Client.connect)


def test_a_failed_connection_is_logged_as_one_line() -> None:
    import logging

    from playbill.bot.discord_compat import RECONNECT_MESSAGE, OneLineReconnects

    try:
        raise ConnectionRefusedError("connect call failed")
    except OSError:
        import sys

        record = logging.LogRecord("discord.client", logging.ERROR, __file__, 1, RECONNECT_MESSAGE, (1.5,),
                                   sys.exc_info())
    OneLineReconnects().filter(record)
    text = logging.Formatter("%(message)s").format(record)
    assert text == "Discord's gateway failed (ConnectionRefusedError: connect call failed); reconnecting in 1.50 s"


def test_discord_py_still_logs_a_shards_failed_launch_with_the_message_we_count() -> None:
    import inspect

    from playbill.bot.discord_compat import SHARD_RETRY_MESSAGE

    assert f"'{SHARD_RETRY_MESSAGE}'" in inspect.getsource(discord.AutoShardedClient.launch_shard)


def test_each_failed_connection_is_counted_once() -> None:
    import logging

    from playbill.bot.discord_compat import SHARD_RETRY_MESSAGE, watch_gateway_failures

    seen: list[BaseException] = []
    stop = watch_gateway_failures(seen.append)
    try:
        try:
            raise ConnectionRefusedError("refused")
        except OSError:
            logging.getLogger("discord.shard").error(SHARD_RETRY_MESSAGE, 0, exc_info=True)
    finally:
        stop()
    logging.getLogger("discord.shard").error(SHARD_RETRY_MESSAGE, 1, exc_info=(OSError, OSError("x"), None))
    assert [type(e) for e in seen] == [ConnectionRefusedError]


def test_a_closed_sharded_client_launches_no_more_shards() -> None:
    """discord.py still retries a shard through `self.launch_shard(gateway, shard_id, initial=...)`
    (what StopsLaunchingWhenClosed overrides); a closed client's launch returns at once."""
    import asyncio
    import inspect

    import discord
    import yarl

    from playbill.bot.discord_compat import StopsLaunchingWhenClosed

    assert list(inspect.signature(discord.AutoShardedClient.launch_shard).parameters) == [
        "self", "gateway", "shard_id", "initial"]
    assert "self.launch_shard(" in inspect.getsource(discord.AutoShardedClient.launch_shard)

    class Closed(StopsLaunchingWhenClosed, discord.AutoShardedClient):
        def is_closed(self) -> bool:  # as after close(): discord.py would otherwise retry port 9 every 5 s
            return True

    async def launch_after_close() -> None:
        client = Closed(intents=discord.Intents.none(), shard_count=1)
        await asyncio.wait_for(client.launch_shard(yarl.URL("ws://127.0.0.1:9"), 0), 5)

    asyncio.run(launch_after_close())
