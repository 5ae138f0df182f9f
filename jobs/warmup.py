"""The warm-up: after a first start on the quick models, both models keep training in the
background until they reach their full default profile, each better version swapped in live.

Why: a first start must answer within minutes (the specs' `first_profile`, "quick"), but the
full models take up to an hour on 2 cores. So `playbill run` starts this in a *spawned*,
niced process (`start_warmup`), never on the bot's thread; the bot or console keeps
answering and picks each promoted version up through its holders' refresh.

One stage (`run_stage`) of one model is one pass of the promotion procedure every candidate
goes through (`jobs.promotion`: the retrain lock, the same gate and the same policy for a
rejected candidate as the nightly retrain): `spec.continue_training` of the model's full config
(its settings section, default profile) for `[jobs] warmup_stage_seconds`, then the decision.
A rejected candidate's version is removed and its checkpoint run marked rejected; the next stage
still continues that run (a young default model may still lose to the quick one; the nightly
retrain never resumes from it). A model is done when the engine says its profile's budget is spent.

State on disk (`<home>/warmup/state.json`, written atomically after every stage) and the
engine's per-epoch checkpoints make it restart-safe: a killed warm-up loses at most the
epoch in progress, and the next start continues where it stopped. One warm-up at a time
per home (a file lock); on a cluster only the process holding the job schedule starts it
(`jobs.leader`, the caller's election). `[jobs] warmup = false` turns it off.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from playbill.engine.errors import EngineError
from playbill.engine.models import MODEL_NAMES, spec
from playbill.files import exclusive_lock, pid_alive, write_atomic
from playbill.jobs.common import FileLock, JobBusy, restore_settings, settings_values
from playbill.jobs.promotion import Promotion
from playbill.jobs.records import TrainingRecord
from playbill.jobs.runner import TrainingProcess
from playbill.settings import Settings

log = logging.getLogger(__name__)

Report = Callable[[str], None]


def state_path(home: Path) -> Path:
    return Path(home) / "warmup" / "state.json"


def warmup_lock(settings: Settings) -> FileLock:
    """Held by the one warm-up process of a home for as long as it runs."""
    return FileLock(Path(settings.home) / "warmup" / "lock", "the warm-up")


def read_state(home: Path) -> dict[str, Any]:
    """{"started_at", "models": {name: {"status": "warming"|"done", "profile", "stages": [...]}}}"""
    try:
        state = json.loads(state_path(home).read_text("utf-8"))
    except (OSError, ValueError):
        return {"models": {}}
    return state if isinstance(state.get("models"), dict) else {"models": {}}


def _update_state(home: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Read the state, `change` it, write it back (atomically), one process at a time: the
    first start's background process and the one that started it both write it."""
    path = state_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(path.parent):
        state = read_state(home)
        change(state)
        write_atomic(path, json.dumps(state, indent=1, default=str), sync=False)  # readers: old or new


def target_config(settings: Settings, name: str) -> Any:
    """What the warm-up trains toward: the model's settings section (its default profile)."""
    return spec(name).config_from(settings.section(name))


def pending(settings: Settings, names: Sequence[str] = MODEL_NAMES) -> list[str]:
    """The models still to warm up: those a first start trained quickly (`train_first` enrols
    them) that are not done and still have a current version. A model trained by hand is
    never warmed up behind its owner's back."""
    models = read_state(settings.home)["models"]
    return [n for n in names if models.get(n, {}).get("status") == "warming"
            and spec(n).registry(settings.home).current_version() is not None]


def enrol(home: Path, name: str) -> None:
    """Mark `name` for the warm-up (what a first start does after its quick model)."""
    def change(state: dict[str, Any]) -> None:
        state.setdefault("started_at", _now())
        state["models"].setdefault(name, {"status": "warming", "stages": []})

    _update_state(home, change)


def run_stage(settings: Settings, name: str, *, config: Any = None, seconds: float | None = None,
              epochs: int | None = None, say: Report = log.info) -> dict[str, Any]:
    """One stage of `name`'s warm-up: train on, gate, promote or remove. Returns the stage's record
    (also appended to the state file)."""
    model = spec(name)
    name = model.name  # "playwright" is "scene"
    config = config if config is not None else target_config(settings, name)
    section = settings.section(name)
    if seconds is None and epochs is None:
        seconds = settings.jobs.warmup_stage_seconds
    with Promotion(model, settings, why="warm-up") as procedure, \
            TrainingRecord(settings, name, by="warm-up", epochs=epochs) as run:  # never beside a nightly retrain
        procedure.note(run_id=run.run_id)
        current = procedure.current
        if current is None:
            raise EngineError(f"no {name} model to warm up; train one with `{model.train_command}`")
        started = time.monotonic()
        result = model.continue_training(config, settings.home, settings.data_dir, seconds=seconds, epochs=epochs,
                                         data=model.data_from(section))
        candidate = result.version
        decision = procedure.decide(candidate)
        run.finish(status=decision.status, version=candidate, promoted=decision.promoted, epochs=result.epochs_run,
                   **decision.metric_pair(), metrics={"profile": getattr(config, "name", None), **decision.figures,
                                                      "reason": decision.reason})
    figures, promote = decision.figures, decision.promoted
    metric = model.gate_metric
    record = {
        "model": name, "profile": getattr(config, "name", None), "candidate": candidate, "current": current,
        "promoted": promote, "reason": decision.reason, metric: figures["candidate"][metric],
        "figures": figures,
        f"current_{metric}": figures["current"][metric], "epochs_run": result.epochs_run,
        "last_epoch": result.last_epoch, "started_from": result.started_from,
        "done": bool(result.extra.get("done", True)), "seconds": round(time.monotonic() - started, 1),
        "finished_at": _now(),
    }
    _record(settings.home, name, record)
    say(f"warm-up {name}: {'promoted' if promote else 'kept ' + current + ', rejected'} {candidate} "
        f"({metric} {record[metric]:.4f} vs {record['current_' + metric]:.4f}){'; done' if record['done'] else ''}")
    return record


def _record(home: Path, name: str, record: Mapping[str, Any]) -> None:
    def change(state: dict[str, Any]) -> None:
        entry = state["models"].setdefault(name, {"status": "warming", "stages": []})
        entry["profile"] = record["profile"]
        entry["stages"].append(dict(record))
        entry["status"] = "done" if record["done"] else "warming"

    _update_state(home, change)


def run_warmup(settings: Settings, *, names: Sequence[str] = MODEL_NAMES, configs: Mapping[str, Any] | None = None,
               seconds: float | None = None, epochs: int | None = None, max_stages: int | None = None,
               say: Report = log.info) -> list[dict[str, Any]]:
    """Stages, round-robin over the models still warming, until all are done (or `max_stages`).
    Raises JobBusy if this home's warm-up runs elsewhere."""
    with warmup_lock(settings):
        return _run_stages(settings, names=names, configs=configs, seconds=seconds, epochs=epochs,
                           max_stages=max_stages, say=say)


def _run_stages(settings: Settings, *, names: Sequence[str], configs: Mapping[str, Any] | None,
                seconds: float | None, epochs: int | None, max_stages: int | None, say: Report) -> list[dict[str, Any]]:
    """`run_warmup`'s stages; the caller holds the warm-up lock."""
    records: list[dict[str, Any]] = []
    while max_stages is None or len(records) < max_stages:
        todo = pending(settings, names)
        if not todo:
            break
        for name in todo:
            if max_stages is not None and len(records) >= max_stages:
                break
            try:
                records.append(run_stage(settings, name, config=(configs or {}).get(name), seconds=seconds,
                                         epochs=epochs, say=say))
            except JobBusy as exc:  # a nightly retrain of this model: let it finish first
                say(f"warm-up {name}: waiting ({exc})")
                time.sleep(30)
    return records


def progress(settings: Settings, name: str, *, config: Any = None) -> dict[str, Any] | None:
    """The warm-up of `name` for status lines: {"status", "profile", "stages", "promotions",
    "epochs_done", "epochs_total", "best", "seconds_left", "eta"}; None when it never started."""
    entry = read_state(settings.home)["models"].get(name)
    running = warmup_lock(settings).holder() is not None
    if entry is None and not running:
        return None
    model = spec(name)
    entry = entry or {"status": "warming", "stages": []}
    if config is None:  # the profile the stages train (recorded by each), else the settings' target
        config = SimpleNamespace(name=entry["profile"]) if entry.get("profile") else target_config(settings, name)
    trained = model.training_progress(settings.home, config) or {}
    left = trained.get("seconds_left")
    status = entry["status"] if entry["status"] == "done" else ("warming" if running else "paused")
    return {
        "status": status, "profile": getattr(config, "name", None), "stages": len(entry["stages"]),
        "promotions": sum(1 for s in entry["stages"] if s["promoted"]),
        "epochs_done": trained.get("epochs_done"), "epochs_total": trained.get("epochs_total"),
        "best": trained.get("best_val_loss"), "seconds_left": left,
        "eta": (datetime.now(UTC) + timedelta(seconds=left)).isoformat(timespec="minutes")
        if left is not None and status != "done" else None,
    }


def status_line(settings: Settings, name: str) -> str | None:
    """One line for `/admin model-status`, the console's `/model-status` and `playbill models list`."""
    p = progress(settings, name)
    if p is None:
        return None
    if p["status"] == "done":
        return f"warm-up done: {p['profile']} profile reached ({p['promotions']} promotion(s) in {p['stages']} stage(s))"
    epochs = f"epoch {p['epochs_done']}/{p['epochs_total']}" if p["epochs_total"] else "starting"
    best = f", best validation loss {p['best']:.4f}" if isinstance(p.get("best"), float) else ""
    when = f"; done in ~{max(1, round(p['seconds_left'] / 60))} min (about {p['eta'][11:16]} UTC)" \
        if p["seconds_left"] is not None else "; done time known after its first epoch"
    what = "warming up" if p["status"] == "warming" else "warm-up paused (resumes at the next `playbill run`)"
    return f"{what} to the {p['profile']} profile: {epochs}{best}, {p['promotions']} promotion(s){when}"


# --- first start ------------------------------------------------------------------------------


def missing(settings: Settings, names: Sequence[str] = MODEL_NAMES) -> list[str]:
    return [spec(n).name for n in names if spec(n).registry(settings.home).current_version() is None]


def train_first(settings: Settings, say: Report = log.info, *, names: Sequence[str] = MODEL_NAMES,
                spawn: bool = True) -> dict[str, Any]:
    """Train each missing model on its spec's `first_profile` (the quick one: good answers within
    minutes), in `names`' order (the critic first), each in a spawned process (`jobs.runner`:
    TensorFlow stays out of the bot's process; `spawn=False`: here, for a caller that is itself
    a spawned training process). Returns {name: seconds or the error line}; a failure leaves the
    other model be. While a model trains, `learning` says how far it is."""
    done: dict[str, Any] = {}
    for name in missing(settings, names):
        model = spec(name)
        say(f"training a quick {name} model ({model.first_profile} profile) so Playbill can answer soon")
        started = time.monotonic()
        _mark_learning(settings.home, name, model.first_profile)
        try:
            with TrainingRecord(settings, name, by="first start") as run:
                args = (settings_values(settings), model)
                messages = TrainingProcess(_train_first, args, name=f"playbill-first-{name}",
                                           log_level=logging.WARNING).start().wait() if spawn else _here(_train_first, args)
                trained = messages.get("trained")
                ok = trained is not None and model.registry(settings.home).current_version() is not None
                if ok:
                    metrics = trained.get("metrics") or {}
                    run.finish(status="promoted", version=trained["version"], promoted=True,
                               epochs=trained.get("epochs_run"),
                               candidate_metric=metrics.get(model.gate_metric, metrics.get(f"val_{model.gate_metric}")),
                               metrics={"profile": model.first_profile, **metrics})
                else:
                    run.finish(status="failed", error=messages.get("error") or messages["exit"])
        finally:
            _mark_learning(settings.home, name, None)
        if ok:
            enrol(settings.home, name)
            done[name] = round(time.monotonic() - started, 1)
        else:
            done[name] = f"training failed: {messages.get('error') or messages['exit']}"
    return done


def _here(target: Callable[..., None], args: tuple[Any, ...]) -> dict[str, Any]:
    """`target(send, *args)` in this process, its messages as `TrainingProcess.wait` returns them."""
    messages: dict[str, Any] = {}
    try:
        target(lambda kind, payload: messages.__setitem__(kind, payload), *args)
    except Exception as exc:  # the model is left missing; the line says why
        messages["error"] = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
    messages["exit"] = "the training ended without a result"
    return messages


def _train_first(send: Any, values: dict[str, Any], model: Any) -> None:
    settings = restore_settings(values)
    section = settings.section(model.name)
    config = model.config_from(section, profile=model.first_profile)
    result = model.train(config, settings.home, settings.data_dir, data=model.data_from(section), progress=False,
                         keep_runs=model.keep_runs, epochs=model.first_epochs)
    send("trained", result.as_dict())


def _mark_learning(home: Path, name: str, profile: str | None, pid: int | None = None) -> None:
    """Note (or, `profile` None, clear) that process `pid` (default: this one) trains `name`'s
    first model now."""
    def change(state: dict[str, Any]) -> None:
        learning = state.setdefault("learning", {})
        if profile is None:
            learning.pop(name, None)
        else:
            learning[name] = {"profile": profile, "pid": pid or os.getpid(), "host": socket.gethostname(),
                              "started_at": _now()}

    _update_state(home, change)


def learning(settings: Settings, name: str) -> dict[str, Any] | None:
    """How far the first model of `name` is while it trains and nothing of it is served yet:
    {"profile", "epochs_done", "epochs_total", "seconds_per_epoch", "seconds_left", "eta",
    "started_at"} (the time figures None before its first epoch ends); None when it is not
    training on this host (never started, finished, or its process is gone)."""
    model = spec(name)
    entry = read_state(settings.home).get("learning", {}).get(model.name)
    if entry is None or entry.get("host") != socket.gethostname() or not isinstance(entry.get("pid"), int) \
            or not pid_alive(entry["pid"]):
        return None
    config = model.config_from(settings.section(model.name), profile=entry["profile"])
    trained = model.training_progress(settings.home, config) or {}
    budget = trained.get("epochs_total") or getattr(config, "epochs", None)
    total = min(model.first_epochs, budget) if model.first_epochs and budget else model.first_epochs or budget
    done, per_epoch = trained.get("epochs_done", 0), trained.get("seconds_per_epoch")
    left = per_epoch * max(0, total - done) if done and per_epoch is not None and total else None
    return {"profile": entry["profile"], "started_at": entry["started_at"],
            "epochs_done": done,
            "epochs_total": total,
            "seconds_per_epoch": per_epoch, "seconds_left": left,
            "eta": (datetime.now(UTC) + timedelta(seconds=left)).isoformat(timespec="seconds") if left is not None else None}


def start_first_start(settings: Settings, names: Sequence[str] = MODEL_NAMES, *, warm_up: bool = True) -> Any | None:
    """Train the missing models of `names` (`train_first`, in order) in a spawned, niced process
    while this one serves, then, with `warm_up` and `[jobs] warmup` on, go on with the warm-up in
    the same process. It holds the warm-up lock throughout, so no other warm-up of this home
    competes for the CPU. Returns the process (daemonic: it stops with this one), or None when
    nothing is missing or this home's warm-up already runs. The models it publishes reach the
    bot or console through their holders' refresh."""
    todo = missing(settings, names)
    if not todo or warmup_lock(settings).holder() is not None:
        return None
    process = TrainingProcess(_background_main, (settings_values(settings), todo, warm_up and settings.jobs.warmup),
                              name="playbill-first-start", niceness=settings.jobs.training_niceness, daemon=True).start()
    for name in todo:  # learning at once: the process imports TensorFlow before it marks itself
        _mark_learning(settings.home, name, spec(name).first_profile, pid=process.pid)
    log.info("training %s in the background (process %s)", ", ".join(todo), process.pid)
    return process.process


def start_warmup(settings: Settings, *, configs: Mapping[str, Any] | None = None, seconds: float | None = None,
                 epochs: int | None = None, max_stages: int | None = None) -> Any | None:
    """Start the warm-up in a spawned, niced process if it is on, something is left to do and no
    other process of this home runs it. Returns the process (daemonic: it stops with this one;
    the next start resumes it), or None."""
    if not settings.jobs.warmup or not pending(settings) or warmup_lock(settings).holder() is not None:
        return None
    process = TrainingProcess(_background_main, (settings_values(settings), [], True, dict(configs or {}), seconds,
                                                 epochs, max_stages),
                              name="playbill-warmup", niceness=settings.jobs.training_niceness, daemon=True).start()
    log.info("warm-up started in process %s (models: %s)", process.pid, ", ".join(pending(settings)))
    return process.process


# --- the spawned process ---------------------------------------------------------------------


def _background_main(send: Any, values: dict[str, Any], first: list[str], warm_up: bool,
                     configs: dict[str, Any] | None = None, seconds: float | None = None, epochs: int | None = None,
                     max_stages: int | None = None) -> None:
    """The one background training process (`jobs.runner`: niced, stops with its parent) of a
    first start (`first`: the models to train first, in order) and of the warm-up (`warm_up`: its
    stages then), holding the home's warm-up lock throughout. Its lines go to the log at INFO."""
    settings = restore_settings(values)
    logging.getLogger("playbill").setLevel(min(logging.INFO, logging.getLevelNamesMapping()[settings.log_level]))
    try:
        with warmup_lock(settings):
            for name, outcome in train_first(settings, names=first, spawn=False).items():
                log.info("%s: %s", name, f"ready after {outcome:.0f} s" if not isinstance(outcome, str) else outcome)
            if warm_up:
                _run_stages(settings, names=MODEL_NAMES, configs=configs, seconds=seconds, epochs=epochs,
                            max_stages=max_stages, say=log.info)
    except JobBusy as exc:
        log.info("%s", exc)
    except Exception:  # the served models stay as they are; the next start tries again
        log.exception("the background training stopped; the next `playbill run` continues it")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
