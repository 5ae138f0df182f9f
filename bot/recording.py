"""The bot's door to the history database: every call off the event loop, writes never
crash a reply.

`record_interaction` failures (a locked or missing database) are logged and swallowed:
the member still gets the answer. Reads and user-requested writes (feedback, forget-me)
raise a short user-facing error instead of a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from bot.errors import UserFacingError, new_error_id
from history import api, db
from history.api import InteractionFilter, InteractionRecord, TrainingRunRecord
from history.errors import DatabaseBusy, HistoryError
from history.timeparse import parse_time as _parse_time

log = logging.getLogger("bot.history")


class HistoryUnavailable(UserFacingError):
    pass


class HistoryGateway:
    def __init__(self, session_factory: Any | None) -> None:
        self.session_factory = session_factory

    @classmethod
    def open(cls, database_url: str) -> HistoryGateway:
        """Connect, bringing an SQLite schema to head (a server database must be upgraded on
        purpose with `playbill db upgrade`: history.db.ensure_schema refuses it otherwise)."""
        _engine, sessions = db.open_history(database_url)
        return cls(sessions)

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

    async def next_feedback(self, settings: Any) -> Any:
        """What the next retrain learns from the votes (jobs.trainers.next_feedback: ExtraData)."""
        from jobs.trainers import next_feedback

        return await self._call(lambda sessions: next_feedback(settings, sessions=sessions))

    async def record_interaction(self, **fields: Any) -> int | None:
        """Store one request and its output and return its id; None (logged) if the database
        refuses or is not configured."""
        if not self.available:
            return None
        try:
            return await self._call(api.record_interaction, **fields)
        except Exception as exc:
            log.warning("could not record an interaction (error id %s): %s", new_error_id(), exc.__cause__ or exc)
            return None

    async def record_feedback(self, interaction_id: int, user_id: int, verdict: str) -> str:
        """'created', 'updated' or 'unchanged'."""
        return await self._call(api.record_feedback, interaction_id, user_id, verdict)

    async def forget_user(self, user_id: int) -> dict[str, int]:
        return await self._call(api.forget_user, user_id)

    async def query_interactions(self, filters: InteractionFilter) -> list[InteractionRecord]:
        return await self._call(api.query_interactions, filters)

    async def history_stats(self, since: datetime | None) -> dict:
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
