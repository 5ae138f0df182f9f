"""Help: /help on Discord, read from Playbill's commands as the tree holds them, and the console's
/help, generated from the console's command table; neither list is written by hand, so neither
can drift."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from playbill.bot.console_command import ConsoleCommand
from playbill.bot.discord_io import ReportsOwnErrors, playbill_of, reply
from playbill.bot.messages import EmbedData, Field, Response
from playbill.bot.services import Services

if TYPE_CHECKING:
    from playbill.bot.console import Console

DESCRIPTION = "What Playbill can do: every command, in one short list."


def command_lines(commands_: list[app_commands.Command | app_commands.Group]) -> list[tuple[str, str]]:
    """(`/name sub`, description) for every command and subcommand, in the given order."""
    lines: list[tuple[str, str]] = []
    for command in commands_:
        children = command.walk_commands() if isinstance(command, app_commands.Group) else [command]
        children = [c for c in children if isinstance(c, app_commands.Command)]  # not the groups themselves
        lines.extend((f"/{c.qualified_name}", c.description) for c in children)
    return lines


class Help(ReportsOwnErrors, commands.Cog):
    def __init__(self, services: Services) -> None:
        self.services = services

    @app_commands.command(name="help", description=DESCRIPTION)
    async def help(self, interaction: discord.Interaction) -> None:
        lines = command_lines(playbill_of(interaction.client).top_commands())  # Playbill's, not the host's
        admin = [(n, d) for n, d in lines if "admin" in n.split()[:-1]]  # /admin x, or /<group> admin x
        members = [line for line in lines if line not in admin]
        embed = EmbedData(title="Playbill: the critic and the playwright",
                          description="\n".join(f"`{n}` {d}" for n, d in members))
        if admin:
            embed.fields.append(Field("For server admins", "\n".join(f"`{n}` {d}" for n, d in admin), inline=False))
        await reply(interaction, Response(embed=embed, ephemeral=True))


COG = Help
DYNAMIC_ITEMS = ()


async def _console_help(console: Console, rest: str) -> None:
    console.say(console.help_text())


async def _console_quit(console: Console, rest: str) -> None:
    console.done = True


CONSOLE = (
    ConsoleCommand("/help", "", DESCRIPTION, _console_help),
    ConsoleCommand("/quit", "", "Leave (end of input works too; /exit too).", _console_quit),
    ConsoleCommand("/exit", "", "", _console_quit),  # an alias: not in the help
)
