"""Training checkpoints: one full `.keras` file per epoch (weights and optimizer state).

Layout: `<checkpoints_dir>/<model>/<run>/epoch-0003.keras` with a sidecar
`epoch-0003.json` holding the epoch, the metrics and a SHA-256 of the `.keras` file. The
sidecar is written last, so a checkpoint without one (a run killed while saving) is
ignored; a checkpoint whose bytes no longer match its checksum is reported and skipped.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from playbill.engine.datasets import hash_file
from playbill.engine.errors import CheckpointError

log = logging.getLogger(__name__)

FOLDER = "checkpoints"  # under a Playbill home
SUFFIX = ".keras"
RUN_GLOB = "run-*"
REJECTED_MARK = "REJECTED"  # in a run whose candidate was turned down: never resumed from


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    run: str
    epoch: int
    metrics: dict[str, float]
    sha256: str
    saved_at: str
    extra: dict[str, Any]

    @property
    def val_loss(self) -> float | None:
        return self.metrics.get("val_loss")

    def verify(self) -> bool:
        return self.path.is_file() and file_sha256(self.path) == self.sha256

    def label(self) -> str:
        return f"{self.run}/{self.path.name}"


def file_sha256(path: Path) -> str:
    return hash_file(path).hexdigest()


class CheckpointManager:
    """The checkpoints of one model, grouped into training runs."""

    def __init__(self, checkpoints_dir: Path, model: str) -> None:
        self.root = Path(checkpoints_dir) / model

    @classmethod
    def in_home(cls, home: Path, model: str) -> CheckpointManager:
        """The checkpoints of `model` in a Playbill home: `<home>/checkpoints/<model>/` (the one
        place that folder is named)."""
        return cls(Path(home) / FOLDER, model)

    def new_run(self) -> str:
        run = datetime.now(UTC).strftime("run-%Y%m%dT%H%M%S%f")
        (self.root / run).mkdir(parents=True, exist_ok=True)
        return run

    def save(self, model: Any, run: str, epoch: int, metrics: dict[str, float], **extra: Any) -> Checkpoint:
        """Write the model (with optimizer state) for `epoch`, then its checksum sidecar. If either
        cannot be written (a full or read-only disk), nothing of this checkpoint is left behind,
        nor its run's folder when it holds nothing else, and the OSError is raised."""
        folder = self.root / run
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"epoch-{epoch:04d}{SUFFIX}"
        sidecar = target.with_suffix(".json")
        sidecar_tmp = sidecar.with_name("." + sidecar.name + ".tmp")
        try:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".saving-", suffix=SUFFIX)
            os.close(fd)
            try:
                model.save(tmp)
                os.replace(tmp, target)
            finally:
                Path(tmp).unlink(missing_ok=True)
            info = {
                "epoch": epoch,
                "metrics": {k: float(v) for k, v in metrics.items()},
                "sha256": file_sha256(target),
                "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "extra": extra,
            }
            sidecar_tmp.write_text(json.dumps(info, indent=2, default=str), "utf-8")
            os.replace(sidecar_tmp, sidecar)
        except OSError as exc:
            for partial in (target, sidecar_tmp):
                partial.unlink(missing_ok=True)
            self.remove_if_empty(run)
            if exc.filename is None:  # e.g. Keras' own writer: say which checkpoint could not be written
                raise OSError(exc.errno, exc.strerror or str(exc), str(target)) from exc
            raise
        return self._from_sidecar(sidecar)

    def remove_empty_runs(self) -> list[str]:
        """Delete the run folders that hold nothing (runs that failed before their first checkpoint)."""
        return [run for run in self.runs() if self.remove_if_empty(run)]

    def remove_if_empty(self, run: str) -> bool:
        """Delete a run's folder that holds no checkpoint (a run that failed before its first)."""
        try:
            (self.root / run).rmdir()
            return True
        except OSError:  # not empty, or already gone
            return False

    def _from_sidecar(self, sidecar: Path) -> Checkpoint:
        """The checkpoint a sidecar describes; ValueError (saying why) if it is not a valid one."""
        try:
            info = json.loads(sidecar.read_bytes().decode("utf-8"))
            metrics, extra = info.get("metrics", {}), info.get("extra", {})
            if not (isinstance(metrics, dict) and isinstance(extra, dict) and isinstance(info["sha256"], str)):
                raise TypeError("wrong field types")
            return Checkpoint(
                path=sidecar.with_suffix(SUFFIX),
                run=sidecar.parent.name,
                epoch=int(info["epoch"]),
                metrics={str(k): float(v) for k, v in metrics.items()},
                sha256=info["sha256"],
                saved_at=str(info.get("saved_at", "")),
                extra=extra,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"its record {sidecar.name} is unreadable ({type(exc).__name__})") from None

    def runs(self) -> list[str]:
        """The training runs that have a folder, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.glob(RUN_GLOB) if p.is_dir())

    def list(self) -> list[Checkpoint]:
        """All recorded checkpoints, oldest first (by save time, then epoch)."""
        if not self.root.is_dir():
            return []
        found = []
        for sidecar in self.root.glob(f"{RUN_GLOB}/epoch-*.json"):
            try:
                found.append(self._from_sidecar(sidecar))
            except (OSError, ValueError) as exc:
                log.warning("ignoring checkpoint %s: %s", sidecar.with_suffix(SUFFIX), exc)
        return sorted(found, key=lambda c: (c.saved_at, c.run, c.epoch))

    def latest_valid(self, run: str | None = None) -> Checkpoint | None:
        """The newest checkpoint whose checksum matches; corrupt ones are logged and skipped."""
        for ckpt in reversed(self.list()):
            if run is not None and ckpt.run != run:
                continue
            if ckpt.verify():
                return ckpt
            log.warning("skipping corrupt checkpoint %s (checksum mismatch or missing file)", ckpt.label())
        return None

    def resolve(self, path: str | Path) -> Checkpoint:
        """A checkpoint chosen by the user: a path to its .keras file or `run/epoch-N.keras`."""
        candidate = Path(path)
        if not candidate.is_absolute() and not candidate.exists():
            candidate = self.root / candidate
        sidecar = candidate.with_suffix(".json")
        if not candidate.is_file() or not sidecar.is_file():
            raise CheckpointError(f"no checkpoint at {path}; `playbill checkpoints` lists them")
        try:
            ckpt = self._from_sidecar(sidecar)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {path} cannot be used: {exc}; choose another") from None
        if not ckpt.verify():
            raise CheckpointError(f"checkpoint {path} is corrupt (its checksum does not match); choose another")
        return ckpt

    def best_valid(self, run: str | None = None, *, quiet: bool = False,
                   where=None) -> Checkpoint | None:
        """Where training continues: the checkpoint with the lowest validation loss (ties: the
        later epoch) in the newest run that has a valid one (`run`: that run only; `where`: a
        predicate a checkpoint must pass). Its checksum must match; corrupt ones are logged
        (unless quiet) and skipped."""
        by_run: dict[str, list[Checkpoint]] = {}
        for ckpt in self.list():
            if (run is None or ckpt.run == run) and (where is None or where(ckpt)):
                by_run.setdefault(ckpt.run, []).append(ckpt)
        newest_first = sorted(by_run.values(), key=lambda found: (max(c.saved_at for c in found), found[0].run),
                              reverse=True)  # run names are timestamps too: they order runs saved in one second
        for found in newest_first:
            ranked = sorted(found, key=lambda c: (_loss(c), -c.epoch))
            for ckpt in ranked:
                if ckpt.verify():
                    return ckpt
                if not quiet:
                    log.warning("skipping corrupt checkpoint %s (checksum mismatch or missing file)", ckpt.label())
        return None

    def resume_point(self, lineage: dict[str, str], current: str | None, *, quiet: bool = False) -> Checkpoint | None:
        """Where a retrain of the current version's line (`lineage`: run -> version) starts: the
        best epoch (lowest validation loss) of the newest run of that line.

        Runs that produced another version are not the current line (after a rollback, for
        instance), nor are rejected runs; runs of a killed retrain (no version) are, so the
        next retrain resumes there. Corrupt checkpoints are logged (unless quiet) and skipped.
        """
        def in_line(ckpt: Checkpoint) -> bool:
            owner = lineage.get(ckpt.run)
            return (owner is None or owner == current) and not self.rejected(ckpt.run)

        return self.best_valid(quiet=quiet, where=in_line)

    def copy_run(self, run: str, target: CheckpointManager) -> None:
        """Copy one training run's checkpoints to another manager of this model (a sandbox)."""
        shutil.copytree(self.root / run, target.root / run)

    def rejected(self, run: str) -> bool:
        return (self.root / run / REJECTED_MARK).exists()

    def reject_runs(self, runs: Iterable[str], version: str) -> None:
        """Turn down the runs that produced `version` (a rejected candidate): marked, so a retrain
        never resumes from them (`resume_point`) and the next `prune` deletes them. Until then
        they can still be continued on purpose (`--checkpoint`, the warm-up's next stage)."""
        for run in runs:
            try:
                (self.root / run / REJECTED_MARK).write_text(version, "utf-8")
            except OSError as exc:
                log.warning("could not mark checkpoint run %s rejected (%s); deleting it", run, exc)
                shutil.rmtree(self.root / run, ignore_errors=True)

    def prune(self, keep: int, protected: Iterable[str] = ()) -> list[str]:
        """Delete all runs but the newest `keep` and the `protected` ones; rejected runs always go.
        Returns the runs deleted."""
        runs = self.runs()
        spared = set(protected) | set(runs[-keep:] if keep > 0 else [])
        doomed = [run for run in runs if run not in spared or self.rejected(run)]
        for run in doomed:
            shutil.rmtree(self.root / run, ignore_errors=True)
        return doomed

    def prune_runs(self, keep: int) -> None:
        """Keep the newest `keep` runs' checkpoints; disk use stays bounded."""
        self.prune(keep)


def _loss(ckpt: Checkpoint) -> float:
    loss = ckpt.val_loss
    return float(loss) if loss is not None and loss == loss else float("inf")
