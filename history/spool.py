"""No history row lost in an outage: rows the database cannot take wait in a local spool.

`InteractionWriter.record` writes an interaction to the database; when the database cannot
take it (a server down, an SQLite file gone or unwritable, a schema missing) the row goes to
the spool, one JSON line in `<home>/spool/interactions.jsonl`, flushed and fsync'd before
`record` returns. The next write, the next start and `playbill history ...` replay the spool
in order before anything newer, so the history keeps its order. Every row the writer handles
carries a request key (`Interaction.request_key`, unique): a row the database had in fact
committed before the connection dropped, or that two processes replay at once, is found by
its key instead of being stored twice.

A locked SQLite database is not an outage: `record` raises DatabaseBusy and the caller keeps
the row in memory and retries (bot/recording.py), as before. When even the spool cannot be
written (a full disk), `record` raises SpoolUnavailable, which callers treat the same way.
Several processes may share one spool (a file lock orders them). Warnings name the database
and the spool, never a member's text or the SQL.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from playbill.files import exclusive_lock
from playbill.history import api, db
from playbill.history.errors import DamagedDatabase, DatabaseBusy, HistoryError, SchemaOutdated, SpoolUnavailable
from playbill.history.models import utcnow

log = logging.getLogger(__name__)

SPOOL_FILE = "interactions.jsonl"
REJECTED_FILE = "rejected.jsonl"  # spooled rows the database refused for good (kept, never retried)


class Spool:
    """An append-only file of rows waiting for the database, shared by the processes of one home."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / SPOOL_FILE
        self.rejected_path = self.folder / REJECTED_FILE

    def __repr__(self) -> str:
        return f"Spool({str(self.folder)!r})"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with exclusive_lock(self.folder / "spool.lock"):
            yield

    def has_rows(self) -> bool:
        """Whether rows wait (cheap: one stat, no lock)."""
        try:
            return self.path.stat().st_size > 0
        except OSError:
            return False

    def pending(self) -> int:
        """How many rows wait."""
        if not self.has_rows():
            return 0
        try:
            with self.path.open("rb") as fh:
                return sum(1 for line in fh if line.strip())
        except OSError:
            return 0

    def append(self, row: dict[str, Any]) -> None:
        """Keep one row; on disk (fsync'd) when this returns. OSError if the disk cannot take it.
        The row gets its request key here if it has none (in place)."""
        row.setdefault("request_key", new_request_key())
        line = (json.dumps(row, ensure_ascii=False, default=_json_default) + "\n").encode("utf-8")
        with self._locked():
            _append_synced(self.path, line)

    def replay(self, write: Callable[[dict[str, Any]], Any]) -> tuple[int, int]:
        """Write the waiting rows in order with `write`, stopping at the first that fails (its
        error is raised, after the rows written so far are taken off the spool). A row the
        database refuses for good (`write` raises a HistoryError that is not the database's) is
        moved to rejected.jsonl. Returns (rows written, rows still waiting)."""
        if not self.has_rows():
            return 0, 0
        with self._locked():
            try:
                lines = [line for line in self.path.read_bytes().splitlines() if line.strip()]
            except FileNotFoundError:
                return 0, 0
            done = 0
            try:
                for line in lines:
                    try:
                        row = json.loads(line)
                        write(_from_json(row))
                    except (ValueError, TypeError, HistoryError) as exc:
                        if isinstance(exc, HistoryError) and _database_failure(exc):
                            raise
                        _append_synced(self.rejected_path, line + b"\n")
                        log.error("a spooled history row was refused and moved to %s: %s",
                                  self.rejected_path, _one_line(exc))
                    done += 1
            finally:
                self._keep(lines[done:])
        return done, len(lines) - done

    def forget_user(self, user_id: int) -> int:
        """Drop a user's waiting rows (they asked to be forgotten); returns how many."""
        if not self.has_rows():
            return 0
        with self._locked():
            try:
                lines = [line for line in self.path.read_bytes().splitlines() if line.strip()]
            except FileNotFoundError:
                return 0
            kept = [line for line in lines if not _row_of(line, user_id)]
            if len(kept) != len(lines):
                self._keep(kept)
        return len(lines) - len(kept)

    def _keep(self, lines: list[bytes]) -> None:
        """Replace the spool with `lines` (atomically: a crash leaves the old or the new one)."""
        if not lines:
            self.path.unlink(missing_ok=True)
            return
        partial = self.path.with_suffix(".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"".join(line + b"\n" for line in lines))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(partial, self.path)
        _sync_folder(self.folder)


class InteractionWriter:
    """Writes interactions so that none is lost: to the database when it answers, otherwise to
    the spool (see the module's docstring). Blocking: call it from a thread in async code."""

    def __init__(self, engine: Engine, sessions: sessionmaker[Session], spool: Spool | None) -> None:
        self.engine = engine
        self.sessions = sessions
        self.spool = spool
        self.problem: str | None = None  # why rows are being spooled now (None: the database takes them)

    @classmethod
    def open(cls, url: str, spool_dir: Path | None) -> InteractionWriter:
        """Connect (an SQLite schema brought to head), and replay what waits in the spool.

        A database that cannot be reached now still gives a writer, which spools until it can;
        a database reached but without Playbill's schema is refused (SchemaOutdated, naming
        `playbill db upgrade`), as is a damaged one."""
        spool = Spool(spool_dir) if spool_dir is not None else None
        try:
            engine, sessions = db.open_history(url)
        except (SchemaOutdated, DamagedDatabase):
            raise
        except HistoryError as exc:
            if spool is None or not _database_failure(exc):
                raise
            engine = db.make_engine(url)
            writer = cls(engine, db.make_session_factory(engine), spool)
            writer._spooling(exc)
            return writer
        writer = cls(engine, sessions, spool)
        writer.replay()
        return writer

    def pending(self) -> int:
        """Rows waiting in the spool."""
        return self.spool.pending() if self.spool is not None else 0

    def record(self, fields: dict[str, Any]) -> int | None:
        """Write one interaction (history.api.record_interaction's fields; `fields` gets its
        created_at and request key in place). Returns its id, or None when it went to the spool.
        RetryLater (DatabaseBusy, SpoolUnavailable): keep the dict and call again."""
        row = fields  # in place: the caller retrying this dict (after DatabaseBusy) writes the same row
        row.setdefault("created_at", utcnow())
        row.setdefault("request_key", new_request_key())
        if self.spool is not None and self.spool.has_rows():
            self.replay()
            if self.spool.has_rows():  # still a backlog: behind it, to keep the order
                self._to_spool(row, None)
                return None
        try:
            return self._write(row)
        except DatabaseBusy:
            raise
        except HistoryError as exc:
            if self.spool is None or not _database_failure(exc):
                raise
            self._to_spool(row, exc)
            return None

    def replay(self) -> int:
        """Write what waits in the spool (in order); returns how many rows were written. The
        database failing again leaves the rest waiting (no error)."""
        if self.spool is None or not self.spool.has_rows():
            self.problem = None  # nothing waits (another process may have written it)
            return 0
        written = 0
        try:
            written, left = self.spool.replay(self._write)
        except HistoryError as exc:
            self._spooling(exc)
            return written
        except OSError as exc:  # the spool could not be rewritten: the rows stay, and are found by key
            log.warning("could not update the history spool %s: %s", self.spool.path, exc)
            return written
        if written:
            log.warning("history database back: wrote %d interaction(s) kept in the spool during the outage%s",
                        written, f"; {left} still wait" if left else "")
        if not left:
            self.problem = None
        return written

    def forget_user(self, user_id: int) -> dict[str, int]:
        """history.api.forget_user, and the user's rows waiting in the spool dropped first (so a
        replay never brings back what they asked to have deleted); the counts include those."""
        waiting = self.spool.forget_user(user_id) if self.spool is not None else 0
        counts = api.forget_user(self.sessions, user_id)
        return {**counts, "interactions": counts["interactions"] + waiting}

    def _write(self, row: dict[str, Any]) -> int:
        try:
            return api.record_interaction(self.sessions, **row)
        except SchemaOutdated:
            if self.engine.url.get_backend_name() != "sqlite":
                raise
            # An SQLite file deleted under the process: history.db reconnected to a new, empty
            # file at the same path; give it the schema (as at start) and write again.
            db.ensure_schema(self.engine)
            return api.record_interaction(self.sessions, **row)

    def _to_spool(self, row: dict[str, Any], exc: HistoryError | None) -> None:
        assert self.spool is not None
        try:
            self.spool.append(row)
        except OSError as error:
            raise SpoolUnavailable(
                f"the history database cannot take rows now and the spool {self.spool.path} cannot either "
                f"({error.strerror or error}); rows are kept in memory until one of them can"
            ) from None
        if exc is not None:
            self._spooling(exc)

    def _spooling(self, exc: HistoryError) -> None:
        """Say once per outage that rows go to the spool (later rows quietly follow)."""
        problem = _one_line(exc)
        if self.problem is None:
            log.warning("history rows go to the spool %s until the database answers again: %s",
                        self.spool.path if self.spool else "(none)", problem)
        self.problem = problem


def new_request_key() -> str:
    return uuid.uuid4().hex


def _database_failure(exc: HistoryError) -> bool:
    """A failure of the database (unreachable, gone, unwritable, no schema), not of the row."""
    return isinstance(exc.__cause__, DBAPIError) or isinstance(exc, SchemaOutdated)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _row_of(line: bytes, user_id: int) -> bool:
    try:
        found = json.loads(line).get("user_id")
    except (ValueError, AttributeError):
        return False
    try:
        return found is not None and int(found) == int(user_id)
    except (TypeError, ValueError):
        return False


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"__datetime__": value.isoformat()}
    return str(value)


def _from_json(row: dict[str, Any]) -> dict[str, Any]:
    created = row.get("created_at")
    if isinstance(created, dict) and "__datetime__" in created:
        row["created_at"] = datetime.fromisoformat(created["__datetime__"])
    return row


def _append_synced(path: Path, line: bytes) -> None:
    """Append one whole line, fsync'd; a line the disk cannot take is taken back (no half line)."""
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        try:
            if os.write(fd, line) != len(line):
                raise OSError(28, "No space left on device (a short write)", str(path))
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)
    if new:
        _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """fsync a folder, so a file just created or renamed in it survives a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
