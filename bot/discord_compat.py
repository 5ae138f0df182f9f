"""The one place Playbill reaches into discord.py's private parts, because it has no public API
for them. tests/test_bot_discord_compat.py fails loudly when discord.py changes what is used here.

- Option bounds known only at run time: discord.py reads an option's bounds from the
  callback's annotations when the class is created, but the engine's limits (review length,
  prompt length, scene length, temperature range) come from the settings. The bounds are set
  on a cog's own copy of the command, so Discord's client enforces them before a request is
  sent; the engine still checks every request with the same numbers.
"""

from __future__ import annotations

import dataclasses

import discord
from discord import app_commands


class DiscordChanged(RuntimeError):
    """discord.py no longer looks the way this module expects: update it (and its test)."""


def set_option_bounds(command: app_commands.Command, name: str, *, min_value: int | float | None = None,
                      max_value: int | float | None = None) -> None:
    """Bounds of one option of `command` (for a string option: its length). None leaves a bound as it is."""
    params = getattr(command, "_params", None)
    if not isinstance(params, dict) or not all(dataclasses.is_dataclass(p) for p in params.values()):
        raise DiscordChanged(f"discord.py {discord.__version__} stores command options differently; "
                             "update bot/discord_compat.py")
    if name not in params:
        raise KeyError(f"/{command.qualified_name} has no option {name!r}")
    changes = {k: v for k, v in (("min_value", min_value), ("max_value", max_value)) if v is not None}
    params[name] = dataclasses.replace(params[name], **changes)
