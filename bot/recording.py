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
from typing import Any

from bot.errors import UserFacingError, new_error_id

log = logging.getLogger("bot.history")


class HistoryUnavailable(UserFacingError):
    pass


class HistoryGateway:
    def __init__(self, session_factory: Any | None, *, api: Any | None = None) -> None:
        self.session_factory = session_factory
        self._api = api
        self._pending: set[asyncio.Task] = set()

    @classmethod
    def open(cls, database_url: str) -> HistoryGateway:
        """Connect, bringing an SQLite schema to head (a server database must be upgraded on
        purpose with `playbill db upgrade`: history.db.ensure_schema refuses it otherwise)."""
        from history import api, db

        _engine, sessions = db.open_history(database_url)
        return cls(sessions, api=api)

    @property
    def available(self) -> bool:
        return self.session_factory is not None and self._api is not None

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if not self.available:
            raise HistoryUnavailable("The history database is not available right now.")
        func: Callable = getattr(self._api, name)
        try:
            return await asyncio.to_thread(func, self.session_factory, *args, **kwargs)
        except Exception as exc:
            shown = _for_people(exc)
            if shown is exc:
                raise
            raise shown from exc

    async def record_interaction(self, *, wait: float | None = None, **fields: Any) -> int | None:
        """Store one request and its output and return its id; None (logged) if the database
        refuses, or if it has not answered within `wait` seconds (the write then finishes in
        the background, so a locked database delays no reply by more than `wait`)."""
        if not self.available:
            return None
        task = asyncio.ensure_future(self._record(fields))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        done, _ = await asyncio.wait({task}, timeout=wait)
        return task.result() if done else None

    async def _record(self, fields: dict[str, Any]) -> int | None:
        try:
            return await self._call("record_interaction", **fields)
        except Exception as exc:
            log.warning("could not record an interaction (error id %s): %s", new_error_id(), exc.__cause__ or exc)
            return None

    async def drain(self) -> None:
        """Wait for writes still in flight (before the process exits)."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def record_feedback(self, interaction_id: int, user_id: int, verdict: str) -> str:
        """'created', 'updated' or 'unchanged'."""
        return await self._call("record_feedback", interaction_id, user_id, verdict)

    async def forget_user(self, user_id: int) -> dict[str, int]:
        return await self._call("forget_user", user_id)

    async def query_interactions(self, filters: Any) -> list:
        return await self._call("query_interactions", filters)

    async def history_stats(self, since: Any) -> dict:
        return await self._call("history_stats", since)

    async def training_runs(self, model_name: str, limit: int = 1) -> list:
        return await self._call("list_training_runs", model_name, limit)


def _for_people(exc: Exception) -> Exception:
    """A history error as members should see it: what to do, not where the database lives."""
    if isinstance(exc, UserFacingError):
        return exc
    try:
        from history.errors import DatabaseBusy, HistoryError
    except ImportError:  # pragma: no cover - history is part of the installation
        return exc
    if isinstance(exc, DatabaseBusy):
        return HistoryUnavailable("The history database is busy; please retry in a moment.")
    if isinstance(exc, HistoryError):
        if "database" in str(exc):
            log.warning("history database problem: %s", exc)
            return HistoryUnavailable("The history database is unavailable right now; the logs say why.")
        return exc
    return exc


def make_filters(**filters: Any) -> Any:
    """history.api.InteractionFilter from keyword filters."""
    from history.api import InteractionFilter

    return InteractionFilter(**filters)


def parse_time(value: str | None, *, end_of_day: bool = False) -> Any:
    """'7d', '12h' or a UTC date, read exactly as `playbill history --since` reads it."""
    if value is None or not str(value).strip():
        return None
    from history.timeparse import parse_time as parse

    return parse(value, end_of_day=end_of_day)
