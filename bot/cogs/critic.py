"""The critic: /review-sentiment, its right/wrong buttons and the console's /review-sentiment and
/feedback ID right|wrong, in one place.

`review_sentiment` and `vote` are what the feature does, for every front end (they return
structured results; `verdict_response` / `vote_response` say them to a person). Each request is
recorded in the history with its latency and model version, answered or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from playbill.bot import text as fmt
from playbill.bot.cogs import DISCORD_TEXT_OPTION_MAX, BeforeWork
from playbill.bot.console_command import ConsoleCommand
from playbill.bot.discord_compat import set_option_bounds
from playbill.bot.discord_io import ReportsOwnErrors, reply, report_error, request_from, services_of
from playbill.bot.errors import Busy
from playbill.bot.messages import EmbedData, Field, Request, Response
from playbill.bot.services import Services
from playbill.engine.errors import InvalidInput
from playbill.engine.sentiment import ReviewRequest
from playbill.history.models import VERDICTS

if TYPE_CHECKING:
    from playbill.bot.console import Console

DESCRIPTION = "The critic reads a movie review and says how positive it is."
POSITIVE, NEGATIVE, MIXED = 0x2ECC71, 0xE74C3C, 0xF1C40F


# --------------------------------------------------------------------------- what it does
@dataclass(frozen=True)
class Verdict:
    """The critic's answer to one review. `interaction_id` is its history row (what a vote is
    about), None when the database did not answer in time (no buttons then)."""

    text: str
    label: str
    positive_probability: float
    model_version: str | None
    interaction_id: int | None
    mixed: bool = False  # too close to call (the engine's calibrated band): `label` is only where it leans

    def leaning(self) -> str:
        """'leans positive, 56%' (the probability of the label it leans to)."""
        p = self.positive_probability if self.label == "positive" else 1.0 - self.positive_probability
        return f"leans {self.label}, {p:.0%}"


async def review_sentiment(services: Services, request: Request, text: str, *,
                           before_work: BeforeWork = None) -> Verdict:
    """The critic's verdict on one review. Quick refusals (the engine's check, a full queue, the
    cooldown) come before `before_work` (Discord: defer), so they can still be ephemeral."""
    record = services.record(request, "sentiment", text, {})
    worker = services.sentiment_worker
    try:
        review = worker.check(ReviewRequest(text))
        if not worker.has_room():
            raise Busy("The critic")
        services.cooldowns.hit(request.user_id, "review-sentiment")
        if before_work is not None:
            await before_work()
        answer, version = await worker.predict(review)
    except BaseException as exc:
        record.failed(exc)
        raise
    label, p = str(answer.label), float(answer.positive_probability)
    interaction_id = await record.done(output=label, label=label, probability=p, model_version=version)
    return Verdict(text, label, p, version, interaction_id, bool(getattr(answer, "mixed", False)))


def verdict_response(verdict: Verdict) -> Response:
    embed = EmbedData(
        title=f"The critic says: mixed ({verdict.leaning()})" if verdict.mixed else f"The critic says: {verdict.label}",
        description=fmt.quote_block(verdict.text, 1000),
        colour=MIXED if verdict.mixed else POSITIVE if verdict.label == "positive" else NEGATIVE,
        fields=[Field("Positive", f"`{fmt.bar(verdict.positive_probability)}`"),
                Field("Model", f"sentiment {verdict.model_version}")],
        footer="Was the critic right? Your vote helps it learn." if verdict.interaction_id else "",
    )
    return Response(embed=embed)


@dataclass(frozen=True)
class Vote:
    """A member's vote on a verdict; `outcome` is the history's: created, updated or unchanged."""

    interaction_id: int
    verdict: str
    outcome: str


async def vote(services: Services, request: Request, interaction_id: int, verdict: str) -> Vote:
    """One vote per member per verdict, changeable; a verdict asked in another server is refused."""
    if verdict not in VERDICTS:
        raise InvalidInput(f"verdict must be one of {', '.join(VERDICTS)}")
    outcome = await services.history.record_feedback(interaction_id, request.user_id, verdict, request.guild_id)
    return Vote(interaction_id, verdict, outcome)


def vote_response(vote: Vote) -> Response:
    other = next(v for v in VERDICTS if v != vote.verdict)
    if vote.outcome == "unchanged":
        text = f"You already said the critic was **{vote.verdict}**. Changed your mind? Press \"{other}\"."
    else:
        changed = "Changed your vote: " if vote.outcome == "updated" else "Thanks! "
        text = f"{changed}noted that the critic was **{vote.verdict}**. Changed your mind? Press \"{other}\"."
    return Response(text=text, ephemeral=True)


# --------------------------------------------------------------------------- on Discord
FEEDBACK_TEMPLATE = rf"playbill:fb:(?P<iid>[0-9]{{1,19}}):(?P<verdict>{'|'.join(VERDICTS)})"


class FeedbackButton(discord.ui.DynamicItem[discord.ui.Button], template=FEEDBACK_TEMPLATE):
    """'right' / 'wrong' under a verdict. All its state is in the custom_id (the history row
    and the verdict), so buttons on old messages keep working after the bot restarts."""

    def __init__(self, interaction_id: int, verdict: str) -> None:
        right = verdict == "right"
        super().__init__(
            discord.ui.Button(
                label=verdict,
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
            counted = await vote(services_of(interaction.client), request_from(interaction),
                                 self.interaction_id, self.verdict)
            await reply(interaction, vote_response(counted))
        except Exception as exc:  # buttons do not go through the command tree's error handler
            await report_error(interaction, exc)


def feedback_view(interaction_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for verdict in VERDICTS:
        view.add_item(FeedbackButton(interaction_id, verdict))
    return view


class Critic(ReportsOwnErrors, commands.Cog):
    def __init__(self, services: Services) -> None:
        self.services = services
        limits = services.holders["sentiment"].limits  # the engine's, shown to Discord's client too
        set_option_bounds(self.review_sentiment, "text", max_value=min(limits.max_chars, DISCORD_TEXT_OPTION_MAX))

    @app_commands.command(name="review-sentiment", description=DESCRIPTION)
    @app_commands.describe(text="The review, as plain text.")
    async def review_sentiment(self, interaction: discord.Interaction,
                               text: app_commands.Range[str, 1, DISCORD_TEXT_OPTION_MAX]) -> None:
        verdict = await review_sentiment(self.services, request_from(interaction), text,
                                         before_work=interaction.response.defer)
        view = feedback_view(verdict.interaction_id) if verdict.interaction_id else None
        await reply(interaction, verdict_response(verdict), view=view)


COG = Critic
DYNAMIC_ITEMS = (FeedbackButton,)


# --------------------------------------------------------------------------- at the console
async def _console_review(console: Console, rest: str) -> None:
    verdict = await review_sentiment(console.services, console.request, rest)
    console.show(verdict_response(verdict))
    if verdict.interaction_id:
        console.say(f"(right or wrong? /feedback {verdict.interaction_id} {'|'.join(VERDICTS)})")


async def _console_vote(console: Console, rest: str) -> None:
    parts = rest.split()
    if len(parts) != 2 or not parts[0].isdigit() or parts[1] not in VERDICTS:
        raise InvalidInput(f"usage: /feedback ID {'|'.join(VERDICTS)} (the id is shown under each verdict)")
    console.show(vote_response(await vote(console.services, console.request, int(parts[0]), parts[1])))


CONSOLE = (
    ConsoleCommand("/review-sentiment", "TEXT", DESCRIPTION, _console_review),
    ConsoleCommand("/feedback", f"ID {'|'.join(VERDICTS)}", "Tell the critic whether its verdict ID was right.",
                   _console_vote, takes_arguments=True),
)
