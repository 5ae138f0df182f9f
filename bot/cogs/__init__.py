"""One cog per feature; each module has the `setup(bot)` that discord.py's load_extension calls."""

from __future__ import annotations

import dataclasses

from discord import app_commands

EXTENSIONS = ("bot.cogs.critic", "bot.cogs.playwright", "bot.cogs.privacy", "bot.cogs.admin")


def limit_option(command: app_commands.Command, name: str, *, max_value: int | float) -> None:
    """Set an option's upper bound from the settings on this cog's own copy of the command
    (a string option's max_value is its max_length), so Discord enforces it client-side."""
    params = command._params  # discord.py has no public setter; the tree test checks the payload
    params[name] = dataclasses.replace(params[name], max_value=max_value)
