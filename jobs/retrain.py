"""The nightly retrain: continue the current model from its checkpoint, prove it, swap it in.

`retrain_from_checkpoint(model, settings_values)` is the scheduler's job function and what
`playbill retrain` runs. One run is one pass of the promotion procedure (`jobs.promotion`):

1. the procedure takes the model's retrain lock (the scheduler, the warm-up and the CLI
   exclude each other), closes a run that was killed with its process, and notes the baseline
   (the current version; while its files are damaged, the version served in its place);
2. the retrain picks the newest checkpoint of the current model's line whose checksum matches
   (corrupt ones are logged and skipped; rejected runs are never resumed), gathers the extra
   data (the settled votes / extra corpus files) and opens a training-runs row;
3. it trains in a *spawned* process (`jobs.runner`: never in the bot's process) with
   `promote=False`, and that process measures the candidate and the baseline on the same
   held-out data (`jobs.promotion.measure_pair`);
4. the procedure judges them with the one gate (`jobs.gate`: validation data and the
   community's held-out slice, never a test set), re-checks that the current version did not
   change, and promotes the candidate (the registry pointer is replaced atomically, so serving
   threads see the old or the new version, never half of one) or disposes of it;
5. the row records the outcome with both figures, and old versions and checkpoints are pruned.

A damaged current version does not stop the job: the candidate is measured against the version
served in its place, or, with none left, promoted if its own figures are finite, so a retrain
heals a damaged model instead of failing every night. If the training process dies, nothing is
promoted and its complete checkpoints are where the next run resumes.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from playbill.engine.checkpoints import Checkpoint, CheckpointManager
from playbill.engine.errors import EngineError, StorageError
from playbill.engine.models import ModelSpec, spec
from playbill.engine.registry import ModelRegistry
from playbill.jobs import records, trainers
from playbill.jobs.common import JobBusy, restore_settings, settings_values
from playbill.jobs.promotion import Promotion, measure_pair
from playbill.jobs.runner import TrainingProcess
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
    """Everything the spawned process needs, as plain picklable values (and the model's spec)."""

    model: ModelSpec  # the spec itself, so a stand-in model (tests) trains in the child too
    checkpoint: str
    epochs: int
    extra: list[Any]
    holdout: list[Any]
    baseline: str | None  # the version the candidate must beat (None: none is servable)
    progress: bool


Report = Callable[[str], None]


def retrain_from_checkpoint(
    model_name: str,
    settings_values: dict[str, Any] | Settings | None = None,
    *,
    progress: bool = False,
    report: Report | None = None,
) -> RetrainOutcome:
    """The retrain job for `model_name` (a name or alias of engine.models). Never raises for a
    failed run: the outcome (and its training-runs row) says what happened. "skipped" (no row):
    another run of this model holds the lock, or there is no model to continue yet."""
    model = spec(model_name)  # an unknown name: InvalidInput naming the models
    settings = restore_settings(settings_values)
    say = report or (lambda line: log.info("%s", line))
    history = records.open_run_log(settings.database_url)
    try:
        with Promotion(model, settings, why="retrain") as procedure:
            return _retrain_locked(procedure, history, progress, say)
    except JobBusy as exc:
        log.warning("retrain of %s skipped: %s", model.name, exc)
        return RetrainOutcome(model.name, "skipped", str(exc))
    except StorageError as exc:  # a read-only or full home: found before any training
        log.warning("retrain of %s failed: %s", model.name, exc)
        say(f"{model.name}: failed: {exc}")
        return RetrainOutcome(model.name, "failed", str(exc))
    finally:
        history.close()


def _retrain_locked(procedure: Promotion, history: records.RunLog, progress: bool, say: Report) -> RetrainOutcome:
    started = time.monotonic()
    model, settings = procedure.model, procedure.settings
    registry, checkpoints = procedure.registry, procedure.checkpoints
    current = procedure.current
    if current is None:  # nothing to continue: not a run, no row (a fresh install would log one a night)
        message = f"there is no {model.name} model to continue yet; train one with `{model.train_command}`"
        log.warning("retrain of %s skipped: %s", model.name, message)
        return RetrainOutcome(model.name, "skipped", message)
    baseline = procedure.served
    start = resume_checkpoint(registry, checkpoints)
    if start is None and registry.restore_checkpoint():  # a host that never trained it (the model store)
        start = resume_checkpoint(registry, checkpoints)
    if start is None and baseline not in (None, current):  # the damaged current's line is gone too
        start = checkpoints.resume_point(registry.lineage(), baseline)
    epochs = int(settings.section(model.name)["retrain_epochs"])
    label = start.label() if start else None
    run_id = history.start(model.name, checkpoint_from=label, epochs=epochs)
    procedure.note(run_id=run_id, started_from=label)
    outcome = RetrainOutcome(model.name, "failed", "", run_id=run_id, current_version=current, metric=model.gate_metric,
                             started_from=label)
    try:
        _train_and_decide(procedure, history, start, epochs, progress, say, outcome)
    except Exception as exc:  # the run failed: record it, keep the current model
        message = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, EngineError):
            log.exception("retrain of %s failed", model.name)
        outcome.status, outcome.message = "failed", message
        history.finish(run_id, status="failed", error=message, version=outcome.candidate_version)
    except BaseException:  # Ctrl-C, shutdown: the run is over, say so, then let it propagate
        history.finish(run_id, status="failed", error="interrupted", version=outcome.candidate_version)
        raise
    outcome.seconds = round(time.monotonic() - started, 1)
    say(f"{model.name}: {outcome.status}: {outcome.message}")
    log.log(logging.WARNING if outcome.status == "failed" else logging.INFO,
            "retrain of %s %s: %s", model.name, outcome.status, outcome.message)
    try:
        prune_model(settings, model.name)
    except OSError as exc:
        log.warning("pruning %s versions failed: %s", model.name, exc)
    return outcome


