"""The Discord side, offline: the command tree, and the cogs driven by spec'd fakes of
discord.py's own classes (create_autospec), so a changed discord.py API fails these tests.
Commands run through discord.py's public API only (see `invoke`)."""

from __future__ import annotations

import logging
import re
from types import SimpleNamespace
from unittest.mock import create_autospec

import discord
import pytest
from discord import app_commands

from bot import handlers
from bot import text as fmt
from bot.client import PlaybillBot
from bot.cogs import playwright
from bot.discord_io import NO_MENTIONS
from bot.messages import Request
from bot.recording import HistoryGateway
from bot.services import Services
from bot.services import default_holders
from bot.testing import FakeSceneWriter, engine_refusal, fake_holders, history_rows, train_tiny_scene
from bot.views import FEEDBACK_TEMPLATE, ConfirmForget, FeedbackButton
from engine.models import MODEL_NAMES
from jobs import scheduler as scheduler_module

ADMIN_PERMISSIONS = discord.Permissions(administrator=True)


async def make_bot(settings, *, publish: bool = True) -> PlaybillBot:
    """A bot as `playbill run` builds it (real history database, fake models), not logged in."""
    holders = fake_holders(settings, sentiment=publish, scene=publish)
    services = Services.create(settings, holders=holders, history=HistoryGateway.open(settings.database_url))
    services.refresh_models()
    bot = PlaybillBot(settings, services=services, load_models=False)
    await bot.add_cogs()
    return bot


@pytest.fixture
async def bot(settings):
    settings.bot.cooldown_seconds = 0
    settings.sentiment.max_chars = 5000  # engine limits below Discord's own 6000 for an option
    settings.scene.max_prompt_chars = 500
    settings.bot.stream_edit_interval = 0.0
    bot = await make_bot(settings)
    yield bot
    await bot.services.drain()
    bot.services.close()


def fake_interaction(bot, *, user_id: int = 111, guild_id: int | None = 5, permissions=None) -> discord.Interaction:
    """An Interaction whose response/followup/messages are autospec'd from discord.py's classes."""
    interaction = create_autospec(discord.Interaction, instance=True)
    interaction.client = bot
    interaction.user = create_autospec(discord.Member, instance=True)
    interaction.user.id = user_id
    interaction.user.display_name = f"user{user_id}"
    interaction.guild_id = guild_id
    interaction.channel_id = 6
    interaction.permissions = permissions or discord.Permissions.none()
    response = create_autospec(discord.InteractionResponse, instance=True)
    done = {"flag": False}

    def mark_done(*args, **kwargs):
        done["flag"] = True

    response.is_done.side_effect = lambda: done["flag"]
    for name in ("defer", "send_message", "edit_message"):
        getattr(response, name).side_effect = mark_done
    interaction.response = response
    interaction.followup = create_autospec(discord.Webhook, instance=True)
    interaction.sent_messages = []  # the WebhookMessages followup.send returned, in order

    def followup_send(*args, **kwargs):
        message = create_autospec(discord.WebhookMessage, instance=True)
        interaction.sent_messages.append(message)
        return message

    interaction.followup.send.side_effect = followup_send
    return interaction


def find_command(bot, path: str) -> app_commands.Command:
    names = path.split()
    command = bot.tree.get_command(names[0])
    for name in names[1:]:
        command = command.get_command(name)
    return command


async def invoke(bot, path: str, interaction, **options) -> None:
    """Run a command in the order discord.py's tree does, through its public API: the group's
    and the cog's interaction_check, the command's checks, then the callback; any error goes to
    the tree's one error handler (unexpected ones wrapped in CommandInvokeError, as discord.py does)."""
    command = find_command(bot, path)
    interaction.command = command
    try:
        for check in (command.binding.interaction_check, *command.checks):
            if not await discord.utils.maybe_coroutine(check, interaction):
                raise app_commands.CheckFailure(f"the checks of /{command.qualified_name} failed")
        try:
            await command.callback(command.binding, interaction, **options)
        except app_commands.AppCommandError:
            raise
        except Exception as exc:
            raise app_commands.CommandInvokeError(command, exc) from exc
    except app_commands.AppCommandError as error:
        await bot.tree.on_error(interaction, error)



