"""Read the `--since 7d` / `--until 2026-11-01` style times people type."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from playbill.history.errors import HistoryError

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
HELP = "a duration back from now (30m, 12h, 7d, 2w) or a UTC date/time (2026-11-01, 2026-11-01T18:30)"


def parse_time(value: str, *, end_of_day: bool = False, now: datetime | None = None) -> datetime:
    """An aware UTC datetime. A bare date is its midnight, or with end_of_day the next midnight."""
    now = now or datetime.now(UTC)
    text = (value or "").strip()
    match = _RELATIVE.match(text)
    if match:
        amount, unit = float(match.group(1)), match.group(2).lower()
        try:
            return now - timedelta(**{_UNITS[unit]: amount})
        except OverflowError:
            raise HistoryError(f"{value!r} is too far back") from None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise HistoryError(f"not a time: {value!r}; use {HELP}")
    is_bare_date = len(text) == 10
    parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    if end_of_day and is_bare_date:
        parsed += timedelta(days=1)
    return parsed
