"""The nightly retrain: continue the current model from its checkpoint, prove it, swap it in.

`retrain_from_checkpoint(model, settings_values)` is the scheduler's job function and what
`playbill retrain` runs. One run:

1. takes the model's retrain lock (the scheduler and the CLI exclude each other),
2. picks the newest checkpoint of the current model's line whose checksum matches
   (corrupt ones are logged and skipped; rejected runs' checkpoints are gone),
3. gathers the extra data (user feedback / extra corpus files) and opens a training-runs row,
4. trains in a *spawned* process (never in the bot's process) with `promote=False`, and
   evaluates the candidate and the current version there on the same held-out data,
5. promotes the candidate only if the gate (`jobs.gate.judge`: validation data and the
   community's held-out slice, never a test set) says so (the registry pointer is replaced
   atomically, so serving threads see the old or the new version, never half of one),
   otherwise deletes it and records the run as rejected with both figures,
6. prunes old versions and their checkpoints.

A damaged current version (files failing `ModelRegistry.verify`, or failing to evaluate)
does not stop the job: the candidate is measured against the version served in its place
(`ModelRegistry.current_good`), or, with none left, promoted if its own figures are finite,
so a retrain heals a damaged model instead of failing every night.

If the training process dies, nothing is promoted and its complete checkpoints are where
the next run resumes.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from playbill import metrics
from playbill.engine.checkpoints import Checkpoint, CheckpointManager
from playbill.engine.errors import EngineError
from playbill.engine.models import spec
from playbill.engine.registry import ModelRegistry, open_registry
from playbill.jobs import gate, records, trainers
from playbill.jobs.common import JobBusy, locks_dir, restore_settings, retrain_lock, settings_values
from playbill.settings import Settings

log = logging.getLogger(__name__)

_DATA_KEYS = ("train_reviews", "validation_reviews", "extra_examples", "data_fingerprint", "data_source", "corpus",
              "started_from", "checkpoint_run", "last_epoch", "epochs")


@dataclass
class RetrainOutcome:
    """What one retrain did: status is promoted, rejected, failed or skipped (already running, or no model)."""

    model: str
    status: str
    message: str
    run_id: int | None = None
    started_from: str | None = None
    current_version: str | None = None
    candidate_version: str | None = None
    metric: str | None = None
    candidate_metric: float | None = None
    current_metric: float | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Plan:
    """Everything the spawned process needs, as plain picklable values."""

    checkpoint: str
    epochs: int
    extra: list[Any]
    holdout: list[Any]
    current: str | None  # the version the candidate must beat: the served one (None: none is servable)
    progress: bool
    log_level: int
    niceness: int = 0


Report = Callable[[str], None]


def retrain_from_checkpoint(
    model_name: str,
    settings_values: dict[str, Any] | Settings | None = None,
    *,
    progress: bool = False,
    report: Report | None = None,
) -> RetrainOutcome:
    """The retrain job for `model_name` (one of engine.models.MODEL_NAMES). Never raises for a failed run:
    the outcome (and its training-runs row) says what happened. "skipped" (no row): another
    run of this model holds the lock, or there is no model to continue yet."""
    spec(model_name)  # an unknown name: InvalidInput naming the models
    settings = restore_settings(settings_values)
    say = report or (lambda line: log.info("%s", line))
    lock = retrain_lock(settings, model_name)
    try:
        lock.acquire()
    except JobBusy as exc:
        log.warning("retrain of %s skipped: %s", model_name, exc)
        return RetrainOutcome(model_name, "skipped", str(exc))
    try:
        return _retrain_locked(trainers.MODEL_JOBS[model_name], settings, progress, say)
    finally:
        lock.release()


def _retrain_locked(job: trainers.ModelJob, settings: Settings, progress: bool, say: Report) -> RetrainOutcome:
    started = time.monotonic()
    registry = open_registry(settings.models_dir, job.name)
    checkpoints = CheckpointManager(settings.checkpoints_dir, job.name)
    history = records.open_run_log(settings.database_url)
    marker = locks_dir(settings) / f"retrain-{job.name}.run"
    try:
        _close_interrupted_run(history, marker, registry)
        registry.remove_leftovers()  # half-written versions of killed processes (logged)
        current = registry.current_version()
        if current is None:  # nothing to continue: not a run, no row (a fresh install would log one a night)
            message = f"there is no {job.name} model to continue yet; train one with `{spec(job.name).train_command}`"
            log.warning("retrain of %s skipped: %s", job.name, message)
            return RetrainOutcome(job.name, "skipped", message)
        registry.pin_current()  # the newest version must not become current by a candidate appearing
        baseline = served_version(registry, current)
        start = resume_checkpoint(registry, checkpoints)
        if start is None and registry.restore_checkpoint():  # a host that never trained it (model store)
            start = resume_checkpoint(registry, checkpoints)
        if start is None and baseline not in (None, current):  # the damaged current's line is gone too
            start = checkpoints.resume_point(registry.lineage(), baseline)
        epochs = int(getattr(settings.jobs, job.epochs_key))
        run_id = history.start(job.name, checkpoint_from=start.label() if start else None, epochs=epochs)
        marker.write_text(json.dumps({"run_id": run_id, "pid": os.getpid(), "started_from": start.label() if start else None,
                                      "versions_before": [v.version for v in registry.versions()]}), "utf-8")
        outcome = RetrainOutcome(job.name, "failed", "", run_id=run_id, current_version=current, metric=job.metric,
                                 started_from=start.label() if start else None)
        try:
            _train_evaluate_decide(job, settings, registry, checkpoints, history, start, epochs, progress, say, outcome,
                                   baseline)
        except Exception as exc:  # the run failed: record it, keep the current model
            message = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, EngineError):
                log.exception("retrain of %s failed", job.name)
            outcome.status, outcome.message = "failed", message
            history.finish(run_id, status="failed", error=message, version=outcome.candidate_version)
        except BaseException:  # Ctrl-C, shutdown: the run is over, say so, then let it propagate
            history.finish(run_id, status="failed", error="interrupted", version=outcome.candidate_version)
            marker.unlink(missing_ok=True)
            raise
        marker.unlink(missing_ok=True)
        outcome.seconds = round(time.monotonic() - started, 1)
        say(f"{job.name}: {outcome.status}: {outcome.message}")
        log.log(logging.WARNING if outcome.status == "failed" else logging.INFO,
                "retrain of %s %s: %s", job.name, outcome.status, outcome.message)
        try:
            prune_model(settings, job.name)
        except OSError as exc:
            log.warning("pruning %s versions failed: %s", job.name, exc)
        return outcome
    finally:
        history.close()


def _train_evaluate_decide(
    job: trainers.ModelJob,
    settings: Settings,
    registry: ModelRegistry,
    checkpoints: CheckpointManager,
    history: records.RunLog,
    start: Checkpoint | None,
    epochs: int,
    progress: bool,
    say: Report,
    outcome: RetrainOutcome,
    baseline: str | None,
) -> None:
    current = outcome.current_version
    if start is None:
        raise EngineError(
            f"no valid checkpoint of the current {job.name} model ({current}) to continue from; "
            f"train one with `{spec(job.name).train_command}`"
        )
    extra = job.gather(settings, partial(history.feedback, job.name, member_cap=settings.jobs.feedback_member_cap))
    say(f"{job.name}: continuing {current} from {start.label()} for {epochs} epoch(s) with {extra.summary}")
    runs_before = set(checkpoints.runs())
    versions_before = [v.version for v in registry.versions()]
    plan = _Plan(str(start.path), epochs, extra.train, extra.holdout, baseline, progress, logging.getLogger().level,
                 settings.jobs.training_niceness)
    messages = _run_spawned(job, settings_values(settings), plan, say, settings.jobs.retrain_timeout_hours * 3600)
    new_runs = sorted(set(checkpoints.runs()) - runs_before)

    trained = messages.get("trained")
    if trained is not None:
        outcome.candidate_version = trained["version"]
    else:  # killed between publishing its version and saying so: that version is nobody's
        remove_stray_candidates(registry, versions_before, start.label())
    if "evaluated" not in messages:
        if trained is not None:  # trained but not evaluated: never promote an unproven version
            _discard(registry, checkpoints, trained["version"], new_runs)
        raise EngineError(messages.get("error") or messages["exit"])

    candidate = trained["version"]
    meta = registry.get(candidate).metadata
    outcome.figures["candidate_data"] = {k: meta[k] for k in _DATA_KEYS if k in meta}  # what it was trained on
    figures = messages["evaluated"]
    candidate_metric = float(figures["candidate"][job.metric])
    damaged = figures["current"] is None or "damaged" in figures["current"]
    current_metric = None if damaged else float(figures["current"][job.metric])
    outcome.candidate_metric, outcome.current_metric = candidate_metric, current_metric
    outcome.figures.update(training=trained, **figures, extra=extra.summary, checkpoint_runs=new_runs,
                           training_process=messages.get("process", {}))
    if extra.details:
        outcome.figures["learnt"] = {k: v for k, v in extra.details.items() if k not in ("reviews", "explanation")}
    if damaged:  # nothing servable to beat: a candidate with finite figures heals the model
        why = (figures["current"] or {}).get("damaged") or "no version verifies"
        better = math.isfinite(candidate_metric)
        reason = (f"the current version {current} is damaged and {baseline or 'no older version'} cannot be "
                  f"measured ({why}); candidate {job.metric} {candidate_metric:.4f}")
    else:
        decision = gate.judge(job.name, figures["candidate"], figures["current"],
                              allowed_drop=gate.tolerance(settings, job.name))
        outcome.figures["gate"] = decision.as_dict()
        better, reason = decision.promote, decision.reason
        if baseline != current:
            reason = f"the current version {current} is damaged, measured against {baseline} (served): {reason}"
    if registry.current_version() != current:
        better = False
        reason = f"the current version changed during the run (now {registry.current_version()}); {reason}"
    finish = dict(version=candidate, candidate_metric=candidate_metric, current_metric=current_metric,
                  metrics=_jsonable(outcome.figures))
    if better:
        registry.update_metadata(candidate, checkpoint_runs=new_runs, retrain={
            "started_from": start.label() if start else None, "previous": current, "figures": _jsonable(figures)})
        registry.promote(candidate, reason=f"retrain: {reason}", expected=current)
        metrics.count_promotion(job.name)
        outcome.status, outcome.message = "promoted", f"promoted {candidate} over {current}: {reason}"
        history.finish(outcome.run_id, status="promoted", promoted=True, **finish)
    else:
        metrics.count_rejected_candidate(job.name)
        _discard(registry, checkpoints, candidate, new_runs)
        outcome.status, outcome.message = "rejected", f"kept {current}, rejected {candidate}: {reason}"
        history.finish(outcome.run_id, status="rejected", promoted=False, **finish)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# --- the spawned training process -------------------------------------------------------


def _run_spawned(job: trainers.ModelJob, values: dict[str, Any], plan: _Plan, say: Report,
                 timeout: float) -> dict[str, Any]:
    """Run train+evaluate in a spawned process; returns the messages it sent, plus `exit`."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child_main, args=(job, values, plan, send), name=f"playbill-retrain-{job.name}")
    process.start()
    _ACTIVE.add(process)
    send.close()  # the child holds the only writer: EOF as soon as it exits
    messages: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not receive.poll(min(left, 5.0)):
                if left <= 0:
                    timed_out = True
                    process.terminate()
                    break
                continue
            try:
                kind, payload = receive.recv()
            except (EOFError, OSError):
                break
            if kind == "phase":
                say(f"{job.name}: {payload}")
            else:
                messages[kind] = payload
    except BaseException:  # interrupted while waiting: do not leave the training process behind
        process.terminate()
        process.join(10)
        _ACTIVE.discard(process)
        raise
    process.join()
    _ACTIVE.discard(process)
    receive.close()
    code = process.exitcode
    if timed_out:
        messages["exit"] = f"the training process was stopped after the {timeout / 3600:g} h time limit (retrain_timeout_hours)"
    elif code and code < 0:
        messages["exit"] = f"the training process was killed (signal {-code}) before it finished"
    elif code:
        messages["exit"] = f"the training process ended unexpectedly (exit code {code})"
    else:
        messages["exit"] = "the training process ended without a result"
    return messages