def every_call(interaction):
    """(name, kwargs) of every send/edit made through the fake."""
    calls = []
    for name in ("send_message", "edit_message"):
        calls += [(name, c.kwargs) for c in getattr(interaction.response, name).call_args_list]
    calls += [("followup.send", c.kwargs) for c in interaction.followup.send.call_args_list]
    calls += [("edit_original_response", c.kwargs) for c in interaction.edit_original_response.call_args_list]
    calls += [("message.edit", c.kwargs) for m in interaction.sent_messages for c in m.edit.call_args_list]
    return calls


def assert_no_pings(interaction) -> None:
    calls = every_call(interaction)
    assert calls, "nothing was sent"
    for name, kwargs in calls:
        assert kwargs.get("allowed_mentions") == NO_MENTIONS, f"{name} without allowed_mentions=none"


# --------------------------------------------------------------------------- the tree
async def test_command_tree_names_options_ranges_and_permissions(bot, settings) -> None:
    payload = {c.name: c.to_dict(bot.tree) for c in bot.tree.get_commands()}
    assert set(payload) == {"review-sentiment", "write-scene", "forget-me", "admin"}

    def walk(node):
        yield node
        for child in node.get("options", []):
            yield from walk(child)

    for command in payload.values():
        for node in walk(command):
            assert node["description"] and len(node["description"]) <= 100, node["name"]
            assert re.fullmatch(r"[a-z0-9_-]{1,32}", node["name"]), node["name"]
    scene_limits = bot.services.holders["scene"].limits  # the engine's limits, from the settings
    text = payload["review-sentiment"]["options"][0]
    assert (text["name"], text["required"], text["min_length"], text["max_length"]) == (
        "text", True, 1, settings.sentiment.max_chars)
    scene = {o["name"]: o for o in payload["write-scene"]["options"]}
    assert scene["prompt"]["max_length"] == settings.scene.max_prompt_chars
    assert (scene["length"]["min_value"], scene["length"]["max_value"]) == (1, scene_limits.max_length)
    assert (scene["temperature"]["min_value"], scene["temperature"]["max_value"]) == (
        scene_limits.min_temperature, scene_limits.max_temperature)
    assert [scene["length"]["required"], scene["temperature"]["required"]] == [False, False]
    admin = payload["admin"]
    assert int(admin["default_member_permissions"]) == ADMIN_PERMISSIONS.value
    assert admin["contexts"] == [0]  # guild only
    subcommands = {o["name"]: o for o in admin["options"]}
    assert set(subcommands) == {"history", "stats", "model-status", "retrain", "rollback", "sync"}
    limit = next(o for o in subcommands["history"]["options"] if o["name"] == "limit")
    assert (limit["min_value"], limit["max_value"]) == (1, 50)
    assert [c["value"] for c in subcommands["rollback"]["options"][0]["choices"]] == list(MODEL_NAMES)
    assert [c["value"] for c in subcommands["retrain"]["options"][0]["choices"]] == [*MODEL_NAMES, "all"]
    kind = next(o for o in subcommands["history"]["options"] if o["name"] == "kind")
    assert [c["value"] for c in kind["choices"]] == list(MODEL_NAMES)
    assert payload["forget-me"]["default_member_permissions"] is None  # everyone may forget themselves


async def test_options_never_exceed_discords_own_limit(settings) -> None:
    bot = await make_bot(settings)  # the engine's own limits: 200,000 / 10,000 characters
    try:
        payload = {c.name: c.to_dict(bot.tree) for c in bot.tree.get_commands()}
    finally:
        await bot.close()
    assert payload["review-sentiment"]["options"][0]["max_length"] == 6000
    assert payload["write-scene"]["options"][0]["max_length"] == 6000


