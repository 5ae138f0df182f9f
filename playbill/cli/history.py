"""`playbill history ...` (admin queries) and `playbill db ...` (schema migrations, backups).

    playbill history [--user ID] [--guild ID] [--kind K] [--since 7d] [--search TEXT] ...
    playbill history stats [--since 7d]
    playbill history forget --user ID
    playbill db upgrade | current | downgrade REV | revision -m MSG | backup
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from typing import Any

from playbill.history.models import KINDS, LABELS
from playbill.cli.common import CLIError, CommandGroups

FORMATS = ("table", "csv", "json")
# CSV is RFC 4180's: CRLF between records, so a carriage return inside a cell is quoted too.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # OWASP's CSV injection rule: such a cell gets a leading '
# Terminal control: escape sequences (CSI, OSC, other ESC x), then C0/C1 controls and bidi overrides.
_TERMINAL_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?|\x9b[0-?]*[ -/]*[@-~]"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"
)
DEFAULT_LIMIT = 50
TABLE_TEXT = 60  # characters of a prompt or answer shown in a table cell

# options of the bare `playbill history` that `stats` and `forget` do not take
_LIST_ONLY = ("kind", "search", "label", "status", "source", "limit", "channel")
_STATS_ONLY = ("top",)
_RUNS_ONLY = ("model",)


def register(commands: argparse._SubParsersAction, groups: CommandGroups) -> None:
    """Add `playbill history` and `playbill db`."""
    _register_history(commands)
    _register_db(commands)
    bench = groups("bench").add_parser("history", help="what a history write and the admin queries cost")
    bench.add_argument("--url", help="database to benchmark in (default: a fresh SQLite file); it gets test rows!")
    bench.add_argument("--writes", type=_positive_int, default=500, help="rows written per measurement")
    bench.add_argument("--rows", type=_positive_int, default=20_000, help="rows in the table for the query timings")
    bench.set_defaults(handler=_bench)


# --- argument types ----------------------------------------------------------------------


def _discord_id(value: str) -> int:
    """A Discord id, also as a pasted mention (<@123>, <#123>)."""
    match = re.fullmatch(r"\s*<?[@#!&]*(\d{1,20})>?\s*", value)
    if not match or int(match.group(1)) >= 2**63:
        raise argparse.ArgumentTypeError(f"not a Discord id: {value!r} (a number like 123456789012345678)")
    return int(match.group(1))


def _time(end_of_day: bool):
    def parse(value: str):
        from playbill.history.errors import HistoryError
        from playbill.history.timeparse import parse_time

        try:
            return parse_time(value, end_of_day=end_of_day)
        except HistoryError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = "time"
    return parse


def _positive_int(value: str) -> int:
    """A row count: history.api's rule (1 to MAX_ROWS), checked while parsing."""
    from playbill.history.api import check_row_count
    from playbill.history.errors import HistoryError

    try:
        return check_row_count("it", int(value))
    except (ValueError, HistoryError):
        from playbill.history.api import MAX_ROWS

        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_ROWS:,}, not {value!r}") from None


# --- playbill history --------------------------------------------------------------------


def _register_history(commands: argparse._SubParsersAction) -> None:
    from playbill.history.timeparse import HELP as TIME_HELP

    p = commands.add_parser(
        "history",
        help="look back at what people asked and what the models answered",
        description=(
            "list: interactions, newest first (the default).  stats: counts per day and kind, label mix, "
            "latency, busiest users and channels, feedback agreement.  forget: delete one user's rows.  "
            "runs: the latest training runs (--model, --limit)."
        ),
        epilog="examples: playbill history --user 1234 --since 7d | playbill history stats --since 30d | "
        "playbill history forget --user 1234",
    )
    p.add_argument("action", nargs="?", choices=("list", "stats", "forget", "runs"), default="list", help="default: list")
    p.add_argument("--user", type=_discord_id, metavar="ID", help="only this Discord user (forget: required)")
    p.add_argument("--guild", type=_discord_id, metavar="ID", help="only this server")
    p.add_argument("--channel", type=_discord_id, metavar="ID", help="only this channel")
    p.add_argument("--kind", choices=KINDS, help="only reviews (sentiment) or scenes")
    p.add_argument("--label", choices=LABELS, help="only reviews judged so")
    p.add_argument("--status", choices=("ok", "error"), help="only answered requests, or only failures")
    p.add_argument("--source", choices=("discord", "console", "cli"), help="only from there")
    p.add_argument("--since", type=_time(False), metavar="WHEN", help=f"from then on: {TIME_HELP}")
    p.add_argument("--until", type=_time(True), metavar="WHEN", help="before then (a bare date includes that day)")
    p.add_argument("--search", metavar="TEXT", help="text in the prompt or the answer (any case)")
    p.add_argument("--limit", type=_positive_int, metavar="N", help=f"at most N rows (default {DEFAULT_LIMIT})")
    p.add_argument("--model", choices=KINDS, help="runs: only this model's training runs")
    p.add_argument("--top", type=_positive_int, metavar="N", help="stats: how many busiest users/channels (default 5)")
    p.add_argument("--format", choices=FORMATS, default="table", help="table (default, text cut short), csv or json (full)")
    p.set_defaults(handler=_history)


