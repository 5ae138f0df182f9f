"""The Discord stand-in, driven by the real discord.py client over real sockets on 127.0.0.1.

Nothing of discord.py is patched but its two base URLs (REST and gateway); every answer the
client gets comes from tests/standin over HTTP and a zlib-stream websocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from standin import StandIn, bot_process, shard_of

READY_TIMEOUT = 0.2  # discord.py waits this long after the last GUILD_CREATE before on_ready
CALLBACK = "POST /interactions/{id}/{token}/callback"
LATE_DEADLINE = 0.5  # the response deadline (Discord's is 3 s) in the test of a late answer


class Fast:
    """Skips discord.py's 5 s pause between IDENTIFYs (Discord's 1-per-5-s bucket, which the
    stand-in does not enforce), through discord.py's documented hook."""

    async def before_identify_hook(self, shard_id, *, initial=False):
        return None


class Client(Fast, discord.Client):
    pass


class AutoShardedClient(Fast, discord.AutoShardedClient):
    pass


class Bot(Fast, commands.Bot):
    pass


class AutoShardedBot(Fast, commands.AutoShardedBot):
    pass


@pytest.fixture
async def standin():
    async with StandIn(guilds=6, shards=2) as server:
        with server.point_discord_py():
            yield server


@contextlib.asynccontextmanager
async def running(client: discord.Client, token: str):
    """Run a real client until it is ready; close it afterwards."""
    if client.user is None:  # not logged in yet (synced_bot logs in to sync first)
        await client.login(token)
    task = asyncio.create_task(client.connect())
    try:
        ready = asyncio.create_task(client.wait_until_ready())
        done, _ = await asyncio.wait({task, ready}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # raises what start() raised
        assert ready in done, "the client did not become ready"
        yield client
    finally:
        await client.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


class Rate(discord.ui.DynamicItem[discord.ui.Button], template=r"rate:(?P<score>[0-9])"):
    """A dynamic button (its state in its custom_id), like Playbill's feedback buttons."""

    def __init__(self, score: int):
        super().__init__(discord.ui.Button(label=str(score), custom_id=f"rate:{score}"))
        self.score = score

    @classmethod
    async def from_custom_id(cls, interaction, item, match):
        return cls(int(match["score"]))

    async def callback(self, interaction: discord.Interaction):
        await interaction.response.defer(ephemeral=True, thinking=True)
        await interaction.followup.send(f"rated {self.score}", ephemeral=True)


class Note(discord.ui.Modal, title="A note"):
    text = discord.ui.TextInput(label="Your note", custom_id="note")

    def __init__(self, film: str):
        super().__init__()
        self.film = film

    async def on_submit(self, interaction: discord.Interaction):
        await interaction.response.send_message(f"{self.film}: {self.text.value}", ephemeral=True)


class Poster(discord.ui.View):
    """A persistent view: its button keeps working after the bot restarts."""

    def __init__(self):
        super().__init__(timeout=None)

    @discord.ui.button(label="Like", custom_id="standin:like")
    async def like(self, interaction: discord.Interaction, button: discord.ui.Button):
        await interaction.response.send_message("liked", ephemeral=True)


def make_bot(cls: type[commands.Bot] = Bot, **options) -> commands.Bot:
    """A small bot: /review, /ask (a button), and commands that break Discord's rules on purpose."""
    bot = cls(
        command_prefix=commands.when_mentioned, intents=discord.Intents.default(),
        guild_ready_timeout=READY_TIMEOUT, **options,
    )
    bot.errors = []  # type: ignore[attr-defined]  # what the stand-in refused, as discord.py raised it

    @bot.tree.command(description="Score a review")
    @app_commands.describe(text="The review")
    @app_commands.choices(tone=[app_commands.Choice(name="kind", value="kind"), app_commands.Choice(name="harsh", value="harsh")])
    async def review(interaction: discord.Interaction, text: str, tone: str = "kind"):
        await interaction.response.send_message(f"scoring {text!r} ({tone})")
        await interaction.edit_original_response(content=f"{text!r}: positive")
        await interaction.followup.send("details", ephemeral=True)

    @bot.tree.command(description="Think, then answer")
    async def think(interaction: discord.Interaction):
        await interaction.response.defer(thinking=True)
        await interaction.edit_original_response(
            content=f"<@{interaction.user.id}> done", allowed_mentions=discord.AllowedMentions.none()
        )
        message = await interaction.followup.send(f"<@{interaction.user.id}> @everyone", wait=True)
        await message.edit(content="edited follow-up")

    class Confirm(discord.ui.View):
        @discord.ui.button(label="Confirm", style=discord.ButtonStyle.green)
        async def confirm(self, interaction: discord.Interaction, button: discord.ui.Button):
            await interaction.response.edit_message(content=f"confirmed by {interaction.user.id}", view=None)

        @discord.ui.button(label="Cancel", style=discord.ButtonStyle.grey)
        async def cancel(self, interaction: discord.Interaction, button: discord.ui.Button):
            await interaction.response.defer()  # DEFERRED_UPDATE_MESSAGE: @original is this message
            await interaction.edit_original_response(content="cancelled", view=None)

    @bot.tree.command(description="A poster with a button that outlives the bot")
    async def poster(interaction: discord.Interaction):
        await interaction.response.send_message("Now playing", view=Poster())

    @bot.tree.command(description="Rate it")
    async def rate(interaction: discord.Interaction):
        view = discord.ui.View(timeout=None)
        for score in (1, 5):
            view.add_item(Rate(score))
        await interaction.response.send_message("How was it?", view=view)

    @bot.tree.command(description="Pick a film")
    async def film(interaction: discord.Interaction, title: str):
        await interaction.response.send_modal(Note(title))

    @film.autocomplete("title")
    async def film_titles(interaction: discord.Interaction, current: str):
        titles = ["Hamlet", "Henry V", "Macbeth"]
        return [app_commands.Choice(name=t, value=t) for t in titles if t.lower().startswith(current.lower())]

    @bot.tree.command(description="Admins only")
    @app_commands.default_permissions(manage_guild=True)
    async def admin(interaction: discord.Interaction):
        await interaction.response.send_message("admin things")

    @bot.tree.command(description="Ask for a confirmation")
    async def ask(interaction: discord.Interaction):
        await interaction.response.send_message("Sure?", view=Confirm(timeout=30))

    @bot.tree.command(description="Too long, then right")
    async def long(interaction: discord.Interaction, what: str):
        try:
            if what == "content":
                await interaction.response.send_message("x" * 2001)
            elif what == "embed":
                await interaction.response.send_message(embed=discord.Embed(description="x" * 4097))
            else:
                embeds = [discord.Embed(title="t", description="x" * 4000) for _ in range(2)]
                await interaction.response.send_message(embeds=embeds)
        except discord.HTTPException as exc:
            bot.errors.append(exc)
            await interaction.response.send_message("trimmed")

    @bot.tree.command(description="Follow up first")
    async def early(interaction: discord.Interaction):
        try:
            await interaction.followup.send("too soon")
        except discord.HTTPException as exc:
            bot.errors.append(exc)
        await interaction.response.send_message("now")

    @bot.tree.command(description="Answer late")
    async def late(interaction: discord.Interaction):
        await asyncio.sleep(LATE_DEADLINE + 0.3)
        try:
            await interaction.response.send_message("late")
        except discord.HTTPException as exc:
            bot.errors.append(exc)

    return bot


async def synced_bot(standin: StandIn, cls: type[commands.Bot] = Bot, **options):
    bot = make_bot(cls, **options)
    await bot.login(standin.token)
    await bot.tree.sync()
    return bot


# --------------------------------------------------------------------------- gateway


async def test_each_shard_identifies_and_receives_only_its_guilds(standin):
    bot = await synced_bot(standin, AutoShardedBot, shard_count=3, shard_ids=[0, 2])
    async with running(bot, standin.token):
        identifies = standin.frames_of(2)
        assert sorted(tuple(f.d["shard"]) for f in identifies) == [(0, 3), (2, 3)]
        assert {f.d["intents"] for f in identifies} == {discord.Intents.default().value}
        assert {f.d["token"] for f in identifies} == {standin.token}
        expected = {g for g in standin.guilds if shard_of(g, 3) in (0, 2)}
        assert {g.id for g in bot.guilds} == expected
        assert all(g.shard_id == shard_of(g.id, 3) for g in bot.guilds)
        assert set(standin.guilds) - expected, "some guild belongs to shard 1, which is not run here"
        assert {(c.query["v"], c.query["encoding"], c.query.get("compress")) for c in standin.connections} == {
            ("10", "json", "zlib-stream")
        }, "discord.py asked for v10 JSON over zlib-stream, which the stand-in then sent"
        beating = {f.connection for f in standin.frames_of(1)}
        assert beating >= {f.connection for f in identifies}

        guild = next(g for g in standin.guilds if shard_of(g, 3) == 2)
        handle = await standin.slash(guild, "ask")
        assert (await handle.response())["data"]["content"] == "Sure?"
        assert handle.shard == (2, 3)
        with pytest.raises(LookupError):
            await standin.slash(next(g for g in standin.guilds if shard_of(g, 3) == 1), "ask")


async def test_a_5xx_on_gateway_bot_is_retried_and_its_answer_picks_the_shards(standin):
    standin.fail("GET /gateway/bot", times=1, status=502)
    client = AutoShardedClient(intents=discord.Intents.default(), guild_ready_timeout=READY_TIMEOUT)
    async with running(client, standin.token):
        assert [c.status for c in standin.calls_to("GET /gateway/bot")] == [502, 200]
        assert sorted(tuple(f.d["shard"]) for f in standin.frames_of(2)) == [(0, 2), (1, 2)]
        assert len(client.guilds) == len(standin.guilds)


async def test_identifying_faster_than_discord_allows_gets_invalid_session(standin):
    class Eager(discord.AutoShardedClient):
        """Identifies the second shard at once (discord.py would wait 5 s), then retries every 0.4 s."""

        attempts = 0

        async def before_identify_hook(self, shard_id, *, initial=False):
            if not initial:
                Eager.attempts += 1
                await asyncio.sleep(0 if Eager.attempts == 1 else 0.4)

    limited = StandIn(guilds=4, identify_interval_s=1.5)
    async with limited:
        with limited.point_discord_py():
            client = Eager(intents=discord.Intents.default(), shard_count=2, guild_ready_timeout=READY_TIMEOUT)
            async with running(client, limited.token):
                refused = [f for f in limited.sent if f.op == 9]
                assert refused and all(f.d is False for f in refused)
                ready = [f.shard for f in limited.sent if f.t == "READY"]
                assert sorted(ready) == [(0, 2), (1, 2)]
                assert len(client.guilds) == 4


async def test_reconnect_resumes_and_replays_what_was_missed(standin):
    bot = await synced_bot(standin)
    async with running(bot, standin.token):
        guild = next(iter(standin.guilds))
        session = await standin.reconnect(0)
        handle = await standin.slash(guild, "review", text="Missed while away")  # held, then replayed
        assert (await handle.response())["data"]["content"] == "scoring 'Missed while away' (kind)"
        await handle.wait("followup")
        resume = standin.frames_of(6)
        assert [f.d["session_id"] for f in resume] == [session.session_id]
        assert session.resumes == 1
        assert standin.connections[-1].path == "/resume"
        resumed = standin.connections[-1].id
        assert [f.t for f in standin.sent if f.connection == resumed and f.op == 0] == ["INTERACTION_CREATE", "RESUMED"]
        assert len(standin.frames_of(2)) == 1, "resumed, not identified again"


async def test_a_bad_resume_gets_invalid_session_and_the_client_identifies_again(standin):
    client = Client(intents=discord.Intents.default(), guild_ready_timeout=READY_TIMEOUT)
    async with running(client, standin.token):
        await standin.reconnect(0, resumable=False)
        await standin.wait_until(lambda: len(standin.frames_of(2)) == 2)
        assert len(standin.frames_of(6)) == 1
        assert await standin.wait_ready(0)
        await standin.close_gateway(0, code=4000)  # a close Discord may send: resume afterwards
        await standin.wait_until(lambda: len(standin.frames_of(6)) == 2)
        assert len(standin.frames_of(2)) == 2


# --------------------------------------------------------------------------- REST


async def test_command_sync_sends_discords_schema(standin):
    bot = make_bot()
    try:
        await bot.login(standin.token)
        synced = await bot.tree.sync()
        assert sorted(c.name for c in synced) == ["admin", "ask", "early", "film", "late", "long", "poster", "rate", "review", "think"]
        review = standin.command("review")
        assert review["description"] == "Score a review"
        assert [(o["name"], o["type"], o.get("required", False)) for o in review["options"]] == [
            ("text", 3, True), ("tone", 3, False)
        ]
        assert [c["value"] for c in review["options"][1]["choices"]] == ["kind", "harsh"]
        guild = next(iter(standin.guilds))
        bot.tree.copy_global_to(guild=discord.Object(guild))
        await bot.tree.sync(guild=discord.Object(guild))
        assert standin.command("review", guild)["guild_id"] == str(guild)
        with pytest.raises(discord.Forbidden) as refused:
            await bot.tree.sync(guild=discord.Object(12345))
        assert refused.value.code == 50001
    finally:
        await bot.close()


@pytest.mark.parametrize(
    "command, where",
    [
        ({"name": "Review", "description": "d"}, "0.name"),
        ({"name": "x" * 33, "description": "d"}, "0.name"),
        ({"name": "re view", "description": "d"}, "0.name"),
        ({"name": "review", "description": ""}, "0.description"),
        ({"name": "review", "description": "d" * 101}, "0.description"),
        ({"name": "review", "description": "d", "options": [
            {"type": 3, "name": f"o{i}", "description": "d"} for i in range(26)]}, "0.options"),
        ({"name": "review", "description": "d", "options": [
            {"type": 3, "name": "o", "description": "d", "choices": [{"name": str(i), "value": str(i)} for i in range(26)]}
        ]}, "0.options.0.choices"),
        ({"name": "review", "description": "d", "options": [
            {"type": 3, "name": "a", "description": "d"}, {"type": 3, "name": "b", "description": "d", "required": True}
        ]}, "0.options.1.required"),
    ],
)
async def test_a_command_breaking_discords_rules_is_refused(standin, command, where):
    client = discord.Client(intents=discord.Intents.default())
    try:
        await client.login(standin.token)
        with pytest.raises(discord.HTTPException) as refused:
            await client.http.bulk_upsert_global_commands(client.application_id, [command])
        assert (refused.value.status, refused.value.code) == (400, 50035)
        assert f"In {where}" in refused.value.text
        assert standin.commands.get(None) is None
    finally:
        await client.close()


async def test_commands_within_discords_rules_are_accepted(standin):
    accepted = [
        {"name": "café", "description": "letters of any script"},
        {"name": "नमस्ते", "description": "Devanagari with its vowel signs"},
        {"name": "top-10_films", "description": "d" * 100, "options": [
            {"type": 3, "name": "a", "description": "d", "required": True},
            {"type": 3, "name": "b", "description": "d", "choices": [{"name": str(i), "value": str(i)} for i in range(25)]},
        ]},
        {"name": "Rate This Review", "type": 3},  # message commands: any case, spaces, no description
    ]
    client = discord.Client(intents=discord.Intents.default())
    try:
        await client.login(standin.token)
        stored = await client.http.bulk_upsert_global_commands(client.application_id, accepted)
        assert [c["name"] for c in stored] == [c["name"] for c in accepted]
        assert len({c["id"] for c in stored}) == 4
    finally:
        await client.close()


async def test_a_slash_command_is_answered_edited_and_followed_up(standin):
    bot = await synced_bot(standin)
    async with running(bot, standin.token):
        guild = list(standin.guilds)[1]
        handle = await standin.slash(guild, "review", text="Great film", tone="harsh")
        await handle.wait("followup")
        assert handle.kinds() == ["response", "edit_original", "followup"]
        assert handle.events[0][1]["type"] == 4
        assert handle.original["content"] == "'Great film': positive"
        (followup,) = handle.followups.values()
        assert followup["content"] == "details" and followup["flags"] & 64
        assert handle.shard == (0, 1)


async def test_a_deferred_answer_is_edited_and_pings_are_what_discord_would_send(standin):
    bot = await synced_bot(standin)
    async with running(bot, standin.token):
        handle = await standin.slash(next(iter(standin.guilds)), "think", user=standin.make_user(901, "ann"))
        await handle.wait("edit_followup")
        assert handle.kinds() == ["response", "edit_original", "followup", "edit_followup"]
        assert handle.events[0][1]["type"] == 5
        assert handle.original["content"] == "<@901> done"
        assert not handle.original["flags"] & 128, "no longer 'thinking'"
        assert standin.pings(handle.original) == {"users": [], "roles": [], "everyone": False}
        (followup,) = handle.followups.values()
        assert followup["content"] == "edited follow-up"
        sent = handle.events[2][1]
        assert "allowed_mentions" not in sent, "discord.py sent no allowed_mentions: Discord parses all"
        assert standin.pings(sent) == {"users": ["901"], "roles": [], "everyone": True}


async def test_a_button_press_updates_the_message(standin):
    bot = await synced_bot(standin)
    async with running(bot, standin.token):
        guild = next(iter(standin.guilds))
        ask = await standin.slash(guild, "ask")
        await ask.response()
        buttons = ask.original["components"][0]["components"]
        assert [b["label"] for b in buttons] == ["Confirm", "Cancel"]
        button = buttons[0]
        press = await standin.click(ask.original, button["custom_id"], user=standin.make_user(777, "ann"))
        assert (await press.response())["type"] == 7
        message = standin.messages[int(ask.original["id"])]
        assert message["content"] == "confirmed by 777"
        assert message["components"] == []


async def test_a_deferred_update_edits_the_buttons_message(standin):
    bot = await synced_bot(standin)
    async with running(bot, standin.token):
        ask = await standin.slash(next(iter(standin.guilds)), "ask")
        await ask.response()
        cancel = next(c for c in ask.original["components"][0]["components"] if c["label"] == "Cancel")
        press = await standin.click(ask.original, cancel["custom_id"])
        await press.wait("edit_original")
        assert press.events[0][1]["type"] == 6
        assert standin.messages[int(ask.original["id"])]["content"] == "cancelled"


async def test_a_dynamic_button_is_answered_privately(standin):
    bot = await synced_bot(standin)
    bot.add_dynamic_items(Rate)
    async with running(bot, standin.token):
        poll = await standin.slash(next(iter(standin.guilds)), "rate")
        await poll.response()
        press = await standin.click(poll.original, "rate:5")
        await press.wait("followup")
        assert press.events[0][1] == {"type": 5, "data": {"flags": 64}}
        (answer,) = press.followups.values()
        assert (answer["content"], answer["flags"] & 64) == ("rated 5", 64)


async def test_autocomplete_then_a_modal_and_its_submission(standin):
    bot = await synced_bot(standin)
    async with running(bot, standin.token):
        guild = next(iter(standin.guilds))
        typing = await standin.autocomplete(guild, "film", "title", title="h")
        assert await typing.response() == {"type": 8, "data": {"choices": [
            {"name": "Hamlet", "value": "Hamlet"}, {"name": "Henry V", "value": "Henry V"}
        ]}}
        picked = await standin.slash(guild, "film", title="Hamlet")
        shown = await picked.response()
        assert (shown["type"], shown["data"]["title"]) == (9, "A note")
        submitted = await standin.submit(picked, {"note": "Too long, still great"})
        answer = await submitted.response()
        assert answer["data"]["content"] == "Hamlet: Too long, still great"


async def test_a_persistent_button_works_after_the_bot_restarts(standin):
    guild = next(iter(standin.guilds))
    first = await synced_bot(standin)
    async with running(first, standin.token):
        poster = await standin.slash(guild, "poster")
        await poster.response()
    second = make_bot()
    await second.login(standin.token)
    second.add_view(Poster())
    async with running(second, standin.token):
        press = await standin.click(poster.original, "standin:like")
        assert (await press.response())["data"]["content"] == "liked"
        assert len(standin.frames_of(2)) == 2, "two bots, two sessions"


async def test_discord_offers_a_command_only_to_members_with_its_permissions(standin):
    bot = await synced_bot(standin)
    async with running(bot, standin.token):
        guild = next(iter(standin.guilds))
        assert standin.command("admin")["default_member_permissions"] == str(1 << 5)
        with pytest.raises(PermissionError):
            await standin.slash(guild, "admin")
        allowed = await standin.slash(guild, "admin", permissions=1 << 5)
        assert (await allowed.response())["data"]["content"] == "admin things"
        overridden = await standin.slash(guild, "admin", overridden=True)
        assert (await overridden.response())["data"]["content"] == "admin things"


@pytest.mark.parametrize(
    "what, where",
    [
        ("content", "In data.content: Must be 2000 or fewer in length."),
        ("embed", "In data.embeds.0.description: Must be 4096 or fewer in length."),
        ("embeds", "In data.embeds: Embed size exceeds maximum size of 6000"),
    ],
)
async def test_messages_over_discords_limits_raise_invalid_form_body(standin, what, where):
    bot = await synced_bot(standin)
    async with running(bot, standin.token):
        handle = await standin.slash(next(iter(standin.guilds)), "long", what=what)
        assert (await handle.response())["data"]["content"] == "trimmed"
        (error,) = bot.errors
        assert (error.status, error.code) == (400, 50035)
        assert where in error.text


async def test_a_followup_before_the_response_is_an_unknown_webhook(standin):
    bot = await synced_bot(standin)
    async with running(bot, standin.token):
        handle = await standin.slash(next(iter(standin.guilds)), "early")
        assert (await handle.response())["data"]["content"] == "now"
        (error,) = bot.errors
        assert isinstance(error, discord.NotFound) and error.code == 10015


async def test_a_response_after_the_deadline_is_an_unknown_interaction():
    async with StandIn(guilds=1, response_deadline_s=LATE_DEADLINE) as strict:
        with strict.point_discord_py():
            bot = await synced_bot(strict)
            async with running(bot, strict.token):
                handle = await strict.slash(next(iter(strict.guilds)), "late")
                error = await handle.refusal()
                assert (error.status, error.code) == (404, 10062)
                await asyncio.sleep(0.1)
                (raised,) = bot.errors
                assert isinstance(raised, discord.NotFound) and raised.code == 10062
                assert not handle.responded


async def test_a_second_initial_response_is_refused(standin):
    bot = await synced_bot(standin)
    async with running(bot, standin.token):
        handle = await standin.slash(next(iter(standin.guilds)), "ask")
        await handle.response()
        url = f"{standin.api_base}/interactions/{handle.id}/{handle.token}/callback"
        async with aiohttp.ClientSession() as http:  # a second process answering the same interaction
            async with http.post(url, json={"type": 4, "data": {"content": "again"}}) as answer:
                assert answer.status == 400
                assert (await answer.json())["code"] == 40060
        assert handle.kinds() == ["response"]


async def test_a_429_is_retried_by_discord_py(standin):
    standin.rate_limit("PUT /applications/{app}/commands", times=1, retry_after=0.2)
    standin.rate_limit(CALLBACK, times=2, retry_after=0.1)
    bot = await synced_bot(standin)
    assert [c.status for c in standin.calls_to("PUT /applications/{app}/commands")] == [429, 200]
    limited = standin.calls_to("PUT /applications/{app}/commands")[0]
    assert limited.answer == {"message": "You are being rate limited.", "retry_after": 0.2, "global": False}
    async with running(bot, standin.token):
        handle = await standin.slash(next(iter(standin.guilds)), "ask")
        assert (await handle.response())["data"]["content"] == "Sure?"
        assert [c.status for c in standin.calls_to(CALLBACK)] == [429, 429, 200]


async def test_a_message_posted_to_a_channel_and_an_unserved_route(standin):
    bot = await synced_bot(standin)
    async with running(bot, standin.token):
        guild = bot.get_guild(next(iter(standin.guilds)))
        sent = await guild.text_channels[0].send("Nightly retraining done", allowed_mentions=discord.AllowedMentions.none())
        (posted,) = standin.posted
        assert (int(posted["id"]), posted["content"]) == (sent.id, "Nightly retraining done")
        with pytest.raises(discord.HTTPException) as unserved:
            await guild.fetch_roles()
        assert unserved.value.status == 404
        assert [c.route for c in standin.unserved] == [f"GET (unserved)/guilds/{guild.id}/roles"]


async def test_a_5xx_on_an_interaction_callback_is_retried_and_answers_once(standin):
    standin.fail(CALLBACK, times=1, status=503)  # discord.py retries after 1 s, within Discord's 3 s
    bot = await synced_bot(standin)
    async with running(bot, standin.token):
        handle = await standin.slash(next(iter(standin.guilds)), "ask")
        assert (await handle.response())["data"]["content"] == "Sure?"
        assert [c.status for c in standin.calls_to(CALLBACK)] == [503, 200]
        assert handle.kinds() == ["response"] and handle.refused == []


async def test_the_application_and_its_team(standin):
    team = StandIn(guilds=1, team=[(11, "admin"), (12, "developer"), (13, "read_only")])
    async with team:
        with team.point_discord_py():
            client = discord.Client(intents=discord.Intents.default())
            try:
                await client.login(team.token)
                info = await client.application_info()
                assert [(m.id, m.role.value) for m in info.team.members] == [
                    (11, "admin"), (12, "developer"), (13, "read_only")
                ]
                assert client.user.id == team.application_id
            finally:
                await client.close()
    with pytest.raises(discord.LoginFailure):
        client = discord.Client(intents=discord.Intents.default())
        try:
            await client.login("wrong")
        finally:
            await client.close()


# A bot in another process, pointed at the stand-in by its environment only (what `playbill run`
# will read): it syncs one command and answers it.
SEPARATE_BOT = """
import os, discord, yarl
from discord import app_commands
discord.http.Route.BASE = os.environ["PLAYBILL_DISCORD_API_BASE"]
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["PLAYBILL_DISCORD_GATEWAY_URL"])
client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.2)
tree = app_commands.CommandTree(client)

@tree.command(description="Who answers")
async def who(interaction: discord.Interaction):
    await interaction.response.send_message(f"pid {os.getpid()}")

@client.event
async def setup_hook():
    await tree.sync()

client.run(os.environ["PLAYBILL_DISCORD_TOKEN"], log_handler=None)
"""


async def test_a_bot_in_another_process_reaches_the_stand_in_by_its_environment(standin):
    async with bot_process(standin, sys.executable, "-c", SEPARATE_BOT) as bot:
        await standin.wait_until(lambda: standin.commands.get(None), timeout=30)
        await standin.wait_ready(0, timeout=30)
        handle = await standin.slash(next(iter(standin.guilds)), "who")
        assert (await handle.response())["data"]["content"] == f"pid {bot.pid}", bot.output
    assert standin.unserved == []


async def test_the_stand_in_runs_by_itself_for_manual_tries():
    root = Path(__file__).resolve().parents[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.standin", "--port", "0", "--guilds", "3",
        cwd=root, stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        lines = []
        while not lines or lines[-1] != "}":
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            assert line, "the stand-in exited before printing where it listens"
            lines.append(line.decode().rstrip())
        printed = json.loads("\n".join(lines))
        assert set(printed) >= {"PLAYBILL_DISCORD_TOKEN", "PLAYBILL_DISCORD_API_BASE", "PLAYBILL_DISCORD_GATEWAY_URL"}
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": "Bot " + printed["PLAYBILL_DISCORD_TOKEN"]}
            async with http.get(printed["PLAYBILL_DISCORD_API_BASE"] + "/gateway/bot", headers=headers) as answer:
                assert (await answer.json())["url"] == printed["PLAYBILL_DISCORD_GATEWAY_URL"].rstrip("/")
            async with http.get(printed["state"]) as answer:
                assert len((await answer.json())["guilds"]) == 3
    finally:
        process.terminate()
        await process.wait()
