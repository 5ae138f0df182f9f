"""The housekeeping jobs: purge old history, back up the SQLite database (keeping the last N)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from playbill.jobs.common import restore_settings
from playbill.settings import Settings

log = logging.getLogger(__name__)


def purge_history(settings_values: dict[str, Any] | Settings | None = None) -> dict[str, int]:
    """Delete history rows older than `jobs.history_retention_days`; returns counts per table."""
    from playbill.history import api
    from playbill.history.db import open_history

    settings = restore_settings(settings_values)
    engine, sessions = open_history(settings.database_url)
    try:
        counts = api.purge_older_than(sessions, settings.jobs.history_retention_days)
    finally:
        engine.dispose()
    log.info("purged history older than %d days: %s", settings.jobs.history_retention_days, counts)
    return counts


def backup_database(settings_values: dict[str, Any] | Settings | None = None) -> Path | None:
    """Copy the SQLite history database with SQLite's online backup API; keep the newest N.

    Safe while the bot writes (history.backup copies a consistent snapshot, checks it, then
    renames it into place). A server database (PostgreSQL) is left to its own tools: None.
    """
    from playbill.history.backup import backup_sqlite

    settings = restore_settings(settings_values)
    return backup_sqlite(settings.database_url, settings.backups_dir, settings.jobs.backups_keep)
