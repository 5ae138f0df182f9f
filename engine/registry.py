"""Versioned models on disk: models/<name>/<version>/ plus a CURRENT pointer.

A version directory is complete or absent: it is written under a temporary name and
renamed into place. The CURRENT pointer is replaced with os.replace, so readers always
see either the old or the new version, never half of one. Promotions are appended to
promotions.jsonl so `rollback` can go back one step.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.errors import ModelUnavailable

METADATA_FILE = "metadata.json"
POINTER_FILE = "CURRENT"
PROMOTIONS_FILE = "promotions.jsonl"


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    path: Path
    metadata: dict[str, Any]

    @property
    def metrics(self) -> dict[str, Any]:
        return self.metadata.get("metrics", {})


@dataclass
class StagedVersion:
    """A version being written: put files under `path`, extra metadata in `metadata`."""

    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)
    version: str | None = None


def _utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ModelRegistry:
    """The versions of one model (e.g. 'sentiment') under `<models_dir>/<name>/`."""

    def __init__(self, models_dir: Path, name: str) -> None:
        self.name = name
        self.root = Path(models_dir) / name

    # reading
    def versions(self) -> list[ModelVersion]:
        """Complete versions, oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for child in sorted(self.root.iterdir()):
            meta = child / METADATA_FILE
            if child.is_dir() and not child.name.startswith(".") and meta.is_file():
                found.append(ModelVersion(self.name, child.name, child, json.loads(meta.read_text("utf-8"))))
        return found

    def get(self, version: str) -> ModelVersion:
        for found in self.versions():
            if found.version == version:
                return found
        raise ModelUnavailable(f"{self.name} model has no version {version!r}; `playbill models list` shows them")

    def current_version(self) -> str | None:
        pointer = self.root / POINTER_FILE
        if pointer.is_file():
            version = pointer.read_text("utf-8").strip()
            if (self.root / version / METADATA_FILE).is_file():
                return version
        versions = self.versions()
        return versions[-1].version if versions else None

    def pinned(self) -> bool:
        """Whether a CURRENT pointer names the current version (else the newest version counts)."""
        return (self.root / POINTER_FILE).is_file()

    def pin_current(self) -> str | None:
        """Write the pointer for the version in use now, so an unpromoted newer one never becomes
        current by being newest. Returns the current version (None: there is none)."""
        current = self.current_version()
        if current is not None and not self.pinned():
            self.root.mkdir(parents=True, exist_ok=True)
            _write_atomic(self.root / POINTER_FILE, current + "\n")
        return current

    def lineage(self) -> dict[str, str]:
        """Checkpoint run -> the version it produced, from the versions' metadata.

        A version names its runs in `checkpoint_runs` (a retrain's) or `checkpoint_run` / `run`
        (written by training); the runs of the current version are the line a retrain continues.
        """
        owners: dict[str, str] = {}
        for version in self.versions():
            meta = version.metadata
            runs = list(meta.get("checkpoint_runs") or [])
            runs += [meta[key] for key in ("checkpoint_run", "run") if isinstance(meta.get(key), str)]
            for run in runs:
                owners[run] = version.version
        return owners

    def current(self) -> ModelVersion:
        version = self.current_version()
        if version is None:
            raise ModelUnavailable(
                f"no {self.name} model has been trained yet; run `playbill train {self.name}` first"
            )
        return self.get(version)

    # writing
    def _next_version(self) -> str:
        numbers = [int(v.version[1:5]) for v in self.versions() if v.version[1:5].isdigit()]
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        return f"v{(max(numbers, default=0) + 1):04d}-{stamp}"

    @contextmanager
    def new_version(self, metadata: dict[str, Any]) -> Iterator[StagedVersion]:
        """Yield a staging directory to write a model into; on success it becomes a version.

        After the block, `staged.version` is the new version's name. On error nothing is left.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        self.pin_current()
        staged = StagedVersion(Path(tempfile.mkdtemp(dir=self.root, prefix=".incoming-")))
        try:
            yield staged
            version = self._next_version()
            full = {**metadata, **staged.metadata, "name": self.name, "version": version, "created_at": _utcnow()}
            _write_atomic(staged.path / METADATA_FILE, json.dumps(full, indent=2, default=str))
            os.replace(staged.path, self.root / version)
        except BaseException:
            shutil.rmtree(staged.path, ignore_errors=True)
            raise
        staged.version = version
        staged.path = self.root / version

    def update_metadata(self, version: str, **fields: Any) -> None:
        path = self.get(version).path / METADATA_FILE
        data = json.loads(path.read_text("utf-8"))
        data.update(fields)
        _write_atomic(path, json.dumps(data, indent=2, default=str))

    def promote(self, version: str, reason: str = "") -> None:
        """Make `version` the current one (atomically) and remember the step for rollback."""
        self.get(version)  # must exist
        previous = self.current_version()
        if previous == version:
            previous = None  # the first version: nothing to roll back to
        _write_atomic(self.root / POINTER_FILE, version + "\n")
        with (self.root / PROMOTIONS_FILE).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"at": _utcnow(), "version": version, "previous": previous, "reason": reason}) + "\n")

    def rollback(self) -> str:
        """Go back to the version that was current before the last promotion."""
        log = self.root / PROMOTIONS_FILE
        steps = [json.loads(line) for line in log.read_text("utf-8").splitlines() if line.strip()] if log.is_file() else []
        current = self.current_version()
        existing = {v.version for v in self.versions()}
        for step in reversed(steps):
            if step["version"] == current and step.get("previous") in existing:
                self.promote(step["previous"], reason=f"rollback from {current}")
                return step["previous"]
        raise ModelUnavailable(f"{self.name}: there is no earlier version to roll back to")

    def copy_in(self, version: ModelVersion) -> None:
        """Copy a version of another registry of this model here (a sandbox), as it is."""
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.copytree(version.path, self.root / version.version)

    def remove(self, version: str) -> None:
        """Delete one version that is not the current one (e.g. a candidate that was turned down).

        It is renamed out of sight first, so it disappears from `versions()` at once.
        """
        found = self.get(version)
        if version == self.current_version():
            raise ModelUnavailable(f"{self.name} {version} is the current version; promote another one before removing it")
        doomed = self.root / f".removing-{version}"
        os.replace(found.path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def prune(self, keep: int) -> list[str]:
        """Delete all but the newest `keep` versions; the current one is always kept."""
        current = self.current_version()
        versions = self.versions()
        doomed = [v for v in versions[:-keep] if v.version != current] if keep > 0 else []
        for v in doomed:
            shutil.rmtree(v.path, ignore_errors=True)
        return [v.version for v in doomed]
