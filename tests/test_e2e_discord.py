"""End to end: `playbill run`, the real CLI in its own process with real (tiny) models and SQLite,
against the Discord stand-in over real sockets on 127.0.0.1. Nothing of Playbill is patched: the
process only gets the stand-in's base URLs and token in its environment. Members run every
command and press buttons as Discord delivers them; the assertions read what Discord received.

One bot process serves most checks (a module-scoped fixture); a restart, a start through 503s and
a start that gives up each take one more, short-lived process."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
import pytest_asyncio

from fakes import train_tiny_scene, train_tiny_sentiment
from standin import ADMINISTRATOR, StandIn, bot_process

pytestmark = pytest.mark.asyncio(loop_scope="module")

PLAYBILL = str(Path(sys.executable).with_name("playbill"))
OWNER = 42
MANAGE_GUILD = 1 << 5
SEND_MESSAGES = 1 << 11
DEFERRED, ANSWERED, DEFERRED_UPDATE, UPDATE_MESSAGE = 5, 4, 6, 7
EPHEMERAL = 64
NOBODY = {"users": [], "roles": [], "everyone": False}
CONTENT_LIMIT, EMBED_TOTAL_LIMIT = 2000, 6000
WAIT = 60  # seconds a check may wait for the bot (a busy 2-core machine); nothing timed is asserted
checked: list = []  # every interaction handle a test made, for the wire checks at the end


@pytest.fixture(scope="module")
def playbill_home(tmp_path_factory) -> Path:
    """A PLAYBILL_HOME with a tiny real critic and playwright, trained once for the module."""
    home = tmp_path_factory.mktemp("e2e") / "home"
    work = home.parent / "work"
    train_tiny_sentiment(home, work / "sentiment")
    train_tiny_scene(home, work / "scene")
    no_data = home.parent / "no-data"  # the data folder holds a broken IMDB archive: a retrain fails at
    no_data.mkdir()                     # once, downloading nothing
    (no_data / "aclImdb_v1.tar.gz").write_bytes(b"not an archive")
    return home


def bot_env(home: Path, guild: int, **extra: str) -> dict[str, str]:
    return {
        "PLAYBILL_HOME": str(home),
        "PLAYBILL_DATA_DIR": str(home.parent / "no-data"),  # a queued retrain fails fast, no download
        "PLAYBILL_BOT__DEV_GUILD_ID": str(guild),  # synced on start
        "PLAYBILL_BOT__COOLDOWN_SECONDS": "0",
        "PLAYBILL_BOT__STREAM_EDIT_INTERVAL": "0.001",
        "PLAYBILL_BOT__CONNECT_BACKOFF_SECONDS": "0.1",
        "PLAYBILL_SCENE__STREAM_CHUNK_CHARS": "10",
        "PLAYBILL_SCENE__STOP_AT_BOUNDARY": "false",  # the whole length, streamed in many pieces
        "PLAYBILL_LOG_LEVEL": "INFO",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **extra,
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def discord():
    async with StandIn(guilds=1, owner_id=OWNER, response_deadline_s=30.0) as server:
        yield server
    assert server.unserved == []  # the bot called no route Discord lacks


@pytest.fixture(scope="module")
def guild(discord) -> int:
    return next(iter(discord.guilds))


async def started(discord: StandIn, bot) -> None:
    """Wait until the bot synced its commands and its shard is ready; fail with its output if not."""
    try:
        await discord.wait_until(lambda: discord.commands, timeout=WAIT)
        await discord.wait_ready(0, timeout=WAIT)
    except asyncio.TimeoutError:
        pytest.fail(f"the bot did not start:\n{bot.output}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bot(discord, guild, playbill_home):
    async with bot_process(discord, PLAYBILL, "run", env=bot_env(playbill_home, guild),
                           cwd=playbill_home.parent) as process:
        await started(discord, process)
        yield process


def member(discord: StandIn, user_id: int = 111) -> dict:
    return discord.make_user(user_id, f"user{user_id}")


def track(handle):
    checked.append(handle)
    return handle


async def slash(discord, guild, path, **kwargs):
    return track(await discord.slash(guild, path, **kwargs))


async def click(discord, message, custom_id, **kwargs):
    return track(await discord.click(message, custom_id, **kwargs))


async def answer_of(handle) -> dict:
    """What the member finally sees: the follow-up after a defer, else the response itself."""
    response = await handle.response(timeout=WAIT)
    if response["type"] == DEFERRED:
        await handle.wait("followup", timeout=WAIT) if not handle.followups else None
        return next(iter(handle.followups.values()))
    return response["data"]


async def ephemeral_refusal(handle) -> dict:
    response = await handle.response(timeout=WAIT)
    assert (response["type"], response["data"]["flags"] & EPHEMERAL) == (ANSWERED, EPHEMERAL)
    return response["data"]


def buttons(message: dict) -> list[str]:
    return [c["custom_id"] for row in message.get("components", []) for c in row["components"]]


# --------------------------------------------------------------------------- start and sync
async def test_run_syncs_every_command_to_the_development_guild(discord, bot, guild) -> None:
    payload = {c["name"]: c for c in discord.commands[guild]}
    assert set(payload) == {"review-sentiment", "write-scene", "forget-me", "admin", "help"}
    assert int(payload["admin"]["default_member_permissions"]) == MANAGE_GUILD


async def test_the_bot_identifies_without_privileged_intents(discord, bot) -> None:
    [identify] = discord.frames_of(2)[:1]
    assert identify.d["intents"] & ((1 << 1) | (1 << 8) | (1 << 15)) == 0  # members, presences, message content


# --------------------------------------------------------------------------- member commands
async def test_review_sentiment_is_deferred_then_answered_with_buttons(discord, bot, guild) -> None:
    review = await slash(discord, guild, "review-sentiment", user=member(discord),
                         text="@everyone a wonderful film, superb acting <@42>")
    answer = await answer_of(review)
    assert (await review.response())["type"] == DEFERRED
    assert answer["embeds"][0]["title"] in ("The critic says: positive", "The critic says: negative")
    assert [b.rsplit(":", 1)[1] for b in buttons(answer)] == ["right", "wrong"], bot.output


async def test_a_feedback_vote_is_thanked_privately(discord, bot, guild) -> None:
    review = await slash(discord, guild, "review-sentiment", user=member(discord), text="boring and dull")
    answer = await answer_of(review)
    vote = await click(discord, answer, buttons(answer)[1], user=member(discord, 222))
    thanks = await answer_of(vote)
    assert "noted that the critic was **wrong**" in thanks["content"]
    assert thanks["flags"] & EPHEMERAL == EPHEMERAL


async def test_write_scene_streams_edits_within_discords_limit(discord, bot, guild) -> None:
    scene = await slash(discord, guild, "write-scene", user=member(discord), prompt="ROMEO:", length=2000)
    await scene.wait_until(lambda h: any("-# playwright" in m["content"] for m in h.followups.values()),
                           timeout=WAIT)
    sent = [body.get("content", "") for kind, body in scene.events if kind in ("followup", "edit_followup")]
    assert scene.kinds().count("edit_followup") >= 2  # the message grew as the scene was written
    assert max(len(text) for text in sent) <= CONTENT_LIMIT
    assert len(scene.followups) >= 2  # longer than one message: split, never cut by Discord
    assert list(scene.followups.values())[0]["content"].startswith("```\nROMEO:")


async def test_help_lists_every_command(discord, bot, guild) -> None:
    shown = await ephemeral_refusal(await slash(discord, guild, "help", user=member(discord)))
    text = json.dumps(shown["embeds"])
    assert all(f"/{name}" in text for name in ("review-sentiment", "write-scene", "forget-me", "admin history",
                                               "admin sync", "help"))


async def test_forget_me_cancel_then_confirm(discord, bot, guild) -> None:
    user = member(discord, 333)
    await answer_of(await slash(discord, guild, "review-sentiment", user=user, text="great fun"))
    first = await slash(discord, guild, "forget-me", user=user)
    no = buttons(await ephemeral_refusal(first))[1]
    cancel = await click(discord, first.original, no, user=user)
    cancelled = await cancel.response(timeout=WAIT)
    again = await slash(discord, guild, "forget-me", user=user)
    yes = buttons(await ephemeral_refusal(again))[0]
    confirm = await click(discord, again.original, yes, user=user)
    await confirm.wait("edit_original", timeout=WAIT)
    assert (cancelled["type"], cancelled["data"]["content"]) == (UPDATE_MESSAGE, "Nothing was deleted.")
    assert (await confirm.response())["type"] == DEFERRED_UPDATE
    assert "deleted" in confirm.original["content"]


# --------------------------------------------------------------------------- admin
ADMIN_COMMANDS = [("admin history", {}), ("admin stats", {}), ("admin model-status", {}),
                  ("admin rollback", {"model": "scene"}), ("admin retrain", {"model": "scene"}),
                  ("admin sync", {})]


@pytest.mark.parametrize("path, options", ADMIN_COMMANDS)
async def test_admin_commands_are_refused_to_members(discord, bot, guild, path, options) -> None:
    refused = await slash(discord, guild, path, user=member(discord), permissions=SEND_MESSAGES, overridden=True,
                          **options)
    assert "administrators" in (await ephemeral_refusal(refused))["content"]


async def test_admin_history_stats_and_model_status(discord, bot, guild) -> None:
    admin = member(discord, 444)
    history = await answer_of(await slash(discord, guild, "admin history", user=admin, permissions=MANAGE_GUILD))
    stats = await answer_of(await slash(discord, guild, "admin stats", user=admin, permissions=MANAGE_GUILD))
    status = await answer_of(await slash(discord, guild, "admin model-status", user=admin, permissions=ADMINISTRATOR))
    assert "@everyone" not in history["embeds"][0]["description"]
    assert history["embeds"][0]["title"].startswith("History:")
    assert stats["embeds"][0]["title"].startswith("History since 7d")
    assert [a["filename"] for a in status["attachments"]] == ["model-metrics.png"]


async def test_admin_rollback_without_an_earlier_version_is_explained(discord, bot, guild) -> None:
    rollback = await slash(discord, guild, "admin rollback", user=member(discord, 444), permissions=ADMINISTRATOR,
                           model="scene")
    answer = await answer_of(rollback)
    assert answer["flags"] & EPHEMERAL == EPHEMERAL
    assert "error id" not in answer["content"], answer["content"]
    assert "scene" in answer["content"]


async def test_admin_retrain_is_queued(discord, bot, guild) -> None:
    retrain = await slash(discord, guild, "admin retrain", user=member(discord, 444), permissions=ADMINISTRATOR,
                          model="sentiment")
    assert "Queued a retraining run for sentiment" in (await answer_of(retrain))["content"]


async def test_admin_sync_by_the_owner(discord, bot, guild) -> None:
    sync = await slash(discord, guild, "admin sync", user=member(discord, OWNER), permissions=ADMINISTRATOR)
    assert (await answer_of(sync))["content"] == "Synced 5 commands to this server."


async def test_admin_sync_is_refused_to_a_server_admin_who_is_not_an_owner(discord, bot, guild) -> None:
    sync = await slash(discord, guild, "admin sync", user=member(discord, 444), permissions=ADMINISTRATOR)
    assert "owners" in (await ephemeral_refusal(sync))["content"]


# --------------------------------------------------------------------------- Discord's faults
async def test_a_5xx_on_the_answer_is_retried_and_answered_once(discord, bot, guild) -> None:
    route = "POST /interactions/{interaction}/{token}/callback"
    discord.fail(route, times=1, status=500)
    handle = await slash(discord, guild, "help", user=member(discord))
    await ephemeral_refusal(handle)
    assert [c.status for c in discord.calls_to(route) if str(handle.id) in c.path][:2] == [500, 200]
    assert handle.kinds().count("response") == 1


async def test_a_429_on_a_follow_up_is_waited_out(discord, bot, guild) -> None:
    route = "POST /webhooks/{app}/{token}"
    discord.rate_limit(route, times=1, retry_after=0.2)
    review = await slash(discord, guild, "review-sentiment", user=member(discord), text="loved it")
    answer = await answer_of(review)
    assert [c.status for c in discord.calls_to(route) if review.token in c.path] == [429, 200]
    assert answer["embeds"][0]["title"].startswith("The critic says")


async def test_a_gateway_reconnect_resumes_and_keeps_serving(discord, bot, guild) -> None:
    resumes = len(discord.frames_of(6))
    await discord.reconnect(0)
    await discord.wait_until(lambda: len(discord.frames_of(6)) > resumes, timeout=WAIT)
    await discord.wait_ready(0, timeout=WAIT)
    after = await slash(discord, guild, "help", user=member(discord))
    assert (await ephemeral_refusal(after))["embeds"]


# --------------------------------------------------------------------------- restarts and startup
async def test_old_buttons_work_after_a_restart_that_first_meets_503s(discord, bot, guild, playbill_home) -> None:
    user = member(discord, 555)
    review = await slash(discord, guild, "review-sentiment", user=user, text="superb and wonderful")
    verdict = await answer_of(review)
    ask = await slash(discord, guild, "forget-me", user=user)
    yes = buttons(await ephemeral_refusal(ask))[0]
    for _ in range(WAIT * 5):  # the run /admin retrain queued ends (it has no data) before the bot stops
        if "retrain of sentiment failed" in bot.output:
            break
        await asyncio.sleep(0.2)
    assert "retrain of sentiment failed" in bot.output and "downloading" not in bot.output
    stopped = await bot.stop()  # SIGTERM: a clean stop
    discord.fail("GET /users/@me", times=2, status=503)
    async with bot_process(discord, PLAYBILL, "run", "--no-scheduler", env=bot_env(playbill_home, guild),
                           cwd=playbill_home.parent) as restarted:
        await discord.wait_until(lambda: any(c.route == "GET /users/@me" and c.status == 200 for c in discord.calls),
                                 timeout=WAIT)
        await discord.wait_ready(0, timeout=WAIT)
        vote = await click(discord, verdict, buttons(verdict)[0], user=member(discord, 666))
        thanks = await answer_of(vote)
        confirm = await click(discord, ask.original, yes, user=user)
        await confirm.wait("edit_original", timeout=WAIT)
    retries = [line for line in restarted.output.splitlines() if "Discord is unavailable" in line]
    assert [("503" in line, "try" in line) for line in retries] == [(True, True), (True, True)]
    assert "Traceback" not in restarted.output
    assert stopped == 0, bot.output[-3000:]
    assert "noted that the critic was **right**" in thanks["content"]
    assert "deleted" in confirm.original["content"]


async def test_run_gives_up_in_one_line_when_discord_stays_down(discord, guild, playbill_home) -> None:
    discord.fail("GET /users/@me", times=3, status=503)  # every try of three
    env = bot_env(playbill_home, guild, PLAYBILL_BOT__CONNECT_RETRIES="2")
    async with bot_process(discord, PLAYBILL, "run", "--no-scheduler", env=env, cwd=playbill_home.parent) as run:
        status = await asyncio.wait_for(run.process.wait(), WAIT)
        await run.stop()
    errors = [line for line in run.lines if line.startswith("error:")]
    assert status == 2
    assert len(errors) == 1 and "503" in errors[0]
    assert "Traceback" not in run.output


async def test_sync_commands_for_a_server_the_bot_is_not_in_is_one_line(discord, playbill_home) -> None:
    async with bot_process(discord, PLAYBILL, "sync-commands", "--guild", "123456789",
                           env={"PLAYBILL_HOME": str(playbill_home)}, cwd=playbill_home.parent) as sync:
        status = await asyncio.wait_for(sync.process.wait(), WAIT)
        await sync.stop()
    assert status == 2
    assert [line for line in sync.lines if line.strip()] == [sync.lines[-1]]
    assert sync.lines[-1].startswith("error:") and "403 Missing Access" in sync.lines[-1]


async def test_run_with_a_development_server_the_bot_is_not_in_is_one_line(discord, playbill_home) -> None:
    env = bot_env(playbill_home, 123456789)
    async with bot_process(discord, PLAYBILL, "run", "--no-scheduler", env=env, cwd=playbill_home.parent) as run:
        status = await asyncio.wait_for(run.process.wait(), WAIT)
        await run.stop()
    errors = [line for line in run.lines if line.startswith("error:")]
    assert status == 2
    assert len(errors) == 1 and "403 Missing Access" in errors[0] and "dev_guild_id" in errors[0]
    assert "Traceback" not in run.output


# --------------------------------------------------------------------------- what went over the wire
async def test_every_answer_was_within_discords_rules(discord) -> None:
    assert checked, "no interaction was made"
    bodies = [(h, body.get("data", body)) for h in checked for _, body in h.events]
    assert [h.refused for h in checked if h.refused] == []  # Discord refused nothing
    assert [h.id for h in checked if h.kinds().count("response") != 1] == []  # exactly one initial response
    assert [b for _, b in bodies if discord.pings(b) != NOBODY] == []  # nobody pinged
    assert [b for _, b in bodies if (b.get("allowed_mentions") or {}).get("parse") not in ([], None)] == []
    assert max(len(b.get("content") or "") for _, b in bodies) <= CONTENT_LIMIT
    assert max(sum(len(json.dumps(e)) for e in b.get("embeds") or []) for _, b in bodies) <= EMBED_TOTAL_LIMIT
