"""`playbill scheduler`, `playbill jobs`, `playbill retrain`, `playbill feedback`, `playbill models ...`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from playbill import metrics
from playbill.cli.common import CLIError, CommandGroups, print_json, serve_metrics
from playbill.engine.models import MODEL_CHOICES, MODEL_NAMES, spec
from playbill.settings import Settings


def register(commands: argparse._SubParsersAction, groups: CommandGroups) -> None:
    """Add this feature's subcommands."""
    p = commands.add_parser("scheduler", help="run the job scheduler alone (without the bot); Ctrl-C stops it",
                            description="Holds the job schedule. If another process holds it, this one stands by "
                            "and takes over within two [jobs] leader_poll_seconds when that one stops or dies, "
                            "so replicas of it never crash-loop; --once refuses and exits instead.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--standby", action="store_true",
                      help="if another process holds the schedule, wait and take over when it stops or dies "
                      "(the default; kept for scripts that say so)")
    mode.add_argument("--once", action="store_true",
                      help="if another process holds the schedule, say so and exit with status 2 (for scripts)")
    p.set_defaults(handler=run_scheduler)

    p = commands.add_parser("jobs", help="list the scheduled jobs and their next run times")
    p.add_argument("--json", action="store_true", help="one JSON object per job")
    p.set_defaults(handler=list_jobs)

    p = commands.add_parser("retrain", help="retrain now from the current model's checkpoint (the nightly job)")
    p.add_argument("model", nargs="?", default="all", choices=(*MODEL_CHOICES, "all"),
                   help="default: all (critic = sentiment, playwright = scene)")
    p.add_argument("--json", action="store_true", help="print each outcome as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(handler=retrain)

    p = commands.add_parser("feedback", help="what the next retrain will learn from the members' votes",
                            description="The votes, the labels they settle, how far the critic agreed, the caps "
                            "and trust applied, and what is kept out for checking: exactly what the next "
                            "retrain gathers (docs/jobs.md, 'Votes that teach').")
    p.add_argument("--reviews", type=int, default=20, metavar="N", help="settled reviews listed (default 20; 0: none)")
    p.add_argument("--json", action="store_true", help="print one JSON object (every settled review)")
    p.set_defaults(handler=show_feedback)

    p = groups("bench").add_parser("retrain", help="what a nightly retrain costs the host process (in a sandbox)")
    p.add_argument("model", nargs="?", default=MODEL_NAMES[0], choices=MODEL_CHOICES)
    p.add_argument("--tiny", action="store_true", help="on a tiny model made for the purpose, not a copy of yours")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.set_defaults(handler=bench_retrain)

    p = groups("bench").add_parser("feedback", help="do the votes teach? one retrain of a copy of the critic with "
                                   "the fixed feedback fixture, before/after figures")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.set_defaults(handler=bench_feedback)
    p = groups("bench").add_parser(
        "cluster", help="three playbill run processes on a Discord stand-in and PostgreSQL: failover and rollout times",
        description="Runs tests/test_cluster_e2e.py (a source checkout with the dev extras): three processes "
        "(shards 0-1, 2, 3 of 4) on a fresh database of the PostgreSQL server at --database-url; "
        "prints the answers, the rollout time of a promotion and the failover time after kill -9 of the schedule's holder.")
    p.add_argument("--database-url", metavar="URL",
                   help="a PostgreSQL server to create the bench's database on (default: the settings' database_url)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.set_defaults(handler=bench_cluster)

    models = commands.add_parser("models", help="list, promote or roll back model versions")
    verbs = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    p = verbs.add_parser("list", help="versions of each model, the current one marked *")
    p.add_argument("model", nargs="?", choices=MODEL_CHOICES, help="default: all of them")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=models_list)
    p = verbs.add_parser("promote", help="make VERSION the current version (the running bot swaps it in)")
    p.add_argument("model", choices=MODEL_CHOICES)
    p.add_argument("version")
    p.add_argument("--force", action="store_true",
                   help="promote a candidate the gate has not judged (marked UNEVALUATED in `models list`)")
    p.set_defaults(handler=models_promote)
    p = verbs.add_parser("rollback", help="go back to the version current before the last promotion")
    p.add_argument("model", choices=MODEL_CHOICES)
    p.set_defaults(handler=models_rollback)


def show_feedback(args: argparse.Namespace, settings: Settings) -> int:
    from playbill.jobs.trainers import next_feedback

    if args.reviews < 0:
        raise CLIError("--reviews must be 0 or more")
    learnt = next_feedback(settings)
    details = learnt.details
    if args.json:
        print_json({**details, "summary": learnt.summary})
        return 0
    print("What the next retrain learns from the votes:")
    for line in details["explanation"]:
        print(f"  {line}")
    print(f"  training: {learnt.summary}")
    shown = details["reviews"][: args.reviews]
    if shown:
        print(f"settled reviews ({len(shown)} of {len(details['reviews'])}):")
        print(f"  {'id':>6}  {'settled':8}  {'weight':>6}  {'votes':>5}  {'critic':8}  review")
        for r in shown:
            label = "positive" if r["label"] else "negative"
            mark = "" if r["critic_agreed"] else " (corrects the critic)"
            print(f"  {r['review_id']:>6}  {label:8}  {r['weight']:>6.2f}  {r['votes']:>5}  {r['served_label']:8}  "
                  f"{_short(r['text'])}{mark}")
    return 0


def _short(text: str, width: int = 50) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def run_scheduler(args: argparse.Namespace, settings: Settings) -> int:
    from playbill.jobs.leader import ScheduleElection, schedule_holder
    from playbill.jobs.scheduler import create_scheduler, list_jobs as stored_jobs, run_now

    stored_jobs(settings)  # an unreachable or damaged database: one `error:` line, exit 2, before anything starts
    watch_scheduler(settings)  # [metrics] port: /metrics, /healthz, /readyz
    stop = _StopSignals()  # from the first line printed on, Ctrl-C stops cleanly
    if args.once:  # the old behaviour: hold the schedule now or refuse
        scheduler = create_scheduler(settings)
        try:
            scheduler.start()  # JobBusy (another process owns the job store) -> "error: ...", exit 2
        except BaseException:
            stop.restore()
            raise
        _say_holding(settings)
        metrics.watch("playbill_schedule_holder", lambda: 1)
        return stop.wait_then(lambda: scheduler.shutdown(wait=True))

    def on_change(scheduler: Any) -> None:  # the election's thread (or this one, at once)
        if scheduler is not None:
            _say_holding(settings)
        else:
            print("this process no longer holds the schedule", flush=True)

    election = ScheduleElection(settings, lambda: create_scheduler(settings), on_change, run_now=run_now)
    metrics.watch("playbill_schedule_holder", lambda: 1 if election.scheduler is not None else 0)
    try:
        election.start()
    except BaseException:
        stop.restore()
        raise
    if election.scheduler is None:
        holder = schedule_holder(settings)
        who = (f"process {holder.get('pid', '?')} on {holder.get('host', '?')} (since {holder.get('since', '?')})"
               if holder else "another process")
        print(f"standing by: {who} holds the schedule; this one takes over when it stops "
              f"(`playbill scheduler --once` exits instead)", flush=True)
    return stop.wait_then(election.stop)


def watch_scheduler(settings: Settings) -> None:
    """`playbill scheduler`'s endpoint (`[metrics] port`): the process is alive while it runs
    (it has no event loop); ready while the database answers."""
    import sqlalchemy as sa

    from playbill.history.db import make_engine

    serve_metrics(settings)
    if settings.metrics.port is None:
        return
    engine = make_engine(settings.database_url)

    def database() -> str | None:
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except Exception as exc:
            return f"the database does not answer ({type(exc).__name__})"
        return None

    metrics.watch_readiness("database", database)


def _say_holding(settings: Settings) -> None:
    from playbill.jobs.scheduler import list_jobs as stored_jobs

    print(f"scheduler running (time zone {settings.jobs.timezone}); this process holds the schedule; "
          "Ctrl-C stops it", flush=True)
    for job in stored_jobs(settings):
        print(f"  {job.id:<18} next run {_when(job.next_run_time)}", flush=True)


class _StopSignals:
    """SIGINT and SIGTERM set an event instead of raising wherever the main thread happens to be,
    so a Ctrl-C right after start-up still ends in a clean shutdown."""

    def __init__(self) -> None:
        import signal
        import threading

        self.event = threading.Event()
        self._previous = {sig: signal.signal(sig, lambda *_: self.event.set()) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore(self) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def wait_then(self, shutdown: Any) -> int:
        from playbill.jobs.runner import terminate_training

        try:
            while not self.event.wait(1.0):
                pass
        finally:
            self.restore()
            print("stopping the scheduler...", file=sys.stderr, flush=True)
            terminate_training()  # a run cut short is recorded as failed; the current model is untouched
            shutdown()
        print("scheduler stopped", file=sys.stderr, flush=True)
        return 0


def _when(moment: Any) -> str:
    return moment.isoformat(timespec="minutes") if moment is not None else "paused"


def list_jobs(args: argparse.Namespace, settings: Settings) -> int:
    from playbill.jobs.leader import schedule_holder
    from playbill.jobs.scheduler import list_jobs as stored_jobs

    jobs = stored_jobs(settings)
    holder = schedule_holder(settings)  # {"host", "pid", "since"} of the process running the schedule, or None
    if args.json:
        for job in jobs:
            print_json({"id": job.id, "name": job.name, "schedule": job.schedule,
                        "next_run_time": job.next_run_time.isoformat() if job.next_run_time else None,
                        "registered": job.registered, "running": job.running, "scheduler": holder})
        return 0
    if holder:
        print(f"schedule held by process {holder['pid']} on {holder['host']} since {holder['since']}")
    else:
        print("no process holds the schedule now (`playbill run` or `playbill scheduler` takes it)")
    print(f"{'JOB':<18} {'NEXT RUN':<26} {'SCHEDULE':<28} STATE")
    for job in jobs:
        state = f"running ({job.running})" if job.running else ("scheduled" if job.registered else "not registered yet")
        print(f"{job.id:<18} {_when(job.next_run_time):<26} {job.schedule:<28} {state}")
    if not all(job.registered for job in jobs):
        print("(jobs are registered when `playbill run` or `playbill scheduler` starts; times shown from the config)")
    return 0


def retrain(args: argparse.Namespace, settings: Settings) -> int:
    from playbill.jobs.common import settings_values
    from playbill.jobs.retrain import retrain_from_checkpoint

    models = MODEL_NAMES if args.model == "all" else (spec(args.model).name,)
    quiet = args.quiet or args.json

    def report(line: str) -> None:
        if not quiet:
            print(line, flush=True)

    code = 0
    for name in models:
        outcome = retrain_from_checkpoint(name, settings_values(settings), progress=not quiet, report=report)
        if args.json:
            print_json(outcome.as_dict())
        if outcome.status == "skipped":
            print(f"error: {outcome.message}", file=sys.stderr)
            code = max(code, 2)
        elif outcome.status == "failed":
            if quiet and not args.json:
                print(f"error: {name} retrain failed: {outcome.message}", file=sys.stderr)
            code = max(code, 1)
    return code


def bench_retrain(args: argparse.Namespace, settings: Settings) -> int:
    from playbill.jobs.bench import bench_retrain as bench

    figures = bench(settings, spec(args.model).name, tiny=args.tiny)
    if args.json:
        print_json(figures)
    else:
        for key, value in figures.items():
            print(f"{key:<32} {value}")
    return 0


def bench_feedback(args: argparse.Namespace, settings: Settings) -> int:
    from playbill.jobs.bench import bench_feedback as bench

    figures = bench(settings)
    if args.json:
        print_json(figures)
        return 0
    for key, value in figures.items():
        if key not in ("learnt", "gate"):
            print(f"{key:<32} {value}")
    return 0


def bench_cluster(args: argparse.Namespace, settings: Settings) -> int:
    import json
    import os
    import subprocess
    import tempfile
    from pathlib import Path

    url = args.database_url or settings.database_url
    if not url.startswith("postgresql"):
        raise CLIError("playbill bench cluster needs a PostgreSQL server: --database-url postgresql+psycopg://...")
    test = Path(__file__).resolve().parents[2] / "tests" / "test_cluster_e2e.py"
    if not test.is_file():
        raise CLIError(f"playbill bench cluster runs {test.name} from a source checkout; it is not here")
    with tempfile.TemporaryDirectory(prefix="playbill-bench-cluster-") as tmp:
        figures = Path(tmp) / "figures.json"
        env = {**os.environ, "PLAYBILL_TEST_DATABASE_URL": url, "PLAYBILL_BENCH_CLUSTER_FIGURES": str(figures)}
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],
                              cwd=test.parents[1], env=env, capture_output=True, text=True)
        if done.returncode != 0 or not figures.is_file():
            tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
            raise CLIError(f"the cluster run failed: {tail[0]}")
        report = json.loads(figures.read_text())
    if args.json:
        print_json(report)
        return 0
    for key, value in report.items():
        print(f"{key:<26} {value}")
    return 0


