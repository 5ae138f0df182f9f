"""/forget-me: delete the caller's stored history, after a confirmation."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from playbill.bot.discord_io import NO_MENTIONS
from playbill.bot.views import forget_view

QUESTION = (
    "This deletes everything Playbill stored about you: your reviews, prompts, the answers "
    "and your feedback votes, in every server. It cannot be undone. Delete it?"
)


class Privacy(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    @app_commands.command(name="forget-me", description="Delete everything Playbill stored about you (asks first).")
    async def forget_me(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(
            QUESTION, view=forget_view(interaction.user.id), ephemeral=True, allowed_mentions=NO_MENTIONS
        )


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Privacy(bot))
