"""Logging: readable on the console, full detail in <home>/logs/playbill.log, secrets redacted."""

from __future__ import annotations

import logging
import logging.handlers
import os

from playbill.settings import TOKEN_ENV_VARS, Settings

HANDLER_NAME = "playbill"  # our handlers, replaced when logging is configured again


class RedactSecrets(logging.Filter):
    """Replace the bot token with *** wherever it would appear in a log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = [os.environ[name] for name in TOKEN_ENV_VARS if os.environ.get(name)]
        if secrets:
            message = record.getMessage()
            for secret in secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
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
    for noisy in ("discord.http", "discord.gateway", "apscheduler.executors", "absl"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
