"""`playbill run`, `playbill console`, `playbill sync-commands`.

discord.py and the bot package are imported inside the handlers, so other commands stay fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from playbill.cli.common import CLIError, CommandGroups, serve_metrics
from playbill.settings import TOKEN_ENV_VARS, Settings, discord_token

log = logging.getLogger("playbill.bot")

NO_TOKEN = (
    "No Discord token: set {vars} in the environment to run the bot on Discord. "
    "Meanwhile, try every command locally with `playbill console`."
)
BAD_TOKEN = (
    "Discord rejected the token in {vars} (it is wrong, revoked or reset). Get a new one from the "
    "Discord developer portal (Bot > Reset Token). Meanwhile, `playbill console` works without one."
)
UNREACHABLE = (
    "Cannot reach Discord ({error}). Check the network or a proxy (and https://discordstatus.com), then start "
    "again; `[bot] connect_retries` sets how long it tries. Meanwhile `playbill console` works offline."
)


def register(commands: argparse._SubParsersAction, groups: CommandGroups) -> None:
    run = commands.add_parser(
        "run",
        help="run the Discord bot and the job scheduler (no token: the local console)",
        description="Run the bot and the nightly jobs in one process. Without a token in "
        f"{' or '.join(TOKEN_ENV_VARS)}, explain and start `playbill console` instead.",
    )
    run.add_argument("--no-scheduler", action="store_true", help="do not run the nightly jobs in this process")
    run.add_argument("--train-missing", action="store_true",
                     help="first train a quick model for each one that is missing (minutes, not hours)")
    run.add_argument("--shard-count", type=int, metavar="N",
                     help="total shards across all processes (default: [bot] shard_count, else Discord's advice)")
    run.add_argument("--shard-ids", metavar="IDS",
                     help="the shards this process runs, like 0,1 or 2-3 (default: [bot] shard_ids, else all)")
    run.set_defaults(handler=_run)

    console = commands.add_parser(
        "console",
        help="the bot's commands at a local prompt (reads a pipe too)",
        description="Type /review-sentiment TEXT, /write-scene PROMPT [length=N] [temperature=T], "
        "/history ..., /help. Reads commands a line each until /quit or end of input. "
        "--user ID [--name NAME] acts as that member (votes, cooldowns, /forget-me); default the OS user.",
    )
    console.add_argument("--user", metavar="ID", help="act as this Discord user id (default: the OS user)")
    console.add_argument("--name", metavar="NAME", help="the display name to act under (default: 'member ID', "
                         "or the login name)")
    console.set_defaults(handler=_console)

    sync = commands.add_parser(
        "sync-commands",
        help="publish the slash commands to Discord (one server, or globally)",
        description="Sync the slash commands. Default: the dev_guild_id from the settings; "
        "--guild ID for another server; --global for every server (can take up to an hour to show).",
    )
    where = sync.add_mutually_exclusive_group()
    where.add_argument("--guild", type=int, metavar="ID", help="sync to this server only (instant)")
    where.add_argument("--global", dest="global_", action="store_true", help="sync globally")
    sync.set_defaults(handler=_sync_commands)

    bench = groups("bench").add_parser(
        "bot",
        help="the bot's inference worker vs predicting on the event loop, same model and burst",
        description="A burst of concurrent /review-sentiment requests answered on the event loop, by the "
        "worker one at a time, and by the worker with micro-batching: requests/s, latency, event-loop lag.",
    )
    bench.add_argument("--requests", type=int, default=256, help="concurrent requests in the burst (default 256)")
    bench.add_argument("--chars", type=int, default=800, help="characters per review (default 800)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(handler=_bench)

    first = groups("bench").add_parser(
        "first-start",
        help="from an empty home: the first review, the first scene, then every warm-up promotion with its figures",
        description="What `playbill run --train-missing` does for a new admin, timed: the quick critic in an empty "
        "home and the first review at once, the quick playwright training in the background (/write-scene's "
        "'still learning' answers) until the first scene, then the warm-up while answering (event-loop lag "
        "measured), each promotion with its validation figures. A table, and the JSON with --json.",
    )
    first.add_argument("--minutes", type=float, default=60.0, help="how long to run in all (default 60)")
    first.add_argument("--home", help="the empty home to start in (default: a new temporary folder)")
    first.add_argument("--json", metavar="PATH", help="also write the report as JSON to PATH")
    first.set_defaults(handler=_bench_first_start)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_shards(settings, args.shard_count, args.shard_ids)
    serve_metrics(settings)  # [metrics] port: /metrics, /healthz, /readyz
    if args.train_missing:
        _train_missing(settings, args)
    token = discord_token()
    if token is None:
        print(NO_TOKEN.format(vars=" or ".join(TOKEN_ENV_VARS)), file=sys.stderr)
        print("Starting `playbill console` now.", file=sys.stderr)
        if not args.no_scheduler:
            _start_warmup(settings)
        return _console(args, settings)
    import aiohttp
    import discord

    from playbill.bot.client import DiscordUnavailable, StartRefused, serve
    from playbill.bot.discord_io import http_error_line
    from playbill.bot.services import default_holders, missing_models, missing_models_message, refresh_models
    from playbill.jobs.warmup import learning

    holders = default_holders(settings)  # loaded once, kept by every connection attempt
    refresh_models(holders)
    missing = [name for name in missing_models(holders) if learning(settings, name) is None]
    if missing:
        print(f"warning: {missing_models_message(missing, holders)} "
              "(or start with `playbill run --train-missing`)", file=sys.stderr)

    async def main() -> None:
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError, RuntimeError):  # a clean stop on SIGTERM too
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await serve(settings, token.get_secret_value(), holders=holders, start_scheduler=not args.no_scheduler,
                    stop=stop)

    try:
        asyncio.run(main())
    except discord.LoginFailure:
        raise CLIError(BAD_TOKEN.format(vars=" or ".join(TOKEN_ENV_VARS))) from None
    except discord.PrivilegedIntentsRequired as exc:  # pragma: no cover - Playbill asks for none
        raise CLIError(f"Discord refused an intent: {exc}") from None
    except DiscordUnavailable as exc:
        raise CLIError(UNREACHABLE.format(error=exc)) from None
    except StartRefused as exc:
        raise CLIError(str(exc)) from None
    except discord.HTTPException as exc:
        raise CLIError(http_error_line(exc, doing="the bot's start")) from None
    except (OSError, aiohttp.ClientError) as exc:
        raise CLIError(UNREACHABLE.format(error=exc)) from None
    return 0


def with_shards(settings, count: int | None, ids: str | None):
    """The settings with `--shard-count` / `--shard-ids` in place of [bot]'s, checked by the
    settings' own rule (one line for a wrong value)."""
    if count is None and ids is None:
        return settings
    from playbill.settings import check_shards, parse_shard_ids

    try:
        shard_ids = parse_shard_ids(ids) if ids is not None else settings.bot.shard_ids
        shard_count = count if count is not None else settings.bot.shard_count
        check_shards(shard_count, shard_ids)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    bot = settings.bot.model_copy(update={"shard_count": shard_count, "shard_ids": shard_ids})
    return settings.model_copy(update={"bot": bot})


