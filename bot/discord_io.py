"""Adapting the features' plain requests and responses to discord.py interactions.

Every send and edit goes through here, with AllowedMentions.none(): no reply can ping.
`report_error` is the one error path for commands, buttons and views.
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from playbill.bot.errors import describe
from playbill.bot.messages import EmbedData, Request, Response

if TYPE_CHECKING:
    from playbill.bot.extension import Playbill
    from playbill.bot.services import Services

log = logging.getLogger("playbill.bot.discord")

NO_MENTIONS = discord.AllowedMentions.none()


class NotAdmin(app_commands.CheckFailure):
    """Raised by the admin commands' check; its message is shown to the member."""


class NotOwner(app_commands.CheckFailure):
    pass


ADMIN_PERMISSION = "manage_guild"  # what makes a Playbill admin in a server (Administrator implies it)


def admin_default_permissions() -> discord.Permissions:
    """/admin's default member permissions: exactly who `is_admin` admits by permission."""
    return discord.Permissions(**{ADMIN_PERMISSION: True})


def is_admin(interaction: discord.Interaction) -> bool:
    """Manage Server (or Administrator) in this guild, or an owner from the settings/app."""
    if interaction.user.id in owner_ids(interaction.client):
        return True
    if interaction.guild_id is None:
        return False
    perms = interaction.permissions
    return bool(perms.administrator or getattr(perms, ADMIN_PERMISSION))


CORE_COG = "Playbill"  # the cog that holds Playbill's running parts in a bot (bot.extension.Playbill)


def playbill_of(client: Any) -> Playbill:
    """Playbill's running parts in the bot an interaction reached (buttons are built by
    discord.py from their custom_id, and find Playbill through the client)."""
    playbill = client.get_cog(CORE_COG)
    if playbill is None:
        raise RuntimeError("Playbill is not loaded in this bot")
    return playbill


def services_of(client: Any) -> Services:
    return playbill_of(client).services


def owner_ids(client: Any) -> set[int]:
    """Owners from the settings and from Discord's application info."""
    return playbill_of(client).owner_ids


class ReportsOwnErrors:
    """Mixed into every feature cog: its commands' errors are answered by `report_error`, so
    Playbill needs nothing of a host's tree (whose default `on_error` stays silent for commands
    that have their own handler)."""

    async def cog_app_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        await report_error(interaction, error)


def request_from(interaction: discord.Interaction) -> Request:
    user = interaction.user
    return Request(
        source="discord",
        user_id=user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        display_name=user.display_name,
        is_admin=is_admin(interaction),
    )


def to_embed(data: EmbedData) -> discord.Embed:
    embed = discord.Embed(title=data.title[:256], description=data.description[:4096] or None, colour=data.colour)
    for f in data.fields[:25]:
        embed.add_field(name=f.name[:256], value=f.value[:1024] or "-", inline=f.inline)
    if data.footer:
        embed.set_footer(text=data.footer[:2048])
    return embed


def send_kwargs(response: Response, *, view: discord.ui.View | None = None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"allowed_mentions": NO_MENTIONS, "ephemeral": response.ephemeral}
    if response.text:
        kwargs["content"] = response.text[:2000]
    if response.embed is not None:
        kwargs["embed"] = to_embed(response.embed)
    if response.files:
        kwargs["files"] = [discord.File(io.BytesIO(f.data), filename=f.filename) for f in response.files]
    if view is not None:
        kwargs["view"] = view
    return kwargs


async def reply(interaction: discord.Interaction, response: Response, *, view: discord.ui.View | None = None) -> None:
    """Answer the interaction: the first response, or a follow-up after a defer."""
    kwargs = send_kwargs(response, view=view)
    if interaction.response.is_done():
        await interaction.followup.send(**kwargs)
    else:
        await interaction.response.send_message(**kwargs)


async def sync_commands(tree: app_commands.CommandTree, guild_id: int | None) -> list[app_commands.AppCommand]:
    """Publish the tree's slash commands: to one server at once (the global ones copied there),
    or globally with `guild_id` None (Discord can take up to an hour to show them). The one sync,
    for the start (`[bot] dev_guild_id`), `/admin sync` and `playbill sync-commands`."""
    if guild_id is None:
        return await tree.sync()
    guild = discord.Object(id=guild_id)
    tree.copy_global_to(guild=guild)
    return await tree.sync(guild=guild)


def http_error_line(exc: discord.HTTPException, *, doing: str) -> str:
    """One line for a person at the command line: what Discord refused, and what to do."""
    if exc.status == 403 and exc.code == 50001:
        return (f"Discord refused {doing}: 403 Missing Access: the bot is not in that server, or was invited "
                "without the applications.commands scope. Invite it with the bot and applications.commands "
                "scopes (Discord developer portal, OAuth2 URL generator) and try again.")
    reason = getattr(exc.response, "reason", "") or ""
    detail = " ".join(str(exc.text or "").split())
    code = f" (code {exc.code})" if exc.code else ""
    return f"Discord refused {doing}: {exc.status} {reason}{code}" + (f": {detail[:300]}" if detail else "")


def error_message(error: BaseException) -> str:
    """The short text a member sees for any error (unexpected ones get a logged error id)."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command works only in a server."
    if isinstance(error, (NotAdmin, NotOwner)):
        return str(error)
    if isinstance(error, app_commands.MissingPermissions):
        return "You need the " + ", ".join(p.replace("_", " ").title() for p in error.missing_permissions) + " permission."
    if isinstance(error, app_commands.CheckFailure):
        return "You cannot use this command here."
    if isinstance(error, app_commands.TransformerError):
        return f"That value does not fit the option: {discord.utils.escape_mentions(str(error.value))[:100]}"
    message, _ = describe(error, context=_where(error))
    return message


def _where(error: BaseException) -> str:
    command = getattr(error, "command", None)
    return f"/{command.qualified_name}" if command is not None else ""


async def report_error(interaction: discord.Interaction, error: BaseException) -> None:
    """Reply with a short, ephemeral message; never raise from here."""
    text = error_message(error)
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        else:
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
    except discord.HTTPException:
        log.warning("could not send an error reply: %s", text, exc_info=True)
