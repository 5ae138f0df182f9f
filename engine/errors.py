"""Errors a user can act on. Their messages are shown to people as they are."""

from __future__ import annotations


class EngineError(Exception):
    """Base: something the user can fix; the message says what and how."""


class InvalidInput(EngineError, ValueError):
    """Text or options a model cannot take (empty text, unknown characters, bad ranges)."""


class DataUnavailable(EngineError):
    """A dataset is neither cached nor downloadable."""


class ModelUnavailable(EngineError):
    """No trained model version exists yet, or the one asked for does not."""


class CheckpointError(EngineError):
    """A checkpoint is missing, truncated or fails its checksum."""


class StorageError(EngineError):
    """A folder Playbill must write to is read-only, full or not ours to write: the message
    names the path and what to do (one line, never a traceback)."""

    @classmethod
    def from_os_error(cls, exc: OSError, path: object = None) -> StorageError:
        import errno

        where = exc.filename or path or "a file"
        advice = {
            errno.EROFS: "its file system is read-only; make it writable (or set PLAYBILL_HOME to a writable "
                         "folder) and try again",
            errno.ENOSPC: "the disk is full; free some space there and try again",
            errno.EDQUOT: "the disk quota is used up; free some space there and try again",
            errno.EACCES: "permission denied; let this user write there and try again",
            errno.EPERM: "operation not permitted; let this user write there and try again",
        }.get(exc.errno, "fix that and try again")
        return cls(f"cannot write {where}: {exc.strerror or exc}; {advice}")