def test_bot_never_pings_and_asks_for_no_privileged_intents(settings) -> None:
    bot = PlaybillBot(settings, services=Services.create(settings, history=HistoryGateway(None)))
    try:
        assert bot.allowed_mentions == NO_MENTIONS
        assert not bot.intents.message_content and not bot.intents.members and not bot.intents.presences
    finally:
        bot.services.close()


# --------------------------------------------------------------------------- /review-sentiment
async def test_review_defers_then_follows_up_with_embed_and_buttons(bot) -> None:
    interaction = fake_interaction(bot)
    await invoke(bot, "review-sentiment", interaction, text="@everyone a great film <@42> **wow**")
    interaction.response.defer.assert_awaited_once()
    interaction.followup.send.assert_awaited_once()
    kwargs = interaction.followup.send.call_args.kwargs
    embed: discord.Embed = kwargs["embed"]
    assert "positive" in embed.title and "%" in embed.fields[0].value
    assert "@everyone" not in embed.description and "<@42>" not in embed.description
    [row] = history_rows(bot.services.history)
    custom_ids = [item.custom_id for item in kwargs["view"].children]
    assert custom_ids == [f"playbill:fb:{row.id}:right", f"playbill:fb:{row.id}:wrong"]
    assert row.source == "discord" and row.user_id == 111 and row.user_name == "user111"
    assert_no_pings(interaction)


async def test_feedback_buttons_work_after_a_restart(settings) -> None:
    settings.bot.cooldown_seconds = 0
    first = await make_bot(settings)
    interaction = fake_interaction(first)
    await invoke(first, "review-sentiment", interaction, text="boring and bad")
    button = interaction.followup.send.call_args.kwargs["view"].children[1]
    await first.close()

    restarted = await make_bot(settings, publish=False)  # a new process: no views kept in memory
    try:
        pattern = FeedbackButton.__discord_ui_compiled_template__
        click = fake_interaction(restarted, user_id=222)
        item = await FeedbackButton.from_custom_id(click, button.item, pattern.fullmatch(button.custom_id))
        await item.callback(click)
        [row] = history_rows(restarted.services.history)
        assert (row.feedback_right, row.feedback_wrong) == (0, 1)
        click.response.defer.assert_awaited_once_with(ephemeral=True, thinking=True)
        reply = click.followup.send.call_args.kwargs
        assert reply["ephemeral"] is True and "wrong" in reply["content"]
        assert_no_pings(click)
        change = fake_interaction(restarted, user_id=222)
        right = FeedbackButton(row.id, "right")
        await right.callback(change)
        [row] = history_rows(restarted.services.history)
        assert (row.feedback_right, row.feedback_wrong) == (1, 0)  # one vote per person, changed
    finally:
        await restarted.close()


def test_feedback_template_matches_only_our_ids() -> None:
    pattern = re.compile(FEEDBACK_TEMPLATE)
    assert pattern.fullmatch("playbill:fb:123:right") and pattern.fullmatch("playbill:fb:9:wrong")
    assert not pattern.fullmatch("playbill:fb:1:maybe") and not pattern.fullmatch("other:fb:1:right")


async def test_cooldown_reply_is_ephemeral_and_nothing_is_deferred(bot) -> None:
    bot.services.cooldowns.seconds = 60
    await invoke(bot, "review-sentiment", fake_interaction(bot), text="good")
    second = fake_interaction(bot)
    await invoke(bot, "review-sentiment", second, text="good")
    second.response.defer.assert_not_awaited()
    kwargs = second.response.send_message.call_args.kwargs
    assert kwargs["ephemeral"] is True and "try again in" in second.response.send_message.call_args.args[0]
    assert_no_pings(second)


async def test_unexpected_error_gives_an_error_id_and_logs_the_trace(bot, caplog, monkeypatch) -> None:
    def broken(texts):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(bot.services.holders["sentiment"].model, "predict", broken)
    interaction = fake_interaction(bot)
    with caplog.at_level(logging.ERROR):
        await invoke(bot, "review-sentiment", interaction, text="good")
    message = interaction.followup.send.call_args.args[0]
    error_id = re.search(r"error id `([0-9a-f]{8})`", message).group(1)
    assert "boom" not in message and "Traceback" not in message
    assert any(error_id in r.getMessage() and r.exc_info for r in caplog.records)
    assert interaction.followup.send.call_args.kwargs["ephemeral"] is True
    assert_no_pings(interaction)


