"""Shared pieces of the command line: verb groups, user errors, output helpers."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from playbill.engine.errors import EngineError
from playbill.history.errors import HistoryError
from playbill.settings import Settings


class CLIError(Exception):
    """A mistake the user can fix; printed as one line, exit code 2."""

    exit_code = 2


USER_ERRORS: tuple[type[BaseException], ...] = (CLIError, EngineError, HistoryError)


class CommandGroups:
    """Verb groups shared by features: `playbill train sentiment`, `playbill train scene`, ..."""

    HELP = {
        "train": "train a model (from scratch or from a checkpoint)",
        "evaluate": "measure a model on held-out data",
        "bench": "benchmark a model against its baseline",
        "checkpoints": "list a model's training checkpoints",
    }

    def __init__(self, commands: argparse._SubParsersAction) -> None:
        self._commands = commands
        self._groups: dict[str, argparse._SubParsersAction] = {}

    def __call__(self, verb: str) -> argparse._SubParsersAction:
        """The subparsers of `playbill VERB`, created on first use."""
        if verb not in self._groups:
            parser = self._commands.add_parser(verb, help=self.HELP.get(verb))
            self._groups[verb] = parser.add_subparsers(dest=f"{verb}_model", metavar="MODEL", required=True)
        return self._groups[verb]


def print_json(obj: Any) -> None:
    """One JSON object on one line (machine-readable output for --json)."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def model_spec(name: str):
    """The engine's spec of a model (imported when a command runs, not when the parser is built)."""
    from playbill.engine.models import spec

    return spec(name)


def check_training_options(args: argparse.Namespace) -> None:
    """The options every `playbill train MODEL` shares: --epochs, --resume, --checkpoint."""
    if args.epochs is not None and args.epochs < 1:
        raise CLIError("--epochs must be at least 1")
    if args.resume and args.checkpoint:
        raise CLIError("use either --resume or --checkpoint, not both")


def continues(args: argparse.Namespace) -> bool:
    """A run that continues a checkpoint (--resume/--checkpoint) and would become current goes
    through the promotion procedure (jobs.promotion) instead of replacing the current version."""
    return bool(args.resume or args.checkpoint) and not args.no_promote


def run_training(name: str, settings: Settings, args: argparse.Namespace,
                 train: Callable[[], Any]) -> tuple[Any, str | None] | None:
    """Every `playbill train MODEL`: `train()` runs once and is recorded in the history's training
    runs (`playbill history runs`). A run that continues a checkpoint (--resume/--checkpoint) and
    would become current goes through the one promotion procedure (jobs.promotion): under the
    model's retrain lock (a nightly retrain or the warm-up of the model refuses it, and it refuses
    them), judged by the gate against the version current when it started, promoted only if that
    one is still current. Returns the result (`promoted` set; the decision in `extra["gate"]`) and
    the decision's one line (None when not gated), or None after Ctrl-C (said on stderr: what was
    kept and the command that resumes). A full or read-only disk: one line naming the path (what
    the failed run wrote is removed)."""
    from playbill.engine.errors import StorageError
    from playbill.jobs.promotion import Promotion
    from playbill.jobs.records import TrainingRecord

    model = model_spec(name)
    checkpoints = model.checkpoints(settings.home)
    runs_before = set(checkpoints.runs())
    start = str(args.checkpoint) if args.checkpoint else ("the newest checkpoint (--resume)" if args.resume else None)
    record = TrainingRecord(settings, model.name, by=f"playbill train {model.name}", checkpoint_from=start,
                            epochs=args.epochs)
    try:
        if continues(args):
            with Promotion(model, settings, why=f"playbill train {model.name} (continued)") as procedure, record as run:
                procedure.note(run_id=run.run_id)
                result = train()
                decision = procedure.decide(result.version)
                run.finish(status=decision.status, version=result.version, promoted=decision.promoted,
                           epochs=result.epochs_run, **decision.metric_pair(),
                           metrics={**result.metrics, "gate": decision.reason})
            result.promoted = decision.promoted
            result.extra["gate"] = decision.as_dict()
            return result, decision.message
        with record as run:
            result = train()
            run.finish(status="promoted" if result.promoted else "rejected", version=result.version,
                       promoted=result.promoted, epochs=result.epochs_run,
                       candidate_metric=result.metrics.get(model.gate_metric, result.metrics.get(f"val_{model.gate_metric}")),
                       metrics={**result.metrics, **({} if result.promoted else {"not_current": "--no-promote"})})
        return result, None
    except OSError as exc:  # a full or read-only disk: the checkpoint that failed is gone already
        checkpoints.remove_empty_runs()
        raise StorageError.from_os_error(exc, settings.home) from None
    except KeyboardInterrupt:
        print(f"\n{interrupted_line(model, settings.home, runs_before)}", file=sys.stderr, flush=True)
        return None


def interrupted_line(model: Any, home: Any, runs_before: set[str]) -> str:
    """What a Ctrl-C'd training kept and the command that continues it."""
    checkpoints = model.checkpoints(home)
    checkpoints.remove_empty_runs()
    kept = [c for c in checkpoints.list() if c.run not in runs_before]
    current = model.registry(home).current_version()
    unchanged = f"the current {model.name} version ({current}) is unchanged" if current else \
        f"there is still no current {model.name} version"
    if not kept:
        return f"interrupted before the first epoch finished: nothing was kept; {unchanged}"
    last = kept[-1]
    loss = f", val_loss {last.val_loss:.4f}" if last.val_loss is not None else ""
    return (f"interrupted: {len(kept)} finished epoch(s) kept in {last.run} (the last: epoch {last.epoch}{loss}); "
            f"{unchanged}; continue with `{model.train_command} --resume`")


class ProgressBar:
    """A bar on stderr for a long step (`with ProgressBar("judging reviews") as bar: ... bar(done, total)`):
    drawn on a terminal, silent otherwise, gone when the step ends. The engine calls it; it knows no rich."""

    def __init__(self, label: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(stderr=True)
        self._progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                  console=console, transient=True) if console.is_terminal else None
        self._task = self._progress.add_task(label, total=None) if self._progress else None

    def __call__(self, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total)

    def __enter__(self) -> ProgressBar:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


_METRICS: list[Any] = []  # this process's metrics endpoint, once started


def serve_metrics(settings: Settings) -> Any:
    """Start this process's metrics and health endpoint if `[metrics] port` is set (once per
    process; `playbill run` without a token goes on to the console). A port that cannot be bound
    is one line naming the setting."""
    from playbill.metrics import start_metrics_server

    if _METRICS or settings.metrics.port is None:
        return _METRICS[0] if _METRICS else None
    host, port = settings.metrics.host, settings.metrics.port
    try:
        server = start_metrics_server(host, port)
    except OSError as exc:
        raise CLIError(f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}); choose another "
                       f"[metrics] port (PLAYBILL_METRICS__PORT), or leave it unset") from None
    _METRICS.append(server)
    print(f"metrics on http://{server.host}:{server.port}/metrics (/healthz, /readyz)", file=sys.stderr, flush=True)
    return server
