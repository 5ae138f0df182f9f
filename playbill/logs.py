"""Logging: readable on the console, full detail in <home>/logs/playbill.log, secrets redacted."""

from __future__ import annotations

import atexit
import io
import logging
import logging.handlers
import os
import re
import sys
import threading

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


def configure_logging(settings: Settings, verbose: bool = False) -> None:
    level = logging.DEBUG if verbose else getattr(logging, settings.log_level.upper(), logging.INFO)
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        if handler.get_name() == HANDLER_NAME:
            root.removeHandler(handler)
    console = logging.StreamHandler()
    console.setLevel(max(level, logging.WARNING) if not verbose else level)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handlers: list[logging.Handler] = [console]
    try:
        settings.logs_dir.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            settings.logs_dir / "playbill.log", maxBytes=5_000_000, backupCount=3, encoding="utf-8"
        )
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        file_handler.setLevel(level)
        handlers.append(file_handler)
    except OSError:
        pass  # a read-only home still lets read-only commands run
    for handler in handlers:
        handler.set_name(HANDLER_NAME)
        handler.addFilter(RedactSecrets())
        root.addHandler(handler)
    for noisy in ("discord.http", "discord.gateway", "apscheduler.executors", "absl", "alembic"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


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