def _console(args: argparse.Namespace, settings: Settings) -> int:
    from playbill.bot.console import console_member, run_console

    member = console_member(getattr(args, "user", None), getattr(args, "name", None))  # bad: one line, exit 2
    serve_metrics(settings)
    return asyncio.run(run_console(settings, member=member))


def _sync_commands(args: argparse.Namespace, settings: Settings) -> int:
    token = discord_token()
    if token is None:
        raise CLIError(NO_TOKEN.format(vars=" or ".join(TOKEN_ENV_VARS)))
    guild_id = args.guild or (None if args.global_ else settings.bot.dev_guild_id)
    if guild_id is None and not args.global_:
        raise CLIError("say where: --guild ID, --global, or set [bot] dev_guild_id in the settings")
    import aiohttp
    import discord

    from playbill.bot.client import PlaybillBot
    from playbill.bot.discord_io import http_error_line, sync_commands

    async def main() -> int:
        bot = PlaybillBot(settings, load_models=False, sync_on_start=False)
        async with bot:
            await bot.login(token.get_secret_value())  # runs setup_hook: cogs, no models, no gateway
            synced = await sync_commands(bot.tree, guild_id)
        print(f"synced {len(synced)} commands {'to server ' + str(guild_id) if guild_id else 'globally'}: "
              + ", ".join(sorted(c.name for c in synced)))
        return 0

    try:
        return asyncio.run(main())
    except discord.LoginFailure:
        raise CLIError(BAD_TOKEN.format(vars=" or ".join(TOKEN_ENV_VARS))) from None
    except discord.HTTPException as exc:
        where = f"syncing the commands to server {guild_id}" if guild_id else "syncing the commands globally"
        raise CLIError(http_error_line(exc, doing=where)) from None
    except (OSError, aiohttp.ClientError) as exc:
        raise CLIError(UNREACHABLE.format(error=exc)) from None