_ACTIVE: set[Any] = set()  # training processes started by this process


def terminate_training() -> int:
    """Stop the training processes this process started (shutting down); their runs fail cleanly."""
    stopped = 0
    for process in list(_ACTIVE):
        if process.is_alive():
            process.terminate()
            stopped += 1
    return stopped


def _child_main(job: trainers.ModelJob, values: dict[str, Any], plan: _Plan, conn: Any) -> None:
    """Entry point of the spawned process: train from the checkpoint, then evaluate both versions."""
    exit_with_parent()
    if plan.niceness:
        os.nice(plan.niceness)  # the bot's process keeps the CPU when they compete
    # as the console of `playbill`: warnings, or everything with -v (the job's process logs the outcome)
    level = plan.log_level if plan.log_level and plan.log_level <= logging.DEBUG else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = restore_settings(values)
        trained = job.train(settings, checkpoint=Path(plan.checkpoint), epochs=plan.epochs,
                            extra=plan.extra, progress=plan.progress)
        conn.send(("trained", _jsonable(trained)))
        conn.send(("phase", f"evaluating {trained['version']} (candidate) and {plan.current} (current) on {job.held_out}"))
        candidate = job.evaluate(settings, trained["version"], holdout=plan.holdout)
        current = _evaluate_baseline(job, settings, plan)
        conn.send(("evaluated", _jsonable({"candidate": candidate, "current": current})))
        conn.send(("process", {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                               "pid": os.getpid()}))
    except EngineError as exc:
        conn.send(("error", str(exc)))
    except KeyboardInterrupt:
        conn.send(("error", "interrupted"))
    except Exception as exc:
        logging.getLogger(__name__).exception("training process failed")
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _evaluate_baseline(job: trainers.ModelJob, settings: Settings, plan: _Plan) -> dict[str, Any] | None:
    """The figures of the version to beat; {"damaged": why} if it cannot be evaluated (unreadable
    or non-finite weights that passed the checksums, e.g. a version older than them)."""
    if plan.current is None:
        return None
    try:
        return job.evaluate(settings, plan.current, holdout=plan.holdout)
    except Exception as exc:  # any failure to measure the served version: it is damaged
        logging.getLogger(__name__).warning("the current version %s cannot be evaluated: %s", plan.current, exc)
        return {"damaged": str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"}


def exit_with_parent() -> None:
    """If the process that started the run dies, stop too: no orphan keeps writing checkpoints."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


# --- checkpoints, versions and pruning ---------------------------------------------------


def resume_checkpoint(registry: ModelRegistry, checkpoints: CheckpointManager, *, quiet: bool = False) -> Checkpoint | None:
    """The newest valid checkpoint of the current model's line: where a retrain starts."""
    return checkpoints.resume_point(registry.lineage(), registry.current_version(), quiet=quiet)


def served_version(registry: ModelRegistry, current: str) -> str | None:
    """What a candidate must beat: the current version, or while its files are damaged the one
    served in its place (None: none verifies). Logged when it is not the current one."""
    if not registry.verify(current):
        return current
    good = registry.current_good()
    log.warning("the current %s version %s is damaged; a candidate is measured against %s", registry.name, current,
                good.version if good else "nothing (no version verifies)")
    return good.version if good else None


def _discard(registry: ModelRegistry, checkpoints: CheckpointManager, version: str, runs: list[str]) -> None:
    """Delete a turned-down candidate and its checkpoints."""
    checkpoints.reject_runs(runs, version)
    try:
        registry.remove(version)
    except EngineError as exc:
        log.warning("could not remove candidate %s: %s", version, exc)


def prune_model(settings: Settings, name: str) -> dict[str, list[str]]:
    """Keep `keep_versions` versions (the current one always) and the checkpoints that matter:
    those of the versions kept, the newest `keep_versions` runs and where the next retrain starts."""
    keep = settings.jobs.keep_versions
    registry = open_registry(settings.models_dir, name)
    checkpoints = CheckpointManager(settings.checkpoints_dir, name)
    removed_versions = registry.prune(keep)
    live = {v.version for v in registry.versions()}
    protected = {run for run, version in registry.lineage().items() if version in live}
    resume = resume_checkpoint(registry, checkpoints, quiet=True)
    if resume is not None:
        protected.add(resume.run)
    removed_runs = checkpoints.prune(keep, protected)
    if removed_versions or removed_runs:
        log.info("pruned %s: versions %s, checkpoint runs %s", name, removed_versions, removed_runs)
    return {"versions": removed_versions, "checkpoint_runs": removed_runs}


def _close_interrupted_run(history: records.RunLog, marker: Path, registry: ModelRegistry) -> None:
    """A run whose process died (power cut, kill -9) left its row 'running': close it as failed,
    and remove the candidate version it may have published without anyone recording it."""
    if not marker.is_file():
        return
    try:
        info = json.loads(marker.read_text("utf-8"))
        run_id = int(info["run_id"])
    except (OSError, ValueError, KeyError, TypeError):
        marker.unlink(missing_ok=True)
        return
    error = "interrupted: the process running it stopped before it finished"
    before, label = info.get("versions_before"), info.get("started_from")
    removed = remove_stray_candidates(registry, before, label) if isinstance(before, list) and label else []
    if removed:
        error += f"; its unrecorded candidate {', '.join(removed)} was removed"
    history.finish(run_id, status="failed", error=error)
    marker.unlink(missing_ok=True)
    log.warning("training run %s had been interrupted; recorded as failed%s", run_id,
                f" and its unrecorded candidate {', '.join(removed)} removed" if removed else "")


def remove_stray_candidates(registry: ModelRegistry, versions_before: list[str], started_from: str) -> list[str]:
    """Delete the versions a retrain from `started_from` published that nobody recorded: new since
    `versions_before`, trained from that checkpoint (their metadata says so), never promoted.
    Their checkpoints stay: a killed run's line is where the next retrain resumes."""
    promoted = {step.get("version") for step in registry.promotions()} | {registry.current_version()}
    strays = [v.version for v in registry.versions() if v.version not in set(versions_before)
              and v.metadata.get("started_from") == started_from and v.version not in promoted]
    for version in strays:
        log.warning("removing %s %s: a candidate of an interrupted retrain, never evaluated", registry.name, version)
        try:
            registry.remove(version)
        except (EngineError, OSError) as exc:
            log.warning("could not remove %s %s: %s", registry.name, version, exc)
    return strays
