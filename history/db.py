"""Engines, sessions and the schema version (Alembic, from the `migrations` package).

SQLite is the zero-setup default: WAL, foreign keys and a busy timeout are switched on for
every connection, so the bot and a job process can write at the same time; a writer waits
up to `busy_timeout` seconds for the other and then fails loudly (never a silently lost row).
Any other SQLAlchemy URL works too (PostgreSQL: `postgresql+psycopg://user@host/db`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from playbill.history.errors import DamagedDatabase, HistoryError, SchemaOutdated

log = logging.getLogger(__name__)


def _migrations_dir() -> Path:
    """The folder of the `migrations` package (env.py, versions/), found through importlib.resources,
    so it is the same from a source checkout and from an installed wheel."""
    from importlib.resources import files

    try:
        return Path(str(files("playbill.migrations")))
    except ModuleNotFoundError:  # a broken install: alembic_config says so in one line
        return Path("migrations (not installed)")


MIGRATIONS_DIR = _migrations_dir()
DEFAULT_BUSY_TIMEOUT = 10.0  # seconds
UPGRADE_COMMAND = "playbill db upgrade"
UNICODE_LOWER = "playbill_lower"  # the SQL function every SQLite connection gets


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _parse_url(url: str | Any):
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise HistoryError(f"not a database URL: {url!r} (e.g. sqlite:///var/playbill.db)") from exc


def safe_url(url: str | Any) -> str:
    """The URL with any password hidden, fit for messages and logs."""
    return _parse_url(url).render_as_string(hide_password=True)


def make_engine(url: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, echo: bool = False, **kwargs: Any) -> Engine:
    """An engine for `url`; for a SQLite file, creates its folder and sets WAL, FKs, busy timeout."""
    parsed = _parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            try:
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise HistoryError(f"cannot create the folder for the database {database}: {exc}") from exc
        connect_args = kwargs.pop("connect_args", {})
        connect_args.setdefault("timeout", busy_timeout)
        try:
            engine = create_engine(parsed, echo=echo, connect_args=connect_args, **kwargs)
        except NoSuchModuleError as exc:  # pragma: no cover - sqlite3 is in the standard library
            raise HistoryError(str(exc)) from exc
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout))
        if database and database != ":memory:" and not database.startswith("file:"):
            _watch_file_identity(engine, Path(database).expanduser())
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    try:
        return create_engine(parsed, echo=echo, **kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        raise HistoryError(f"no database driver for {safe_url(parsed)}: {exc}") from exc


def _sqlite_pragmas(busy_timeout: float):
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            _switch_to_wal(cursor, busy_timeout)
            cursor.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; a commit survives a crash of the process
        finally:
            cursor.close()
        # SQLite's own lower() knows only ASCII: searches use Python's (history.api.unicode_lower).
        dbapi_connection.create_function(UNICODE_LOWER, 1, _lower, deterministic=True)

    return on_connect


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _watch_file_identity(engine: Engine, path: Path) -> None:
    """Notice an SQLite file deleted or replaced under a running process.

    Why: an open connection keeps writing into a deleted file (its rows vanish with the last
    connection) or into the old file after a restore put a new one in its place. Each pooled
    connection remembers which file (device, inode) it opened; when the file at the path is no
    longer that one, the idle connections are closed and the one being taken from the pool is
    thrown away (DisconnectionError: SQLAlchemy connects again), and the process warns once.
    """
    warned: set[tuple[int, int] | None] = set()

    @event.listens_for(engine, "connect")
    def remember(_dbapi_connection: Any, record: Any) -> None:
        record.info["file_identity"] = _file_identity(path)

    @event.listens_for(engine, "checkout")
    def check(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        now = _file_identity(path)
        if record.info.get("file_identity") == now:
            return
        if now not in warned:
            warned.add(now)
            log.warning("the history database file %s was %s while Playbill had it open; using the file now at "
                        "that path%s", path, "deleted" if now is None else "replaced",
                        " (a new, empty history)" if now is None else "")
        # Close every idle connection to the old file now, before one opens the new file: a
        # connection closed later would remove the new file's -wal (SQLite deletes it by name).
        engine.pool.dispose()
        raise DisconnectionError(f"the history database file {path} changed")


def _switch_to_wal(cursor: Any, busy_timeout: float) -> None:
    """WAL mode, waiting up to the busy timeout for it.

    Why: SQLite answers "database is locked" at once, without its busy handler, when two
    processes open a new database file and both switch it to WAL (the bot and the scheduler
    on a fresh home). The mode is stored in the file, so a retry finds it set.
    """
    import sqlite3

    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (the API returns plain records anyway)."""
    return sessionmaker(engine, expire_on_commit=False)


# --- Alembic ---------------------------------------------------------------------------


