"""`playbill history ACTION`: what people asked and what the models answered, for admins.

    playbill history [list] [--user ID] [--guild ID] [--kind K] [--since 7d] [--search TEXT] ...
    playbill history stats [--since 7d] [--until WHEN] [--guild ID] [--top N]
    playbill history runs [--model M] [--limit N]
    playbill history forget --user ID

Every action queries once and prints through playbill.cli.output (--format table, csv or json).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import asdict, fields

from playbill.cli.common import CLIError, CommandGroups
from playbill.cli.output import FORMATS, Column, Listing, Report, render
from playbill.history.models import KINDS, LABELS, SOURCES, STATUSES
from playbill.settings import Settings

DEFAULT_LIMIT = 50  # interactions listed unless --limit says otherwise
DEFAULT_RUNS = 20  # training runs listed unless --limit says otherwise
DEFAULT_TOP = 5  # busiest users and channels in the stats


def register(commands: argparse._SubParsersAction, groups: CommandGroups) -> None:
    """Add `playbill history ACTION` and `playbill bench history`."""
    _register_history(commands)
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


# --- the parsers -------------------------------------------------------------------------


def _register_history(commands: argparse._SubParsersAction) -> None:
    from playbill.history.timeparse import HELP as TIME_HELP

    history = commands.add_parser(
        "history",
        help="look back at what people asked and what the models answered",
        description="list (the default): interactions, newest first.  stats: counts per day and kind, label mix, "
        "latency, busiest users and channels, feedback agreement.  runs: the latest training runs.  "
        "forget: delete one user's rows.",
        epilog="examples: playbill history --user 1234 --since 7d | playbill history stats --since 30d | "
        "playbill history runs --model scene | playbill history forget --user 1234",
    )
    history.default_action = "list"  # `playbill history [flags]` lists (OneLineParser)
    actions = history.add_subparsers(dest="history_action", metavar="ACTION")

    listing = actions.add_parser("list", help="interactions, newest first (the default action)")
    _add_window(listing, TIME_HELP)
    listing.add_argument("--user", type=_discord_id, metavar="ID", help="only this Discord user")
    listing.add_argument("--guild", type=_discord_id, metavar="ID", help="only this server")
    listing.add_argument("--channel", type=_discord_id, metavar="ID", help="only this channel")
    listing.add_argument("--kind", choices=KINDS, help="only this model's requests")
    listing.add_argument("--label", choices=LABELS, help="only reviews judged so")
    listing.add_argument("--status", choices=STATUSES, help="only answered requests, or only failures")
    listing.add_argument("--source", choices=SOURCES, help="only from there")
    listing.add_argument("--search", metavar="TEXT", help="text in the prompt or the answer (any case)")
    listing.add_argument("--limit", type=_positive_int, metavar="N", default=DEFAULT_LIMIT,
                         help=f"at most N rows (default {DEFAULT_LIMIT})")
    _add_format(listing)
    listing.set_defaults(handler=_list)

    stats = actions.add_parser("stats", help="counts per day and kind, labels, latency, busiest users, feedback")
    _add_window(stats, TIME_HELP)
    stats.add_argument("--guild", type=_discord_id, metavar="ID", help="only this server")
    stats.add_argument("--top", type=_positive_int, metavar="N", default=DEFAULT_TOP,
                       help=f"how many busiest users and channels (default {DEFAULT_TOP})")
    _add_format(stats, csv="the interactions per day and kind")
    stats.set_defaults(handler=_stats)

    runs = actions.add_parser("runs", help="the latest training runs, newest first")
    runs.add_argument("--model", choices=KINDS, help="only this model's runs")
    runs.add_argument("--limit", type=_positive_int, metavar="N", default=DEFAULT_RUNS,
                      help=f"at most N runs (default {DEFAULT_RUNS})")
    _add_format(runs)
    runs.set_defaults(handler=_runs)

    forget = actions.add_parser("forget", help="delete one user's interactions and votes")
    forget.add_argument("--user", type=_discord_id, metavar="ID", help="the Discord user whose rows to delete (required)")
    _add_format(forget)
    forget.set_defaults(handler=_forget)


def _add_window(parser: argparse.ArgumentParser, time_help: str) -> None:
    parser.add_argument("--since", type=_time(False), metavar="WHEN", help=f"from then on: {time_help}")
    parser.add_argument("--until", type=_time(True), metavar="WHEN", help="before then (a bare date includes that day)")


def _add_format(parser: argparse.ArgumentParser, csv: str = "every field") -> None:
    parser.add_argument("--format", choices=FORMATS, default="table",
                        help=f"table (default, text cut short), csv ({csv}) or json (everything)")


def _check_window(args: argparse.Namespace) -> None:
    if args.since and args.until and args.since >= args.until:
        raise CLIError("--since must be before --until")


def _sessions(settings: Settings):
    """The database, with the rows kept in the spool during an outage written first (they belong
    in what is listed, counted or forgotten). Returns (engine, sessions, rows still spooled)."""
    from playbill.history.db import open_history
    from playbill.history.spool import InteractionWriter, Spool

    engine, sessions = open_history(settings.database_url)
    writer = InteractionWriter(engine, sessions, Spool(settings.spool_dir))
    writer.replay()
    return engine, sessions, writer.pending()


def _spool_note(settings, waiting: int) -> str | None:
    if not waiting:
        return None
    return f"{waiting} interaction(s) wait in the spool {settings.spool_dir} and are not shown yet"


# --- history list ------------------------------------------------------------------------


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from playbill.history.api import InteractionFilter, query_interactions

    _check_window(args)
    engine, sessions, waiting = _sessions(settings)
    try:
        rows = query_interactions(sessions, InteractionFilter(
            user_id=args.user, guild_id=args.guild, channel_id=args.channel, kind=args.kind, source=args.source,
            status=args.status, label=args.label, since=args.since, until=args.until, search=args.search,
            limit=args.limit,
        ))
    finally:
        engine.dispose()
    render(interactions_listing(rows, limit=args.limit), args.format)
    note = _spool_note(settings, waiting)
    if note:
        print(f"warning: {note}", file=sys.stderr)
    return 0


def interactions_listing(rows: list, *, limit: int | None = None) -> Listing:
    """Interactions as the CLI shows them (JSON and CSV: every field; a table: one line each)."""
    from playbill.history.api import InteractionRecord

    return Listing(
        items=rows,
        fields=[f.name for f in fields(InteractionRecord)],
        record=lambda row: row.to_dict(),
        columns=[
            Column("id", lambda r: r.id, numeric=True),
            Column("when (UTC)", lambda r: r.created_at.strftime("%Y-%m-%d %H:%M")),
            Column("kind", lambda r: r.kind),
            Column("user", lambda r: r.user_name or (r.user_id if r.user_id is not None else r.source), width=12),
            Column("where", _where, width=12, shown_from=110),
            Column("prompt", lambda r: r.prompt, flexible=True),
            Column("answer", _answer, flexible=True, style=lambda r: "red" if r.status == "error" else None),
            Column("ms", lambda r: None if r.latency_ms is None else f"{r.latency_ms:.0f}", numeric=True),
            Column("votes", lambda r: f"+{r.feedback_right}/-{r.feedback_wrong}"
                   if r.feedback_right or r.feedback_wrong else None, numeric=True, shown_from=110),
        ],
        empty="no interactions match",
        note=f"(the newest {limit}; --limit N shows more)" if limit is not None and len(rows) == limit else None,
    )


def _where(row) -> str:
    if row.channel_id is not None:
        return f"#{row.channel_id}"
    return "DM" if row.source == "discord" else row.source


def _answer(row) -> str:
    if row.status == "error":
        return f"error: {row.error or ''}"
    if row.label:  # the critic's verdict
        return f"{row.label} ({row.probability:.2f})" if row.probability is not None else row.label
    return row.output or ""


# --- history runs ------------------------------------------------------------------------


def _runs(args: argparse.Namespace, settings: Settings) -> int:
    from playbill.history.api import TrainingRunRecord, list_training_runs

    engine, sessions, _ = _sessions(settings)
    try:
        runs = list_training_runs(sessions, model_name=args.model, limit=args.limit)
    finally:
        engine.dispose()
    render(Listing(
        items=runs,
        fields=[f.name for f in fields(TrainingRunRecord)],
        record=lambda run: run.to_dict(),
        columns=[
            Column("id", lambda r: r.id, numeric=True),
            Column("model", lambda r: r.model_name),
            Column("started (UTC)", lambda r: r.started_at.strftime("%Y-%m-%d %H:%M")),
            Column("took", lambda r: f"{(r.finished_at - r.started_at).total_seconds() / 60:.1f} min"
                   if r.finished_at else "-", shown_from=100),
            Column("status", lambda r: r.status),
            Column("epochs", lambda r: r.epochs or "-", numeric=True, shown_from=100),
            Column("candidate", lambda r: _metric(r.candidate_metric), numeric=True),
            Column("current", lambda r: _metric(r.current_metric), numeric=True),
            Column("version", lambda r: r.version or "-", width=20),
            Column("from / error", lambda r: r.error or r.checkpoint_from, flexible=True, shown_from=121),
        ],
        empty="no training runs yet",
    ), args.format)
    return 0


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


# --- history stats -----------------------------------------------------------------------


def _stats(args: argparse.Namespace, settings: Settings) -> int:
    from playbill.history.api import history_stats

    _check_window(args)
    engine, sessions, waiting = _sessions(settings)
    try:
        stats = history_stats(sessions, args.since, until=args.until, guild_id=args.guild, top=args.top)
    finally:
        engine.dispose()
    render(stats_report(stats, spooled=waiting, spool_note=_spool_note(settings, waiting)), args.format)
    return 0


def stats_report(stats, *, spooled: int = 0, spool_note: str | None = None) -> Report:
    """A HistoryStats as JSON (all of it, and `spooled`: rows waiting for the database), CSV (the
    counts per day and kind) and a report to read."""
    per_day = Listing(items=stats.per_day, fields=("day", "kind", "count"), record=asdict)
    window = f"since {stats.since:%Y-%m-%d %H:%M}" if stats.since else "all time"
    if stats.until:
        window += f", until {stats.until:%Y-%m-%d %H:%M}"
    kinds = ", ".join(f"{n} {kind}" for kind, n in stats.by_kind.items())
    blocks: list[str | Listing] = [f"{stats.total} interactions ({window}, UTC): {kinds}; {stats.errors} failed"]
    if stats.total:
        days: dict[str, dict[str, int]] = {}
        for row in stats.per_day:
            days.setdefault(row.day, {})[row.kind] = row.count
        blocks.append(Listing(
            items=sorted(days.items()), fields=("day", *KINDS), record=lambda item: {"day": item[0], **item[1]},
            columns=[Column("day", lambda item: item[0]),
                     *(Column(kind, lambda item, kind=kind: item[1].get(kind, 0), numeric=True) for kind in KINDS)],
            title="per day",
        ))
        judged = sum(stats.labels.values())
        if judged:
            blocks.append("labels: " + ", ".join(f"{label} {n} ({n / judged:.0%})" for label, n in stats.labels.items()))
        blocks.append(Listing(
            items=list(stats.latency.items()), fields=("kind", "n", "median_ms", "p95_ms"),
            record=lambda item: {"kind": item[0], **asdict(item[1])},
            columns=[Column("kind", lambda item: item[0]), Column("n", lambda item: item[1].n, numeric=True),
                     Column("median", lambda item: _ms(item[1].median_ms), numeric=True),
                     Column("p95", lambda item: _ms(item[1].p95_ms), numeric=True)],
            title="latency (answered requests)",
        ))
        if stats.busiest_users:
            blocks.append(Listing(
                items=stats.busiest_users, fields=("user_id", "user_name", "count"), record=asdict,
                columns=[Column("user id", lambda u: u.user_id), Column("name", lambda u: u.user_name, width=32),
                         Column("interactions", lambda u: u.count, numeric=True)],
                title="busiest users",
            ))
        if stats.busiest_channels:
            blocks.append(Listing(
                items=stats.busiest_channels, fields=("guild_id", "channel_id", "count"), record=asdict,
                columns=[Column("guild id", lambda c: c.guild_id or "-"), Column("channel id", lambda c: c.channel_id),
                         Column("interactions", lambda c: c.count, numeric=True)],
                title="busiest channels",
            ))
        fb = stats.feedback
        blocks.append(f"feedback: {fb.votes} votes, {fb.right} right / {fb.wrong} wrong: agreement {fb.agreement:.0%}"
                      if fb.votes else "feedback: no votes")
    if spool_note:
        blocks.append(f"backlog: {spool_note}")
    return Report(data={**stats.to_dict(), "spooled": spooled}, table=per_day, blocks=blocks)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


# --- history forget ----------------------------------------------------------------------


def _forget(args: argparse.Namespace, settings: Settings) -> int:
    from playbill.history.spool import InteractionWriter, Spool

    if args.user is None:
        raise CLIError("forget needs --user ID (the Discord user whose rows to delete)")
    engine, sessions, _ = _sessions(settings)
    try:  # the user's rows still waiting in the spool (the database refused them just now) go too
        counts = InteractionWriter(engine, sessions, Spool(settings.spool_dir)).forget_user(args.user)
    finally:
        engine.dispose()
    data = {"user_id": args.user, **counts}
    render(Report(
        data=data,
        table=Listing(items=[data], fields=list(data), record=dict),
        blocks=[f"forgot user {args.user}: deleted {counts['interactions']} interaction(s) "
                f"and {counts['feedback']} feedback vote(s)"],
    ), args.format)
    return 0


# --- playbill bench history --------------------------------------------------------------


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    from playbill.history.bench import run_bench

    from playbill.cli.common import print_json

    print_json(run_bench(args.url, writes=args.writes, rows=args.rows))
    return 0
