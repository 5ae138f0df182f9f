"""The one promotion procedure: how a trained candidate version may replace the current one.

Every path that turns a training run into the current model goes through here: the nightly
retrain (`jobs.retrain`), the warm-up (`jobs.warmup`) and `playbill train MODEL --resume` /
`--checkpoint` (`playbill.cli.common.run_training`). One run of the procedure:

1. `Promotion(model, settings)` opened as a context manager takes the model's retrain lock
   (`jobs.common.retrain_lock`: the scheduler, the warm-up and the CLI exclude each other;
   a second one gets `JobBusy`), removes what killed runs left behind (`recover`), and notes
   the **baseline**: the current version, and the version a candidate must beat (the current
   one, or while its files are damaged the one served in its place: `served_version`);
2. the caller trains (in a spawned process or in its own) and says which version it
   published (`published`): from then until the decision that version is *unevaluated*
   (`unevaluated`: `playbill models list` marks it, `models promote` refuses it without
   `--force`);
3. `decide(candidate)` measures the candidate and the baseline on the same held-out data
   (`measure_pair`; or takes the figures the training process measured), judges them with the
   one gate (`jobs.gate.judge`), re-checks that the current version did not change meanwhile,
   then promotes with the recorded reason or disposes of the candidate.

**One policy for a rejected candidate** (`dispose`): its version is removed and the checkpoint
runs that produced it are marked rejected: the nightly retrain never resumes from them and the
next prune deletes them (the warm-up's next stage may still continue its own profile's run,
as `spec.continue_training` does). A candidate that was never judged (its evaluation failed or
was interrupted) is removed too, but its checkpoints are left unmarked, as after any killed
run: the next retrain may resume from them.

State on disk: `<home>/locks/<model>.promotion.json` while a procedure runs (who, the versions
before it, its start checkpoint, its candidate, the caller's notes such as its training-runs
row). A procedure killed with its process (kill -9, power cut) leaves the file behind; the next
procedure of that model removes its unrecorded candidate and hands the notes to its caller
(`recovered`), which closes the run's row.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from playbill.engine.errors import EngineError, ModelUnavailable, StorageError
from playbill.engine.models import ModelSpec, spec
from playbill.engine.registry import ModelRegistry, PromotionConflict
from playbill.jobs import gate, records
from playbill.metrics import count_promotion, count_rejected_candidate
from playbill.jobs.common import FileLock, locks_dir, retrain_lock
from playbill.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Decision:
    """What the procedure did with one candidate."""

    model: str
    promoted: bool
    candidate: str
    current: str | None  # the current version when the procedure started
    reason: str  # one line: the figures and the rule that decided
    figures: dict[str, Any] = field(default_factory=dict)  # {"candidate": {...}, "current": {...} | None}
    gate: dict[str, Any] | None = None  # jobs.gate.Decision.as_dict() when the gate judged

    @property
    def status(self) -> str:
        return "promoted" if self.promoted else "rejected"

    @property
    def message(self) -> str:
        if self.promoted:
            over = f" over {self.current}" if self.current and self.current != self.candidate else ""
            return f"promoted {self.candidate}{over}: {self.reason}"
        return f"kept {self.current}, rejected {self.candidate} (removed): {self.reason}"

    def metric_pair(self) -> dict[str, float | None]:
        """{"candidate_metric", "current_metric"}: both versions' gate figures (None: none)."""
        metric = spec(self.model).gate_metric
        pair = {}
        for key, side in (("candidate_metric", "candidate"), ("current_metric", "current")):
            value = (self.figures.get(side) or {}).get(metric)
            pair[key] = float(value) if isinstance(value, int | float) else None
        return pair

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status, "message": self.message}


def marker_path(settings: Settings, model: str) -> Path:
    return locks_dir(settings) / f"{model}.promotion.json"