def alembic_config(url: str | None = None, *, connection: Any = None):
    """An Alembic Config for migrations/, without any alembic.ini (works from any directory)."""
    from alembic.config import Config

    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise HistoryError(f"the migrations folder {MIGRATIONS_DIR} is missing; reinstall Playbill (pip install playbill)")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if url is not None:
        config.set_main_option("sqlalchemy.url", str(url).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def schema_status(engine: Engine) -> tuple[str | None, str | None]:
    """(the database's revision, the code's head revision); None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with _errors(engine), engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current, head_revision()


def require_current_schema(engine: Engine) -> None:
    """Raise SchemaOutdated (naming `playbill db upgrade`) unless the database is at head."""
    current, head = schema_status(engine)
    if current == head:
        return
    where = safe_url(engine.url)
    if current is None:
        raise SchemaOutdated(f"the history database {where} has no tables yet; run `{UPGRADE_COMMAND}` first")
    if current not in _known_revisions():
        raise SchemaOutdated(
            f"the history database {where} is at revision {current}, which this Playbill does not know "
            f"(newer code wrote it?); update Playbill, or restore a backup"
        )
    raise SchemaOutdated(
        f"the history database {where} is at revision {current} but this Playbill needs {head}; "
        f"run `{UPGRADE_COMMAND}`"
    )


def upgrade(url: str | Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate the database to `revision` (default: the newest); returns (before, after)."""
    return _migrate(url, "upgrade", revision)


def downgrade(url: str | Engine, revision: str) -> tuple[str | None, str | None]:
    """Migrate the database back to `revision` ("base": drop every table)."""
    return _migrate(url, "downgrade", revision)


def _migrate(url: str | Engine, direction: str, revision: str) -> tuple[str | None, str | None]:
    from alembic import command
    from alembic.util import CommandError

    engine = url if isinstance(url, Engine) else make_engine(url)
    try:
        before, _ = schema_status(engine)
        if before is None and direction == "upgrade":
            _refuse_unversioned_tables(engine)
        with _errors(engine), engine.begin() as connection:
            _lock_for_migration(connection)
            config = alembic_config(connection=connection)
            try:
                getattr(command, direction)(config, revision)
            except CommandError as exc:
                raise HistoryError(f"cannot {direction} the history database to {revision!r}: {exc}") from exc
        after, _ = schema_status(engine)
    finally:
        if engine is not url:
            engine.dispose()
    if before != after:
        log.info("history database %s: %s -> %s", safe_url(engine.url), before, after)
    return before, after


def _refuse_unversioned_tables(engine: Engine) -> None:
    """A database with Playbill's tables but no schema revision is not empty: its alembic_version
    table was lost (damaged pages) or something else made the tables. Creating them again would
    fail with a confusing "table interactions already exists"; say what it is instead."""
    from sqlalchemy import inspect

    with _errors(engine), engine.connect() as connection:
        if "interactions" not in inspect(connection).get_table_names():
            return
        problem = "its record of the schema revision is missing"
        if connection.dialect.name == "sqlite":
            found = [row[0] for row in connection.exec_driver_sql("PRAGMA integrity_check(5)")]
            if found != ["ok"]:
                problem = f"the integrity check found: {'; '.join(found)}"
    raise DamagedDatabase(damaged_message(safe_url(engine.url), problem))


def damaged_message(where: str, problem: str) -> str:
    """The one line for a damaged history database: what is wrong and how to restore it."""
    return (f"the history database {where} is damaged ({problem}); restore the newest copy from the backups "
            "folder (`playbill db backup` writes them), or move the file away to start a new history")


def _lock_for_migration(connection: Any) -> None:
    """One migrator at a time: a second process starting at once waits, then finds the work done."""
    dialect = connection.dialect.name
    if dialect == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, before Alembic reads the version
    elif dialect == "postgresql":
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7428716)")  # released at commit


def ensure_schema(engine: Engine, auto_upgrade: bool | None = None) -> None:
    """At start-up: bring the schema to head, or refuse.

    auto_upgrade None (the default) upgrades SQLite databases (the embedded zero-setup
    default) and refuses others with SchemaOutdated naming `playbill db upgrade`, so a
    shared server database is only ever migrated on purpose.
    """
    if auto_upgrade is None:
        auto_upgrade = engine.url.get_backend_name() == "sqlite"
    current, head = schema_status(engine)
    if current == head:
        return
    if not auto_upgrade or (current is not None and current not in _known_revisions()):
        require_current_schema(engine)  # raises, naming what to do
    upgrade(engine)


def open_history(url: str, *, auto_upgrade: bool | None = None, **engine_kwargs: Any) -> tuple[Engine, sessionmaker[Session]]:
    """make_engine + ensure_schema + make_session_factory: what the bot and jobs do at start."""
    engine = make_engine(url, **engine_kwargs)
    try:
        ensure_schema(engine, auto_upgrade)
    except BaseException:
        engine.dispose()
        raise
    return engine, make_session_factory(engine)


@contextmanager
def _errors(engine: Engine) -> Iterator[None]:
    """Turn driver errors (locked, unreachable, read-only) into one-line HistoryErrors."""
    try:
        yield
    except DBAPIError as exc:
        raise database_error(exc, engine.url) from exc


def database_error(exc: DBAPIError, url: Any) -> HistoryError:
    """A one-line HistoryError saying what went wrong with the database and what to do."""
    from playbill.history.errors import DatabaseBusy

    text = str(getattr(exc, "orig", None) or exc).strip()
    message = text.splitlines()[0] if text else type(exc).__name__
    lowered = message.lower()
    where = safe_url(url) if url is not None else "(unknown URL)"
    if "database is locked" in lowered or "database is busy" in lowered:
        return DatabaseBusy(
            f"the history database {where} stayed locked by another process for longer than the busy timeout; "
            "nothing was written, try again (is a long backup or migration running?)"
        )
    if "file is not a database" in lowered or "malformed" in lowered:
        return DamagedDatabase(damaged_message(where, message))
    if "disk is full" in lowered or "no space left" in lowered:
        return HistoryError(f"the disk of the history database {where} is full ({message}); free some space")
    if "unable to open database" in lowered or "readonly" in lowered:
        return HistoryError(f"cannot open or write the history database {where}: {message}")
    if "connection" in lowered and ("refused" in lowered or "failed" in lowered) or "could not connect" in lowered:
        return HistoryError(f"cannot reach the history database {where}: {message}")
    if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        return SchemaOutdated(f"the history database {where} has no tables yet ({message}); run `{UPGRADE_COMMAND}`")
    return HistoryError(f"history database error ({where}): {message}")