def _history(args: argparse.Namespace, settings) -> int:
    given = {
        name
        for name in (*_LIST_ONLY, *_STATS_ONLY, *_RUNS_ONLY, "user", "guild", "since", "until")
        if getattr(args, name) is not None
    }
    if args.action == "runs":
        extra = given - {"model", "limit"}
        if extra:
            raise CLIError(f"runs takes --model and --limit, not {_options(extra)}")
        return _runs(args, settings)
    if args.action != "runs" and "model" in given:
        raise CLIError("--model is for `playbill history runs`")
    if args.action == "forget":
        extra = given - {"user"}
        if args.user is None:
            raise CLIError("forget needs --user ID (the Discord user whose rows to delete)")
        if extra:
            raise CLIError(f"forget takes only --user, not {_options(extra)}")
        return _forget(args, settings)
    if args.action == "stats":
        extra = given & {*_LIST_ONLY, "user"}
        if extra:
            raise CLIError(f"stats takes --since, --until, --guild and --top, not {_options(extra)}")
        return _stats(args, settings)
    if given & set(_STATS_ONLY):
        raise CLIError("--top is for `playbill history stats`")
    return _list(args, settings)


def _options(names: set[str]) -> str:
    return ", ".join(f"--{name}" for name in sorted(names))


def _sessions(settings):
    from playbill.history.db import open_history

    engine, sessions = open_history(settings.database_url)
    return engine, sessions


def _list(args: argparse.Namespace, settings) -> int:
    from playbill.history.api import InteractionFilter, query_interactions

    if args.since and args.until and args.since >= args.until:
        raise CLIError("--since must be before --until")
    limit = args.limit or DEFAULT_LIMIT
    engine, sessions = _sessions(settings)
    try:
        rows = query_interactions(
            sessions,
            InteractionFilter(
                user_id=args.user,
                guild_id=args.guild,
                channel_id=args.channel,
                kind=args.kind,
                source=args.source,
                status=args.status,
                label=args.label,
                since=args.since,
                until=args.until,
                search=args.search,
                limit=limit,
            ),
        )
    finally:
        engine.dispose()
    if args.format == "json":
        json.dump([row.to_dict() for row in rows], sys.stdout, ensure_ascii=False, indent=1)
        sys.stdout.write("\n")
    elif args.format == "csv":
        _write_csv(rows)
    else:
        _print_table(rows)
        if len(rows) == limit:
            print(f"(the newest {limit}; --limit N shows more)", file=sys.stderr)
    return 0


