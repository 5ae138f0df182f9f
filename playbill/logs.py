"""Logging: each process to stderr and, optionally, to a file of its own; secrets redacted.

Every process writes only its own file (`<home>/logs/playbill-<host>-<pid>.log`, `[logging]
file`), so processes sharing a home (or a log folder) never rotate one file under each other.
`[logging] format = "json"` makes every line one JSON object with the time, level, logger,
message, the process (host:pid), and the shard and request id of what is being answered
(`bind_request`, set by the bot per interaction), for a log collector.
"""

from __future__ import annotations

import atexit
import contextvars
import io
import json
import logging
import logging.handlers
import os
import re
import socket
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from playbill.files import pid_alive
from playbill.settings import TOKEN_ENV_VARS, Settings
from playbill.terminal import strip_controls

HANDLER_NAME = "playbill"  # our handlers, replaced when logging is configured again


class RedactSecrets(logging.Filter):
    """Replace the bot token with *** wherever it would appear in a log record, and drop terminal
    control sequences (playbill.terminal): a member's text quoted in a log line never drives the
    terminal that shows the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = [os.environ[name] for name in TOKEN_ENV_VARS if os.environ.get(name)]
        message = record.getMessage()
        cleaned = strip_controls(message)
        for secret in secrets:
            cleaned = cleaned.replace(secret, "***")
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_REQUEST: contextvars.ContextVar[str | None] = contextvars.ContextVar("playbill_request", default=None)
_SHARD: contextvars.ContextVar[int | None] = contextvars.ContextVar("playbill_shard", default=None)
HOST = socket.gethostname() or "host"
OLD_FILES_DAYS = 14  # per-process files of this host's finished processes are removed after this long


def bind_request(request_id: str | int | None, shard: int | None = None) -> None:
    """Name the request (and the shard it came through) that this task is answering: every log
    line written while answering it carries them (asyncio tasks each keep their own)."""
    _REQUEST.set(None if request_id is None else str(request_id))
    _SHARD.set(shard)


class ProcessContext(logging.Filter):
    """Adds `where` (host:pid), `shard` and `request` to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.where = f"{HOST}:{os.getpid()}"
        record.shard = _SHARD.get()
        record.request = _REQUEST.get()
        return True


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, message, process, shard, request (+ exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": getattr(record, "where", f"{HOST}:{os.getpid()}"),
            "shard": getattr(record, "shard", None),
            "request": getattr(record, "request", None),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def process_log_file(logs_dir: Path, pid: int | None = None) -> Path:
    """This process's own log file: <logs_dir>/playbill-<host>-<pid>.log."""
    return Path(logs_dir) / f"playbill-{_safe(HOST)}-{pid or os.getpid()}.log"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", name)


def configure_logging(settings: Settings, verbose: bool = False) -> None:
    level = logging.DEBUG if verbose else getattr(logging, settings.log_level.upper(), logging.INFO)
    as_json = settings.logging.format == "json"
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        if handler.get_name() == HANDLER_NAME:
            root.removeHandler(handler)
            handler.close()
    console = logging.StreamHandler()
    # text for a person: warnings and worse unless -v; JSON for a collector: everything at log_level
    console.setLevel(level if verbose or as_json else max(level, logging.WARNING))
    console.setFormatter(JsonLines() if as_json else logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handlers: list[logging.Handler] = [console]
    if settings.logging.file:
        try:
            settings.logs_dir.mkdir(parents=True, exist_ok=True)
            _remove_finished_files(settings.logs_dir)
            file_handler = logging.handlers.RotatingFileHandler(
                process_log_file(settings.logs_dir), maxBytes=5_000_000, backupCount=3, encoding="utf-8", delay=True
            )
            file_handler.setFormatter(JsonLines() if as_json else logging.Formatter(
                "%(asctime)s %(levelname)s %(where)s %(name)s: %(message)s"))
            file_handler.setLevel(level)
            handlers.append(file_handler)
        except OSError:
            pass  # a read-only home still lets read-only commands run
    for handler in handlers:
        handler.set_name(HANDLER_NAME)
        handler.addFilter(RedactSecrets())
        handler.addFilter(ProcessContext())
        root.addHandler(handler)
    for noisy in ("discord.http", "discord.gateway", "apscheduler.executors", "absl", "alembic"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def _remove_finished_files(logs_dir: Path) -> None:
    """Remove this host's per-process files (and their rotations) of processes that are gone and
    wrote nothing for OLD_FILES_DAYS; other hosts' files are theirs to clean."""
    prefix = f"playbill-{_safe(HOST)}-"
    cutoff = time.time() - OLD_FILES_DAYS * 86400
    for path in logs_dir.glob(f"{prefix}*.log*"):
        pid = path.name[len(prefix):].split(".", 1)[0]
        try:
            if pid.isdigit() and not pid_alive(int(pid)) and path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:
            continue


# Native (C++) log lines of TensorFlow and LiteRT that say nothing a person can act on: absl's
# INFO/WARNING lines ("I0000 00:00:... port.cc:153] oneDNN custom operations are on ..."), the
# "E0000 ... DT_BOOL" fallback notice, LiteRT's "Created TensorFlow Lite XNNPACK delegate".
NATIVE_NOISE = re.compile(
    rb"^(?:[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.]+:\d+\]"
    rb"|E\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.]+:\d+\] oneDNN supports DT_BOOL"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|INFO: Created TensorFlow Lite XNNPACK delegate"
    rb"|To enable the following instructions: .* rebuild TensorFlow)"
)
_native_filter: tuple[int, threading.Thread] | None = None


def hide_native_logs() -> None:
    """Keep TensorFlow's and LiteRT's native banners off the terminal (`-v` shows them).

    Why this way: they are written by C++ straight to file descriptor 2, some before any
    setting is read. So fd 2 becomes a pipe whose lines are passed on unless they are
    NATIVE_NOISE, while Python's own sys.stderr keeps writing to the real stderr directly
    (still a terminal where it was one, and nothing of ours is held in the pipe at exit).
    """
    global _native_filter
    if _native_filter is not None:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's own INFO/WARNING after start-up
    try:
        sys.stderr.flush()
        real = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
    except OSError:  # no fd 2 to speak of (an embedded interpreter): leave it be
        return
    sys.stderr = io.TextIOWrapper(io.FileIO(real, "w", closefd=False), encoding=sys.stderr.encoding or "utf-8",
                                  errors="backslashreplace", line_buffering=True)
    thread = threading.Thread(target=_pass_on, args=(read_end, real), name="native-log-filter", daemon=True)
    thread.start()
    _native_filter = (real, thread)
    atexit.register(_stop_native_filter)


def _pass_on(read_end: int, real: int) -> None:
    pending = b""
    while True:
        try:
            data = os.read(read_end, 1 << 16)
        except OSError:
            data = b""
        if not data:
            if pending and not NATIVE_NOISE.match(pending):
                os.write(real, pending)
            return
        pending += data
        *lines, pending = pending.split(b"\n")
        kept = b"".join(line + b"\n" for line in lines if not NATIVE_NOISE.match(line))
        if kept:
            os.write(real, kept)


def _stop_native_filter() -> None:
    """At exit: fd 2 is the real stderr again and what the pipe still holds is passed on."""
    global _native_filter
    if _native_filter is None:
        return
    real, thread = _native_filter
    _native_filter = None
    try:
        os.dup2(real, 2)  # closes our end of the pipe; the thread reads to its end
    except OSError:
        return
    thread.join(timeout=2.0)  # a child process may still hold the pipe open: never hang the exit
