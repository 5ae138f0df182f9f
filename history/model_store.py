"""Models through the database: a fleet shares published versions without a shared folder.

With a server database, a published version (its files and their SHA-256) is stored in the
database (`model_versions`, `model_files`), and the current version of each model is a row
(`model_current`) changed in the same transaction as its promotion record (`model_promotions`),
by compare-and-swap: a promotion that finds another version current than it expected changes
nothing (PromotionConflict). Every process keeps a local cache in its own <home>/models: a
version is downloaded the first time it is asked for, each file checked against its recorded
SHA-256 before it is written, and checked again (`verify`) before it is served; a damaged cached
copy is downloaded again. A serving process sees a new promotion at its next refresh
([bot] model_refresh_seconds), since `current_version` reads the row.

`DatabaseRegistry` is the engine's file registry with the database as its store: the same
interface (`playbill.engine.registry.Registry`), so the engine's training, the jobs' gate and
promotion and the `models` commands work unchanged. `use_model_store(settings)` is the one
choice of the registry kind from the settings ([model_store] kind): a process calls it once it
has its settings, and every registry opened for its models folder is then of that kind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from playbill.engine.checkpoints import REJECTED_MARK, CheckpointManager
from playbill.engine.datasets import hash_file
from playbill.engine.errors import ModelUnavailable
from playbill.engine.registry import (
    _REMOVING,
    _STAGING,
    ANY_CURRENT,
    CHECKSUMS_FILE,
    METADATA_FILE,
    POINTER_FILE,
    DamagedVersion,
    ModelRegistry,
    ModelVersion,
    PromotionConflict,
    StagedVersion,
    use_registry_opener,
)
from playbill.history import db
from playbill.history.errors import HistoryError
from playbill.history.models import CurrentModel, ModelPromotion, StoredModelFile, StoredModelVersion, utcnow

log = logging.getLogger(__name__)

MB = 1_000_000
CHECKPOINT_PREFIX = "_checkpoint/"  # + run/file: the checkpoint a version was published from (for retrains elsewhere)
CACHE_GRACE_SECONDS = 600.0  # a cached folder unknown to the database is removed only when older than this


class ModelTooLarge(ModelUnavailable):
    """A version larger than the database model store takes ([model_store] max_version_mb)."""


def _me() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


class ModelStore:
    """The model tables of one database, and the largest version they take."""

    def __init__(self, url: str, *, max_version_bytes: int = 256 * MB) -> None:
        self.url = url
        self.max_version_bytes = int(max_version_bytes)
        self.engine = db.make_engine(url)
        self.sessions: sessionmaker[Session] = db.make_session_factory(self.engine)
        self._schema_checked = False

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction; a schema that is not current or an unreachable database
        is one HistoryError that says what to do."""
        if not self._schema_checked:
            db.ensure_schema(self.engine)  # SQLite upgrades itself; a server says `playbill db upgrade`
            self._schema_checked = True
        try:
            with self.sessions.begin() as session:
                yield session
        except IntegrityError:
            raise
        except DBAPIError as exc:
            raise db.database_error(exc, self.url) from exc

    def close(self) -> None:
        self.engine.dispose()


