"""The real PlaybillBot against the Discord stand-in (tests/standin): real REST and gateway
traffic on 127.0.0.1, nothing of discord.py patched but its two base URLs. Fake models (no
TensorFlow), the real history database."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from bot.client import PlaybillBot
from bot.recording import HistoryGateway
from bot.services import Services
from bot.testing import engine_refusal, fake_holders, history_rows
from standin import StandIn

@pytest.fixture
async def standin():
    async with StandIn(guilds=1) as server:
        with server.point_discord_py():
            yield server


@contextlib.asynccontextmanager
async def running(settings, standin: StandIn, *, publish: bool = True):
    """`playbill run` in this process: the bot logs in, syncs to the development guild and
    connects to the gateway; it is closed afterwards."""
    settings.bot.cooldown_seconds = 0
    settings.bot.stream_edit_interval = 0.0
    settings.bot.dev_guild_id = next(iter(standin.guilds))
    services = Services.create(settings, holders=fake_holders(settings, sentiment=publish, scene=publish),
                               history=HistoryGateway.open(settings.database_url))
    services.refresh_models()
    bot = PlaybillBot(settings, services=services, load_models=False)
    task = asyncio.create_task(bot.start(standin.token))
    try:
        await standin.wait_ready(0)
        yield bot
    finally:
        await bot.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


async def test_review_is_deferred_answered_with_buttons_and_never_pings(settings, standin) -> None:
    guild = next(iter(standin.guilds))
    async with running(settings, standin) as bot:
        review = await standin.slash(guild, "review-sentiment", user=standin.make_user(901, "ann"),
                                     text="@everyone a great film, I loved it")
        await review.wait("followup")
        [row] = history_rows(bot.services.history)
    assert review.kinds() == ["response", "followup"]
    assert review.events[0][1]["type"] == 5  # deferred: the model answers off the event loop
    [answer] = review.followups.values()
    assert answer["embeds"][0]["title"] == "The critic says: positive"
    buttons = [c["custom_id"] for c in answer["components"][0]["components"]]
    assert buttons == [f"playbill:fb:{row.id}:right", f"playbill:fb:{row.id}:wrong"]
    assert standin.pings(answer) == {"users": [], "roles": [], "everyone": False}


async def test_a_feedback_button_works_after_the_bot_restarts(settings, standin) -> None:
    guild = next(iter(standin.guilds))
    async with running(settings, standin):
        review = await standin.slash(guild, "review-sentiment", text="boring and bad")
        await review.wait("followup")
    [answer] = review.followups.values()
    async with running(settings, standin, publish=False) as restarted:  # a new process: nothing in memory
        vote = await standin.click(answer, answer["components"][0]["components"][1]["custom_id"],
                                   user=standin.make_user(222, "bob"))
        await vote.wait("followup")
        [row] = history_rows(restarted.services.history)
    assert (row.feedback_right, row.feedback_wrong) == (0, 1)
    [thanks] = vote.followups.values()
    assert "noted that the critic was **wrong**" in thanks["content"]


async def test_a_refusal_is_an_ephemeral_reply_with_the_engines_message(settings, standin) -> None:
    guild = next(iter(standin.guilds))
    async with running(settings, standin) as bot:
        refused = await standin.slash(guild, "write-scene", prompt="ROMEO:", temperature=7.5)
        response = await refused.response()
        limits = bot.services.holders["scene"].limits
    assert response["type"] == 4  # answered at once, nothing deferred
    assert response["data"]["flags"] & 64  # ephemeral
    assert response["data"]["content"] == engine_refusal(limits.check_temperature, 7.5)


async def test_a_scene_streams_into_edited_messages_within_discords_limits(settings, standin) -> None:
    guild = next(iter(standin.guilds))
    async with running(settings, standin):
        scene = await standin.slash(guild, "write-scene", prompt="ROMEO:", length=600)
        await scene.wait_until(lambda h: any("-# playwright" in (m.get("content") or "")
                                             for m in h.followups.values()))
    assert scene.refused == []  # Discord accepted every message and edit
    [message] = scene.followups.values()
    assert message["content"].startswith("```\nROMEO:") and "-# playwright v0001" in message["content"]
