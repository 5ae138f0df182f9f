"""/admin ...: history, stats, model-status, feedback, retrain, rollback, sync.

Hidden by default from members without Manage Server (a hint server admins can change), and
refused by a real check on every call with the same permission (bot.discord_io.is_admin:
Manage Server or Administrator in the guild, or an owner id). Replies are ephemeral.
"""

from __future__ import annotations

from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from playbill.bot import handlers
from playbill.bot.cogs import MODEL_CHOICES
from playbill.bot.discord_io import (
    NO_MENTIONS,
    NotAdmin,
    NotOwner,
    admin_default_permissions,
    is_admin,
    owner_ids,
    reply,
    request_from,
)
from playbill.engine.errors import InvalidInput


@app_commands.default_permissions(admin_default_permissions())
@app_commands.guild_only()
class Admin(commands.GroupCog, group_name="admin", group_description="Playbill administration (server admins only)."):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if not is_admin(interaction):
            raise NotAdmin("Only server administrators (or Playbill's owners) can use /admin commands.")
        return True

    @app_commands.command(name="history", description="Recent interactions, newest first, with filters.")
    @app_commands.describe(
        user="Only this member's interactions.",
        guild_id="Only this server (its id); default: every server.",
        kind="Only requests to this model.",
        since="From this long ago (7d, 12h) or this date (2026-01-31).",
        until="Up to this date.",
        search="Only prompts containing this text.",
        label="Only sentiment verdicts with this label.",
        limit="How many rows (at most 50).",
    )
    @app_commands.choices(kind=MODEL_CHOICES)
    async def history(
        self,
        interaction: discord.Interaction,
        user: discord.User | None = None,
        guild_id: app_commands.Range[str, 1, 20] | None = None,
        kind: str | None = None,
        since: app_commands.Range[str, 1, 40] | None = None,
        until: app_commands.Range[str, 1, 40] | None = None,
        search: app_commands.Range[str, 1, 200] | None = None,
        label: Literal["positive", "negative"] | None = None,
        limit: app_commands.Range[int, 1, 50] = 10,
    ) -> None:
        if guild_id is not None and not guild_id.isdigit():
            raise InvalidInput("guild_id must be a server id (digits only).")
        await interaction.response.defer(ephemeral=True)
        response = await handlers.admin_history(
            self.bot.services, request_from(interaction), user=user.id if user else None,
            guild=int(guild_id) if guild_id else None, kind=kind, since=since, until=until, search=search,
            label=label, limit=limit,
        )
        await reply(interaction, response)

    @app_commands.command(name="stats", description="History statistics: volume, labels, latency, busiest users.")
    @app_commands.describe(since="From this long ago (7d, 12h) or this date (2026-01-31).")
    async def stats(self, interaction: discord.Interaction, since: app_commands.Range[str, 1, 40] = "7d") -> None:
        await interaction.response.defer(ephemeral=True)
        await reply(interaction, await handlers.admin_stats(self.bot.services, request_from(interaction), since=since))

    @app_commands.command(name="model-status", description="Model versions, metrics, training runs and a chart.")
    async def model_status(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True)
        await reply(interaction, await handlers.model_status(self.bot.services, request_from(interaction)))

    @app_commands.command(name="feedback", description="What the next retrain learns from the votes: labels, caps, trust.")
    async def feedback(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True)
        await reply(interaction, await handlers.admin_feedback(self.bot.services, request_from(interaction)))

    @app_commands.command(name="retrain", description="Queue a retraining run now (it is promoted only if no worse).")
    @app_commands.describe(model="Which model to retrain.")
    @app_commands.choices(model=[*MODEL_CHOICES, app_commands.Choice(name="all", value="all")])
    async def retrain(self, interaction: discord.Interaction, model: str) -> None:
        await interaction.response.defer(ephemeral=True)
        await reply(interaction, await handlers.retrain(self.bot.services, request_from(interaction), model))

    @app_commands.command(name="rollback", description="Serve the model version that was current before the last promotion.")
    @app_commands.describe(model="Which model to roll back.")
    @app_commands.choices(model=MODEL_CHOICES)
    async def rollback(self, interaction: discord.Interaction, model: str) -> None:
        await interaction.response.defer(ephemeral=True)
        await reply(interaction, await handlers.rollback(self.bot.services, request_from(interaction), model))

    @app_commands.command(name="sync", description="Owner only: publish the slash commands to this server or globally.")
    @app_commands.describe(scope="'here': this server at once; 'global': every server (can take up to an hour).")
    async def sync(self, interaction: discord.Interaction, scope: Literal["here", "global"] = "here") -> None:
        if interaction.user.id not in owner_ids(self.bot):
            raise NotOwner("Only Playbill's owners can sync commands.")
        await interaction.response.defer(ephemeral=True)
        if scope == "global":
            synced = await self.bot.tree.sync()
        else:
            guild = discord.Object(id=interaction.guild_id)
            self.bot.tree.copy_global_to(guild=guild)
            synced = await self.bot.tree.sync(guild=guild)
        await interaction.followup.send(
            f"Synced {len(synced)} commands {'globally' if scope == 'global' else 'to this server'}.",
            ephemeral=True, allowed_mentions=NO_MENTIONS,
        )


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Admin(bot))
