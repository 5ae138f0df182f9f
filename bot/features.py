"""The one list of Playbill's features (bot/cogs/*.py), in the order their commands are shown,
and what the front ends collect from it: the cogs, the dynamic buttons, the console's commands."""

from __future__ import annotations

from discord.ext import commands

from playbill.bot.cogs import admin, critic, help, playwright, privacy
from playbill.bot.console_command import ConsoleCommand
from playbill.bot.services import Services

FEATURES = (critic, playwright, privacy, admin, help)

CONSOLE_COMMANDS: tuple[ConsoleCommand, ...] = tuple(c for f in FEATURES for c in f.CONSOLE)
DYNAMIC_ITEMS = tuple(item for f in FEATURES for item in f.DYNAMIC_ITEMS)


def feature_cogs(services: Services) -> list[commands.Cog]:
    """One cog per feature, over the same services."""
    return [f.COG(services) for f in FEATURES]
