"""The housekeeping jobs: purge old history, back up the SQLite database (keeping the last N)."""

from __future__ import annotations

import logging
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from jobs.common import restore_settings
from playbill.settings import Settings

log = logging.getLogger(__name__)

BACKUP_PREFIX = "playbill-"
BACKUP_SUFFIX = ".db"


def purge_history(settings_values: dict[str, Any] | Settings | None = None) -> dict[str, int]:
    """Delete history rows older than `jobs.history_retention_days`; returns counts per table."""
    from history import api
    from history.db import open_history

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

    Safe while the bot writes (the backup API copies a consistent snapshot). A server
    database (PostgreSQL) is left to its own tools: logged and skipped.
    """
    settings = restore_settings(settings_values)
    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        log.info("backup skipped: %s is not a SQLite file (back it up with the server's tools, e.g. pg_dump)",
                 url.render_as_string(hide_password=True))
        return None
    source = Path(url.database)
    if not source.is_file():
        log.warning("backup skipped: %s does not exist yet", source)
        return None
    folder = settings.backups_dir
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{BACKUP_PREFIX}{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}{BACKUP_SUFFIX}"
    sqlite_online_backup(source, target)
    removed = rotate_backups(folder, settings.jobs.backups_keep)
    log.info("backed up %s to %s (removed %d old backups)", source, target, len(removed))
    return target


def sqlite_online_backup(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database, written under a temporary name first."""
    partial = target.with_name(f".{target.name}.partial")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst, pages=1024)
        finally:
            dst.close()
        os.replace(partial, target)
    finally:
        src.close()
        partial.unlink(missing_ok=True)


def rotate_backups(folder: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups (names sort by time)."""
    backups = sorted(folder.glob(f"{BACKUP_PREFIX}*{BACKUP_SUFFIX}"))
    doomed = backups[:-keep] if keep > 0 else backups
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed
