"""`playbill db ...`: the history database's schema (Alembic migrations) and its backups.

    playbill db upgrade [REVISION] | current | downgrade REVISION [--yes] | revision -m MSG [--empty] | backup
"""

from __future__ import annotations

import argparse

from playbill.cli.common import CLIError, CommandGroups
from playbill.settings import Settings


def register(commands: argparse._SubParsersAction, groups: CommandGroups) -> None:
    """Add `playbill db ACTION`."""
    p = commands.add_parser("db", help="the history database: migrate the schema, back it up")
    sub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = sub.add_parser("upgrade", help="migrate the schema to the newest revision (or REVISION)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(handler=_upgrade)
    down = sub.add_parser("downgrade", help="migrate back to REVISION (base: drop every table, losing the history)")
    down.add_argument("revision")
    down.add_argument("--yes", action="store_true", help="needed for `base`, which deletes all history")
    down.set_defaults(handler=_downgrade)
    cur = sub.add_parser("current", help="show the database's schema revision and the newest one")
    cur.set_defaults(handler=_current)
    rev = sub.add_parser(
        "revision", help="write a new migration from the difference between history/models.py and the database"
    )
    rev.add_argument("-m", "--message", required=True, help="what the migration changes")
    rev.add_argument("--empty", action="store_true", help="write an empty migration to fill in by hand")
    rev.set_defaults(handler=_revision)
    backup = sub.add_parser("backup", help="copy the SQLite database to <home>/backups now (keeps jobs.backups_keep)")
    backup.set_defaults(handler=_backup)


def _upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from playbill.history.db import make_engine, safe_url, upgrade

    engine = make_engine(settings.database_url)
    try:
        before, after = upgrade(engine, args.revision)
    finally:
        engine.dispose()
    where = safe_url(settings.database_url)
    if before == after:
        print(f"{where}: already at {after}")
    else:
        print(f"{where}: upgraded {before or '(empty)'} -> {after}")
    return 0


def _downgrade(args: argparse.Namespace, settings: Settings) -> int:
    from playbill.history.db import downgrade, make_engine, safe_url

    if args.revision == "base" and not args.yes:
        raise CLIError("downgrading to base drops every history table; add --yes if that is what you want")
    engine = make_engine(settings.database_url)
    try:
        before, after = downgrade(engine, args.revision)
    finally:
        engine.dispose()
    print(f"{safe_url(settings.database_url)}: downgraded {before or '(empty)'} -> {after or '(empty)'}")
    return 0


def _current(args: argparse.Namespace, settings: Settings) -> int:
    from playbill.history.db import make_engine, safe_url, schema_status

    engine = make_engine(settings.database_url)
    try:
        current, head = schema_status(engine)
    finally:
        engine.dispose()
    state = "up to date" if current == head else "behind: run `playbill db upgrade`"
    print(f"database: {safe_url(settings.database_url)}")
    print(f"current:  {current or '(empty)'}")
    print(f"head:     {head}  ({state})")
    return 0


def _revision(args: argparse.Namespace, settings: Settings) -> int:
    from alembic import command
    from alembic.script import ScriptDirectory

    from playbill.history.db import alembic_config, make_engine, require_current_schema

    engine = make_engine(settings.database_url)
    try:
        if not args.empty:
            require_current_schema(engine)  # compare against the newest schema, not an old one
        with engine.connect() as connection:
            config = alembic_config(connection=connection)
            script = ScriptDirectory.from_config(config)
            numbers = [int(r.revision) for r in script.walk_revisions() if r.revision.isdigit()]
            rev_id = f"{max(numbers, default=0) + 1:04d}"
            empty: list[bool] = []

            def skip_if_empty(context, revision, directives) -> None:
                if not args.empty and directives[0].upgrade_ops.is_empty():
                    empty.append(True)
                    directives[:] = []

            made = command.revision(
                config,
                message=args.message,
                autogenerate=not args.empty,
                rev_id=rev_id,
                process_revision_directives=skip_if_empty,
            )
    finally:
        engine.dispose()
    if empty or made is None:
        raise CLIError("history/models.py and the database agree: no migration written (change the models first)")
    print(f"wrote {made.path}; read it, adjust it, then run `playbill db upgrade`")
    return 0


def _backup(args: argparse.Namespace, settings: Settings) -> int:
    from playbill.history.backup import backup_sqlite

    made = backup_sqlite(settings.database_url, settings.backups_dir, settings.jobs.backups_keep)
    if made is None:
        raise CLIError("only an SQLite database is backed up by Playbill; back up a server database with its own tools")
    print(f"backed up to {made}")
    return 0
