"""Everything a handler needs, built once per process (bot or console)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from bot.errors import OnCooldown
from bot.inference import SceneRunner, SentimentWorker
from bot.recording import HistoryGateway
from engine.registry import ModelRegistry
from engine.serving import ModelHolder

log = logging.getLogger("bot.services")

MODEL_NAMES = ("sentiment", "scene")
TRAIN_HINT = {
    "sentiment": "playbill train sentiment",
    "scene": "playbill train scene",
}


class Cooldowns:
    """Per-user, per-command cooldown; the same for Discord and the console."""

    def __init__(self, seconds: float, clock=time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._last: dict[tuple[int, str], float] = {}

    def hit(self, user_id: int, command: str) -> None:
        """Count one use; raise OnCooldown if the previous one was too recent."""
        if self.seconds <= 0:
            return
        now = self._clock()
        key = (user_id, command)
        last = self._last.get(key)
        if last is not None and now - last < self.seconds:
            raise OnCooldown(self.seconds - (now - last))
        self._last[key] = now
        if len(self._last) > 10_000:  # forget stale entries so memory stays bounded
            self._last = {k: t for k, t in self._last.items() if now - t < self.seconds}


@dataclass
class Services:
    settings: Any
    holders: dict[str, ModelHolder]
    history: HistoryGateway
    cooldowns: Cooldowns
    sentiment_worker: SentimentWorker
    scene_runner: SceneRunner
    scheduler: Any | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, settings: Any, *, holders: dict[str, ModelHolder] | None = None,
               history: HistoryGateway | None = None, scheduler: Any | None = None) -> Services:
        """Wire the parts; models are loaded later by `load_models` (in a worker thread)."""
        b = settings.bot
        holders = holders if holders is not None else default_holders(settings)
        return cls(
            settings=settings,
            holders=holders,
            history=history if history is not None else HistoryGateway(None),
            cooldowns=Cooldowns(b.cooldown_seconds),
            sentiment_worker=SentimentWorker(
                lambda: holders["sentiment"].model,
                queue_size=b.inference_queue_size,
                max_batch=b.max_batch_size,
                batch_wait=b.batch_wait_ms / 1000.0,
            ),
            scene_runner=SceneRunner(workers=b.scene_workers, queue_size=b.inference_queue_size),
            scheduler=scheduler,
        )

    def spawn(self, coro: Any) -> asyncio.Task:
        """Run a coroutine in the background (e.g. a history write) and keep it referenced."""
        tasks: set = self.extras.setdefault("tasks", set())
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    async def drain(self) -> None:
        """Wait for background writes (the console does before it exits)."""
        tasks = list(self.extras.get("tasks", ()))
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.history.drain()

    def refresh_models(self) -> dict[str, bool]:
        """Load newly promoted versions (blocking: run it in a thread). A model that fails to
        load is logged and the previous one keeps serving."""
        swapped = {}
        for name, holder in self.holders.items():
            try:
                swapped[name] = holder.refresh()
            except Exception:
                log.exception("could not load the current %s model; keeping %s", name, holder.version)
                swapped[name] = False
        return swapped

    async def refresh_models_async(self) -> dict[str, bool]:
        return await asyncio.to_thread(self.refresh_models)

    def missing_models(self) -> list[str]:
        return [name for name, holder in self.holders.items() if not holder.loaded]

    def close(self) -> None:
        self.sentiment_worker.close()
        self.scene_runner.close()


def default_holders(settings: Any) -> dict[str, ModelHolder]:
    """Holders for the real models; TensorFlow is imported only when a model loads."""

    def load_sentiment(path):
        from engine.sentiment import SentimentModel

        return SentimentModel.load(path)

    def load_scene(path):
        from engine.scene import SceneWriter

        return SceneWriter.load(path, max_length=settings.scene.max_length, backend=settings.scene.backend,
                                int8_threads=settings.scene.int8_threads)

    return {
        "sentiment": ModelHolder(ModelRegistry(settings.models_dir, "sentiment"), load_sentiment),
        "scene": ModelHolder(ModelRegistry(settings.models_dir, "scene"), load_scene),
    }


def missing_models_message(missing: list[str]) -> str:
    steps = "; ".join(f"`{TRAIN_HINT[name]}`" for name in missing)
    return f"No trained {' or '.join(missing)} model yet. Train it with {steps}."