# --------------------------------------------------------------------------- /write-scene
async def test_scene_defers_streams_edits_and_stays_within_limits(bot) -> None:
    FakeSceneWriter.delay = 0.002
    try:
        interaction = fake_interaction(bot)
        await invoke(bot, "write-scene", interaction, prompt="ROMEO:", length=300, temperature=0.8)
    finally:
        FakeSceneWriter.delay = 0.0
    interaction.response.defer.assert_awaited_once()
    first = interaction.followup.send.call_args_list[0]
    assert first.args[0].startswith("```\nROMEO:")
    edits = [c for m in interaction.sent_messages for c in m.edit.call_args_list]
    assert len(edits) >= 2  # the message grew as the scene was written
    final = edits[-1].kwargs["content"]
    assert final.startswith("```\nROMEO:") and "-# playwright v0001" in final and playwright.CURSOR not in final
    for call in edits:
        assert len(call.kwargs["content"]) <= fmt.MESSAGE_LIMIT
        assert call.kwargs["allowed_mentions"] == NO_MENTIONS
    assert_no_pings(interaction)


async def test_long_scene_is_split_into_messages_within_limits(settings) -> None:
    settings.bot.cooldown_seconds = 0
    settings.scene.max_length = 6000  # the engine's length limit comes from the settings
    bot = await make_bot(settings)
    try:
        interaction = fake_interaction(bot)
        await invoke(bot, "write-scene", interaction, prompt="ROMEO:", length=4500)
    finally:
        await bot.close()
    contents = [c.args[0] for c in interaction.followup.send.call_args_list]
    contents += [c.kwargs["content"] for m in interaction.sent_messages for c in m.edit.call_args_list]
    assert len(interaction.followup.send.call_args_list) >= 3
    assert all(len(c) <= fmt.MESSAGE_LIMIT for c in contents)


async def test_unknown_characters_are_explained_before_deferring(bot) -> None:
    interaction = fake_interaction(bot)
    await invoke(bot, "write-scene", interaction, prompt="Juliet \N{GRINNING FACE}")
    interaction.response.defer.assert_not_awaited()
    text = interaction.response.send_message.call_args.args[0]
    assert "never seen these characters" in text
    assert "\N{GRINNING FACE}" in text
    assert interaction.response.send_message.call_args.kwargs["ephemeral"] is True


async def test_a_range_violation_gets_the_engines_message(bot) -> None:
    interaction = fake_interaction(bot)
    await invoke(bot, "write-scene", interaction, prompt="ROMEO:", temperature=7.5)
    limits = bot.services.holders["scene"].limits
    expected = engine_refusal(limits.check_temperature, 7.5)
    assert interaction.response.send_message.call_args.args[0] == expected
    interaction.response.defer.assert_not_awaited()


# --------------------------------------------------------------------------- privacy and admin
async def test_forget_me_asks_first_and_only_the_caller_can_confirm(bot) -> None:
    await invoke(bot, "review-sentiment", fake_interaction(bot, user_id=111), text="good")
    await invoke(bot, "review-sentiment", fake_interaction(bot, user_id=222), text="good")
    ask = fake_interaction(bot, user_id=111)
    await invoke(bot, "forget-me", ask)
    kwargs = ask.response.send_message.call_args.kwargs
    view: ConfirmForget = kwargs["view"]
    assert kwargs["ephemeral"] is True and len(history_rows(bot.services.history)) == 2  # nothing deleted yet
    stranger = fake_interaction(bot, user_id=222)
    assert await view.interaction_check(stranger) is False
    confirm = fake_interaction(bot, user_id=111)
    assert await view.interaction_check(confirm) is True
    await view.confirm.callback(confirm)
    assert [r.user_id for r in history_rows(bot.services.history)] == [222]
    confirm.response.defer.assert_awaited_once()
    assert "deleted" in confirm.edit_original_response.call_args.kwargs["content"]
    assert_no_pings(confirm)


