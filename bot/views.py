"""Buttons: feedback on a verdict (survives restarts) and the forget-me confirmation."""

from __future__ import annotations

import logging
from typing import Any

import discord

from bot import handlers
from bot.discord_io import NO_MENTIONS, reply, report_error, request_from

log = logging.getLogger("bot.views")

FEEDBACK_TEMPLATE = r"playbill:fb:(?P<iid>[0-9]{1,19}):(?P<verdict>right|wrong)"


class FeedbackButton(discord.ui.DynamicItem[discord.ui.Button], template=FEEDBACK_TEMPLATE):
    """'right' / 'wrong' under a verdict. All its state is in the custom_id (the history row
    and the verdict), so buttons on old messages keep working after the bot restarts."""

    def __init__(self, interaction_id: int, verdict: str) -> None:
        right = verdict == "right"
        super().__init__(
            discord.ui.Button(
                label="right" if right else "wrong",
                emoji="\N{THUMBS UP SIGN}" if right else "\N{THUMBS DOWN SIGN}",
                style=discord.ButtonStyle.success if right else discord.ButtonStyle.danger,
                custom_id=f"playbill:fb:{interaction_id}:{verdict}",
            )
        )
        self.interaction_id = interaction_id
        self.verdict = verdict

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: Any, /) -> FeedbackButton:
        return cls(int(match["iid"]), match["verdict"])

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)  # acknowledged before the database
            response = await handlers.give_feedback(
                interaction.client.services, request_from(interaction), self.interaction_id, self.verdict
            )
            await reply(interaction, response)
        except Exception as exc:  # buttons do not go through tree.on_error: same handler, by hand
            await report_error(interaction, exc)


def feedback_view(interaction_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(FeedbackButton(interaction_id, "right"))
    view.add_item(FeedbackButton(interaction_id, "wrong"))
    return view


class ConfirmForget(discord.ui.View):
    """Asks before /forget-me deletes anything; only the member who asked can press it."""

    def __init__(self, user_id: int, *, timeout: float = 120.0) -> None:
        super().__init__(timeout=timeout)
        self.user_id = user_id
        self.outcome: str | None = None

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self.user_id:
            await interaction.response.send_message(
                "This question is for someone else.", ephemeral=True, allowed_mentions=NO_MENTIONS
            )
            return False
        return True

    @discord.ui.button(label="Yes, delete my history", style=discord.ButtonStyle.danger)
    async def confirm(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.outcome = "confirmed"
        self.stop()
        await interaction.response.defer()  # acknowledged before the database; the question stays until done
        response = await handlers.forget_me(interaction.client.services, request_from(interaction))
        await interaction.edit_original_response(content=response.text, view=None, allowed_mentions=NO_MENTIONS)

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary)
    async def cancel(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.outcome = "cancelled"
        self.stop()
        await interaction.response.edit_message(content="Nothing was deleted.", view=None, allowed_mentions=NO_MENTIONS)

    async def on_error(self, interaction: discord.Interaction, error: Exception, item: discord.ui.Item) -> None:
        await report_error(interaction, error)
