"""One cog per feature; each module has the `setup(bot)` that discord.py's load_extension calls."""

from __future__ import annotations

from discord import app_commands

from playbill.engine.models import MODEL_NAMES

EXTENSIONS = ("playbill.bot.cogs.critic", "playbill.bot.cogs.playwright", "playbill.bot.cogs.privacy", "playbill.bot.cogs.admin", "playbill.bot.cogs.help")

MODEL_CHOICES = [app_commands.Choice(name=name, value=name) for name in MODEL_NAMES]  # from the one spec list
DISCORD_TEXT_OPTION_MAX = 6000  # Discord's own limit for a string option's length
