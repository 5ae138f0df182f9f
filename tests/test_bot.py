"""The Discord side: the real PlaybillBot against the Discord stand-in (tests/standin), over
real REST and gateway traffic on 127.0.0.1; nothing of discord.py is patched but its two base
URLs. Members run commands and press buttons as Discord would deliver them; the assertions
read what Discord received. Fake models (no TensorFlow) unless said, the real history database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

import discord
import pytest

from playbill.bot.client import PlaybillBot
from playbill.bot.cogs import playwright
from playbill.bot.services import default_holders, refresh_models
from fakes import FakeSceneWriter, engine_refusal, fake_holders, history_rows, train_tiny_scene
from playbill.bot.cogs.critic import FEEDBACK_TEMPLATE
from playbill.engine.models import MODEL_NAMES
from playbill.jobs import scheduler as scheduler_module
from standin import ADMINISTRATOR, StandIn

DEFERRED, ANSWERED, DEFERRED_UPDATE = 5, 4, 6  # interaction response types
EPHEMERAL = 64
OWNER = 42
NOBODY = {"users": [], "roles": [], "everyone": False}
SEND_MESSAGES = 1 << 11
MANAGE_GUILD = 1 << 5


@pytest.fixture
async def standin():
    # Discord's 3 s answer deadline, relaxed: a busy shared CI machine is not the bot being slow
    async with StandIn(guilds=1, owner_id=OWNER, response_deadline_s=30.0) as server:
        with server.point_discord_py():
            yield server


@pytest.fixture
def guild(standin) -> int:
    return next(iter(standin.guilds))


@pytest.fixture(autouse=True)
def quick_settings(settings):
    settings.bot.cooldown_seconds = 0
    settings.bot.stream_edit_interval = 0.0
    settings.sentiment.max_chars = 5000  # engine limits below Discord's own 6000 for an option
    settings.scene.max_prompt_chars = 500


@contextlib.asynccontextmanager
async def running(settings, standin: StandIn, *, holders=None, publish: bool = True, **options):
    """`playbill run` in this process: log in, sync to the development guild, connect to the
    gateway; closed afterwards."""
    if settings.bot.dev_guild_id is None:
        settings.bot.dev_guild_id = next(iter(standin.guilds))
    holders = holders or fake_holders(settings, sentiment=publish, scene=publish)
    if not options.get("load_models", False):
        refresh_models(holders)
    bot = PlaybillBot(settings, holders=holders, load_models=options.pop("load_models", False), **options)
    task = asyncio.create_task(bot.start(standin.token))
    try:
        await standin.wait_ready(0)
        yield bot
    finally:
        await bot.close()  # unloads the extension: its services stop with it
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


def member(standin: StandIn, user_id: int = 111) -> dict:
    return standin.make_user(user_id, f"user{user_id}")


def bodies(handle) -> list[dict]:
    """Every message body the bot sent or edited for this interaction."""
    return [body.get("data", body) for _, body in handle.events]


def assert_nobody_pinged(standin: StandIn, handle) -> None:
    assert handle.events, "nothing was sent"
    for body in bodies(handle):
        assert standin.pings(body) == NOBODY


async def refusal(handle) -> dict:
    """The initial response, which must be an ephemeral answer (nothing deferred)."""
    response = await handle.response()
    assert (response["type"], response["data"]["flags"] & EPHEMERAL) == (ANSWERED, EPHEMERAL)
    return response["data"]


# --------------------------------------------------------------------------- the tree
async def test_discord_accepts_the_tree_with_its_names_options_ranges_and_permissions(settings, standin, guild):
    async with running(settings, standin) as bot:
        scene_limits = bot.services.holders["scene"].limits  # the engine's limits, from the settings
    assert standin.commands.get(None) is None  # nothing global on start: only the development guild
    payload = {c["name"]: c for c in standin.commands[guild]}
    assert set(payload) == {"review-sentiment", "write-scene", "forget-me", "admin", "help"}
    text = payload["review-sentiment"]["options"][0]
    assert (text["name"], text["required"], text["min_length"], text["max_length"]) == (
        "text", True, 1, settings.sentiment.max_chars)
    scene = {o["name"]: o for o in payload["write-scene"]["options"]}
    assert scene["prompt"]["max_length"] == settings.scene.max_prompt_chars
    assert (scene["length"]["min_value"], scene["length"]["max_value"]) == (1, scene_limits.max_length)
    assert (scene["temperature"]["min_value"], scene["temperature"]["max_value"]) == (
        scene_limits.min_temperature, scene_limits.max_temperature)
    assert [scene["length"].get("required", False), scene["temperature"].get("required", False)] == [False, False]
    admin = payload["admin"]
    assert int(admin["default_member_permissions"]) == MANAGE_GUILD  # what its runtime check admits
    assert admin["contexts"] == [0]  # guild only
    subcommands = {o["name"]: o for o in admin["options"]}
    assert set(subcommands) == {"history", "stats", "model-status", "feedback", "retrain", "rollback", "sync"}
    limit = next(o for o in subcommands["history"]["options"] if o["name"] == "limit")
    assert (limit["min_value"], limit["max_value"]) == (1, 50)
    assert [c["value"] for c in subcommands["rollback"]["options"][0]["choices"]] == list(MODEL_NAMES)
    assert [c["value"] for c in subcommands["retrain"]["options"][0]["choices"]] == [*MODEL_NAMES, "all"]
    kind = next(o for o in subcommands["history"]["options"] if o["name"] == "kind")
    assert [c["value"] for c in kind["choices"]] == list(MODEL_NAMES)
    assert payload["forget-me"].get("default_member_permissions") is None  # everyone may forget themselves


async def test_options_never_exceed_discords_own_limit(settings, standin, guild) -> None:
    settings.sentiment.max_chars = None  # the engine's own limits: 200,000 / 10,000 characters
    settings.scene.max_prompt_chars = None
    async with running(settings, standin):
        pass
    payload = {c["name"]: c for c in standin.commands[guild]}
    assert payload["review-sentiment"]["options"][0]["max_length"] == 6000
    assert payload["write-scene"]["options"][0]["max_length"] == 6000


async def test_the_bot_asks_for_no_privileged_intents_and_learns_its_owner(settings, standin) -> None:
    async with running(settings, standin) as bot:
        pass
    [identify] = standin.frames_of(2)
    assert identify.d["intents"] == discord.Intents(guilds=True).value
    assert bot.app_owner_ids == {OWNER}


async def test_setup_hook_loads_models_and_syncs_nothing_without_a_dev_guild(settings, standin) -> None:
    settings.bot.dev_guild_id = 0  # not None: `running` would pick the stand-in's guild
    holders = fake_holders(settings)
    async with running(settings, standin, holders=holders, load_models=True):
        pass
    assert [h.loaded for h in holders.values()] == [True, True]
    assert standin.commands == {}  # never a global sync on start; `playbill sync-commands` does that


# --------------------------------------------------------------------------- /review-sentiment
async def test_review_is_deferred_answered_with_buttons_and_never_pings(settings, standin, guild) -> None:
    async with running(settings, standin) as bot:
        review = await standin.slash(guild, "review-sentiment", user=member(standin),
                                     text="@everyone a great film, I loved it <@42>")
        await review.wait("followup")
        [row] = history_rows(bot.services.history)
    assert review.kinds() == ["response", "followup"]
    assert review.events[0][1]["type"] == DEFERRED  # the model answers off the event loop
    [answer] = review.followups.values()
    assert answer["embeds"][0]["title"] == "The critic says: positive"
    assert "@everyone" not in answer["embeds"][0]["description"]
    buttons = [c["custom_id"] for c in answer["components"][0]["components"]]
    assert buttons == [f"playbill:fb:{row.id}:right", f"playbill:fb:{row.id}:wrong"]
    assert (row.source, row.user_id, row.user_name) == ("discord", 111, "user111")
    assert_nobody_pinged(standin, review)


async def test_a_feedback_button_works_after_the_bot_restarts(settings, standin, guild) -> None:
    async with running(settings, standin):
        review = await standin.slash(guild, "review-sentiment", text="boring and bad")
        await review.wait("followup")
    [answer] = review.followups.values()
    wrong = answer["components"][0]["components"][1]["custom_id"]
    async with running(settings, standin, publish=False) as restarted:  # a new process: nothing in memory
        vote = await standin.click(answer, wrong, user=member(standin, 222))
        await vote.wait("followup")
        [row] = history_rows(restarted.services.history)
        right = answer["components"][0]["components"][0]["custom_id"]
        change = await standin.click(answer, right, user=member(standin, 222))
        await change.wait("followup")
        [changed] = history_rows(restarted.services.history)
    assert (row.feedback_right, row.feedback_wrong) == (0, 1)
    assert (await vote.response())["data"]["flags"] & EPHEMERAL == EPHEMERAL  # deferred, ephemeral, thinking
    [thanks] = vote.followups.values()
    assert "noted that the critic was **wrong**" in thanks["content"]
    assert (changed.feedback_right, changed.feedback_wrong) == (1, 0)  # one vote per person, changed
    assert_nobody_pinged(standin, vote)


def test_feedback_template_matches_only_our_ids() -> None:
    pattern = re.compile(FEEDBACK_TEMPLATE)
    assert pattern.fullmatch("playbill:fb:123:right") and pattern.fullmatch("playbill:fb:9:wrong")
    assert not pattern.fullmatch("playbill:fb:1:maybe") and not pattern.fullmatch("other:fb:1:right")


async def test_a_vote_on_a_forgotten_verdict_is_explained(settings, standin, guild) -> None:
    async with running(settings, standin):
        review = await standin.slash(guild, "review-sentiment", user=member(standin, 111), text="good")
        await review.wait("followup")
        forget = await standin.slash(guild, "forget-me", user=member(standin, 111))
        confirm = (await refusal(forget))["components"][0]["components"][0]["custom_id"]
        done = await standin.click(forget.original, confirm, user=member(standin, 111))
        await done.wait("edit_original")
        [answer] = review.followups.values()
        vote = await standin.click(answer, answer["components"][0]["components"][0]["custom_id"],
                                   user=member(standin, 222))
        await vote.wait("followup")
    [message] = vote.followups.values()
    assert "forgotten or purged" in message["content"]
    assert message["flags"] & EPHEMERAL == EPHEMERAL


async def test_cooldown_reply_is_ephemeral_and_nothing_is_deferred(settings, standin, guild) -> None:
    settings.bot.cooldown_seconds = 60
    async with running(settings, standin):
        first = await standin.slash(guild, "review-sentiment", text="good")
        await first.wait("followup")
        second = await standin.slash(guild, "review-sentiment", text="good")
        answer = await refusal(second)
    assert "try again in" in answer["content"]
    assert_nobody_pinged(standin, second)


async def test_unexpected_error_gives_an_error_id_and_logs_the_trace(settings, standin, guild, caplog,
                                                                     monkeypatch) -> None:
    def broken(texts):
        raise ZeroDivisionError("boom")

    async with running(settings, standin) as bot:
        monkeypatch.setattr(bot.services.holders["sentiment"].model, "predict", broken)
        with caplog.at_level(logging.ERROR):
            review = await standin.slash(guild, "review-sentiment", text="good")
            await review.wait("followup")
    [message] = review.followups.values()
    error_id = re.search(r"error id `([0-9a-f]{8})`", message["content"]).group(1)
    assert "boom" not in message["content"]
    assert message["flags"] & EPHEMERAL == EPHEMERAL
    assert [r.exc_info is not None for r in caplog.records if error_id in r.getMessage()] == [True]


async def test_busy_is_an_ephemeral_refusal_before_any_defer(settings, standin, guild, monkeypatch) -> None:
    async with running(settings, standin) as bot:
        monkeypatch.setattr(bot.services.sentiment_worker, "has_room", lambda: False)
        busy = await standin.slash(guild, "review-sentiment", text="good")
        answer = await refusal(busy)
    assert "retry in a moment" in answer["content"]


async def test_a_missing_model_names_its_training_command(settings, standin, guild) -> None:
    async with running(settings, standin, publish=False):
        missing = await standin.slash(guild, "write-scene", prompt="ROMEO:")
        answer = await refusal(missing)
    assert "playbill train scene" in answer["content"]


# --------------------------------------------------------------------------- /write-scene
async def test_scene_is_deferred_streamed_edited_and_within_limits(settings, standin, guild) -> None:
    FakeSceneWriter.delay = 0.002
    try:
        async with running(settings, standin):
            scene = await standin.slash(guild, "write-scene", prompt="ROMEO:", length=300, temperature=0.8)
            await scene.wait_until(lambda h: any("-# playwright" in m["content"] for m in h.followups.values()))
    finally:
        FakeSceneWriter.delay = 0.0
    assert scene.events[0][1]["type"] == DEFERRED
    assert scene.refused == []  # Discord accepted every message and edit
    assert scene.kinds().count("edit_followup") >= 2  # the message grew as the scene was written
    [message] = scene.followups.values()
    assert message["content"].startswith("```\nROMEO:") and "-# playwright v0001" in message["content"]
    assert playwright.CURSOR not in message["content"]
    assert_nobody_pinged(standin, scene)


async def test_a_long_scene_is_split_into_messages_within_limits(settings, standin, guild) -> None:
    settings.scene.max_length = 6000  # the engine's length limit comes from the settings
    async with running(settings, standin):
        scene = await standin.slash(guild, "write-scene", prompt="ROMEO:", length=4500)
        await scene.wait_until(lambda h: any("-# playwright" in m["content"] for m in h.followups.values()))
    assert scene.refused == []
    assert len(scene.followups) >= 3


async def test_unknown_characters_are_explained_before_deferring(settings, standin, guild) -> None:
    async with running(settings, standin):
        refused = await standin.slash(guild, "write-scene", prompt="Juliet \N{GRINNING FACE}")
        answer = await refusal(refused)
    assert "never seen these characters" in answer["content"]
    assert "\N{GRINNING FACE}" in answer["content"]


async def test_a_range_violation_gets_the_engines_message(settings, standin, guild) -> None:
    async with running(settings, standin) as bot:
        refused = await standin.slash(guild, "write-scene", prompt="ROMEO:", temperature=7.5)
        answer = await refusal(refused)
        limits = bot.services.holders["scene"].limits
    assert answer["content"] == engine_refusal(limits.check_temperature, 7.5)


async def test_write_scene_streams_from_a_real_tiny_model(settings, standin, guild, tmp_path) -> None:
    """The real engine.scene.SceneWriter behind the cog: streamed edits, limits, its vocabulary."""
    version = train_tiny_scene(settings.home, tmp_path / "work")
    settings.scene.stream_chunk_chars = 50
    holders = {**fake_holders(settings, scene=False), "scene": default_holders(settings)["scene"]}
    async with running(settings, standin, holders=holders) as bot:
        scene = await standin.slash(guild, "write-scene", prompt="ROMEO:", length=1500, temperature=0.8)
        await scene.wait_until(lambda h: any("-# playwright" in m["content"] for m in h.followups.values()))
        refused = await standin.slash(guild, "write-scene", prompt="ROMEO \N{GRINNING FACE}")
        answer = await refusal(refused)
        [row] = [r for r in history_rows(bot.services.history) if r.status == "ok"]
    assert scene.refused == []
    assert scene.kinds().count("edit_followup") >= 3
    assert list(scene.followups.values())[0]["content"].startswith("```\nROMEO:")
    assert f"-# playwright {version}" in list(scene.followups.values())[-1]["content"]
    assert (row.model_version, row.output[:6]) == (version, "ROMEO:")
    assert len(row.output) > 200
    assert "never seen these characters" in answer["content"]


# --------------------------------------------------------------------------- privacy and admin
async def test_forget_me_asks_first_and_only_the_caller_can_confirm(settings, standin, guild) -> None:
    async with running(settings, standin) as bot:
        for user_id in (111, 222):
            review = await standin.slash(guild, "review-sentiment", user=member(standin, user_id), text="good")
            await review.wait("followup")
        ask = await standin.slash(guild, "forget-me", user=member(standin, 111))
        question = await refusal(ask)
        kept = len(history_rows(bot.services.history))
        yes = question["components"][0]["components"][0]["custom_id"]
        stranger = await standin.click(ask.original, yes, user=member(standin, 222))
        other = await refusal(stranger)
        confirm = await standin.click(ask.original, yes, user=member(standin, 111))
        await confirm.wait("edit_original")
        left = [r.user_id for r in history_rows(bot.services.history)]
    assert kept == 2  # nothing deleted before the confirmation
    assert other["content"] == "This question is for someone else."
    assert (await confirm.response())["type"] == DEFERRED_UPDATE
    assert left == [222]
    assert "deleted" in confirm.original["content"]
    assert_nobody_pinged(standin, confirm)


@pytest.mark.parametrize("path, options", [("admin history", {}), ("admin stats", {}), ("admin model-status", {}),
                                           ("admin rollback", {"model": "scene"}), ("admin retrain", {"model": "all"}), ("admin feedback", {}),
                                           ("admin sync", {})])
async def test_admin_commands_are_refused_to_non_admins(settings, standin, guild, path, options) -> None:
    async with running(settings, standin):
        # Discord hides /admin from members; a server may override that, so the bot checks itself
        refused = await standin.slash(guild, path, permissions=SEND_MESSAGES, overridden=True, **options)
        answer = await refusal(refused)
    assert "administrators" in answer["content"]


async def test_discord_does_not_offer_admin_commands_to_members(settings, standin, guild) -> None:
    async with running(settings, standin):
        with pytest.raises(PermissionError):
            await standin.slash(guild, "admin stats", permissions=SEND_MESSAGES)


async def test_admin_history_and_status_for_an_admin(settings, standin, guild) -> None:
    async with running(settings, standin):
        review = await standin.slash(guild, "review-sentiment", text="@here great")
        await review.wait("followup")
        history = await standin.slash(guild, "admin history", permissions=ADMINISTRATOR, kind="sentiment", limit=5)
        await history.wait("followup")
        status = await standin.slash(guild, "admin model-status", permissions=ADMINISTRATOR)
        await status.wait("followup")
    assert (await history.response())["data"]["flags"] & EPHEMERAL == EPHEMERAL
    [listed] = history.followups.values()
    assert "great" in listed["embeds"][0]["description"]
    assert "@here" not in listed["embeds"][0]["description"]
    [shown] = status.followups.values()
    assert [a["filename"] for a in shown["attachments"]] == ["model-metrics.png"]
    assert_nobody_pinged(standin, status)


async def test_admin_feedback_answers_an_admin_in_short(settings, standin, guild) -> None:
    async with running(settings, standin):
        review = await standin.slash(guild, "review-sentiment", text="great")
        await review.wait("followup")
        shown = await standin.slash(guild, "admin feedback", permissions=ADMINISTRATOR)
        await shown.wait("followup")
    [answer] = shown.followups.values()
    assert answer["embeds"][0]["title"] == "What the next retrain learns from the votes"


async def test_owner_ids_from_settings_count_as_admin_but_sync_needs_an_owner(settings, standin, guild) -> None:
    settings.bot.owner_ids = [999]
    async with running(settings, standin):
        owner = await standin.slash(guild, "admin stats", user=member(standin, 999), permissions=SEND_MESSAGES,
                                    overridden=True)
        await owner.wait("followup")
        admin = await standin.slash(guild, "admin sync", permissions=ADMINISTRATOR)
        answer = await refusal(admin)
    [stats] = owner.followups.values()
    assert stats["flags"] & EPHEMERAL == EPHEMERAL
    assert "owners" in answer["content"]


async def test_the_bot_runs_the_scheduler_and_admin_retrain_queues_the_job(settings, standin, guild,
                                                                          monkeypatch) -> None:
    start = scheduler_module.PlaybillBackgroundScheduler.start
    # paused: the queued job must not really retrain inside this test
    monkeypatch.setattr(scheduler_module.PlaybillBackgroundScheduler, "start",
                        lambda self, *args, **kwargs: start(self, paused=True))
    async with running(settings, standin, start_scheduler=True) as bot:
        scheduler = bot.services.scheduler
        jobs = {job.id for job in scheduler.get_jobs()}
        retrain = await standin.slash(guild, "admin retrain", permissions=ADMINISTRATOR, model="scene")
        await retrain.wait("followup")
        queued = scheduler.get_job("retrain-scene").next_run_time
    assert jobs >= {"retrain-sentiment", "retrain-scene"}
    [answer] = retrain.followups.values()
    assert "Queued a retraining run for scene" in answer["content"]
    assert (queued - discord.utils.utcnow()).total_seconds() < 60
    assert not scheduler.running  # stopped with the bot


# --------------------------------------------------------------------------- issue 11: old buttons, owners, /admin
UPDATE_MESSAGE = 7


async def test_a_forget_me_question_is_answered_after_the_bot_restarts(settings, standin, guild) -> None:
    async with running(settings, standin) as bot:
        review = await standin.slash(guild, "review-sentiment", user=member(standin, 111), text="good")
        await review.wait("followup")
        ask = await standin.slash(guild, "forget-me", user=member(standin, 111))
        [yes, no] = [c["custom_id"] for c in (await refusal(ask))["components"][0]["components"]]
    async with running(settings, standin, publish=False) as restarted:  # nothing of the old view in memory
        stranger = await standin.click(ask.original, yes, user=member(standin, 222))
        refused = await refusal(stranger)
        confirm = await standin.click(ask.original, yes, user=member(standin, 111))
        await confirm.wait("edit_original")
        left = history_rows(restarted.services.history)
    assert refused["content"] == "This question is for someone else."
    assert (await confirm.response())["type"] == DEFERRED_UPDATE
    assert left == []
    assert "deleted" in confirm.original["content"]
    assert confirm.original["components"] == []  # the buttons are gone once answered
    assert_nobody_pinged(standin, confirm)


async def test_a_forget_me_question_pressed_after_its_timeout_says_it_expired(settings, standin, guild) -> None:
    settings.bot.confirm_seconds = 0.05
    async with running(settings, standin) as bot:
        review = await standin.slash(guild, "review-sentiment", user=member(standin, 111), text="good")
        await review.wait("followup")
        ask = await standin.slash(guild, "forget-me", user=member(standin, 111))
        yes = (await refusal(ask))["components"][0]["components"][0]["custom_id"]
        await asyncio.sleep(0.2)  # past the question's timeout (nothing timed is asserted)
        late = await standin.click(ask.original, yes, user=member(standin, 111))
        answer = await late.response()
        kept = len(history_rows(bot.services.history))
    assert answer["type"] == UPDATE_MESSAGE
    assert "expired" in answer["data"]["content"]
    assert answer["data"]["components"] == []
    assert kept == 1  # nothing deleted


async def test_cancel_on_an_old_question_is_answered(settings, standin, guild) -> None:
    async with running(settings, standin):
        ask = await standin.slash(guild, "forget-me", user=member(standin, 111))
        no = (await refusal(ask))["components"][0]["components"][1]["custom_id"]
    async with running(settings, standin, publish=False):
        cancel = await standin.click(ask.original, no, user=member(standin, 111))
        answer = await cancel.response()
    assert (answer["type"], answer["data"]["content"]) == (UPDATE_MESSAGE, "Nothing was deleted.")


async def test_owners_are_a_teams_admins_and_developers_not_its_read_only_members(settings) -> None:
    team = [(1001, "admin"), (1002, "developer"), (1003, "read_only")]
    async with StandIn(guilds=1, team=team, response_deadline_s=30.0) as server:
        with server.point_discord_py():
            guild = next(iter(server.guilds))
            async with running(settings, server) as bot:
                owners = set(bot.app_owner_ids)
                reader = await server.slash(guild, "admin sync", user=member(server, 1003), permissions=ADMINISTRATOR)
                refused = await refusal(reader)
                developer = await server.slash(guild, "admin sync", user=member(server, 1002),
                                               permissions=ADMINISTRATOR)
                await developer.wait("followup")
    assert owners == {1001, 1002}
    assert "owners" in refused["content"]
    assert "Synced" in next(iter(developer.followups.values()))["content"]


async def test_admin_is_offered_to_and_answers_members_with_manage_server(settings, standin, guild) -> None:
    async with running(settings, standin):
        manager = await standin.slash(guild, "admin stats", permissions=MANAGE_GUILD)  # Discord offers it
        await manager.wait("followup")
    [stats] = manager.followups.values()
    assert stats["embeds"][0]["title"].startswith("History since")


def test_the_model_chart_plots_held_out_metrics_only() -> None:
    from playbill.bot.charts import chart_lines

    sentiment = [("v0001", {"val_loss": 0.4, "val_accuracy": 0.83, "test_accuracy": 0.85, "test_n": 25000}),
                 ("v0002", {"accuracy": 0.86, "n": 25000, "seconds": 12.0})]
    scene = [("v0001", {"val_loss": 1.6, "bits_per_char": 2.3, "train_loss": 1.2, "epoch_seconds": 40.0})]
    assert set(chart_lines(sentiment)) == {"val_loss", "val_accuracy", "test_accuracy", "accuracy"}
    assert set(chart_lines(scene)) == {"val_loss", "bits_per_char"}


async def test_serve_gives_up_on_a_gateway_that_never_answers(settings, standin) -> None:
    import socket

    from playbill.bot.client import DiscordUnavailable, serve

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.bot.shard_count = 1  # an explicit count: discord.py connects to the configured gateway
    settings.discord_gateway_url = f"ws://127.0.0.1:{port}/"
    settings.bot.connect_retries = 0
    with pytest.raises(DiscordUnavailable, match="gateway failed"):
        await asyncio.wait_for(serve(settings, standin.token, holders=fake_holders(settings), start_scheduler=False), 60)
