"""Versioned models on disk: models/<name>/<version>/ plus a CURRENT pointer.

A version directory is complete or absent: it is written under a temporary name and
renamed into place. The CURRENT pointer is replaced with os.replace, so readers always
see either the old or the new version, never half of one. Promotions are appended to
promotions.jsonl so `rollback` can go back one step.

Every version is verified before it is served or promoted (`verify`): the SHA-256 of each
file it was published with is recorded in its `checksums.json` (written before the rename,
so a published version always has one). Versions published before checksums existed have
none and are verified by loading alone. A damaged current version is never served: the
newest older version that was once current and verifies (`current_good`) is, with a warning.

The pointer: a CURRENT that is empty, not UTF-8 or names a missing version counts as the
last version promoted in promotions.jsonl (after a rollback: the one rolled back to), with a
warning; only a registry with no promotion record at all counts its newest version.

Two kinds of registry share this interface (`Registry`): this file-based one (the default, and
the local store of an embedded SQLite install) and a database-backed one
(`playbill.history.model_store`, for a fleet on a server database) whose versions and pointer
live in the database and whose folder here is only a checksum-verified cache. The engine opens
registries through `open_registry`, so a front end decides which kind a models folder gets
(`use_registry_opener`) without the engine knowing about databases.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from playbill.engine.datasets import hash_file
from playbill.engine.errors import ModelUnavailable
from playbill.files import exclusive_lock, pid_alive, write_atomic

log = logging.getLogger(__name__)

METADATA_FILE = "metadata.json"
POINTER_FILE = "CURRENT"
PROMOTIONS_FILE = "promotions.jsonl"
CHECKSUMS_FILE = "checksums.json"  # {"sha256": {"relative/path": hex digest}} of the files published


class DamagedVersion(ModelUnavailable):
    """A version whose files are missing or changed: its message has one line per problem."""

    def __init__(self, name: str, version: str, problems: list[str], action: str = "") -> None:
        self.version, self.problems = version, list(problems)
        lines = [f"{name} {version} is damaged{action}:", *(f"  {problem}" for problem in problems)]
        super().__init__("\n".join(lines))


class PromotionConflict(ModelUnavailable):
    """A compare-and-swap promotion found another version current than the one it expected:
    another process promoted (or rolled back) first. Nothing was changed."""

    def __init__(self, name: str, version: str, expected: str | None, found: str | None) -> None:
        self.expected, self.found = expected, found
        super().__init__(f"{name} {version} was not promoted: the current version changed to {found or 'none'} "
                         f"(expected {expected or 'none'}); another process promoted first. "
                         f"`playbill models list` shows what is current now")


ANY_CURRENT: Any = object()  # promote(expected=ANY_CURRENT): promote whatever is current now


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    path: Path
    metadata: dict[str, Any]
    problem: str | None = None  # metadata.json cannot be read: why (its metadata is then {})

    @property
    def metrics(self) -> dict[str, Any]:
        return self.metadata.get("metrics", {})


@dataclass
class StagedVersion:
    """A version being written: put files under `path`, extra metadata in `metadata`."""

    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)
    version: str | None = None
    unchecked: set[str] = field(default_factory=set)  # caches that check themselves: left out of checksums.json


def _utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ModelRegistry:
    """The versions of one model (e.g. 'sentiment') under `<models_dir>/<name>/`."""

    def __init__(self, models_dir: Path, name: str) -> None:
        self.name = name
        self.root = Path(models_dir) / name
        self._warned: set[str] = set()  # pointer/log problems already logged (refresh polls this)

    @classmethod
    def in_home(cls, home: Path, name: str) -> ModelRegistry:
        """The registry of model `name` in a Playbill home: `<home>/models/<name>/` (the one place
        that folder is named), of the kind a front end chose for it (`open_registry`)."""
        return open_registry(Path(home) / "models", name)

    # reading
    def versions(self) -> list[ModelVersion]:
        """Complete versions, oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for child in sorted(self.root.iterdir()):
            meta = child / METADATA_FILE
            if child.is_dir() and not child.name.startswith(".") and meta.is_file():
                metadata, problem = _read_metadata(meta)
                found.append(ModelVersion(self.name, child.name, child, metadata, problem))
        return found

    def get(self, version: str) -> ModelVersion:
        if not isinstance(version, str) or "/" in version:
            raise ModelUnavailable(f"{self.name} model has no version {version!r}; `playbill models list` shows them")
        for found in self.versions():
            if found.version == version:
                return found
        raise ModelUnavailable(f"{self.name} model has no version {version!r}; `playbill models list` shows them")

    def current_version(self) -> str | None:
        """The version the pointer names (see the module's docstring for a damaged pointer)."""
        pointer = self.root / POINTER_FILE
        if pointer.is_file():
            named = self._read_pointer(pointer)
            if named is not None and self._exists(named):
                return named
            promoted = [step["version"] for step in self.promotions() if self._exists(step.get("version"))]
            if promoted:
                self._warn_once(f"{self.name}: the CURRENT pointer {pointer} is damaged or names no version "
                                f"({named!r}); counting the last promoted version, {promoted[-1]}")
                return promoted[-1]
            versions = self.versions()
            if versions:
                self._warn_once(f"{self.name}: the CURRENT pointer {pointer} is damaged or names no version "
                                f"({named!r}) and nothing was ever promoted; counting the newest, {versions[-1].version}")
            return versions[-1].version if versions else None
        versions = self.versions()
        return versions[-1].version if versions else None

    def _read_pointer(self, pointer: Path) -> str | None:
        try:
            return pointer.read_bytes().decode("utf-8").strip() or None
        except (OSError, UnicodeDecodeError):
            return None

    def _exists(self, version: Any) -> bool:
        return (isinstance(version, str) and bool(version) and not version.startswith(".") and "/" not in version
                and (self.root / version / METADATA_FILE).is_file())

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            log.warning("%s", message)

    def promotions(self) -> list[dict[str, Any]]:
        """The promotion steps, oldest first; unreadable lines are skipped with a warning."""
        path = self.root / PROMOTIONS_FILE
        try:
            raw = path.read_bytes().decode("utf-8", errors="replace") if path.is_file() else ""
        except OSError as exc:
            self._warn_once(f"{self.name}: cannot read {path} ({exc})")
            return []
        steps = []
        for number, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                step = json.loads(line)
            except ValueError:
                step = None
            if isinstance(step, dict) and isinstance(step.get("version"), str):
                steps.append(step)
            else:
                self._warn_once(f"{self.name}: skipping unreadable line {number} of {path}")
        return steps

    # verification
    def verify(self, version: str) -> list[str]:
        """What is wrong with the files of `version`, one line per problem (empty: intact).

        Checks metadata.json parses and every file in checksums.json is there with its recorded
        SHA-256. A version without checksums.json (published before they existed) passes here
        and is verified by loading it. Reads only; nothing is written."""
        path = self.root / version
        if not self._exists(version):
            return [f"{version}: its folder or its {METADATA_FILE} is missing"]
        problems = []
        _, problem = _read_metadata(path / METADATA_FILE)
        if problem:
            problems.append(problem)
        sums = path / CHECKSUMS_FILE
        if not sums.is_file():
            return problems
        try:
            recorded = json.loads(sums.read_bytes().decode("utf-8"))["sha256"]
            if not isinstance(recorded, dict):
                raise TypeError("not an object")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return [*problems, f"{CHECKSUMS_FILE} is unreadable ({type(exc).__name__}), so its files cannot be checked"]
        for relative, digest in sorted(recorded.items()):
            target = path / str(relative)
            if Path(str(relative)).is_absolute() or ".." in Path(str(relative)).parts:
                problems.append(f"{CHECKSUMS_FILE} names a file outside the version: {relative!r}")
            elif not target.is_file():
                problems.append(f"{relative} is missing")
            elif _sha256(target) != digest:
                problems.append(f"{relative} does not match its recorded checksum (changed or damaged)")
        return problems

    def fallbacks(self) -> list[str]:
        """Versions to serve when the current one is damaged, best first: the versions older than
        the current one that were once current (all older ones if nothing was ever promoted),
        newest first. Newer versions (candidates, versions rolled back from) never are."""
        current = self.current_version()
        names = [v.version for v in self.versions()]
        if current not in names:
            return []
        once_current = {step.get(key) for step in self.promotions() for key in ("version", "previous")}
        older = names[: names.index(current)]
        return [v for v in reversed(older) if not once_current - {None} or v in once_current]

    def current_good(self) -> ModelVersion | None:
        """The current version if its files verify, else the first fallback that does (each one
        set aside is logged); None when there is none."""
        current = self.current_version()
        for version in [current, *self.fallbacks()] if current else []:
            problems = self.verify(version)
            if not problems:
                if version != current:
                    log.warning("%s: the current version %s is damaged; using %s", self.name, current, version)
                return self.get(version)
            log.warning("%s %s is damaged, set aside: %s", self.name, version, "; ".join(problems))
        return None

    def pinned(self) -> bool:
        """Whether a CURRENT pointer names the current version (else the newest version counts)."""
        return (self.root / POINTER_FILE).is_file()

    def pin_current(self) -> str | None:
        """Write the pointer for the version in use now, so an unpromoted newer one never becomes
        current by being newest. Returns the current version (None: there is none)."""
        current = self.current_version()
        if current is not None and not self.pinned():
            self.root.mkdir(parents=True, exist_ok=True)
            write_atomic(self.root / POINTER_FILE, current + "\n")
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
        staged = StagedVersion(Path(tempfile.mkdtemp(dir=self.root, prefix=f"{_STAGING}{_HOST}-{os.getpid()}-")))
        try:
            yield staged
            version = self._next_version()
            full = {**metadata, **staged.metadata, "name": self.name, "version": version, "created_at": _utcnow()}
            write_atomic(staged.path / CHECKSUMS_FILE, json.dumps({"sha256": _checksums(staged)}, indent=2))
            write_atomic(staged.path / METADATA_FILE, json.dumps(full, indent=2, default=str))
            os.replace(staged.path, self.root / version)
        except BaseException:
            shutil.rmtree(staged.path, ignore_errors=True)
            raise
        staged.version = version
        staged.path = self.root / version

    def remove_leftovers(self) -> list[str]:
        """Delete what killed processes left half-written: staging folders of processes of this
        host that are gone, and folders a removal did not finish. Returns their names (logged)."""
        if not self.root.is_dir():
            return []
        removed = []
        for child in self.root.iterdir():
            name = child.name
            if name.startswith(_STAGING):
                owner = name[len(_STAGING):].split("-")  # host, pid, random
                if len(owner) != 3 or owner[0] != _HOST or not owner[1].isdigit() or pid_alive(int(owner[1])):
                    continue  # another host's, an older layout's, or a live writer's
            elif not name.startswith(_REMOVING):
                continue
            shutil.rmtree(child, ignore_errors=True)
            removed.append(name)
        if removed:
            log.warning("%s: removed what interrupted processes left half-written: %s", self.name, ", ".join(removed))
        return removed

    def update_metadata(self, version: str, **fields: Any) -> None:
        found = self.get(version)
        if found.problem:
            raise DamagedVersion(self.name, version, [found.problem], ", its metadata cannot be updated")
        data = dict(found.metadata)
        data.update(fields)
        path = found.path / METADATA_FILE
        write_atomic(path, json.dumps(data, indent=2, default=str))

    def promote(self, version: str, reason: str = "", *, expected: str | None = ANY_CURRENT) -> None:
        """Make `version` the current one (atomically) and remember the step for rollback.
        A damaged version (`verify`) is refused: DamagedVersion names each problem.

        `expected`: compare-and-swap. The promotion happens only if the current version is still
        `expected` (None: there is none yet); otherwise PromotionConflict and nothing changes.
        The check and the pointer's replacement hold the registry's lock (one host's processes)."""
        self.get(version)  # must exist
        problems = self.verify(version)
        if problems:
            raise DamagedVersion(self.name, version, problems, ", not promoted")
        with self._promotion_lock():
            previous = self.current_version()
            if expected is not ANY_CURRENT and previous != expected:
                raise PromotionConflict(self.name, version, expected, previous)
            if previous == version:
                previous = None  # the first version: nothing to roll back to
            write_atomic(self.root / POINTER_FILE, version + "\n")
            with (self.root / PROMOTIONS_FILE).open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"at": _utcnow(), "version": version, "previous": previous, "reason": reason}) + "\n")

    @contextmanager
    def _promotion_lock(self) -> Iterator[None]:
        """An exclusive flock on the registry's folder itself (no lock file is left behind): one
        promotion at a time among the processes sharing this folder."""
        self.root.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.root):
            yield

    def rollback(self) -> str:
        """Go back to the version that was current before the last promotion."""
        steps = self.promotions()
        current = self.current_version()
        existing = {v.version for v in self.versions()}
        for step in reversed(steps):
            if step["version"] == current and step.get("previous") in existing:
                problems = self.verify(step["previous"])
                if problems:
                    raise DamagedVersion(self.name, step["previous"], problems,
                                         " (the version before the current one), so it is not rolled back to; "
                                         "`playbill models promote` a good version instead")
                self.promote(step["previous"], reason=f"rollback from {current}", expected=current)
                return step["previous"]
        raise ModelUnavailable(f"{self.name}: there is no earlier version to roll back to")

    def restore_checkpoint(self) -> bool:
        """Bring the checkpoint the current version was published from to this host when there
        is no resume point here (a registry that stores them: the database's). Files: nothing
        to bring, the checkpoints are where training ran. True if one was written."""
        return False

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
        doomed = self.root / f"{_REMOVING}{version}"
        os.replace(found.path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def prune(self, keep: int) -> list[str]:
        """Delete all but the newest `keep` versions; the current one is always kept, and so is
        the one served in its place while it is damaged (`current_good`)."""
        current = self.current_version()
        good = self.current_good()
        spared = {current, good.version if good else None}
        versions = self.versions()
        doomed = [v for v in versions[:-keep] if v.version not in spared] if keep > 0 else []
        for v in doomed:
            shutil.rmtree(v.path, ignore_errors=True)
        return [v.version for v in doomed]


_STAGING = ".incoming-"  # + host-pid-random: a version being written
_REMOVING = ".removing-"  # + version: a version being deleted
_HOST = socket.gethostname().replace("-", "_") or "host"


def _read_metadata(path: Path) -> tuple[dict[str, Any], str | None]:
    """A version's metadata, or ({}, why it cannot be read)."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as exc:
        return {}, f"{METADATA_FILE} is unreadable ({type(exc).__name__}: {str(exc)[:80]})"
    if not isinstance(data, dict):
        return {}, f"{METADATA_FILE} is not a JSON object"
    return data, None


def _sha256(path: Path) -> str:
    return hash_file(path).hexdigest()


def _checksums(staged: StagedVersion) -> dict[str, str]:
    """SHA-256 of every file of a staged version but its metadata and its self-checked caches."""
    skip = {METADATA_FILE, CHECKSUMS_FILE, *staged.unchecked}
    return {
        path.relative_to(staged.path).as_posix(): _sha256(path)
        for path in sorted(staged.path.rglob("*"))
        if path.is_file() and path.relative_to(staged.path).as_posix() not in skip
    }


@runtime_checkable
class Registry(Protocol):
    """What every registry offers (the file-based `ModelRegistry`, the database-backed one of
    `playbill.history.model_store`). `root` is where a version's files are read from: the
    registry itself for files, the local cache for the database."""

    name: str
    root: Path

    def versions(self) -> list[ModelVersion]: ...
    def get(self, version: str) -> ModelVersion: ...
    def current_version(self) -> str | None: ...
    def current(self) -> ModelVersion: ...
    def current_good(self) -> ModelVersion | None: ...
    def fallbacks(self) -> list[str]: ...
    def promotions(self) -> list[dict[str, Any]]: ...
    def verify(self, version: str) -> list[str]: ...
    def lineage(self) -> dict[str, str]: ...
    def pinned(self) -> bool: ...
    def pin_current(self) -> str | None: ...
    def new_version(self, metadata: dict[str, Any]) -> Any: ...
    def update_metadata(self, version: str, **fields: Any) -> None: ...
    def promote(self, version: str, reason: str = "", *, expected: str | None = ANY_CURRENT) -> None: ...
    def rollback(self) -> str: ...
    def restore_checkpoint(self) -> bool: ...
    def remove(self, version: str) -> None: ...
    def prune(self, keep: int) -> list[str]: ...
    def remove_leftovers(self) -> list[str]: ...


RegistryOpener = Callable[[Path, str], ModelRegistry]
_OPENERS: dict[Path, RegistryOpener] = {}  # models folder (resolved) -> who opens its registries


def use_registry_opener(models_dir: Path, opener: RegistryOpener | None) -> None:
    """Let `opener(models_dir, name)` open the registries of `models_dir` in this process (None:
    the file-based registry again). A front end calls this once it knows its settings."""
    key = Path(models_dir).resolve()
    if opener is None:
        _OPENERS.pop(key, None)
    else:
        _OPENERS[key] = opener


def open_registry(models_dir: Path, name: str) -> ModelRegistry:
    """The registry of model `name` under `models_dir`: the one every part of Playbill opens.
    File-based unless a front end chose another kind for this folder (`use_registry_opener`)."""
    opener = _OPENERS.get(Path(models_dir).resolve()) if _OPENERS else None
    return opener(Path(models_dir), name) if opener else ModelRegistry(models_dir, name)
