"""Pieces every job shares: settings passed as plain values, file locks, the busy error."""

from __future__ import annotations

import fcntl
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from playbill.engine.errors import EngineError
from playbill.history.model_store import use_model_store
from playbill.settings import Settings


class JobBusy(EngineError):
    """The job (or the scheduler) is already running elsewhere; try again when it is done."""


def settings_values(settings: Settings) -> dict[str, Any]:
    """The settings as plain JSON values with absolute paths: what the spawned training process
    is handed (through a pipe; never stored: the job store keeps names only, see run_jobs_with)."""
    values = _plain(settings.model_dump())
    values["database_url"] = absolute_sqlite_url(settings.database_url)
    return values


def _plain(value: Any) -> Any:
    """JSON-like values, every path made absolute (a job may run from another directory)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value.resolve())
    return value


def absolute_sqlite_url(url: str) -> str:
    """`sqlite:///var/playbill.db` -> the same file with an absolute path (other URLs unchanged)."""
    prefix = "sqlite:///"
    if url.startswith(prefix):
        path = url[len(prefix):]
        if path and path != ":memory:" and not path.startswith("/") and "?" not in path:
            return prefix + str(Path(path).resolve())
    return url


_JOB_SETTINGS: list[Settings] = []  # the settings this process's scheduled jobs run with (see run_jobs_with)


def run_jobs_with(settings: Settings) -> None:
    """The settings the scheduled jobs of this process read when they run.

    The job store holds no settings (they include the database URL and its password): a
    stored job carries names only (the model's), and reads these when it runs. The scheduler
    sets them when it is created; a process that never did reads the config and environment.
    """
    _JOB_SETTINGS[:] = [settings]


def restore_settings(values: dict[str, Any] | Settings | None) -> Settings:
    """A Settings from `settings_values` output, or the settings themselves; None: the ones
    this process's jobs run with (`run_jobs_with`), else the config and environment."""
    if isinstance(values, Settings):
        return values
    if values is None:
        if _JOB_SETTINGS:
            return _JOB_SETTINGS[0]
        from playbill.settings import load_settings

        return load_settings()
    settings = Settings(**values)
    use_model_store(settings)  # a spawned process opens the registries its parent does
    return settings


class FileLock:
    """An exclusive, non-blocking `flock` on a file; released by the OS if the process dies.

    The holder's pid and start time are written into the file so a refusal can say who
    holds it. flock locks belong to the open file, so a second lock in the same process is
    refused too.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = Path(path)
        self.what = what
        self._fh = None

    def acquire(self) -> FileLock:
        if self._fh is not None:
            return self  # already ours
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise JobBusy(f"{self.what} is already running ({self._describe_holder()}); try again when it has finished") from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": datetime.now(UTC).isoformat(timespec="seconds")}))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.seek(0)
            fh.truncate()
            fh.flush()
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            fh.close()

    def alive(self) -> bool:
        """Whether this process still holds the lock (a file lock cannot be lost while held)."""
        return self._fh is not None

    def holder(self) -> dict[str, Any] | None:
        """Who holds the lock (host, pid, since), or None when nobody does."""
        if self._fh is not None:
            return self._read_info() or {"pid": os.getpid()}
        if not self.path.exists():
            return None
        with open(self.path, "a+", encoding="utf-8") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return self._read_info()
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            return None

    def _read_info(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text("utf-8") or "{}")
        except (OSError, ValueError):
            return {}

    def _describe_holder(self) -> str:
        info = self._read_info()
        if info.get("pid"):
            return f"process {info['pid']}, since {info.get('since', '?')}"
        return "another process"

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def locks_dir(settings: Settings) -> Path:
    return settings.home / "locks"


def retrain_lock(settings: Settings, model: str) -> FileLock:
    """Held for the whole of a retrain of `model`, by the scheduler or `playbill retrain` alike."""
    return FileLock(locks_dir(settings) / f"retrain-{model}.lock", f"a {model} retrain")


def scheduler_lock(settings: Settings) -> FileLock:
    """Held by the one process that owns the job store (`playbill run` or `playbill scheduler`)."""
    return FileLock(locks_dir(settings) / "scheduler.lock", "the Playbill scheduler")
