"""Buttons: feedback on a verdict and the forget-me confirmation, both dynamic items (they survive restarts)."""

from __future__ import annotations

import logging
from typing import Any

import discord

from playbill.bot import handlers
from playbill.bot.discord_io import NO_MENTIONS, reply, report_error, request_from

log = logging.getLogger("playbill.bot.views")

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


FORGET_TEMPLATE = r"playbill:forget:(?P<uid>[0-9]{1,20}):(?P<choice>yes|no)"
NOT_YOURS = "This question is for someone else."
EXPIRED = "This question has expired and nothing was deleted. Run /forget-me again to be asked anew."
CANCELLED = "Nothing was deleted."


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
            if self.choice == "no":
                await interaction.response.edit_message(content=CANCELLED, view=None, allowed_mentions=NO_MENTIONS)
            elif _expired(interaction, interaction.client.services.settings.bot.confirm_seconds):
                await interaction.response.edit_message(content=EXPIRED, view=None, allowed_mentions=NO_MENTIONS)
            else:
                await interaction.response.defer()  # acknowledged before the database; the question stays until done
                response = await handlers.forget_me(interaction.client.services, request_from(interaction))
                await interaction.edit_original_response(content=response.text, view=None,
                                                         allowed_mentions=NO_MENTIONS)
        except Exception as exc:  # buttons do not go through tree.on_error: same handler, by hand
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
