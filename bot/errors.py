"""Errors the features raise, and the one place that turns any error into a reply.

Users see a short message; anything unexpected gets an error id that is logged together
with the full traceback, so an admin can find it in <home>/logs/playbill.log.
"""

from __future__ import annotations

import logging
import secrets

from playbill.engine.errors import EngineError
from playbill.history.errors import HistoryError

log = logging.getLogger("playbill.bot.errors")


class UserFacingError(Exception):
    """A refusal whose message is shown to the user as it is."""


class Busy(UserFacingError):
    def __init__(self, who: str = "Playbill") -> None:
        super().__init__(f"{who} is busy right now; please retry in a moment.")


class OnCooldown(UserFacingError):
    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"Slow down a little: try again in {retry_after:.1f} s.")


class NotAllowed(UserFacingError):
    pass


ADMIN_ONLY = "Only server administrators (or Playbill's owners) can use the admin commands."


def require_admin(is_admin: bool) -> None:
    """The admin rule, for every front end: who is an admin is decided by the adapter (Discord:
    `discord_io.is_admin`; the console: the person at the terminal, who owns the files)."""
    if not is_admin:
        raise NotAllowed(ADMIN_ONLY)


def new_error_id() -> str:
    """A short id that ties a user's error message to the logged traceback."""
    return secrets.token_hex(4)


USER_ERRORS = (UserFacingError, EngineError, HistoryError)  # their messages are written for people


def describe(exc: BaseException, *, context: str = "") -> tuple[str, str | None]:
    """(message for the user, error id or None). Unexpected errors are logged with the id."""
    if isinstance(exc, USER_ERRORS):
        return str(exc) or exc.__class__.__name__, None
    error_id = getattr(exc, "playbill_error_id", None) or new_error_id()
    if getattr(exc, "playbill_error_id", None) is None:
        try:
            exc.playbill_error_id = error_id  # type: ignore[attr-defined]
        except AttributeError:  # pragma: no cover - exceptions with __slots__
            pass
        log.error("error %s%s", error_id, f" in {context}" if context else "", exc_info=exc)
    return f"Something went wrong on our side (error id `{error_id}`). It has been logged.", error_id