@pytest.mark.parametrize("path, options", [("admin history", {}), ("admin stats", {}), ("admin model-status", {}),
                                           ("admin rollback", {"model": "scene"}), ("admin retrain", {"model": "all"}),
                                           ("admin sync", {})])
async def test_admin_commands_are_refused_to_non_admins(bot, path, options) -> None:
    interaction = fake_interaction(bot, permissions=discord.Permissions(send_messages=True))
    await invoke(bot, path, interaction, **options)
    interaction.response.defer.assert_not_awaited()
    text = interaction.response.send_message.call_args.args[0]
    assert "administrators" in text and interaction.response.send_message.call_args.kwargs["ephemeral"]


async def test_admin_history_and_status_for_an_admin(bot) -> None:
    await invoke(bot, "review-sentiment", fake_interaction(bot), text="@here great")
    interaction = fake_interaction(bot, permissions=ADMIN_PERMISSIONS)
    await invoke(bot, "admin history", interaction, kind="sentiment", limit=5)
    interaction.response.defer.assert_awaited_once_with(ephemeral=True)
    kwargs = interaction.followup.send.call_args.kwargs
    assert kwargs["ephemeral"] and "great" in kwargs["embed"].description and "@here" not in kwargs["embed"].description
    status = fake_interaction(bot, permissions=ADMIN_PERMISSIONS)
    await invoke(bot, "admin model-status", status)
    files = status.followup.send.call_args.kwargs["files"]
    assert files[0].filename == "model-metrics.png"
    assert_no_pings(status)


async def test_owner_ids_from_settings_count_as_admin_but_sync_needs_an_owner(bot, settings) -> None:
    settings.bot.owner_ids = [999]
    owner = fake_interaction(bot, user_id=999)
    await invoke(bot, "admin stats", owner)
    assert owner.followup.send.call_args.kwargs["ephemeral"]
    admin = fake_interaction(bot, permissions=ADMIN_PERMISSIONS)
    await invoke(bot, "admin sync", admin)
    assert "owners" in admin.response.send_message.call_args.args[0]


async def test_busy_and_missing_models_are_ephemeral_refusals_before_any_defer(bot, settings, monkeypatch) -> None:
    monkeypatch.setattr(bot.services.sentiment_worker, "has_room", lambda: False)
    busy = fake_interaction(bot)
    await invoke(bot, "review-sentiment", busy, text="good")
    busy.response.defer.assert_not_awaited()
    assert "retry in a moment" in busy.response.send_message.call_args.args[0]
    assert busy.response.send_message.call_args.kwargs["ephemeral"] is True

    empty = fake_holders(settings, home=settings.home / "no-models", sentiment=False, scene=False)
    services = Services.create(settings, holders=empty, history=HistoryGateway(None))
    bare = PlaybillBot(settings, services=services, load_models=False)
    await bare.add_cogs()
    try:
        missing = fake_interaction(bare)
        await invoke(bare, "write-scene", missing, prompt="ROMEO:")
        missing.response.defer.assert_not_awaited()
        assert "playbill train scene" in missing.response.send_message.call_args.args[0]
    finally:
        await bare.close()


async def test_a_vote_on_a_forgotten_verdict_is_explained(bot) -> None:
    await invoke(bot, "review-sentiment", fake_interaction(bot, user_id=111), text="good")
    [row] = history_rows(bot.services.history)
    await handlers.forget_me(bot.services, Request("discord", user_id=111))
    click = fake_interaction(bot, user_id=222)
    await FeedbackButton(row.id, "right").callback(click)
    message = click.followup.send.call_args.args[0]
    assert "forgotten or purged" in message and click.followup.send.call_args.kwargs["ephemeral"] is True
    assert_no_pings(click)