class Promotion:
    """One run of the procedure for `model` (see the module docstring); a context manager."""

    def __init__(self, model: ModelSpec | str, settings: Settings, *, why: str) -> None:
        self.model = model if isinstance(model, ModelSpec) else spec(model)
        self.settings = settings
        self.why = why  # who promotes, for the promotion record: "retrain", "warm-up", "playbill train ..."
        self.registry: ModelRegistry = self.model.registry(settings.home)
        self.checkpoints = self.model.checkpoints(settings.home)
        self._lock: FileLock = retrain_lock(settings, self.model.name)
        self._marker = marker_path(settings, self.model.name)
        self._note: dict[str, Any] = {}
        self.current: str | None = None  # the baseline: the current version at the start
        self.served: str | None = None  # what a candidate must beat (None: nothing servable)
        self.candidate: str | None = None
        self.decision: Decision | None = None
        self.recovered: dict[str, Any] | None = None  # the notes of a procedure killed with its process
        self._runs_before: set[str] = set()
        self._before: set[str] = set()  # the versions when the procedure started

    # 1. lock, recover, baseline
    def __enter__(self) -> Promotion:
        try:
            self._lock.acquire()  # JobBusy: another run of this model holds it
        except OSError as exc:  # the home is read-only or full: say so before anything is trained
            raise StorageError.from_os_error(exc) from None
        try:
            check_writable(self.registry.root, self.checkpoints.root)
            self.recovered = self._recover()
            self.registry.remove_leftovers()  # half-written versions of killed processes (logged)
            self.current = self.registry.pin_current()  # a newer unpromoted version must never become current
            self.served = served_version(self.registry, self.current) if self.current else None
            self._runs_before = set(self.checkpoints.runs())
            self._before = {v.version for v in self.registry.versions()}
            self._write_marker()
        except OSError as exc:
            self._lock.release()
            raise StorageError.from_os_error(exc) from None
        except BaseException:
            self._lock.release()
            raise
        return self

    def note(self, **fields: Any) -> None:
        """Keep the caller's notes with the procedure's state (e.g. its training-runs row, the
        checkpoint it starts from: `started_from`), so a run killed with its process can be closed."""
        self._note.update(fields)
        self._write_marker()

    # 2. the caller trained a candidate
    def published(self, version: str) -> None:
        """The training published `version` (not promoted): unevaluated until `decide`."""
        self.candidate = version
        self._write_marker()

    def new_runs(self) -> list[str]:
        """The checkpoint runs written since the procedure started: the candidate's."""
        return sorted(set(self.checkpoints.runs()) - self._runs_before)

    # 3. measure, judge, re-check, promote or dispose
    def decide(self, candidate: str | None = None, *, figures: dict[str, Any] | None = None,
               holdout: Sequence[Any] = (), record: dict[str, Any] | None = None) -> Decision:
        """Judge the candidate against the baseline and promote it or dispose of it. `figures`:
        both versions' figures measured elsewhere (the retrain's training process), else they
        are measured here (`measure_pair`). `record`: extra metadata for a promoted version."""
        if candidate is not None:
            self.published(candidate)
        if self.candidate is None:
            raise EngineError(f"no {self.model.name} candidate to decide on")
        candidate = self.candidate
        if figures is None:
            figures = measure_pair(self.model, self.settings, candidate, self.served, holdout=holdout)
        promote, reason, judged = self._judge(figures)
        now = self.registry.current_version()
        if now != self.current:
            promote = False
            reason = f"the current version changed during the run (now {now}); {reason}"
        runs = self.new_runs()
        self.decision = Decision(self.model.name, promote, candidate, self.current, reason, figures, judged)
        try:
            if promote:
                tested = {k: v for k, v in figures["candidate"].items() if k.startswith("test_")}  # for the record
                metrics = {**self.registry.get(candidate).metrics, **tested}
                self.registry.update_metadata(candidate, checkpoint_runs=runs, metrics=metrics, **(record or {}),
                                              promotion={"by": self.why, "previous": self.current,
                                                         "figures": _jsonable(figures)})
                try:  # compare-and-swap: another host may have promoted since the re-check
                    self.registry.promote(candidate, reason=f"{self.why}: {reason}", expected=self.current)
                except PromotionConflict as exc:
                    promote = False
                    self.decision.promoted, self.decision.reason = False, f"{exc}; {reason}"
            if promote:
                count_promotion(self.model.name)
            else:
                count_rejected_candidate(self.model.name)
                dispose(self.registry, self.checkpoints, candidate, runs)
        except OSError as exc:  # a read-only or full models folder: one line (the candidate goes on exit)
            raise StorageError.from_os_error(exc, self.registry.root) from None
        self.candidate = None  # decided: no longer unevaluated
        self._write_marker()
        return self.decision

    def _judge(self, figures: dict[str, Any]) -> tuple[bool, str, dict[str, Any] | None]:
        metric = self.model.gate_metric
        candidate_metric = float(figures["candidate"][metric])
        if self.current is None:
            return True, "there was no current version", None
        current = figures.get("current")
        if current is None or "damaged" in current:  # nothing servable to beat: finite figures heal the model
            why = (current or {}).get("damaged") or "no version verifies"
            return (math.isfinite(candidate_metric),
                    f"the current version {self.current} is damaged and {self.served or 'no older version'} "
                    f"cannot be measured ({why}); candidate {metric} {candidate_metric:.4f}", None)
        decision = gate.judge(self.model.name, figures["candidate"], current,
                              allowed_drop=gate.tolerance(self.settings, self.model.name))
        reason = decision.reason
        if self.served != self.current:
            reason = f"the current version {self.current} is damaged, measured against {self.served} (served): {reason}"
        return decision.promote, reason, decision.as_dict()

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        try:
            # published and never judged (or published unrecorded by a killed training process):
            # never leave it to look like an ordinary version
            for version in stray_candidates(self.registry, self._state()):
                log.warning("removing %s %s: a candidate that was never evaluated", self.model.name, version)
                _remove_version(self.registry, version)
            self.checkpoints.remove_empty_runs()  # a run that failed before its first checkpoint
            self._marker.unlink(missing_ok=True)
        finally:
            self._lock.release()

    # state on disk
    def _state(self) -> dict[str, Any]:
        return {"host": socket.gethostname(), "pid": os.getpid(), "why": self.why, "current": self.current,
                "since": datetime.now(UTC).isoformat(timespec="seconds"), "candidate": self.candidate,
                "versions_before": sorted(self._before), "note": self._note}

    def _write_marker(self) -> None:
        state = self._state()
        self._marker.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._marker.with_name(self._marker.name + ".tmp")
        tmp.write_text(json.dumps(state, default=str), "utf-8")
        os.replace(tmp, self._marker)

    def _recover(self) -> dict[str, Any] | None:
        """A procedure of this model killed with its process left its state file: remove the
        candidate it may have published unrecorded; return its notes (with `removed`)."""
        state = read_marker(self._marker)
        if state is None:
            return None
        removed = []
        for version in stray_candidates(self.registry, state):
            log.warning("removing %s %s: a candidate of an interrupted run, never evaluated", self.model.name, version)
            if _remove_version(self.registry, version):
                removed.append(version)
        self._marker.unlink(missing_ok=True)
        recovered = {**(state.get("note") or {}), "removed": removed, "why": state.get("why")}
        if isinstance(recovered.get("run_id"), int):  # its training-runs row is still 'running': close it
            records.close_interrupted(self.settings, recovered)
        return recovered