class DatabaseRegistry(ModelRegistry):
    """The versions of one model in the database; `root` (<home>/models/<name>) is this host's cache."""

    def __init__(self, models_dir: Path, name: str, store: ModelStore, checkpoints_dir: Path | None = None) -> None:
        super().__init__(models_dir, name)
        self.store = store
        self.checkpoints = CheckpointManager(checkpoints_dir, name) if checkpoints_dir is not None else None
        self._adopting = False

    # reading --------------------------------------------------------------------------------
    def versions(self) -> list[ModelVersion]:
        """Published versions, oldest first (their files are downloaded when asked for: `get`).
        While the database has none of this model, the versions in this host's folder (an install
        that kept models in files until now) are published first (`import_folder`)."""
        rows = self._version_rows()
        if not rows and not self._adopting and self._local_versions():
            self._adopting = True
            try:
                self.import_folder(ModelRegistry(self.root.parent, self.name))
            finally:
                self._adopting = False
            rows = self._version_rows()
        return [ModelVersion(self.name, version, self.root / version, dict(details or {}))
                for version, details in sorted(rows)]

    def _version_rows(self) -> list[Any]:
        with self.store.session() as session:
            return list(session.execute(sa.select(StoredModelVersion.version, StoredModelVersion.details)
                                        .where(StoredModelVersion.model_name == self.name)).all())

    def _local_versions(self) -> bool:
        return self.root.is_dir() and any(not child.name.startswith(".") and (child / METADATA_FILE).is_file()
                                          for child in self.root.iterdir())

    def get(self, version: str) -> ModelVersion:
        """The version, its files in the local cache (downloaded if they are not there yet)."""
        if not isinstance(version, str) or "/" in version or version.startswith("."):
            raise ModelUnavailable(f"{self.name} model has no version {version!r}; `playbill models list` shows them")
        row = self._row(version)
        if row is None:
            raise ModelUnavailable(f"{self.name} model has no version {version!r}; `playbill models list` shows them")
        problems = self._ensure_cached(version)
        if problems:
            log.warning("%s %s cannot be cached: %s", self.name, version, "; ".join(problems))
        return ModelVersion(self.name, version, self.root / version, dict(row.details or {}))

    def _row(self, version: str) -> StoredModelVersion | None:
        with self.store.session() as session:
            return session.scalar(sa.select(StoredModelVersion).where(
                StoredModelVersion.model_name == self.name, StoredModelVersion.version == version))

    def _exists(self, version: Any) -> bool:
        return isinstance(version, str) and bool(version) and "/" not in version and self._row(version) is not None

    def _current_row(self) -> CurrentModel | None:
        with self.store.session() as session:
            return session.get(CurrentModel, self.name)

    def current_version(self) -> str | None:
        """The version of the `model_current` row; with none (nothing promoted yet), the newest."""
        row = self._current_row()
        if row is not None:
            return row.version
        versions = self.versions()
        return versions[-1].version if versions else None

    def promotions(self) -> list[dict[str, Any]]:
        with self.store.session() as session:
            rows = session.scalars(sa.select(ModelPromotion).where(ModelPromotion.model_name == self.name)
                                   .order_by(ModelPromotion.id)).all()
        return [{"at": row.at.isoformat(timespec="seconds") if row.at else None, "version": row.version,
                 "previous": row.previous, "reason": row.reason, "by": row.promoted_by} for row in rows]

    def pinned(self) -> bool:
        return self._current_row() is not None

    def pin_current(self) -> str | None:
        current = self.current_version()
        if current is not None and not self.pinned():
            try:
                with self.store.session() as session:
                    session.add(CurrentModel(model_name=self.name, version=current, revision=0, changed_at=utcnow()))
            except IntegrityError:
                pass  # another process pinned it first: the row is what counts
        return current

    # the cache --------------------------------------------------------------------------------
    def _recorded(self, version: str) -> dict[str, str]:
        """path -> SHA-256 of the files published with `version`."""
        with self.store.session() as session:
            rows = session.execute(
                sa.select(StoredModelFile.path, StoredModelFile.sha256)
                .join(StoredModelVersion, StoredModelVersion.id == StoredModelFile.version_id)
                .where(StoredModelVersion.model_name == self.name, StoredModelVersion.version == version,
                       StoredModelFile.path.not_like(f"{CHECKPOINT_PREFIX}%"))).all()
        return dict(rows)

    def _check_cached(self, version: str, recorded: dict[str, str]) -> list[str]:
        folder = self.root / version
        if not (folder / METADATA_FILE).is_file():
            return [f"{version} is not in the local cache"]
        problems = []
        for relative, digest in sorted(recorded.items()):
            target = folder / relative
            if not target.is_file():
                problems.append(f"{relative} is missing from the local cache")
            elif hash_file(target).hexdigest() != digest:
                problems.append(f"{relative} in the local cache does not match its recorded checksum")
        return problems

    def _ensure_cached(self, version: str) -> list[str]:
        """Download `version` into the cache unless a complete copy is there; what is wrong (empty: ok)."""
        if (self.root / version / METADATA_FILE).is_file():
            return []
        return self._download(version)

    def _download(self, version: str) -> list[str]:
        """Write `version` from the database into the cache: each file checked against its
        SHA-256 before it is written, the folder renamed into place when complete."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=f"{_STAGING}{_host()}-{os.getpid()}-"))
        problems: list[str] = []
        try:
            with self.store.session() as session:
                row = session.scalar(sa.select(StoredModelVersion).where(
                    StoredModelVersion.model_name == self.name, StoredModelVersion.version == version))
                if row is None:
                    return [f"{version} is not in the database"]
                details = dict(row.details or {})
                files = session.execute(sa.select(StoredModelFile.path, StoredModelFile.sha256, StoredModelFile.content)
                                        .where(StoredModelFile.version_id == row.id,
                                               StoredModelFile.path.not_like(f"{CHECKPOINT_PREFIX}%"))).all()
            for relative, digest, content in files:
                if Path(relative).is_absolute() or ".." in Path(relative).parts:
                    problems.append(f"the database names a file outside the version: {relative!r}")
                    continue
                if _sha256_bytes(content) != digest:
                    problems.append(f"{relative} in the database does not match its recorded checksum")
                    continue
                target = staging / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
            if problems:
                return problems
            (staging / METADATA_FILE).write_text(json.dumps(details, indent=2, default=str), "utf-8")
            final = self.root / version
            if final.exists():  # a damaged copy: out of sight first, then replaced
                doomed = self.root / f"{_REMOVING}{version}-{os.getpid()}"
                os.replace(final, doomed)
                shutil.rmtree(doomed, ignore_errors=True)
            try:
                os.replace(staging, final)
            except OSError:
                if not (final / METADATA_FILE).is_file():  # not another process's complete copy
                    raise
            log.info("%s %s downloaded from the database into %s", self.name, version, final)
            return []
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # verification -----------------------------------------------------------------------------
    def verify(self, version: str) -> list[str]:
        """What is wrong with `version`: its cached files against the SHA-256 recorded in the
        database; a damaged cached copy is downloaded again once before it counts as damaged."""
        recorded = self._recorded(version) if self._exists(version) else None
        if recorded is None:
            return [f"{version}: it is not in the database"]
        problems = self._ensure_cached(version) or self._check_cached(version, recorded)
        if problems and not any("in the database" in p for p in problems):
            log.warning("%s %s: the local copy is damaged (%s); downloading it again", self.name, version,
                        "; ".join(problems))
            problems = self._download(version) or self._check_cached(version, recorded)
        return problems

    # writing ----------------------------------------------------------------------------------
    def _next_version(self) -> str:
        names = [v.version for v in self.versions()]
        if self.root.is_dir():
            names += [child.name for child in self.root.iterdir() if not child.name.startswith(".")]
        numbers = [int(name[1:5]) for name in names if name[1:5].isdigit()]
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        return f"v{(max(numbers, default=0) + 1):04d}-{stamp}"

    @contextmanager
    def new_version(self, metadata: dict[str, Any]) -> Iterator[StagedVersion]:
        """Write the version into the cache (as the file registry does), then publish it to the
        database in one transaction; if that fails (too large, unreachable) nothing is left."""
        with super().new_version(metadata) as staged:
            yield staged
        try:
            self._publish(staged.version)
        except BaseException:
            shutil.rmtree(self.root / staged.version, ignore_errors=True)
            raise

    def _publish(self, version: str) -> None:
        folder = self.root / version
        metadata = json.loads((folder / METADATA_FILE).read_text("utf-8"))
        if not (folder / CHECKSUMS_FILE).is_file():  # published before checksums existed: record them now
            sums = {path.relative_to(folder).as_posix(): hash_file(path).hexdigest() for path in sorted(folder.rglob("*"))
                    if path.is_file() and path.name not in (METADATA_FILE, CHECKSUMS_FILE)}
            _write_text(folder / CHECKSUMS_FILE, json.dumps({"sha256": sums}, indent=2))
        listed = json.loads((folder / CHECKSUMS_FILE).read_text("utf-8"))["sha256"]
        sources = {path: folder / path for path in [*sorted(listed), CHECKSUMS_FILE]}
        sources.update(self._resume_files(metadata))
        size = sum(source.stat().st_size for source in sources.values())
        if size > self.store.max_version_bytes:
            raise ModelTooLarge(
                f"{self.name} {version} is {size / MB:.1f} MB, more than the database model store takes "
                f"({self.store.max_version_bytes / MB:.0f} MB, [model_store] max_version_mb, at most 1000); "
                f"it was not published. Raise max_version_mb, or keep models in files ([model_store] kind = \"files\" "
                f"on a folder every host shares)")
        try:
            with self.store.session() as session:
                row = StoredModelVersion(model_name=self.name, version=version, details=metadata, size_bytes=size,
                                         created_at=utcnow(), published_by=_me())
                session.add(row)
                session.flush()
                for path, source in sources.items():
                    content = source.read_bytes()
                    session.add(StoredModelFile(version_id=row.id, path=path, sha256=_sha256_bytes(content),
                                                size_bytes=len(content), content=content))
        except IntegrityError:
            raise ModelUnavailable(f"{self.name} {version} was published by another process at the same moment; "
                                   f"train again") from None
        log.info("%s %s published to the database (%.1f MB)", self.name, version, size / MB)

    def _resume_files(self, metadata: dict[str, Any]) -> dict[str, Path]:
        """The checkpoint a retrain continues this version from (its run's best epoch and that
        epoch's sidecar), stored with it so a host that never trained can continue it."""
        run = metadata.get("checkpoint_run")
        if self.checkpoints is None or not isinstance(run, str):
            return {}
        start = self.checkpoints.best_valid(run=run, quiet=True)
        if start is None:
            return {}
        sidecar = start.path.with_suffix(".json")
        run_files = [path for path in start.path.parent.iterdir()  # what the run keeps beside its epochs (a vocabulary)
                     if path.is_file() and not path.name.startswith((".", "epoch-", REJECTED_MARK))]
        return {f"{CHECKPOINT_PREFIX}{run}/{path.name}": path for path in [*run_files, start.path, sidecar]}

    def restore_checkpoint(self) -> bool:
        """Write the checkpoint the current version was published from into this host's
        checkpoints, unless a resume point of the current line is already there. True if written."""
        if self.checkpoints is None:
            return False
        current = self.current_version()
        if current is None or self.checkpoints.resume_point(self.lineage(), current, quiet=True) is not None:
            return False
        with self.store.session() as session:
            files = session.execute(
                sa.select(StoredModelFile.path, StoredModelFile.sha256, StoredModelFile.content)
                .join(StoredModelVersion, StoredModelVersion.id == StoredModelFile.version_id)
                .where(StoredModelVersion.model_name == self.name, StoredModelVersion.version == current,
                       StoredModelFile.path.like(f"{CHECKPOINT_PREFIX}%"))).all()
        if not files or any(_sha256_bytes(content) != digest for _, digest, content in files):
            return False
        for path, _, content in sorted(files, key=lambda f: "/epoch-" in f[0] and f[0].endswith(".json")):  # sidecar last
            run, filename = path[len(CHECKPOINT_PREFIX):].split("/", 1)
            if "/" in filename or run.startswith(".") or filename.startswith("."):
                return False
            target = self.checkpoints.root / run / filename
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_bytes(target, content)
        log.info("%s: continuing %s from the checkpoint it was published with (downloaded from the database)",
                 self.name, current)
        return self.checkpoints.resume_point(self.lineage(), current, quiet=True) is not None

    def update_metadata(self, version: str, **fields: Any) -> None:
        with self.store.session() as session:
            row = session.scalar(sa.select(StoredModelVersion).where(
                StoredModelVersion.model_name == self.name, StoredModelVersion.version == version).with_for_update())
            if row is None:
                raise ModelUnavailable(f"{self.name} model has no version {version!r}; `playbill models list` shows them")
            row.details = {**dict(row.details or {}), **fields}
            details = row.details
        cached = self.root / version / METADATA_FILE
        if cached.is_file():
            _write_text(cached, json.dumps(details, indent=2, default=str))

    def promote(self, version: str, reason: str = "", *, expected: str | None = ANY_CURRENT) -> None:
        """Make `version` current: the `model_current` row and the promotion record change in one
        transaction, only if the current version is still `expected` (PromotionConflict if not).
        The version is verified first (downloaded to this host's cache if it is not there)."""
        self.get(version)
        problems = self.verify(version)
        if problems:
            raise DamagedVersion(self.name, version, problems, ", not promoted")
        for _attempt in range(5):
            try:
                with self.store.session() as session:
                    row = session.get(CurrentModel, self.name, with_for_update=True)
                    found = row.version if row is not None else self._newest(session)
                    if expected is not ANY_CURRENT and found != expected:
                        raise PromotionConflict(self.name, version, expected, found)
                    previous = None if found == version else found
                    if row is None:
                        session.add(CurrentModel(model_name=self.name, version=version, revision=1, changed_at=utcnow()))
                    else:
                        changed = session.execute(
                            sa.update(CurrentModel)
                            .where(CurrentModel.model_name == self.name, CurrentModel.version == found,
                                   CurrentModel.revision == row.revision)
                            .values(version=version, revision=row.revision + 1, changed_at=utcnow())
                            .execution_options(synchronize_session=False)).rowcount
                        if changed != 1:
                            raise _Raced()
                    session.add(ModelPromotion(model_name=self.name, version=version, previous=previous,
                                               reason=reason, at=utcnow(), promoted_by=_me()))
                break
            except (IntegrityError, _Raced):
                if expected is not ANY_CURRENT:  # someone else changed it between our read and write
                    raise PromotionConflict(self.name, version, expected, self.current_version()) from None
        else:
            raise PromotionConflict(self.name, version, None, self.current_version())
        try:  # the cache's own pointer, for a person looking at the folder; the row is what counts
            _write_text(self.root / POINTER_FILE, version + "\n")
        except OSError:
            pass
        log.info("%s %s promoted (%s)", self.name, version, reason or "no reason given")

    def _newest(self, session: Session) -> str | None:
        return session.scalar(sa.select(sa.func.max(StoredModelVersion.version))
                              .where(StoredModelVersion.model_name == self.name))

    def remove(self, version: str) -> None:
        """Delete one version that is not the current one, from the database and this cache."""
        self._require(version)
        if version == self.current_version():
            raise ModelUnavailable(f"{self.name} {version} is the current version; promote another one before removing it")
        with self.store.session() as session:
            session.execute(sa.delete(StoredModelFile).where(StoredModelFile.version_id.in_(
                sa.select(StoredModelVersion.id).where(StoredModelVersion.model_name == self.name,
                                                       StoredModelVersion.version == version))))
            session.execute(sa.delete(StoredModelVersion).where(StoredModelVersion.model_name == self.name,
                                                                StoredModelVersion.version == version))
        self._drop_cached(version)

    def _require(self, version: str) -> None:
        if self._row(version) is None:
            raise ModelUnavailable(f"{self.name} model has no version {version!r}; `playbill models list` shows them")

    def _drop_cached(self, version: str) -> None:
        folder = self.root / version
        if folder.exists():
            doomed = self.root / f"{_REMOVING}{version}-{os.getpid()}"
            try:
                os.replace(folder, doomed)
            except OSError:
                return
            shutil.rmtree(doomed, ignore_errors=True)

    def prune(self, keep: int) -> list[str]:
        """Delete all but the newest `keep` versions (the current one and its served fallback kept)."""
        current = self.current_version()
        good = self.current_good()
        spared = {current, good.version if good else None}
        versions = self.versions()
        doomed = [v.version for v in versions[:-keep] if v.version not in spared] if keep > 0 else []
        for version in doomed:
            self.remove(version)
        return doomed

    def remove_leftovers(self) -> list[str]:
        """Also drop cached versions the database no longer has (pruned by another host)."""
        removed = super().remove_leftovers()
        if not self.root.is_dir():
            return removed
        known = {v.version for v in self.versions()}
        for child in self.root.iterdir():
            if child.name.startswith(".") or not child.is_dir() or child.name in known:
                continue
            try:
                if time.time() - child.stat().st_mtime < CACHE_GRACE_SECONDS:
                    continue  # maybe being published right now
            except OSError:
                continue
            self._drop_cached(child.name)
            removed.append(child.name)
        return removed

    def copy_in(self, version: ModelVersion) -> None:
        raise ModelUnavailable("a database registry is never a sandbox; copy into a file registry")

    def import_folder(self, folder_registry: ModelRegistry) -> list[str]:
        """Publish the versions of a file registry the database does not have yet, and make its
        current version current here if nothing is (moving an install onto the database).
        Returns the versions published."""
        known = {version for version, _ in self._version_rows()}
        published = []
        for found in folder_registry.versions():
            if found.version in known or folder_registry.verify(found.version):
                continue
            if found.path != self.root / found.version:
                shutil.copytree(found.path, self.root / found.version, dirs_exist_ok=True)
            try:
                self._publish(found.version)
            except ModelUnavailable as exc:
                if isinstance(exc, ModelTooLarge):
                    raise
                continue  # another process published it at the same moment
            published.append(found.version)
        current = folder_registry.current_version()
        if published and current in published and not self.pinned():
            self.promote(current, reason="imported from a models folder")
        if published:
            log.warning("%s: published %d version(s) of the folder %s to the database (%s current)", self.name,
                        len(published), folder_registry.root, self.current_version())
        return published


class _Raced(Exception):
    """The current row changed between reading and writing it."""


def _host() -> str:
    return socket.gethostname().replace("-", "_") or "host"


def _sha256_bytes(content: bytes) -> str:
    import hashlib

    return hashlib.sha256(content).hexdigest()


def _write_text(path: Path, text: str) -> None:
    _write_bytes(path, text.encode("utf-8"))


def _write_bytes(path: Path, content: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- the one choice of registry kind ------------------------------------------------------------

_STORES: dict[tuple[str, int], ModelStore] = {}


def uses_database(settings: Any) -> bool:
    """Whether these settings keep models in the database ([model_store] kind; auto: a server URL)."""
    kind = settings.model_store.kind
    if kind == "auto":
        return not str(settings.database_url).startswith("sqlite")
    return kind == "database"


def model_store(settings: Any) -> ModelStore:
    """This process's ModelStore for the settings' database (one engine per database)."""
    key = (str(settings.database_url), int(settings.model_store.max_version_mb * MB))
    store = _STORES.get(key)
    if store is None:
        store = _STORES[key] = ModelStore(key[0], max_version_bytes=key[1])
    return store


def use_model_store(settings: Any) -> bool:
    """Choose the registry kind of `settings.models_dir` for this process from the settings:
    the database (`DatabaseRegistry`, its folder a cache) or the files. Every process calls it
    once it has its settings (the command line, spawned training and warm-up processes); every
    registry opened afterwards (`engine.registry.open_registry`, a spec's `registry(home)`)
    is of that kind. Returns whether the database is used."""
    if not uses_database(settings):
        use_registry_opener(settings.models_dir, None)
        return False
    store = model_store(settings)
    checkpoints_dir = settings.checkpoints_dir
    use_registry_opener(settings.models_dir,
                        lambda models_dir, name: DatabaseRegistry(models_dir, name, store, checkpoints_dir))
    return True


def forget_stores() -> None:
    """Close every ModelStore of this process (tests; a process that switches databases)."""
    for store in _STORES.values():
        store.close()
    _STORES.clear()


__all__ = ["DatabaseRegistry", "ModelStore", "ModelTooLarge", "HistoryError", "model_store", "use_model_store",
           "uses_database", "forget_stores"]
