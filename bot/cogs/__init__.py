"""The bot sliced by feature: one module per feature (critic, playwright, privacy, admin, help),
each with what the feature does (for every front end), its cog (`COG`), its dynamic buttons
(`DYNAMIC_ITEMS`) and its console commands with their help lines (`CONSOLE`). The one list of
them is `playbill.bot.features.FEATURES`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from discord import app_commands

from playbill.engine.models import MODEL_NAMES

MODEL_CHOICES = [app_commands.Choice(name=name, value=name) for name in MODEL_NAMES]  # from the one spec list
DISCORD_TEXT_OPTION_MAX = 6000  # Discord's own limit for a string option's length

BeforeWork = Callable[[], Awaitable[Any]] | None
"""Called once the quick checks passed, before the slow work (Discord: defer the interaction)."""