def read_marker(path: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        log.warning("ignoring the unreadable promotion state %s", path)
        return {}
    return state if isinstance(state, dict) else {}


def stray_candidates(registry: ModelRegistry, state: dict[str, Any]) -> list[str]:
    """The versions an interrupted procedure published that nobody judged: its recorded
    candidate, and any version new since it started that was trained from its start checkpoint
    (killed between publishing and saying so); never one that is or was current."""
    before = state.get("versions_before")
    if not isinstance(before, list):
        return []
    promoted = {step.get("version") for step in registry.promotions()} | {registry.current_version()}
    started_from = (state.get("note") or {}).get("started_from")
    found = []
    for v in registry.versions():
        if v.version in before or v.version in promoted:
            continue
        if v.version == state.get("candidate") or (started_from and v.metadata.get("started_from") == started_from):
            found.append(v.version)
    return found


def unevaluated(model: ModelSpec | str, settings: Settings) -> dict[str, str]:
    """Versions published as candidates that the gate has not judged, with why: one being
    evaluated now, or one left by a run that was killed (removed by that model's next run).
    `playbill models list` marks them; `playbill models promote` refuses them without --force."""
    model = model if isinstance(model, ModelSpec) else spec(model)
    state = read_marker(marker_path(settings, model.name))
    if not state:
        return {}
    holder = retrain_lock(settings, model.name).holder()
    registry = model.registry(settings.home)
    if holder:
        why = f"being evaluated by process {holder.get('pid', '?')} ({state.get('why')})"
        new = {v.version for v in registry.versions()} - set(state.get("versions_before") or [])
        found = sorted(new - {registry.current_version()})
    else:
        why = f"never evaluated: its run ({state.get('why')}) was interrupted; the next run of this model removes it"
        found = stray_candidates(registry, state)
    return {version: why for version in found}


def served_version(registry: ModelRegistry, current: str) -> str | None:
    """What a candidate must beat: the current version, or while its files are damaged the one
    served in its place (None: none verifies). Logged when it is not the current one."""
    if not registry.verify(current):
        return current
    good = registry.current_good()
    log.warning("the current %s version %s is damaged; a candidate is measured against %s", registry.name, current,
                good.version if good else "nothing (no version verifies)")
    return good.version if good else None


def measure_pair(model: ModelSpec, settings: Settings, candidate: str, baseline: str | None, *,
                 holdout: Sequence[Any] = ()) -> dict[str, Any]:
    """Both versions' figures on the same data (`jobs.gate.measure`): {"candidate": ...,
    "current": ...}; the baseline's are None when there is none, {"damaged": why} when it
    cannot be measured (unreadable or non-finite weights that passed the checksums). A model
    with a test set (the critic) has its test figure measured too: reported and recorded with
    the version, never judged on."""
    report_test = model.has_test_split
    figures: dict[str, Any] = {"candidate": gate.measure(model, settings, candidate, holdout=holdout,
                                                         report_test=report_test)}
    if baseline is None:
        figures["current"] = None
        return figures
    try:
        figures["current"] = gate.measure(model, settings, baseline, holdout=holdout, report_test=report_test)
    except Exception as exc:  # any failure to measure the served version: it is damaged
        log.warning("the current version %s cannot be evaluated: %s", baseline, exc)
        figures["current"] = {"damaged": str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"}
    return _jsonable(figures)


def dispose(registry: ModelRegistry, checkpoints: Any, version: str, runs: Sequence[str]) -> None:
    """The one policy for a rejected candidate: its runs are marked rejected (never resumed by
    the nightly retrain; deleted by the next prune), then its version is removed."""
    checkpoints.reject_runs(runs, version)
    _remove_version(registry, version)


def _remove_version(registry: ModelRegistry, version: str) -> bool:
    try:
        registry.remove(version)
        return True
    except (EngineError, OSError) as exc:
        log.warning("could not remove %s candidate %s: %s", registry.name, version, exc)
        return False


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def check_writable(*folders: Path) -> None:
    """Raise OSError unless a file can be created in each folder (made if missing): a run checks
    this before it spends an epoch, instead of finding a read-only disk at its first checkpoint."""
    import tempfile

    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".writable-")
        os.close(fd)
        os.unlink(probe)


def promote_by_hand(model: ModelSpec | str, settings: Settings, version: str, *, force: bool = False) -> str | None:
    """`playbill models promote`: make `version` current. Refused for a damaged version (one line
    per problem) and, unless `force`, for a candidate the gate has not judged (`unevaluated`).
    Returns the version that was current. A read-only or full models folder: StorageError."""
    from playbill.engine.registry import DamagedVersion

    model = model if isinstance(model, ModelSpec) else spec(model)
    registry = model.registry(settings.home)
    previous = registry.current_version()
    registry.get(version)  # unknown -> ModelUnavailable naming `playbill models list`
    pending = unevaluated(model, settings).get(version)
    if pending and not force:
        raise ModelUnavailable(f"{model.name} {version} is an unevaluated candidate ({pending}); "
                               f"not promoted. Promote it anyway with `playbill models promote {model.name} "
                               f"{version} --force`")
    problems = model.verify(settings.home, version)
    if problems:
        raise DamagedVersion(model.name, version, problems, ", not promoted")
    try:
        registry.promote(version, reason="promoted by hand (playbill models promote)"
                         + (" over the gate (--force)" if pending else ""), expected=previous)
    except OSError as exc:
        raise StorageError.from_os_error(exc, registry.root) from None
    return previous


def roll_back(registry: ModelRegistry) -> str:
    """`playbill models rollback`, the console's and Discord's rollback: back to the version
    current before the last promotion. A read-only or full models folder: StorageError."""
    try:
        return registry.rollback()
    except OSError as exc:
        raise StorageError.from_os_error(exc, registry.root) from None
