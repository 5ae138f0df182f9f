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

    @classmethod
    def open(cls, database_url: str, *, upgrade: bool = True) -> HistoryGateway:
        """Connect to the history database, bringing its schema to head when `upgrade`."""
        from history import api, db

        if upgrade:
            db.upgrade(database_url)
        engine = db.make_engine(database_url)
        db.require_current_schema(engine)
        return cls(db.make_session_factory(engine), api=api)

    @property
    def available(self) -> bool:
        return self.session_factory is not None and self._api is not None

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if not self.available:
            raise HistoryUnavailable("The history database is not available right now.")
        func: Callable = getattr(self._api, name)
        try:
            return await asyncio.to_thread(func, self.session_factory, *args, **kwargs)
        except UserFacingError:
            raise
        except Exception as exc:
            if _is_user_error(exc):
                raise
            if _is_busy_database(exc):
                raise HistoryUnavailable("The history database is busy; please retry in a moment.") from exc
            raise

    async def record_interaction(self, **fields: Any) -> int | None:
        """Store one request and its output; None (logged) if the database refuses."""
        if not self.available:
            return None
        try:
            return await self._call("record_interaction", **fields)
        except Exception:
            log.warning("could not record an interaction (error id %s)", new_error_id(), exc_info=True)
            return None

    async def record_feedback(self, interaction_id: int, user_id: int, verdict: str) -> Any:
        return await self._call("record_feedback", interaction_id, user_id, verdict)

    async def forget_user(self, user_id: int) -> Any:
        return await self._call("forget_user", user_id)

    async def query_interactions(self, filters: Any) -> list:
        return await self._call("query_interactions", filters)

    async def history_stats(self, since: Any) -> dict:
        return await self._call("history_stats", since)

    async def training_runs(self, **filters: Any) -> list:
        return await self._call("list_training_runs", **filters)


def _is_user_error(exc: BaseException) -> bool:
    try:
        from history.errors import HistoryError
    except ImportError:
        return False
    return isinstance(exc, HistoryError)


def _is_busy_database(exc: BaseException) -> bool:
    try:
        from sqlalchemy.exc import OperationalError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, OperationalError)


def make_filters(**filters: Any) -> Any:
    """The history API's filter object from keyword filters (None values dropped)."""
    given = {k: v for k, v in filters.items() if v is not None}
    try:
        from history.api import InteractionFilters  # type: ignore[attr-defined]
    except ImportError:
        return given
    return InteractionFilters(**given)
