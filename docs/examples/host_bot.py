"""An existing discord.py bot that adds Playbill with one line (README: "Use Playbill in your own bot").

    pip install playbill            # or: pip install -e . in a checkout
    export DISCORD_TOKEN=...        # this bot's own token
    python docs/examples/host_bot.py

The bot keeps its own /ping; Playbill adds /review-sentiment, /write-scene, /forget-me, /admin
and /help (or, with `[bot] command_group = "playbill"`, /playbill review-sentiment and so on),
with their buttons, the history database, the nightly jobs and the warm-up, all on this bot's
event loop. Playbill reads its settings as the `playbill` command does (./config.toml or
$PLAYBILL_CONFIG, and PLAYBILL_* variables); `playbill.bot.configure` can choose the file.
SYNC_GUILD=<server id> makes this bot sync its commands (Playbill's included) to that server.
"""

from __future__ import annotations

import os

import discord
from discord.ext import commands


class HostBot(commands.Bot):
    def __init__(self) -> None:
        intents = discord.Intents.default()  # whatever the host needs; Playbill itself needs only guilds
        super().__init__(command_prefix="!", intents=intents)

        @self.tree.command(name="ping", description="This bot's own command.")
        async def ping(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("pong")

    async def setup_hook(self) -> None:
        # Optional, before loading: choose Playbill's settings file (else ./config.toml or
        # $PLAYBILL_CONFIG): import playbill.bot; playbill.bot.configure(self, config="playbill.toml").
        await self.load_extension("playbill.bot")  # the one line
        # The host syncs its tree, Playbill's commands included (or set [bot] dev_guild_id and
        # Playbill syncs to that server on load). Syncing is rate-limited: do it when commands change.
        if os.environ.get("SYNC_GUILD"):
            guild = discord.Object(id=int(os.environ["SYNC_GUILD"]))
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)


if __name__ == "__main__":
    HostBot().run(os.environ["DISCORD_TOKEN"])
