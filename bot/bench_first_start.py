"""`playbill bench first-start`: what a new server admin gets, measured, the way `playbill run
--train-missing` starts: in an empty home, the quick critic (`jobs.warmup.train_first`), then the
first review answered through the bot's own request path at once, while the quick playwright
trains in a spawned background process (`jobs.warmup.start_first_start`), which goes on with the
warm-up. Meanwhile /write-scene is asked every few seconds: its "still learning" answers (with
the expected time) until the first scene. Reported: the critic ready / first review time, the
first scene time, a timeline of every promotion with its figures, and the event loop's lag the
whole time (the bot must stay responsive while the models train)."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable
from typing import Any

from playbill.bot.cogs.critic import review_sentiment, verdict_response
from playbill.bot.cogs.playwright import write_scene
from playbill.bot.bench import LagMeter, percentile
from playbill.bot.messages import Request
from playbill.bot.services import Services
from playbill.engine.errors import ModelUnavailable
from playbill.engine.models import MODEL_NAMES, spec
from playbill.jobs.warmup import pending, read_state, start_first_start, train_first
from playbill.settings import Settings

REVIEW = "A warm, funny and beautifully acted film; the story kept me hooked until the very end."
PROMPT = "ROMEO:"
ASKER = Request(source="console", user_id=1, display_name="bench", is_admin=True)


def _figures(settings: Settings, name: str) -> dict[str, Any]:
    registry = spec(name).registry(settings.home)
    current = registry.current_version()
    metrics = registry.get(current).metrics if current else {}
    return {"version": current, **{k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)}}


def _gist(answer: str) -> str:
    """A "still learning" answer without its clock figures: a new timeline event only when the
    epochs done change."""
    return re.sub(r"\d+ s ago|about \d+ s each|about \d+ min \(about [\d:]+ UTC\)", "", answer)


async def _review(services: Services) -> str:
    return verdict_response(await review_sentiment(services, ASKER, REVIEW)).plain()[:120]


async def _scene(services: Services) -> dict[str, Any]:
    """{"scene", "scene_version"}, or {"learning": the answer} while the playwright still learns
    (or none is served)."""
    scene, version = "", None
    try:
        async for update in write_scene(services, ASKER, PROMPT, 200, None):
            scene, version = update.text, update.model_version
    except ModelUnavailable as exc:  # StillLearning among them; none at all after the bench stopped it
        return {"learning": str(exc)}
    return {"scene": scene, "scene_version": version}


async def _answer(services: Services) -> dict[str, Any]:
    return {"review": await _review(services), **await _scene(services)}


async def bench_first_start(settings: Settings, *, minutes: float, say: Callable[[str], None] = print,
                            answer_every: float = 5.0) -> dict[str, Any]:
    """Run the first start in `settings.home` (must hold no model), then warm up for `minutes`."""
    if any(spec(n).registry(settings.home).current_version() for n in MODEL_NAMES):
        raise ValueError(f"{settings.home} already has a model: the bench starts from an empty home")
    t0 = time.monotonic()
    timeline: list[dict[str, Any]] = []

    def event(what: str, **figures: Any) -> None:
        timeline.append({"t_s": round(time.monotonic() - t0, 1), "event": what, **figures})
        say(f"{timeline[-1]['t_s']:>8.1f} s  {what}  {figures}")

    first, later = MODEL_NAMES[:1], MODEL_NAMES[1:]  # as `playbill run --train-missing`: the critic first
    trained = await asyncio.to_thread(train_first, settings, say, names=first)
    for name, outcome in trained.items():
        event(f"{name} quick model trained", seconds=outcome, **_figures(settings, name))
    critic_ready_s = timeline[-1]["t_s"] if timeline else None
    services = Services.create(settings)
    services.cooldowns.seconds = 0
    process = await asyncio.to_thread(start_first_start, settings, later)
    meter = LagMeter()
    lag = asyncio.create_task(meter.run())
    await services.refresh_models_async()
    first_review = await _review(services)
    event("first review answered", review=first_review)
    first_review_s = timeline[-1]["t_s"]
    first_scene: dict[str, Any] = {}
    first_scene_s = None
    learning_answers: list[str] = []
    seen = {n: 0 for n in MODEL_NAMES}
    answers = 0
    deadline = t0 + minutes * 60
    try:
        while time.monotonic() < deadline and process is not None and process.is_alive():
            await asyncio.sleep(1.0 if first_scene_s is None else answer_every)
            await services.refresh_models_async()
            answer = await _answer(services)
            answers += 1
            if "learning" in answer:
                if not learning_answers or _gist(answer["learning"]) != _gist(learning_answers[-1]):
                    event("/write-scene: still learning", answer=answer["learning"])
                learning_answers.append(answer["learning"])
            elif first_scene_s is None:
                first_scene = answer
                event("first scene answered", version=answer["scene_version"], scene=answer["scene"][:160])
                first_scene_s = timeline[-1]["t_s"]
            models = read_state(settings.home)["models"]
            for name in MODEL_NAMES:
                for stage in models.get(name, {}).get("stages", [])[seen[name]:]:
                    metric = spec(name).gate_metric
                    event(f"{name} stage {'promoted' if stage['promoted'] else 'rejected'}",
                          candidate=stage["candidate"], profile=stage["profile"], last_epoch=stage["last_epoch"],
                          **{metric: round(stage[metric], 4), f"current_{metric}": round(stage[f"current_{metric}"], 4)},
                          done=stage["done"], stage_seconds=stage["seconds"])
                seen[name] = len(models.get(name, {}).get("stages", []))
            if first_scene_s is not None and not pending(settings):
                break
        if first_scene_s is None:  # the background process ended (no warm-up): its playwright, if any
            await services.refresh_models_async()
            answer = await _scene(services)
            if "scene" in answer:
                first_scene = answer
                event("first scene answered", version=answer["scene_version"], scene=answer["scene"][:160])
                first_scene_s = timeline[-1]["t_s"]
    finally:
        meter.stop()
        await lag
        if process is not None and process.is_alive():
            process.terminate()
            await asyncio.to_thread(process.join, 30)
        services.close()
    last = await _answer_after_refresh(settings)
    return {
        "home": str(settings.home), "minutes_run": round((time.monotonic() - t0) / 60, 1),
        "critic_ready_s": critic_ready_s, "first_review_s": first_review_s, "first_scene_s": first_scene_s,
        "first_answer_s": first_review_s, "still_learning_answers": len(learning_answers),
        "still_learning_first": learning_answers[0] if learning_answers else None,
        "still_learning_last": learning_answers[-1] if learning_answers else None,
        "trained": trained, "timeline": timeline,
        "answers_while_warming": answers, "warmup_done": not pending(settings),
        "loop_lag_p50_ms": round(percentile(meter.lags, 0.5) * 1000, 1),
        "loop_lag_p95_ms": round(percentile(meter.lags, 0.95) * 1000, 1),
        "loop_lag_max_ms": round(max(meter.lags, default=0.0) * 1000, 1),
        "first_review": first_review, "first_scene": first_scene.get("scene", ""), "last_scene": last.get("scene", ""),
        "final": {n: _figures(settings, n) for n in MODEL_NAMES},
        "load_average": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
    }


async def _answer_after_refresh(settings: Settings) -> dict[str, Any]:
    services = Services.create(settings)
    services.cooldowns.seconds = 0
    try:
        await services.refresh_models_async()
        return await _answer(services)
    finally:
        services.close()
