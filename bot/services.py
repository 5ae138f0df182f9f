"""Everything a handler needs, built once per process (bot or console)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TextIO

from playbill.bot.errors import OnCooldown, describe
from playbill.bot.health import observe_request
from playbill.bot.inference import SceneWorker, SentimentWorker
from playbill.bot.messages import Request
from playbill.bot.recording import HistoryGateway
from playbill.engine.models import MODELS, spec
from playbill.engine.serving import ModelHolder
from playbill.logs import bind_request
from playbill.history.errors import DamagedDatabase, SchemaOutdated
from playbill.settings import Settings

log = logging.getLogger("playbill.bot.services")


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


class RequestRecord:
    """One history row per request: ok with the output, or error with the message. Started
    before the work, so its latency covers the whole answer."""

    def __init__(self, services: Services, request: Request, kind: str, prompt: str,
                 parameters: dict[str, Any]) -> None:
        self.services, self.request = services, request
        self.kind, self.prompt, self.parameters = kind, prompt, parameters
        self.started = time.perf_counter()
        count = services.settings.bot.shard_count or 1
        bind_request(uuid.uuid4().hex[:12], (request.guild_id >> 22) % count if request.guild_id else 0)  # log lines

    def _fields(self, **extra: Any) -> dict[str, Any]:
        r = self.request
        return {
            "kind": self.kind,
            "source": r.source,
            "user_id": r.user_id,
            "guild_id": r.guild_id,
            "channel_id": r.channel_id,
            "user_name": r.display_name or None,
            "prompt": self.prompt,
            "params": self.parameters,
            "model_name": self.kind,
            "latency_ms": (time.perf_counter() - self.started) * 1000.0,
            **extra,
        }

    async def done(self, **extra: Any) -> int | None:
        """The row's id, or None if the database has not answered within `history_wait_seconds`
        (the write then finishes in the background: a locked database delays no reply)."""
        observe_request(self.kind, None, time.perf_counter() - self.started)  # playbill_requests, latency
        write = self.services.spawn(self.services.history.record_interaction(**self._fields(status="ok", **extra)))
        finished, _ = await asyncio.wait({write}, timeout=self.services.settings.bot.history_wait_seconds)
        return write.result() if finished else None

    def failed(self, exc: BaseException) -> None:
        """Record the failure in the background: a slow database must not delay the reply."""
        observe_request(self.kind, exc, time.perf_counter() - self.started)
        if isinstance(exc, (GeneratorExit, asyncio.CancelledError)):
            error = "cancelled before the answer was complete"
        else:
            message, error_id = describe(exc, context=f"/{self.kind}")
            error = message if error_id is None else f"error id {error_id}: {type(exc).__name__}: {exc}"
        version = self.services.holders[self.kind].version
        self.services.spawn(self.services.history.record_interaction(
            **self._fields(status="error", error=error[:2000], model_version=version)))


@dataclass
class Services:
    settings: Settings
    holders: dict[str, ModelHolder]  # one per engine.models spec, in the spec list's order
    history: HistoryGateway
    cooldowns: Cooldowns
    sentiment_worker: SentimentWorker
    scene_worker: SceneWorker
    scheduler: Any | None = None
    background: set[asyncio.Task] = field(default_factory=set)  # the process's one set of background tasks

    @classmethod
    def create(cls, settings: Settings, *, holders: dict[str, ModelHolder] | None = None,
               history: HistoryGateway | None = None, scheduler: Any | None = None) -> Services:
        """Wire the parts; models are loaded later by `refresh_models` (in a worker thread)."""
        b = settings.bot
        holders = holders if holders is not None else default_holders(settings)
        return cls(
            settings=settings,
            holders=holders,
            history=history if history is not None else HistoryGateway(None),
            cooldowns=Cooldowns(b.cooldown_seconds),
            sentiment_worker=SentimentWorker(holders["sentiment"], queue_size=b.inference_queue_size,
                                             max_batch=b.max_batch_size, batch_wait=b.batch_wait_ms / 1000.0),
            scene_worker=SceneWorker(holders["scene"], workers=b.scene_workers, queue_size=b.inference_queue_size,
                                     chunk_chars=settings.scene.stream_chunk_chars),
            scheduler=scheduler,
        )

    def record(self, request: Request, kind: str, prompt: str, parameters: dict[str, Any]) -> RequestRecord:
        """Start the history row of one request to the model `kind` (its `done` or `failed` ends it)."""
        return RequestRecord(self, request, kind, prompt, parameters)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        """Run a coroutine in the background (a history write, a model refresh), kept referenced
        until it is done."""
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    async def drain(self) -> None:
        """Wait for the background tasks (the console does before each next command and at exit)."""
        while self.background:
            await asyncio.gather(*list(self.background), return_exceptions=True)

    def refresh_models(self) -> dict[str, bool]:
        """Load newly promoted versions (blocking: run it in a thread); `refresh_models` below."""
        return refresh_models(self.holders)

    async def refresh_models_async(self) -> dict[str, bool]:
        return await asyncio.to_thread(self.refresh_models)

    async def keep_models_fresh(self) -> None:
        """Swap in newly promoted versions (a nightly retrain, the warm-up, a rollback from the
        CLI) every `[bot] model_refresh_seconds`, without a restart; runs until cancelled. The
        one refresh loop, for the bot and the console alike."""
        while True:
            await asyncio.sleep(self.settings.bot.model_refresh_seconds)
            swapped = await self.refresh_models_async()
            for name, changed in swapped.items():
                if changed:
                    log.info("now serving %s %s", name, self.holders[name].version)

    def missing_models(self) -> list[str]:
        return missing_models(self.holders)

    def close(self) -> None:
        """At a process's end: the workers told to stop (not waited for); history rows not yet
        written are counted in the log."""
        self.sentiment_worker.close()
        self.scene_worker.close()
        self.history.close()

    async def aclose(self, timeout: float) -> None:
        """Stop everything these services run, leaving nothing behind in a process that goes on
        (an extension's unload): history writes get `timeout` seconds to finish, the other
        background tasks are cancelled, the worker threads stopped and joined."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.drain(), timeout)
        for task in list(self.background):
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        self.history.close()
        await asyncio.to_thread(self.sentiment_worker.close, wait=True)
        await asyncio.to_thread(self.scene_worker.close, wait=True)


def default_holders(settings: Settings) -> dict[str, ModelHolder]:
    """A holder per model spec; TensorFlow is never imported to serve."""
    return {s.name: ModelHolder(s, settings.home, settings.section(s.name)) for s in MODELS}


def refresh_models(holders: dict[str, ModelHolder]) -> dict[str, bool]:
    """Load each model's newly promoted version (blocking); which ones changed. A model that
    fails to load is logged and the previous one keeps serving."""
    swapped = {}
    for name, holder in holders.items():
        try:
            swapped[name] = holder.refresh()
        except Exception:
            log.exception("could not load the current %s model; keeping %s", name, holder.version)
            swapped[name] = False
    return swapped


def missing_models(holders: dict[str, ModelHolder]) -> list[str]:
    """The models that serve nothing now (never trained, or every version damaged): the one
    definition of "a model is missing"; `missing_models_message` says why and what to do."""
    return [name for name, holder in holders.items() if not holder.loaded]


def missing_models_message(missing: list[str], holders: dict[str, ModelHolder] | None = None,
                           settings: Settings | None = None) -> str:
    """Why models are not served: never trained, (`holders` given) every version damaged, or
    (`settings` given) its first model is training on this host now (a first start)."""
    from playbill.jobs.warmup import learning  # reads a small state file

    training = [name for name in missing if settings is not None and learning(settings, name) is not None]
    damaged = [name for name in missing if holders and name in holders and holders[name].set_aside
               and name not in training]
    untrained = [name for name in missing if name not in damaged and name not in training]
    parts = [f"The {name} model is still learning (its first version trains in the background and is "
             f"served the moment it is ready)." for name in training]
    if untrained:
        steps = "; ".join(f"`{spec(name).train_command}`" for name in untrained)
        parts.append(f"No trained {' or '.join(untrained)} model yet. Train it with {steps}.")
    for name in damaged:
        parts.append(f"Every {name} version is damaged (`playbill models list` says what was found); "
                     f"train a new one with `{spec(name).train_command}`.")
    return " ".join(parts)


def open_history(settings: Settings, out: TextIO | None = None) -> HistoryGateway:
    """The history gateway (an SQLite schema brought to head), keeping rows in the spool during an
    outage. A server database whose schema is behind, or a damaged one, is refused (SchemaOutdated /
    DamagedDatabase: the line says what to do); for any other failure a disabled gateway, with a
    warning line on `out`: the console and the bot still answer without a database."""
    try:
        return HistoryGateway.open(settings.database_url, settings.spool_dir)
    except (SchemaOutdated, DamagedDatabase):  # refuse to start: the line says what to do
        raise
    except Exception as exc:
        message, _ = describe(exc, context="opening the history database")
    if out is not None:
        out.write(f"warning: history database unavailable: {message}\n")
    else:
        log.warning("history database unavailable, nothing is recorded: %s", message)
    return HistoryGateway(None)