def _registry(settings: Settings, name: str):
    return spec(name).registry(settings.home)


def models_list(args: argparse.Namespace, settings: Settings) -> int:
    """Every version with its figures, and what is wrong with any damaged one (one line per
    problem): the checks serving makes (`spec.verify`: checksums, readable finite weights)."""
    from playbill.jobs.promotion import unevaluated
    from playbill.jobs.warmup import progress as warmup_progress, status_line as warmup_status_line

    names = (spec(args.model).name,) if args.model else MODEL_NAMES
    for name in names:
        model = spec(name)
        registry = model.registry(settings.home)
        current = registry.current_version()
        versions = registry.versions()
        problems = {v.version: model.verify(settings.home, v.version) for v in versions}
        good = next((v for v in [current, *registry.fallbacks()] if v and not problems.get(v)), None)
        warming = warmup_status_line(settings, name)
        pending = unevaluated(model, settings)  # candidates the gate has not judged
        if args.json:
            for v in versions:
                print_json({"model": name, "version": v.version, "current": v.version == current,
                            "served": v.version == good, "created_at": v.metadata.get("created_at"),
                            "metrics": v.metrics, "problems": problems[v.version],
                            "unevaluated": pending.get(v.version)})
            if warming:
                print_json({"model": name, "warmup": warmup_progress(settings, name)})
            continue
        print(f"{name}: {len(versions)} version(s)" + ("" if versions else f" - train one with `{model.train_command}`"))
        if warming:
            print(f"  {warming}")
        for v in reversed(versions):
            mark = "*" if v.version == current else " "
            figures = " ".join(f"{k}={_fmt(val)}" for k, val in sorted(v.metrics.items()) if isinstance(val, int | float))
            state = "DAMAGED" if problems[v.version] else ("served" if v.version == good and good != current else "")
            if v.version in pending:
                state = f"UNEVALUATED {state}".strip()
            print(f"  {mark} {v.version:<28} {str(v.metadata.get('created_at', '')):<26} {figures} {state}".rstrip())
            for problem in problems[v.version]:
                print(f"      - {problem}")
            if v.version in pending:
                print(f"      - a candidate {pending[v.version]}; `playbill models promote` refuses it without --force")
        if current is not None and good != current:
            print(f"  the current version {current} is damaged; "
                  + (f"{good} is served instead" if good else "no good version is left to serve"))
    return 0


def _fmt(value: float) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def models_promote(args: argparse.Namespace, settings: Settings) -> int:
    from playbill.jobs.promotion import promote_by_hand

    name = spec(args.model).name
    previous = promote_by_hand(name, settings, args.version, force=args.force)
    print(f"{name}: {args.version} is now current (was {previous}); a running bot swaps it in on its next refresh")
    return 0


def models_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from playbill.jobs.promotion import roll_back

    name = spec(args.model).name
    registry = _registry(settings, name)
    previous = registry.current_version()
    if previous is None:
        raise CLIError(f"there is no {name} model yet; train one with `{spec(name).train_command}`")
    restored = roll_back(registry)
    print(f"{name}: rolled back from {previous} to {restored}")
    return 0
