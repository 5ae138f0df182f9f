"""Three file and process primitives every layer needs, written once: replace a file so a reader
sees the old content or the new and never half of it, hold an exclusive lock on a path, and tell
whether a process id is still running.

A leaf (the import contracts say so): the engine, the history, the jobs and the logging set-up
all build on it, so it imports nothing of the project's.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_atomic(path: Path, content: bytes | str, *, sync: bool = True) -> None:
    """Write `content` (text as UTF-8) to `path` through a temporary file beside it and
    `os.replace`: a crash or a full disk leaves the old file whole and no temporary behind.
    `sync` flushes the data to disk before the rename (a pointer or metadata a restart reads)."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """An exclusive `flock` on `path` for the block, waiting for it. `path` is a folder (locked
    itself, so no lock file is left behind) or a file (created, mode 0600, if missing). The lock
    goes with the process: a killed holder never leaves it taken."""
    if path.is_dir():
        fd = os.open(path, os.O_RDONLY)
    else:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (one we may not signal counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
