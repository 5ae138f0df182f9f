"""What the bot and the console tell an operator (playbill.metrics): the gauges read from their
services and client at each scrape, their readiness, and how a request ended.

`watch_services` (the console and the bot): queue depth, the model version served and its age,
the history write backlog, whether this process holds the schedule; ready when every model is
loaded and the database answers. `watch_client` (the bot): the gateway latency of each shard;
ready when every shard of this process is connected. Each returns a function that stops it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from playbill import metrics
from playbill.bot.errors import Busy, NotAllowed, OnCooldown
from playbill.engine.errors import InvalidInput, ModelUnavailable

COMMANDS = {"sentiment": "review-sentiment", "scene": "write-scene"}  # a model kind -> its command
DATABASE_CHECK_SECONDS = 5.0  # /readyz asks the database at most this often


def request_outcome(exc: BaseException | None) -> str:
    """How a request ended, for `playbill_requests{outcome}`."""
    if exc is None:
        return "ok"
    for kind, outcome in ((Busy, "busy"), (OnCooldown, "cooldown"), (InvalidInput, "refused"),
                          (NotAllowed, "refused"), (ModelUnavailable, "unavailable")):
        if isinstance(exc, kind):
            return outcome
    return "error"


def observe_request(kind: str, exc: BaseException | None, seconds: float) -> None:
    """Count one answered (or failed) request of a model's command; a full queue is a rejection too."""
    outcome = request_outcome(exc)
    metrics.observe_request(COMMANDS.get(kind, kind), outcome, seconds)
    if outcome == "busy":
        metrics.count_rejection(kind)


def watch_services(services: Any) -> Callable[[], None]:
    holders = services.holders
    ages: dict[tuple[str, str], float | None] = {}  # (model, version) -> created_at (epoch seconds)

    def created_at(name: str, version: str) -> float | None:
        if (name, version) not in ages:
            try:
                meta = json.loads((holders[name].registry.root / version / "metadata.json").read_text("utf-8"))
                ages[(name, version)] = datetime.fromisoformat(meta["created_at"]).timestamp()
            except (OSError, ValueError, KeyError, TypeError):
                ages[(name, version)] = None
        return ages[(name, version)]

    def model_ages() -> dict[tuple[str, ...], float]:
        found = {}
        for name, holder in holders.items():
            stamp = created_at(name, holder.version) if holder.version else None
            if stamp is not None:
                found[(name,)] = max(0.0, time.time() - stamp)
        return found

    database = _DatabaseCheck(services.history)
    stops = [
        metrics.watch("playbill_queue_depth", lambda: {("sentiment",): services.sentiment_worker.depth(),
                                                       ("scene",): services.scene_worker.depth()}),
        metrics.watch("playbill_model_version_info",
                      lambda: {(name, h.version): 1 for name, h in holders.items() if h.version}),
        metrics.watch("playbill_model_age_seconds", model_ages),
        metrics.watch("playbill_history_write_backlog", lambda: services.history.pending),
        metrics.watch("playbill_schedule_holder", lambda: 1 if services.scheduler is not None else 0),
        metrics.watch_readiness("models", lambda: (f"not loaded yet: {', '.join(services.missing_models())}"
                                                   if services.missing_models() else None)),
        metrics.watch_readiness("database", database),
    ]
    return lambda: [stop() for stop in stops] and None


class _DatabaseCheck:
    """Whether the history database answers (None) or why not; asked at most every few seconds."""

    def __init__(self, history: Any) -> None:
        self.history = history
        self._last: tuple[float, str | None] | None = None

    def __call__(self) -> str | None:
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < DATABASE_CHECK_SECONDS:
            return self._last[1]
        problem = None
        factory = getattr(self.history, "session_factory", None)
        if factory is None:
            problem = "the history database is not open"
        else:
            import sqlalchemy as sa

            try:
                with factory() as session:
                    session.execute(sa.text("SELECT 1"))
            except Exception as exc:
                problem = f"the history database does not answer ({type(exc).__name__})"
        self._last = (now, problem)
        return problem


def watch_client(bot: Any) -> Callable[[], None]:
    def latencies() -> dict[tuple[str, ...], float]:
        pairs = bot.latencies if hasattr(bot, "latencies") else [(bot.shard_id or 0, bot.latency)]  # a host's plain bot
        return {(str(shard),): latency for shard, latency in pairs if math.isfinite(latency)}

    def shards() -> str | None:
        if not bot.is_ready():
            return "not connected to Discord yet"
        closed = [str(i) for i, shard in getattr(bot, "shards", {}).items() if shard.is_closed()]
        return f"shard(s) {', '.join(closed)} disconnected" if closed else None

    stops = [metrics.watch("playbill_gateway_latency_seconds", latencies), metrics.watch_readiness("shards", shards)]
    return lambda: [stop() for stop in stops] and None
