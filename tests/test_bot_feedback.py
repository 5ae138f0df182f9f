"""/admin feedback (and /feedback alone at the console): what the next retrain learns, in short."""

from __future__ import annotations

import io

import pytest

from playbill.bot.cogs import admin, critic
from playbill.bot.errors import NotAllowed
from playbill.bot.console import console_member, run_console
from playbill.bot.messages import Request

ADMIN = Request(source="discord", user_id=1, guild_id=5, is_admin=True)


async def vote(services, member: int, text: str, verdict: str) -> None:
    voter = Request(source="discord", user_id=member, guild_id=5)
    answer = await critic.review_sentiment(services, voter, text)
    await services.drain()
    await critic.vote(services, voter, answer.interaction_id, verdict)


async def test_admin_feedback_shows_the_corrections_and_who_was_capped(services) -> None:
    services.settings.jobs.feedback_member_cap = 2
    for i in range(4):
        await vote(services, 666, f"A great film @everyone number {i}", "wrong")
    response = await admin.feedback(services, ADMIN)
    corrections = next(f for f in response.embed.fields if f.name.startswith("Corrections"))
    assert "member 666: 4 vote(s), capped on 1 night(s), each vote down to 0.50" in response.embed.description
    assert corrections.name == "Corrections (4)" and "@everyone" not in corrections.value


async def test_admin_feedback_is_for_admins_only(services) -> None:
    with pytest.raises(NotAllowed):
        await admin.feedback(services, Request(source="discord", user_id=2, guild_id=5))


async def test_the_console_shows_it_for_feedback_without_arguments(services, settings) -> None:
    await vote(services, 7, "A great film", "wrong")
    out = io.StringIO()
    await run_console(settings, io.StringIO("/feedback\n"), out, services=services, member=console_member(9, "Ada"))
    assert "1 settled (1 correct the critic)" in out.getvalue()