def _train_and_decide(procedure: Promotion, history: records.RunLog, start: Checkpoint | None, epochs: int,
                      progress: bool, say: Report, outcome: RetrainOutcome) -> None:
    model, settings, current = procedure.model, procedure.settings, procedure.current
    if start is None:
        raise EngineError(
            f"no valid checkpoint of the current {model.name} model ({current}) to continue from; "
            f"train one with `{model.train_command}`"
        )
    gather = trainers.GATHERERS[model.extra_kind]
    extra = gather(settings, partial(history.feedback, model.name, member_cap=settings.jobs.feedback_member_cap))
    say(f"{model.name}: continuing {current} from {start.label()} for {epochs} epoch(s) with {extra.summary}")
    plan = _Plan(model, str(start.path), epochs, extra.train, extra.holdout, procedure.served, progress)
    child = TrainingProcess(_train_and_measure, (settings_values(settings), plan), name=f"playbill-retrain-{model.name}",
                            niceness=settings.jobs.training_niceness)
    messages = child.start().wait(say=lambda line: say(f"{model.name}: {line}"),
                                  timeout=settings.jobs.retrain_timeout_hours * 3600, limit="retrain_timeout_hours")
    trained = messages.get("trained")
    if trained is not None:
        outcome.candidate_version = trained["version"]
        procedure.published(trained["version"])
    if "evaluated" not in messages:  # never promote an unproven version (the procedure removes it)
        raise EngineError(messages.get("error") or messages["exit"])

    candidate = trained["version"]
    meta = procedure.registry.get(candidate).metadata
    outcome.figures["candidate_data"] = {k: meta[k] for k in _DATA_KEYS if k in meta}  # what it was trained on
    figures = messages["evaluated"]
    outcome.figures.update(training=trained, **figures, extra=extra.summary, checkpoint_runs=procedure.new_runs(),
                           training_process=messages.get("process", {}))
    if extra.details:
        outcome.figures["learnt"] = {k: v for k, v in extra.details.items() if k not in ("reviews", "explanation")}
    decision = procedure.decide(figures=figures, record={"retrain": {"started_from": start.label()}})
    metric = model.gate_metric
    current_figures = figures.get("current") or {}
    outcome.candidate_metric = float(figures["candidate"][metric])
    outcome.current_metric = None if "damaged" in current_figures or metric not in current_figures \
        else float(current_figures[metric])
    if decision.gate is not None:
        outcome.figures["gate"] = decision.gate
    outcome.status, outcome.message = decision.status, decision.message
    history.finish(outcome.run_id, status=decision.status, promoted=decision.promoted, version=candidate,
                   candidate_metric=outcome.candidate_metric, current_metric=outcome.current_metric,
                   metrics=_jsonable({"by": "retrain", **outcome.figures}))


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _train_and_measure(send: Callable[[str, Any], None], values: dict[str, Any], plan: _Plan) -> None:
    """The spawned process (`jobs.runner`): train from the checkpoint, then measure both versions."""
    settings = restore_settings(values)
    model = plan.model
    trained = trainers.train_candidate(model, settings, checkpoint=Path(plan.checkpoint), epochs=plan.epochs,
                                       extra=plan.extra, progress=plan.progress)
    send("trained", _jsonable(trained))
    send("phase", f"evaluating {trained['version']} (candidate) and {plan.baseline} (current) on {model.held_out}")
    send("evaluated", measure_pair(model, settings, trained["version"], plan.baseline, holdout=plan.holdout))
    send("process", {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                     "pid": os.getpid()})


# --- checkpoints, versions and pruning ---------------------------------------------------


def resume_checkpoint(registry: ModelRegistry, checkpoints: CheckpointManager, *, quiet: bool = False) -> Checkpoint | None:
    """The newest valid checkpoint of the current model's line: where a retrain starts."""
    return checkpoints.resume_point(registry.lineage(), registry.current_version(), quiet=quiet)


def prune_model(settings: Settings, name: str) -> dict[str, list[str]]:
    """Keep `keep_versions` versions (the current one always) and the checkpoints that matter:
    those of the versions kept, the newest `keep_versions` runs and where the next retrain starts;
    rejected runs always go."""
    model = spec(name)
    keep = settings.jobs.keep_versions
    registry, checkpoints = model.registry(settings.home), model.checkpoints(settings.home)
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
