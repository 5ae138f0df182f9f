"""The front-end-neutral parts of the bot: what each feature does (bot/cogs/*), the inference worker, safe text."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import threading
import time

import pytest

from playbill.bot.cogs import admin, critic, playwright, privacy
from playbill.bot import text as fmt
from playbill.bot.errors import ADMIN_ONLY, Busy, NotAllowed, OnCooldown
from playbill.bot.messages import Request
from playbill.bot.recording import HistoryGateway
from playbill.bot.services import Services
from fakes import (FakeSceneWriter, FakeSentimentModel, engine_refusal, fake_holders, history_rows,
                          publish_fake_version)
from playbill.engine.errors import InvalidInput, ModelUnavailable
from playbill.engine.models import spec
from playbill.engine.scene import SceneRequest, unknown_characters_message
from playbill.engine.sentiment import ReviewRequest
from playbill.history.errors import HistoryError

ALICE = Request(source="discord", user_id=111, guild_id=5, channel_id=6, display_name="alice")
BOB = Request(source="discord", user_id=222, guild_id=5, channel_id=6, display_name="bob")
ADMIN = Request(source="console", user_id=1, is_admin=True)



# --------------------------------------------------------------------------- safe text
def test_user_text_cannot_ping_or_format() -> None:
    shown = fmt.safe("@everyone **bold** <@123> `x`")
    assert "@everyone" not in shown and "<@123>" not in shown
    assert "\\*\\*bold\\*\\*" in shown


def test_model_text_cannot_break_out_of_its_code_block() -> None:
    block = fmt.code_block("evil ``` @here\n```")
    assert block.startswith("```\n") and block.endswith("\n```")
    assert block[3:-3].count("```") == 0


def test_scene_messages_respect_the_limit_even_with_backticks() -> None:
    scene = ("To be ``` or not\n" * 400)
    messages = fmt.scene_messages(scene)
    assert len(messages) > 1
    assert all(len(m) <= fmt.MESSAGE_LIMIT for m in messages)
    assert all(m.startswith("```\n") and m.endswith("\n```") and m[3:-3].count("```") == 0 for m in messages)
    assert "".join(m[4:-4] for m in messages).replace(fmt.ZWSP, "").count("To be") == 400


def test_bar() -> None:
    assert fmt.bar(0.73) == "███████░░░ 73%"
    assert fmt.bar(2.0).endswith("100%")


# --------------------------------------------------------------------------- the critic
async def test_review_answers_with_label_probability_version_and_records_it(services) -> None:
    verdict = await critic.review_sentiment(services, ALICE, "A great film, I loved it")
    version = services.holders["sentiment"].version
    assert (verdict.label, verdict.model_version) == ("positive", version)
    assert 0.5 < verdict.positive_probability <= 1
    [row] = history_rows(services.history)
    assert verdict.interaction_id == row.id
    assert row.status == "ok" and row.source == "discord" and row.model_version == version
    assert row.label == "positive" and row.latency_ms >= 0 and row.prompt == "A great film, I loved it"
    assert (row.user_id, row.guild_id, row.channel_id, row.user_name) == (111, 5, 6, "alice")


async def test_a_verdict_is_shown_with_its_bar_and_version_and_the_user_text_escaped(services) -> None:
    verdict = await critic.review_sentiment(services, ALICE, "@everyone this is **so** awful <@42>")
    embed = critic.verdict_response(verdict).embed
    assert embed.title == "The critic says: negative"
    assert embed.fields[0].value == f"`{fmt.bar(verdict.positive_probability)}`"
    assert embed.fields[1].value == f"sentiment {verdict.model_version}"
    assert "@everyone" not in embed.description and "<@42>" not in embed.description


@pytest.mark.parametrize("too_long", [False, True])
async def test_bad_reviews_get_the_engines_message_and_are_recorded(services, too_long) -> None:
    limits = services.holders["sentiment"].limits
    text = "x" * (limits.max_chars + 1) if too_long else "   "
    message = engine_refusal(limits.check, ReviewRequest(text))
    with pytest.raises(InvalidInput) as refused:
        await critic.review_sentiment(services, ALICE, text)
    assert str(refused.value) == message
    await services.drain()
    [row] = history_rows(services.history)
    assert (row.status, row.error) == ("error", message)
    assert row.prompt.startswith(text[:100])  # history may clip a long prompt; it keeps its start


async def test_cooldown_is_per_user_and_applies_to_the_console(services) -> None:
    services.cooldowns.seconds = 30
    await critic.review_sentiment(services, ALICE, "good")
    with pytest.raises(OnCooldown, match="try again in"):
        await critic.review_sentiment(services, ALICE, "good")
    await critic.review_sentiment(services, BOB, "good")  # someone else is not slowed down
    console = Request(source="console", user_id=7)
    await critic.review_sentiment(services, console, "good")
    with pytest.raises(OnCooldown):
        await critic.review_sentiment(services, console, "good")


async def test_concurrent_reviews_are_micro_batched(services) -> None:
    FakeSentimentModel.delay = 0.05
    try:
        texts = [f"good film number {i}" for i in range(24)]
        results = await asyncio.gather(*(services.sentiment_worker.predict(ReviewRequest(t)) for t in texts))
    finally:
        FakeSentimentModel.delay = 0.0
    assert len(results) == 24
    model = services.holders["sentiment"].model
    assert sum(model.batches) == 24
    assert len(model.batches) < 24 and max(model.batches) > 1  # batched, not one call each


async def test_full_queue_says_busy_and_nothing_hangs(settings) -> None:
    settings.bot.cooldown_seconds = 0
    settings.bot.inference_queue_size = 2
    settings.bot.max_batch_size = 1
    s = Services.create(settings, holders=fake_holders(settings), history=HistoryGateway(None))
    s.refresh_models()
    FakeSentimentModel.delay = 0.2
    try:
        outcomes = await asyncio.wait_for(asyncio.gather(
            *(s.sentiment_worker.predict(ReviewRequest("good")) for _ in range(8)), return_exceptions=True), 10)
    finally:
        FakeSentimentModel.delay = 0.0
        s.close()
    busy = [o for o in outcomes if isinstance(o, Busy)]
    answered = [o for o in outcomes if isinstance(o, tuple)]
    assert busy and answered and len(busy) + len(answered) == 8
    assert str(busy[0]) == "The critic is busy right now; please retry in a moment."


async def test_one_bad_text_in_a_batch_does_not_fail_the_others(services) -> None:
    worker = services.sentiment_worker
    outcomes = await asyncio.gather(*(worker.predict(ReviewRequest(t)) for t in ("good", " ", "bad")),
                                    return_exceptions=True)
    assert isinstance(outcomes[1], InvalidInput)
    assert outcomes[0][0].label == "positive" and outcomes[2][0].label == "negative"


async def test_a_locked_database_never_breaks_the_reply(services, settings) -> None:
    settings.bot.history_wait_seconds = 0.2
    locker = sqlite3.connect(settings.home / "playbill.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another process holds the database
    try:
        started = time.perf_counter()
        verdict = await critic.review_sentiment(services, ALICE, "good")
        assert time.perf_counter() - started < 2
        assert verdict.label == "positive" and verdict.interaction_id is None  # answered, just no buttons
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    await services.drain()
    assert [r.prompt for r in history_rows(services.history)] == ["good"]  # written once the lock went


async def test_missing_model_names_the_training_command(settings) -> None:
    s = Services.create(settings, holders=fake_holders(settings, sentiment=False, scene=False),
                        history=HistoryGateway(None))
    s.refresh_models()
    try:
        with pytest.raises(ModelUnavailable, match="playbill train sentiment"):
            await critic.review_sentiment(s, ALICE, "good")
        with pytest.raises(ModelUnavailable, match="playbill train scene"):
            async for _ in playwright.write_scene(s, ALICE, "ROMEO:"):
                pass
    finally:
        s.close()


async def test_hot_swap_serves_the_new_version(services, settings) -> None:
    good = ReviewRequest("good")
    first = (await services.sentiment_worker.predict(good))[1]
    newer = publish_fake_version(settings.home, "sentiment", {"accuracy": 0.9})
    assert services.refresh_models()["sentiment"] is False  # published, not yet promoted
    spec("sentiment").registry(settings.home).promote(newer)
    assert services.refresh_models()["sentiment"] is True
    assert (await services.sentiment_worker.predict(good))[1] == newer != first


# --------------------------------------------------------------------------- the playwright
async def test_scene_streams_then_ends_at_a_boundary_and_is_recorded(services) -> None:
    updates = [u async for u in playwright.write_scene(services, ALICE, "ROMEO:", length=150, temperature=0.7)]
    assert len(updates) > 3 and updates[-1].done and not any(u.done for u in updates[:-1])
    final = updates[-1].text
    assert final.startswith("ROMEO:") and final.rstrip()[-1] in ".?!:;"
    [row] = history_rows(services.history)
    assert row.kind == "scene" and row.output == final and row.params["length"] == 150
    assert row.model_version == services.holders["scene"].version and row.status == "ok"


async def test_the_settings_defaults_reach_the_writer_as_a_typed_request(services, settings) -> None:
    settings.scene.top_k = 5
    settings.scene.stop_at_boundary = False
    updates = [u async for u in playwright.write_scene(services, ALICE, "ROMEO:")]
    [request] = services.holders["scene"].model.requests
    assert request == SceneRequest("ROMEO:", settings.scene.default_length, settings.scene.temperature, top_k=5,
                                   stop_at_boundary=False)
    assert len(updates[-1].text) == len("ROMEO:") + settings.scene.default_length  # no cut: the writer decides


async def test_a_configured_default_temperature_is_checked_by_the_engine_rule(services, settings) -> None:
    limits = services.holders["scene"].limits
    settings.scene.temperature = limits.max_temperature + 1
    message = engine_refusal(limits.check_temperature, settings.scene.temperature)
    with pytest.raises(InvalidInput) as refused:
        async for _ in playwright.write_scene(services, ALICE, "ROMEO:"):
            pass
    assert str(refused.value) == message


async def test_unknown_characters_get_the_engines_message(services) -> None:
    with pytest.raises(InvalidInput) as refused:
        async for _ in playwright.write_scene(services, ALICE, "Romeo é \N{GRINNING FACE}"):
            pass
    assert str(refused.value) == unknown_characters_message(sorted("é\N{GRINNING FACE}"))


@pytest.mark.parametrize("option", ["no length", "long length", "hot", "long prompt"])
async def test_scene_options_get_the_engines_messages(services, option) -> None:
    limits = services.holders["scene"].limits
    request = {
        "no length": SceneRequest("ROMEO:", 0, 1.0),
        "long length": SceneRequest("ROMEO:", limits.max_length + 1, 1.0),
        "hot": SceneRequest("ROMEO:", 100, limits.max_temperature + 0.5),
        "long prompt": SceneRequest("x" * (limits.max_prompt_chars + 1), 100, 1.0),
    }[option]
    message = engine_refusal(limits.check, request)
    with pytest.raises(InvalidInput) as refused:
        async for _ in playwright.write_scene(services, ALICE, request.prompt, request.length, request.temperature):
            pass
    assert str(refused.value) == message


async def test_scene_failure_midway_is_recorded(services) -> None:
    FakeSceneWriter.fail_after = 2
    try:
        with pytest.raises(RuntimeError):
            async for _ in playwright.write_scene(services, ALICE, "ROMEO:", length=200):
                pass
    finally:
        FakeSceneWriter.fail_after = None
    await services.drain()
    [row] = history_rows(services.history)
    assert row.status == "error" and "error id" in row.error and "failed on purpose" in row.error


# --------------------------------------------------------------------------- feedback, privacy, admin
async def test_feedback_one_vote_per_user_changeable(services) -> None:
    verdict = await critic.review_sentiment(services, ALICE, "good")
    votes = [await critic.vote(services, BOB, verdict.interaction_id, v) for v in ("wrong", "wrong", "right")]
    assert [v.outcome for v in votes] == ["created", "unchanged", "updated"]
    said = [critic.vote_response(v).text for v in votes]
    assert said[0].startswith("Thanks") and "already" in said[1] and said[2].startswith("Changed")
    [row] = history_rows(services.history)
    assert (row.feedback_right, row.feedback_wrong) == (1, 0)


async def test_a_vote_from_another_guild_is_refused(services) -> None:
    verdict = await critic.review_sentiment(services, ALICE, "good")
    elsewhere = Request(source="discord", user_id=222, guild_id=99, channel_id=7, display_name="bob")
    with pytest.raises(HistoryError, match="another place"):
        await critic.vote(services, elsewhere, verdict.interaction_id, "right")


async def test_feedback_on_a_forgotten_interaction_is_explained(services) -> None:
    verdict = await critic.review_sentiment(services, ALICE, "good")
    await privacy.forget_me(services, ALICE)
    with pytest.raises(HistoryError, match="forgotten or purged"):
        await critic.vote(services, BOB, verdict.interaction_id, "right")


async def test_forget_me_deletes_only_the_callers_rows(services) -> None:
    await critic.review_sentiment(services, ALICE, "good")
    await critic.review_sentiment(services, BOB, "bad")
    forgotten = await privacy.forget_me(services, ALICE)
    assert forgotten.counts == {"interactions": 1, "feedback": 0}
    assert privacy.forgotten_response(forgotten).ephemeral
    assert [r.user_id for r in history_rows(services.history)] == [BOB.user_id]


async def test_admin_commands_refuse_non_admins_with_the_one_message(services) -> None:
    for call in (admin.history(services, ALICE), admin.stats(services, ALICE), admin.model_status(services, ALICE),
                 admin.feedback(services, ALICE), admin.retrain(services, ALICE, "all"),
                 admin.rollback(services, ALICE, "scene")):
        with pytest.raises(NotAllowed) as refused:
            await call
        assert str(refused.value) == ADMIN_ONLY


async def test_retrain_and_rollback_take_the_names_of_the_spec_list(services) -> None:
    for name in ("poet", "all-of-them"):
        with pytest.raises(InvalidInput) as retrain:
            await admin.retrain(services, ADMIN, name)
        assert str(retrain.value) == engine_refusal(spec, name)
        with pytest.raises(InvalidInput) as rollback:
            await admin.rollback(services, ADMIN, name)
        assert str(rollback.value) == engine_refusal(spec, name)


async def test_the_admin_commands_take_the_models_aliases(services, settings) -> None:
    registry = services.holders["scene"].registry
    old = services.holders["scene"].version
    registry.promote(old)
    registry.promote(publish_fake_version(settings.home, "scene", {"val_loss": 1.5}))
    assert await admin.rollback(services, ADMIN, "playwright") == admin.Rollback("scene", previous=old, serving=old)


async def test_model_status_has_versions_metrics_next_run_and_a_png(services) -> None:
    response = await admin.model_status(services, ADMIN)
    fields = {f.name: f.value for f in response.embed.fields}
    assert "accuracy 0.81" in fields["sentiment"] and "next run:" in fields["sentiment"]
    assert response.files[0].data.startswith(b"\x89PNG")


async def test_rollback_serves_the_previous_version(services, settings) -> None:
    old = services.holders["scene"].version
    registry = services.holders["scene"].registry
    registry.promote(old)  # as `playbill train` does: every trained version is promoted
    registry.promote(publish_fake_version(settings.home, "scene", {"val_loss": 1.5}))
    services.refresh_models()
    assert services.holders["scene"].version != old
    done = await admin.rollback(services, ADMIN, "scene")
    assert done == admin.Rollback("scene", previous=old, serving=old)
    assert services.holders["scene"].version == old


async def test_admin_history_and_stats_use_the_history_filters(services) -> None:
    await critic.review_sentiment(services, ALICE, "a great film")
    await critic.review_sentiment(services, BOB, "an awful film")
    listed = await admin.history(services, ADMIN, label="negative", since="1h")
    assert "awful" in listed.embed.description and "great" not in listed.embed.description
    assert (await admin.history(services, ADMIN, until="2000-01-01")).text == "No interactions match."
    with pytest.raises(HistoryError, match="not a time"):
        await admin.history(services, ADMIN, since="last tuesday")
    stats = await admin.stats(services, ADMIN, since="7d")
    fields = {f.name: f.value for f in stats.embed.fields}
    assert "2 interaction(s)" in stats.embed.title and "sentiment 2" in fields["By kind"]
    assert "positive 1, negative 1" in fields["Verdicts"] and "median" in fields["Latency"]


# --------------------------------------------------------------------------- the event loop stays free
def _burn_cpu(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


async def test_event_loop_keeps_responding_while_training_and_serving(services) -> None:
    """A CPU-bound 'training run' in a spawned process (as the jobs run it) plus a stream of
    requests. No model or database call may run on the event loop's thread, and a ticking
    coroutine must see the loop answer within 100 ms (95th percentile of wall-clock lag, so
    a busy shared machine descheduling the whole process is not counted as blocking; the
    loop thread's own CPU time per tick must stay under 100 ms without exception)."""
    ctx = multiprocessing.get_context("spawn")
    trainer = ctx.Process(target=_burn_cpu, args=(3.0,))
    trainer.start()
    FakeSentimentModel.delay = 0.02
    FakeSceneWriter.delay = 0.005
    FakeSentimentModel.threads.clear()
    FakeSceneWriter.threads.clear()
    db_threads: set[int] = set()
    sessions = services.history.session_factory

    def watched_sessions():
        db_threads.add(threading.get_ident())
        return sessions()

    services.history.session_factory = watched_sessions
    lags: list[float] = []
    loop_cpu: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        while not stop.is_set():
            wall, cpu = time.perf_counter(), time.thread_time()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - wall - 0.01)
            loop_cpu.append(time.thread_time() - cpu)

    async def load() -> None:
        for i in range(5):
            await asyncio.gather(*(critic.review_sentiment(services, Request("discord", user_id=n), f"good {n}")
                                   for n in range(20)))
            async for _ in playwright.write_scene(services, Request("discord", user_id=99 + i), "ROMEO:", length=200):
                pass

    loop_thread = threading.get_ident()
    try:
        ticker = asyncio.create_task(tick())
        await load()
        stop.set()
        await ticker
        await services.drain()
    finally:
        FakeSentimentModel.delay = 0.0
        FakeSceneWriter.delay = 0.0
        services.history.session_factory = sessions
        trainer.join(10)
    assert len(history_rows(services.history)) == 105  # the load really went through
    assert loop_thread not in FakeSentimentModel.threads | FakeSceneWriter.threads | db_threads
    assert FakeSentimentModel.threads and FakeSceneWriter.threads and db_threads
    assert len(lags) > 20
    p95 = sorted(lags)[int(len(lags) * 0.95)]
    assert p95 < 0.1, f"event loop lag p95 {p95 * 1000:.0f} ms (max {max(lags) * 1000:.0f} ms)"
    assert max(loop_cpu) < 0.1, f"the loop thread computed for {max(loop_cpu) * 1000:.0f} ms in one tick"


async def test_serving_bench_reports_all_three_modes() -> None:
    from playbill.bot.bench import bench_serving

    model = FakeSentimentModel("v-bench")
    report = await bench_serving(model, requests=40, chars=50, max_batch=16)
    assert [r["mode"] for r in report["results"]] == ["on-loop", "worker, batch 1", "worker, batch 16"]
    assert report["results"][1]["mean_batch"] == 1 and report["results"][2]["mean_batch"] > 1
    assert all(r["requests"] == 40 and r["requests_per_s"] > 0 for r in report["results"])