@pytest.mark.parametrize("dev_guild", [None, 4242])
async def test_setup_hook_loads_models_registers_buttons_and_syncs_only_to_the_dev_guild(
        settings, monkeypatch, dev_guild) -> None:
    settings.bot.dev_guild_id = dev_guild
    holders = fake_holders(settings)
    bot = PlaybillBot(settings, services=Services.create(settings, holders=holders, history=HistoryGateway(None)))
    synced, registered = [], []
    monkeypatch.setattr(bot, "add_dynamic_items", lambda *items: registered.append(items))

    async def fake_sync(*, guild=None):
        synced.append(guild)
        return []

    async def fake_application_info():
        return SimpleNamespace(team=None, owner=SimpleNamespace(id=42))

    monkeypatch.setattr(bot.tree, "sync", fake_sync)
    monkeypatch.setattr(bot, "application_info", fake_application_info)
    try:
        await bot.setup_hook()
        assert all(h.loaded for h in holders.values())
        assert registered == [(FeedbackButton,)]  # the buttons of old messages work from the start
        assert {c.name for c in bot.tree.get_commands()} == {"review-sentiment", "write-scene", "forget-me", "admin"}
        assert bot.app_owner_ids == {42}
        if dev_guild is None:
            assert synced == []  # never a global sync on start
        else:
            assert [g.id for g in synced] == [dev_guild]
            assert {c.name for c in bot.tree.get_commands(guild=discord.Object(dev_guild))} >= {"admin"}
    finally:
        await bot.close()


async def test_the_bot_runs_the_scheduler_and_admin_retrain_queues_the_job(bot, monkeypatch) -> None:
    start = scheduler_module.PlaybillBackgroundScheduler.start
    # paused: the queued job must not really retrain inside this test
    monkeypatch.setattr(scheduler_module.PlaybillBackgroundScheduler, "start",
                        lambda self, *args, **kwargs: start(self, paused=True))
    bot.start_jobs()
    scheduler = bot.services.scheduler
    assert scheduler is not None and scheduler.running
    assert {job.id for job in scheduler.get_jobs()} >= {"retrain-sentiment", "retrain-scene"}
    interaction = fake_interaction(bot, permissions=ADMIN_PERMISSIONS)
    await invoke(bot, "admin retrain", interaction, model="scene")
    assert "Queued a retraining run for scene" in interaction.followup.send.call_args.kwargs["content"]
    queued = scheduler.get_job("retrain-scene").next_run_time
    assert (queued - discord.utils.utcnow()).total_seconds() < 60
    await bot.close()
    assert not scheduler.running


async def test_write_scene_streams_from_a_real_tiny_model(settings, tmp_path) -> None:
    """The real engine.scene.SceneWriter behind the cog: streamed edits, limits, its vocabulary."""
    version = train_tiny_scene(settings.home, tmp_path / "work")
    settings.bot.cooldown_seconds = 0
    settings.bot.stream_edit_interval = 0.0
    settings.scene.stream_chunk_chars = 50
    holders = {**fake_holders(settings, scene=False), "scene": default_holders(settings)["scene"]}
    services = Services.create(settings, holders=holders, history=HistoryGateway.open(settings.database_url))
    services.refresh_models()
    bot = PlaybillBot(settings, services=services, load_models=False)
    await bot.add_cogs()
    try:
        interaction = fake_interaction(bot)
        await invoke(bot, "write-scene", interaction, prompt="ROMEO:", length=1500, temperature=0.8)
        edits = [c.kwargs["content"] for m in interaction.sent_messages for c in m.edit.call_args_list]
        sent = [c.args[0] for c in interaction.followup.send.call_args_list]
        assert len(edits) >= 3 and all(len(t) <= fmt.MESSAGE_LIMIT for t in sent + edits)
        assert sent[0].startswith("```\nROMEO:") and f"-# playwright {version}" in edits[-1]
        [row] = history_rows(services.history)
        assert row.model_version == version and row.output.startswith("ROMEO:") and len(row.output) > 200
        refused = fake_interaction(bot)
        await invoke(bot, "write-scene", refused, prompt="ROMEO \N{GRINNING FACE}")
        assert "never seen these characters" in refused.response.send_message.call_args.args[0]
    finally:
        await bot.close()
