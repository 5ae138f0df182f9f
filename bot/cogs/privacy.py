"""Privacy: /forget-me (asks first, with buttons that survive restarts) and the console's
/forget-me, in one place. `forget_me` is what it does, for every front end."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from playbill.bot.console_command import ConsoleCommand
from playbill.bot.discord_io import NO_MENTIONS, ReportsOwnErrors, report_error, request_from, services_of
from playbill.bot.messages import Request, Response
from playbill.bot.services import Services

if TYPE_CHECKING:
    from playbill.bot.console import Console

DESCRIPTION = "Delete everything Playbill stored about you (asks first)."
QUESTION = (
    "This deletes everything Playbill stored about you: your reviews, prompts, the answers "
    "and your feedback votes, in every server. It cannot be undone. Delete it?"
)
NOT_YOURS = "This question is for someone else."
EXPIRED = "This question has expired and nothing was deleted. Run /forget-me again to be asked anew."
CANCELLED = "Nothing was deleted."


# --------------------------------------------------------------------------- what it does
@dataclass(frozen=True)
class Forgotten:
    """What was deleted: rows per kind (interactions, feedback votes, ...), as the history counts them."""

    counts: dict[str, int]


async def forget_me(services: Services, request: Request) -> Forgotten:
    return Forgotten(await services.history.forget_user(request.user_id))


def forgotten_response(forgotten: Forgotten) -> Response:
    counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in forgotten.counts.items()) or "nothing was stored"
    return Response(text=f"Done: your stored history is deleted ({counts}).", ephemeral=True)


# --------------------------------------------------------------------------- on Discord
FORGET_TEMPLATE = r"playbill:forget:(?P<uid>[0-9]{1,20}):(?P<choice>yes|no)"


class ForgetButton(discord.ui.DynamicItem[discord.ui.Button], template=FORGET_TEMPLATE):
    """'Yes, delete' / 'Cancel' under the /forget-me question. Its state is the custom_id (who
    asked) and the question's own message (when it was asked), so a press is answered after a
    restart too, and a press after `[bot] confirm_seconds` is told the question expired (the
    buttons are removed); no press ever meets "This interaction failed"."""

    def __init__(self, user_id: int, choice: str) -> None:
        yes = choice == "yes"
        super().__init__(
            discord.ui.Button(
                label="Yes, delete my history" if yes else "Cancel",
                style=discord.ButtonStyle.danger if yes else discord.ButtonStyle.secondary,
                custom_id=f"playbill:forget:{user_id}:{choice}",
            )
        )
        self.user_id = user_id
        self.choice = choice

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: Any, /) -> ForgetButton:
        return cls(int(match["uid"]), match["choice"])

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self.user_id:
            await interaction.response.send_message(NOT_YOURS, ephemeral=True, allowed_mentions=NO_MENTIONS)
            return False
        return True

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            services = services_of(interaction.client)
            if self.choice == "no":
                await interaction.response.edit_message(content=CANCELLED, view=None, allowed_mentions=NO_MENTIONS)
            elif _expired(interaction, services.settings.bot.confirm_seconds):
                await interaction.response.edit_message(content=EXPIRED, view=None, allowed_mentions=NO_MENTIONS)
            else:
                await interaction.response.defer()  # acknowledged before the database; the question stays until done
                done = forgotten_response(await forget_me(services, request_from(interaction)))
                await interaction.edit_original_response(content=done.text, view=None, allowed_mentions=NO_MENTIONS)
        except Exception as exc:  # buttons do not go through the command tree's error handler
            await report_error(interaction, exc)


def _expired(interaction: discord.Interaction, seconds: float) -> bool:
    """Was the question (the message under the button) asked more than `seconds` ago?"""
    asked = interaction.message.created_at if interaction.message is not None else None
    return asked is None or (discord.utils.utcnow() - asked).total_seconds() > seconds


def forget_view(user_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ForgetButton(user_id, "yes"))
    view.add_item(ForgetButton(user_id, "no"))
    return view


class Privacy(ReportsOwnErrors, commands.Cog):
    def __init__(self, services: Services) -> None:
        self.services = services

    @app_commands.command(name="forget-me", description=DESCRIPTION)
    async def forget_me(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(
            QUESTION, view=forget_view(interaction.user.id), ephemeral=True, allowed_mentions=NO_MENTIONS
        )


COG = Privacy
DYNAMIC_ITEMS = (ForgetButton,)


# --------------------------------------------------------------------------- at the console
async def _console_forget(console: Console, rest: str) -> None:
    """The person at the terminal typed the command on purpose: no second question."""
    console.show(forgotten_response(await forget_me(console.services, console.request)))


CONSOLE = (ConsoleCommand("/forget-me", "", "Delete your stored history.", _console_forget),)
