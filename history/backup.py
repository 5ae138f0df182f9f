"""Online backups of the SQLite history database (sqlite3's backup API: safe while the bot writes)."""

from __future__ import annotations

import logging
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from playbill.history.errors import HistoryError

log = logging.getLogger(__name__)

PREFIX = "playbill-"
SUFFIX = ".db"


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///...` URL; None for other databases or in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).expanduser()


def backup_sqlite(url: str, dest_dir: str | os.PathLike[str], keep: int) -> Path | None:
    """Copy the database to dest_dir/playbill-<UTC time>.db and keep only the newest `keep` copies.

    Returns the new file, or None when `url` is not an SQLite file (back up a server database
    with its own tools, e.g. pg_dump). The copy is written beside its final name and renamed,
    so a backup folder never holds a half-written file.
    """
    if keep < 1:
        raise HistoryError(f"keep must be at least 1, not {keep}")
    source_path = sqlite_path(url)
    if source_path is None:
        log.info("not backing up %s: only SQLite files are backed up by Playbill", make_url(url).render_as_string(hide_password=True))
        return None
    if not source_path.is_file():
        raise HistoryError(f"no database to back up at {source_path}")
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    final = dest / f"{PREFIX}{stamp}{SUFFIX}"
    partial = dest / f".{final.name}.partial"
    try:
        source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True, timeout=30)
        try:
            target = sqlite3.connect(partial)
            try:
                source.backup(target, pages=1024, sleep=0.01)  # in steps, so writers are not held up
                check = target.execute("PRAGMA integrity_check").fetchone()[0]
            finally:
                target.close()
        finally:
            source.close()
        if check != "ok":
            raise HistoryError(f"the backup of {source_path} failed its integrity check: {check}")
        os.replace(partial, final)
    except sqlite3.Error as exc:
        raise HistoryError(f"could not back up {source_path}: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    for old in list_backups(dest)[:-keep]:
        old.unlink(missing_ok=True)
        log.info("removed old backup %s", old)
    log.info("backed up %s to %s", source_path, final)
    return final


def list_backups(dest_dir: str | os.PathLike[str]) -> list[Path]:
    """The backups in a folder, oldest first (their names sort by time)."""
    dest = Path(dest_dir)
    if not dest.is_dir():
        return []
    return sorted(p for p in dest.glob(f"{PREFIX}*{SUFFIX}") if p.is_file())
