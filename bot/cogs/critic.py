"""/review-sentiment: the critic's verdict, with feedback buttons."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from playbill.bot import handlers
from playbill.bot.cogs import DISCORD_TEXT_OPTION_MAX
from playbill.bot.discord_compat import set_option_bounds
from playbill.bot.discord_io import reply, request_from
from playbill.bot.views import feedback_view


class Critic(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        limits = bot.services.holders["sentiment"].limits  # the engine's, shown to Discord's client too
        set_option_bounds(self.review_sentiment, "text", max_value=min(limits.max_chars, DISCORD_TEXT_OPTION_MAX))

    @app_commands.command(name="review-sentiment", description="The critic reads a movie review and says how positive it is.")
    @app_commands.describe(text="The review, as plain text.")
    async def review_sentiment(self, interaction: discord.Interaction, text: app_commands.Range[str, 1, DISCORD_TEXT_OPTION_MAX]) -> None:
        response = await handlers.review_sentiment(
            self.bot.services, request_from(interaction), text, before_work=interaction.response.defer
        )
        view = feedback_view(response.feedback_for) if response.feedback_for else None
        await reply(interaction, response, view=view)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Critic(bot))
