"""`playbill bench first-start`: what a new server admin gets, measured. An empty home, the quick
first models (`jobs.warmup.train_first`, what `playbill run --train-missing` runs), the first
review and scene answered through the bot's own request path, then the warm-up process while
this process keeps answering: a timeline of every promotion with its figures, and the event
loop's lag the whole time (the bot must stay responsive while the models train)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from playbill.bot.cogs.critic import review_sentiment, verdict_response
from playbill.bot.cogs.playwright import write_scene
from playbill.bot.bench import LagMeter, percentile
from playbill.bot.messages import Request
from playbill.bot.services import Services
from playbill.engine.models import MODEL_NAMES, spec
from playbill.jobs.warmup import pending, read_state, start_warmup, train_first
from playbill.settings import Settings

REVIEW = "A warm, funny and beautifully acted film; the story kept me hooked until the very end."
PROMPT = "ROMEO:"
ASKER = Request(source="console", user_id=1, display_name="bench", is_admin=True)


def _figures(settings: Settings, name: str) -> dict[str, Any]:
    registry = spec(name).registry(settings.home)
    current = registry.current_version()
    metrics = registry.get(current).metrics if current else {}
    return {"version": current, **{k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)}}


async def _answer(services: Services) -> dict[str, Any]:
    review = verdict_response(await review_sentiment(services, ASKER, REVIEW))
    scene, version = "", None
    async for update in write_scene(services, ASKER, PROMPT, 200, None):
        scene, version = update.text, update.model_version
    return {"review": review.plain()[:120], "scene": scene, "scene_version": version}


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

    trained = await asyncio.to_thread(train_first, settings, say)
    for name, outcome in trained.items():
        event(f"{name} quick model trained", seconds=outcome, **_figures(settings, name))
    services = Services.create(settings)
    services.cooldowns.seconds = 0
    await services.refresh_models_async()
    first = await _answer(services)
    event("first review and scene answered", scene=first["scene"][:160])
    first_answer_s = timeline[-1]["t_s"]

    process = await asyncio.to_thread(start_warmup, settings)
    meter = LagMeter()
    lag = asyncio.create_task(meter.run())
    seen = {n: 0 for n in MODEL_NAMES}
    answers = 0
    deadline = t0 + minutes * 60
    try:
        while time.monotonic() < deadline and process is not None and process.is_alive():
            await asyncio.sleep(answer_every)
            await services.refresh_models_async()
            await _answer(services)
            answers += 1
            models = read_state(settings.home)["models"]
            for name in MODEL_NAMES:
                for stage in models.get(name, {}).get("stages", [])[seen[name]:]:
                    metric = spec(name).gate_metric
                    event(f"{name} stage {'promoted' if stage['promoted'] else 'rejected'}",
                          candidate=stage["candidate"], profile=stage["profile"], last_epoch=stage["last_epoch"],
                          **{metric: round(stage[metric], 4), f"current_{metric}": round(stage[f"current_{metric}"], 4)},
                          done=stage["done"], stage_seconds=stage["seconds"])
                seen[name] = len(models.get(name, {}).get("stages", []))
            if not pending(settings):
                break
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
        "first_answer_s": first_answer_s, "trained": trained, "timeline": timeline,
        "answers_while_warming": answers, "warmup_done": not pending(settings),
        "loop_lag_p50_ms": round(percentile(meter.lags, 0.5) * 1000, 1),
        "loop_lag_p95_ms": round(percentile(meter.lags, 0.95) * 1000, 1),
        "loop_lag_max_ms": round(max(meter.lags, default=0.0) * 1000, 1),
        "first_scene": first["scene"], "last_scene": last["scene"],
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