def _train_missing(settings, args: argparse.Namespace) -> None:
    """A first start: train a quick critic (the spec's `first_profile`) if it is missing, in its
    own process, and serve as soon as it is ready; the other missing models train in a spawned
    background process meanwhile (`jobs.warmup.start_first_start`), which then goes on with the
    warm-up. Until the playwright is ready, /write-scene says when it expects to be."""
    from playbill.engine.models import MODEL_NAMES
    from playbill.jobs.warmup import missing, start_first_start, train_first

    first, later = MODEL_NAMES[:1], MODEL_NAMES[1:]  # the critic first: answers within the first minute
    for name, outcome in train_first(settings, say=lambda line: print(line, file=sys.stderr, flush=True),
                                     names=first).items():
        if isinstance(outcome, str):  # still start: the other model and the console work
            print(f"warning: {name}: {outcome}; starting without it", file=sys.stderr)
        else:
            print(f"{name} model ready after {outcome:.0f} s", file=sys.stderr, flush=True)
    todo = missing(settings, later)
    if todo and start_first_start(settings, later, warm_up=not args.no_scheduler) is not None:
        print(f"training a quick {' and '.join(todo)} model in the background; serving meanwhile "
              "(/write-scene says when it expects to be ready)", file=sys.stderr, flush=True)


def _start_warmup(settings: Settings) -> None:
    """The console path of `playbill run` (no Discord, so no schedule election): the warm-up's
    own lock keeps it to one per home. The bot starts it when it takes the schedule."""
    from playbill.jobs.warmup import start_warmup

    if start_warmup(settings) is not None:
        print("warming up: both models keep training in the background (`/model-status` shows how far)",
              file=sys.stderr)


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    from playbill.bot.bench import bench_serving
    from playbill.engine.sentiment import SentimentModel
    from playbill.cli.common import print_json

    if args.requests < 2 or args.chars < 1:
        raise CLIError("--requests must be at least 2 and --chars at least 1")
    model = SentimentModel.load_current(settings.home)
    report = asyncio.run(bench_serving(model, requests=args.requests, chars=args.chars,
                                       max_batch=settings.bot.max_batch_size,
                                       batch_wait=settings.bot.batch_wait_ms / 1000))
    if args.json:
        print_json(report)
        return 0
    print(f"sentiment {report['model_version']}: {args.requests} concurrent reviews of {args.chars} characters")
    print(f"{'mode':<18}{'req/s':>8}{'median ms':>11}{'p95 ms':>9}{'loop lag p95':>14}{'max ms':>9}")
    for r in report["results"]:
        print(f"{r['mode']:<18}{r['requests_per_s']:>8}{r['latency_median_ms']:>11}{r['latency_p95_ms']:>9}"
              f"{r['loop_lag_p95_ms']:>14}{r['loop_lag_max_ms']:>9}")
    print(f"throughput, micro-batched vs one at a time: x{report['throughput_batched_vs_batch1']}; "
          f"worst event-loop stall, on-loop vs worker: x{report['loop_lag_max_on_loop_vs_batched']}")
    return 0


def _bench_first_start(args: argparse.Namespace, settings: Settings) -> int:
    import json
    import tempfile
    from pathlib import Path

    from playbill.bot.bench_first_start import bench_first_start

    if args.minutes <= 0:
        raise CLIError("--minutes must be more than 0")
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="playbill-first-start-"))
    if home.exists() and any(home.iterdir()):
        raise CLIError(f"{home} is not empty: the bench starts from an empty home")
    values = settings.model_dump()
    values.update(home=home.resolve(), data_dir=Path(settings.data_dir).resolve(), database_url=None)
    fresh = Settings(**values)
    try:
        report = asyncio.run(bench_first_start(fresh, minutes=args.minutes,
                                               say=lambda line: print(line, file=sys.stderr, flush=True)))
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    scene = f"{report['first_scene_s']:.0f} s" if report["first_scene_s"] is not None else "not within the run"
    print(f"first start in {home}: critic ready after {report['critic_ready_s']} s, first review after "
          f"{report['first_review_s']:.0f} s, first scene after {scene} ({report['still_learning_answers']} "
          f"'still learning' answers before it); ran "
          f"{report['minutes_run']} min on {report['cpus']} CPUs (load average {report['load_average']})")
    print(f"{'t (s)':>8}  event")
    for e in report["timeline"]:
        figures = ", ".join(f"{k} {v}" for k, v in e.items() if k not in ("t_s", "event", "scene", "review"))
        print(f"{e['t_s']:>8.1f}  {e['event']}{': ' + figures if figures else ''}")
    print(f"event-loop lag while warming up: p50 {report['loop_lag_p50_ms']} ms, p95 {report['loop_lag_p95_ms']} ms, "
          f"max {report['loop_lag_max_ms']} ms over {report['answers_while_warming']} answers")
    print(f"warm-up {'done' if report['warmup_done'] else 'not done yet'}; first scene: {report['first_scene'][:120]!r}")
    print(f"last scene: {report['last_scene'][:120]!r}")
    return 0
