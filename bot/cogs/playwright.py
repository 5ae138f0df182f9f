"""/write-scene: a scene streamed into the channel, edited about once a second."""

from __future__ import annotations

import time

import discord
from discord import app_commands
from discord.ext import commands

from playbill.bot import handlers
from playbill.bot import text as fmt
from playbill.bot.cogs import DISCORD_TEXT_OPTION_MAX
from playbill.bot.discord_compat import set_option_bounds
from playbill.bot.discord_io import NO_MENTIONS, request_from

CURSOR = " \N{LEFT HALF BLACK CIRCLE}"
MAX_MESSAGES = 4  # a scene never floods a channel; the rest is trimmed with a note
TRIMMED = "\n-# (trimmed: the scene was longer than Discord allows here)"


class Playwright(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        limits = bot.services.holders["scene"].limits  # the engine's, shown to Discord's client too
        set_option_bounds(self.write_scene, "prompt", max_value=min(limits.max_prompt_chars, DISCORD_TEXT_OPTION_MAX))
        set_option_bounds(self.write_scene, "length", max_value=limits.max_length)
        set_option_bounds(self.write_scene, "temperature", min_value=limits.min_temperature,
                          max_value=limits.max_temperature)

    @app_commands.command(name="write-scene", description="The playwright writes a scene from your opening words.")
    @app_commands.describe(
        prompt="The opening words, e.g. ROMEO: (plain letters and punctuation).",
        length="Characters to write (default from the settings).",
        temperature="Boldness, from careful (low) to wild (high); default from the settings.",
    )
    async def write_scene(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, DISCORD_TEXT_OPTION_MAX],
        length: app_commands.Range[int, 1, None] | None = None,
        temperature: float | None = None,
    ) -> None:
        services = self.bot.services
        out = StreamedMessages(interaction)
        interval = services.settings.bot.stream_edit_interval
        last = 0.0
        async for update in handlers.write_scene(
            services, request_from(interaction), prompt, length, temperature, before_work=interaction.response.defer
        ):
            if update.done:
                footer = f"\n-# playwright {update.model_version}" if update.model_version else ""
                await out.show(update.text, footer=footer)
            elif time.monotonic() - last >= interval:
                await out.show(update.text + CURSOR)
                last = time.monotonic()


class StreamedMessages:
    """The scene as a series of messages: the first follow-up replaces the deferred "thinking"
    response, more follow-ups come as the scene grows. Each `show` edits only the messages
    whose text changed, so one tick costs one edit."""

    def __init__(self, interaction: discord.Interaction, limit: int = fmt.MESSAGE_LIMIT) -> None:
        self.interaction = interaction
        self.limit = limit
        self.shown: list[str] = []
        self.messages: list[discord.WebhookMessage] = []

    async def show(self, scene: str, footer: str = "") -> None:
        pieces = fmt.scene_messages(scene, self.limit - len(footer) - len(TRIMMED))
        if len(pieces) > MAX_MESSAGES:
            pieces = pieces[:MAX_MESSAGES]
            footer = TRIMMED + footer
        pieces[-1] += footer
        for i, piece in enumerate(pieces):
            if i < len(self.shown):
                if self.shown[i] != piece:
                    await self.messages[i].edit(content=piece, allowed_mentions=NO_MENTIONS)
                    self.shown[i] = piece
            else:
                message = await self.interaction.followup.send(piece, wait=True, allowed_mentions=NO_MENTIONS)
                self.messages.append(message)
                self.shown.append(piece)
        while len(self.shown) > len(pieces):  # the final text came out shorter than the stream
            self.shown.pop()
            await self.messages.pop().delete()


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Playwright(bot))