def csv_safe(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run: text starting with = + - @ tab or CR gets a leading
    apostrophe (OWASP); numbers and other cells are kept as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _write_csv(rows) -> None:
    from dataclasses import fields

    from playbill.history.api import InteractionRecord

    names = [f.name for f in fields(InteractionRecord)]
    writer = csv.DictWriter(sys.stdout, fieldnames=names, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        data = row.to_dict()
        data["params"] = json.dumps(data["params"], ensure_ascii=False) if data["params"] is not None else ""
        writer.writerow({k: "" if v is None else csv_safe(v) for k, v in data.items()})


def _cell(text: Any, width: int = TABLE_TEXT):
    """One line of plain text (never rich markup), cut to `width` characters."""
    from rich.text import Text

    value = "" if text is None else " ".join(_TERMINAL_CONTROL.sub("", str(text)).split())
    if len(value) > width:
        value = value[: width - 1] + "…"
    return Text(value)


def _print_table(rows) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not rows:
        console.print("no interactions match")
        return
    wide = console.width >= 110
    # Every cell is one line; prompt and answer share what the fixed columns leave.
    id_width = max(len(str(row.id)) for row in rows)
    fixed = id_width + 16 + 9 + 12 + 6 + (12 + 7 if wide else 0) + 2 * (9 if wide else 7)
    text_width = max(12, (console.width - fixed) // 2)
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, collapse_padding=True)
    columns = ["id", "when (UTC)", "kind", "user", "where", "prompt", "answer", "ms", "votes"]
    if not wide:
        columns.remove("where")
        columns.remove("votes")
    for name in columns:
        table.add_column(name, no_wrap=True, justify="right" if name in ("id", "ms", "votes") else "left")
    for row in rows:
        if row.status == "error":
            answer = _cell(f"error: {row.error or ''}", text_width)
            answer.stylize("red")
        elif row.label:  # the critic's verdict
            answer = _cell(f"{row.label} ({row.probability:.2f})" if row.probability is not None else row.label)
        else:
            answer = _cell(row.output, text_width)
        user = row.user_name or (str(row.user_id) if row.user_id is not None else row.source)
        cells = {
            "id": str(row.id),
            "when (UTC)": row.created_at.strftime("%Y-%m-%d %H:%M"),
            "kind": row.kind,
            "user": _cell(user, 12),
            "where": _cell(_where(row), 12),
            "prompt": _cell(row.prompt, text_width),
            "answer": answer,
            "ms": f"{row.latency_ms:.0f}" if row.latency_ms is not None else "",
            "votes": f"+{row.feedback_right}/-{row.feedback_wrong}" if row.feedback_right or row.feedback_wrong else "",
        }
        table.add_row(*(cells[name] for name in columns))
    console.print(table)


def _runs(args: argparse.Namespace, settings) -> int:
    from playbill.history.api import list_training_runs

    engine, sessions = _sessions(settings)
    try:
        runs = list_training_runs(sessions, model_name=args.model, limit=args.limit or 20)
    finally:
        engine.dispose()
    if args.format == "json":
        json.dump([run.to_dict() for run in runs], sys.stdout, ensure_ascii=False, indent=1)
        sys.stdout.write("\n")
        return 0
    if args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\r\n")
        names = list(runs[0].to_dict()) if runs else ["id"]
        writer.writerow(names)
        for run in runs:
            data = run.to_dict()
            data["metrics"] = json.dumps(data["metrics"]) if data["metrics"] is not None else None
            writer.writerow(["" if data[n] is None else csv_safe(data[n]) for n in names])
        return 0
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not runs:
        console.print("no training runs yet")
        return 0
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, collapse_padding=True)
    columns = ["id", "model", "started (UTC)", "took", "status", "epochs", "candidate", "current", "version"]
    if console.width < 100:  # a narrow terminal: the essentials only
        columns = ["id", "model", "started (UTC)", "status", "candidate", "current", "version"]
    note_width = console.width - 105  # what the other columns leave for the checkpoint or error
    if note_width >= 16:
        columns.append("from / error")
    for name in columns:
        table.add_column(name, no_wrap=True)
    for run in runs:
        took = f"{(run.finished_at - run.started_at).total_seconds() / 60:.1f} min" if run.finished_at else "-"
        metric = lambda v: "-" if v is None else f"{v:.4g}"  # noqa: E731
        cells = {
            "id": str(run.id),
            "model": run.model_name,
            "started (UTC)": run.started_at.strftime("%Y-%m-%d %H:%M"),
            "took": took,
            "status": run.status,
            "epochs": str(run.epochs or "-"),
            "candidate": metric(run.candidate_metric),
            "current": metric(run.current_metric),
            "version": _cell(run.version or "-", 20),
            "from / error": _cell(run.error or run.checkpoint_from, max(note_width, 16)),
        }
        table.add_row(*(cells[name] for name in columns))
    console.print(table)
    return 0


def _where(row) -> str:
    if row.channel_id is not None:
        return f"#{row.channel_id}"
    return "DM" if row.source == "discord" else row.source


def _stats(args: argparse.Namespace, settings) -> int:
    from playbill.history.api import history_stats

    engine, sessions = _sessions(settings)
    try:
        stats = history_stats(sessions, args.since, until=args.until, guild_id=args.guild, top=args.top or 5)
    finally:
        engine.dispose()
    if args.format == "json":
        json.dump(stats, sys.stdout, ensure_ascii=False, indent=1)
        sys.stdout.write("\n")
    elif args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\r\n")
        writer.writerow(["day", "kind", "count"])
        for row in stats["per_day"]:
            writer.writerow([row["day"], row["kind"], row["count"]])
    else:
        _print_stats(stats)
    return 0


def _print_stats_table(console, title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]],
                 right_aligned: tuple[str, ...] = ()) -> None:
    """One titled table of the stats report (numbers right-aligned where asked)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for name in columns:
        table.add_column(name, justify="right" if name in right_aligned else "left")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _print_stats(stats: dict[str, Any]) -> None:
    from rich.console import Console

    console = Console()
    window = f"since {stats['since'][:16]}" if stats["since"] else "all time"
    if stats["until"]:
        window += f", until {stats['until'][:16]}"
    kinds = ", ".join(f"{n} {kind}" for kind, n in stats["by_kind"].items())
    console.print(f"[bold]{stats['total']} interactions[/bold] ({window}, UTC): {kinds}; {stats['errors']} failed")
    if not stats["total"]:
        return
    days: dict[str, dict[str, int]] = {}
    for row in stats["per_day"]:
        days.setdefault(row["day"], {})[row["kind"]] = row["count"]
    _print_stats_table(console, "per day", ("day", *KINDS),
                 [(day, *(str(counts.get(kind, 0)) for kind in KINDS)) for day, counts in sorted(days.items())],
                 right_aligned=KINDS)

    labels = stats["labels"]
    judged = sum(labels.values())
    if judged:
        console.print(
            "labels: " + ", ".join(f"{label} {n} ({n / judged:.0%})" for label, n in labels.items())
        )
    _print_stats_table(console, "latency (answered requests)", ("kind", "n", "median", "p95"),
                 [(kind, str(row["n"]), _ms(row["median_ms"]), _ms(row["p95_ms"])) for kind, row in stats["latency"].items()],
                 right_aligned=("n", "median", "p95"))

    if stats["busiest_users"]:
        _print_stats_table(console, "busiest users", ("user id", "name", "interactions"),
                     [(str(row["user_id"]), _cell(row["user_name"], 32), str(row["count"])) for row in stats["busiest_users"]])
    if stats["busiest_channels"]:
        _print_stats_table(console, "busiest channels", ("guild id", "channel id", "interactions"),
                     [(str(row["guild_id"] or "-"), str(row["channel_id"]), str(row["count"]))
                      for row in stats["busiest_channels"]])
    fb = stats["feedback"]
    if fb["votes"]:
        console.print(
            f"feedback: {fb['votes']} votes, {fb['right']} right / {fb['wrong']} wrong: "
            f"agreement {fb['agreement']:.0%}"
        )
    else:
        console.print("feedback: no votes")


def _forget(args: argparse.Namespace, settings) -> int:
    from playbill.history.api import forget_user

    engine, sessions = _sessions(settings)
    try:
        counts = forget_user(sessions, args.user)
    finally:
        engine.dispose()
    if args.format == "json":
        json.dump({"user_id": args.user, **counts}, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(
            f"forgot user {args.user}: deleted {counts['interactions']} interaction(s) "
            f"and {counts['feedback']} feedback vote(s)"
        )
    return 0


def _bench(args: argparse.Namespace, settings) -> int:
    from playbill.history.bench import run_bench

    from playbill.cli.common import print_json

    print_json(run_bench(args.url, writes=args.writes, rows=args.rows))
    return 0


# --- playbill db -------------------------------------------------------------------------


def _register_db(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("db", help="the history database: migrate the schema, back it up")
    sub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = sub.add_parser("upgrade", help="migrate the schema to the newest revision (or REVISION)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(handler=_db_upgrade)
    down = sub.add_parser("downgrade", help="migrate back to REVISION (base: drop every table, losing the history)")
    down.add_argument("revision")
    down.add_argument("--yes", action="store_true", help="needed for `base`, which deletes all history")
    down.set_defaults(handler=_db_downgrade)
    cur = sub.add_parser("current", help="show the database's schema revision and the newest one")
    cur.set_defaults(handler=_db_current)
    rev = sub.add_parser(
        "revision", help="write a new migration from the difference between history/models.py and the database"
    )
    rev.add_argument("-m", "--message", required=True, help="what the migration changes")
    rev.add_argument("--empty", action="store_true", help="write an empty migration to fill in by hand")
    rev.set_defaults(handler=_db_revision)
    backup = sub.add_parser("backup", help="copy the SQLite database to <home>/backups now (keeps jobs.backups_keep)")
    backup.set_defaults(handler=_db_backup)


def _db_upgrade(args: argparse.Namespace, settings) -> int:
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


def _db_downgrade(args: argparse.Namespace, settings) -> int:
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


def _db_current(args: argparse.Namespace, settings) -> int:
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


def _db_revision(args: argparse.Namespace, settings) -> int:
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


def _db_backup(args: argparse.Namespace, settings) -> int:
    from playbill.history.backup import backup_sqlite

    made = backup_sqlite(settings.database_url, settings.backups_dir, settings.jobs.backups_keep)
    if made is None:
        raise CLIError("only an SQLite database is backed up by Playbill; back up a server database with its own tools")
    print(f"backed up to {made}")
    return 0
