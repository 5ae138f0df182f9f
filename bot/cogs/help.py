"""/help: every slash command with its description, read from the command tree itself (so the
list can never drift from what Discord shows), as one ephemeral embed."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from playbill.bot.discord_io import reply
from playbill.bot.messages import EmbedData, Field, Response


def command_lines(tree: app_commands.CommandTree) -> list[tuple[str, str]]:
    """(`/name sub`, description) for every command and subcommand, in the tree's order."""
    lines: list[tuple[str, str]] = []
    for command in tree.get_commands(type=discord.AppCommandType.chat_input):
        children = command.walk_commands() if isinstance(command, app_commands.Group) else [command]
        lines.extend((f"/{c.qualified_name}", c.description) for c in children)
    return lines


class Help(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    @app_commands.command(name="help", description="What Playbill can do: every command, in one short list.")
    async def help(self, interaction: discord.Interaction) -> None:
        lines = command_lines(self.bot.tree)
        members = [(n, d) for n, d in lines if not n.startswith("/admin ")]
        admin = [(n, d) for n, d in lines if n.startswith("/admin ")]
        embed = EmbedData(title="Playbill: the critic and the playwright",
                          description="\n".join(f"`{n}` {d}" for n, d in members))
        if admin:
            embed.fields.append(Field("For server admins", "\n".join(f"`{n}` {d}" for n, d in admin), inline=False))
        await reply(interaction, Response(embed=embed, ephemeral=True))


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Help(bot))
