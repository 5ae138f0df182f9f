"""The bot's door to the history database: every call off the event loop, writes never
crash a reply.

`record_interaction` never delays or breaks a reply: rows go through one ordered queue to
history.spool's InteractionWriter, which writes each to the database or, during an outage, to
the spool under PLAYBILL_HOME (replayed in order when the database answers). A row neither can
take now (a database locked past its busy timeout, a full disk) stays at the head of the queue
and is retried, with backoff; the rows behind it wait, so the history keeps their order. Rows
still queued at shutdown go to the spool (docs/history.md). Reads and user-requested writes
(feedback, forget-me) raise a short user-facing error instead of a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import collections
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from playbill.bot.errors import UserFacingError, new_error_id
from playbill.history import api, db
from playbill.history.api import HistoryStats, InteractionFilter, InteractionRecord, TrainingRunRecord
from playbill.history.errors import DatabaseBusy, HistoryError, RetryLater
from playbill.history.spool import InteractionWriter
from playbill.history.models import utcnow
from playbill.history.timeparse import parse_time as _parse_time
from playbill.settings import Settings

log = logging.getLogger("playbill.bot.history")


class HistoryUnavailable(UserFacingError):
    pass


MAX_PENDING_ROWS = 10_000  # rows kept in memory while the database is locked; past it, new rows are dropped
RETRY_SECONDS = (1.0, 30.0)  # the first wait before writing a kept row again, and the longest


class HistoryGateway:
    def __init__(self, session_factory: Any | None, *, retry_seconds: tuple[float, float] = RETRY_SECONDS,
                 writer: InteractionWriter | None = None) -> None:
        self.session_factory = session_factory
        self.writer = writer  # None: rows go straight to the database (no spool)
        self.retry_seconds = retry_seconds
        self._queue: collections.deque[tuple[dict[str, Any], asyncio.Future]] = collections.deque()
        self._writer: asyncio.Task | None = None
        self._wake = asyncio.Event()  # a new row for a writer that waits on the spool

    @property
    def pending(self) -> int:
        """Rows accepted but not yet written (waiting for a locked database, or in flight)."""
        return len(self._queue)

    @classmethod
    def open(cls, database_url: str, spool_dir: Any | None = None) -> HistoryGateway:
        """Connect, bringing an SQLite schema to head (a server database must be upgraded on
        purpose with `playbill db upgrade`: history.db.ensure_schema refuses it otherwise).
        With a spool folder, rows survive an outage (history.spool), one at start included."""
        if spool_dir is None:
            _engine, sessions = db.open_history(database_url)
            return cls(sessions)
        writer = InteractionWriter.open(database_url, spool_dir)
        return cls(writer.sessions, writer=writer)

    @property
    def spooled(self) -> int:
        """Rows waiting in the spool for the database."""
        return self.writer.pending() if self.writer is not None else 0

    @property
    def available(self) -> bool:
        return self.session_factory is not None

    async def _call(self, func: Callable, *args: Any, **kwargs: Any) -> Any:
        if not self.available:
            raise HistoryUnavailable("The history database is not available right now.")
        try:
            return await asyncio.to_thread(func, self.session_factory, *args, **kwargs)
        except Exception as exc:
            shown = _for_people(exc)
            if shown is exc:
                raise
            raise shown from exc

    async def next_feedback(self, settings: Settings) -> Any:
        """What the next retrain learns from the votes (jobs.trainers.next_feedback: ExtraData)."""
        from playbill.jobs.trainers import next_feedback

        return await self._call(lambda sessions: next_feedback(settings, sessions=sessions))

    async def record_interaction(self, **fields: Any) -> int | None:
        """Store one request and its output and return its id, once written; None (logged) if
        the database refuses it or is not configured. Rows are written in the order they came,
        each stamped when it came, however long a locked database keeps them waiting."""
        if not self.available:
            return None
        if len(self._queue) >= MAX_PENDING_ROWS:
            log.error("history row dropped: %d rows already wait for the database", len(self._queue))
            return None
        fields.setdefault("created_at", utcnow())
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.append((fields, done))
        self._wake.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_queue())
        return await asyncio.shield(done)

    async def _write_queue(self) -> None:
        """Write the queued rows, oldest first; a busy database keeps the head row (and so the
        order) until it takes it."""
        delay = self.retry_seconds[0]
        while self._queue or self._spool_waits():
            if not self._queue:  # only the spool waits: try it now and then, or at once for a new row
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                if not self._queue:
                    await asyncio.to_thread(self.writer.replay)
                    delay = min(delay * 2, self.retry_seconds[1])
                continue
            fields, done = self._queue[0]
            try:
                row_id = await asyncio.to_thread(self._write, fields)
            except RetryLater as exc:
                log.warning("%d history row(s) kept in memory, retrying in %.0f s: %s", len(self._queue), delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_seconds[1])
                continue
            except Exception as exc:  # one line: never the SQL or the member's text
                log.warning("could not record an interaction (error id %s): %s", new_error_id(),
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                row_id = None
            self._queue.popleft()
            delay = self.retry_seconds[0]
            if not done.done():
                done.set_result(row_id)

    def _spool_waits(self) -> bool:
        """Rows wait in the spool because the database refused them (not merely rows left by a
        process before this one: those are replayed at start or by the next write)."""
        return self.writer is not None and self.writer.problem is not None

    def _write(self, fields: dict[str, Any]) -> int | None:
        if self.writer is not None:
            return self.writer.record(fields)
        return api.record_interaction(self.session_factory, **fields)

    def close(self) -> None:
        """At shutdown: rows still queued go to the spool; without one (or a full disk) they are lost, and counted."""
        if self._writer is not None:
            self._writer.cancel()
        kept = 0
        spool = self.writer.spool if self.writer is not None else None
        while self._queue and spool is not None:
            try:
                spool.append(self._queue[0][0])
            except OSError:
                break
            self._queue.popleft()
            kept += 1
        if kept:
            log.warning("%d history row(s) not yet written went to the spool %s", kept, spool.path)
        if self._queue:
            log.error("%d history row(s) were never written (the database stayed locked) and are lost", len(self._queue))

    async def record_feedback(self, interaction_id: int, user_id: int, verdict: str, guild_id: int | None) -> str:
        """'created', 'updated' or 'unchanged'; a row asked in another guild is refused (HistoryError)."""
        return await self._call(api.record_feedback, interaction_id, user_id, verdict, guild_id=guild_id)

    async def forget_user(self, user_id: int) -> dict[str, int]:
        if self.writer is not None:  # their rows waiting in the spool go too
            return await self._call(lambda _sessions: self.writer.forget_user(user_id))
        return await self._call(api.forget_user, user_id)

    async def query_interactions(self, filters: InteractionFilter) -> list[InteractionRecord]:
        return await self._call(api.query_interactions, filters)

    async def history_stats(self, since: datetime | None) -> HistoryStats:
        return await self._call(api.history_stats, since)

    async def training_runs(self, model_name: str, limit: int = 1) -> list[TrainingRunRecord]:
        return await self._call(api.list_training_runs, model_name, limit)


def _for_people(exc: Exception) -> Exception:
    """A history error as members should see it: what to do, not where the database lives."""
    if isinstance(exc, DatabaseBusy):
        return HistoryUnavailable("The history database is busy; please retry in a moment.")
    if isinstance(exc, HistoryError) and "database" in str(exc):
        log.warning("history database problem: %s", exc)
        return HistoryUnavailable("The history database is unavailable right now; the logs say why.")
    return exc


def parse_time(value: str | None, *, end_of_day: bool = False) -> datetime | None:
    """'7d', '12h' or a UTC date, read exactly as `playbill history --since` reads it."""
    if value is None or not str(value).strip():
        return None
    return _parse_time(value, end_of_day=end_of_day)
