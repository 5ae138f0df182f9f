"""`playbill`: the one command-line entry point.

Each feature registers its subcommands from its own module (see COMMAND_MODULES). Heavy
imports (TensorFlow, discord.py) happen inside the handlers, so `playbill --help` and the
history commands start fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from playbill import __version__
from playbill.cli.common import USER_ERRORS, CommandGroups, print_json
from playbill.history.model_store import use_model_store
from playbill.logs import configure_logging, hide_native_logs
from playbill.settings import Settings, load_settings

COMMAND_MODULES = (
    "playbill.cli.sentiment",  # train/evaluate/bench sentiment, predict
    "playbill.cli.scene",  # train/evaluate/bench/checkpoints scene, write
    "playbill.cli.history",  # history list/stats/runs/forget, bench history
    "playbill.cli.db",  # db upgrade/current/downgrade/revision/backup
    "playbill.cli.bot",  # run, console, sync-commands
    "playbill.cli.jobs",  # scheduler, jobs, retrain, models ...
)

log = logging.getLogger("playbill")


def example_config() -> str:
    """config.example.toml as shipped in the package (every setting, documented)."""
    from importlib.resources import files

    return files("playbill").joinpath("config.example.toml").read_text(encoding="utf-8")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a mistake on the command line is one `error:` line (exit 2), not a usage dump,
    naming the subcommand it belongs to. A command with actions may name a default one
    (`default_action`): `playbill history --user 1` is `playbill history list --user 1`."""

    default_action: str | None = None

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self.default_action is not None and args is not None:
            args = list(args)
            actions = next(a.choices for a in self._actions if isinstance(a, argparse._SubParsersAction))
            if not args or args[0] not in (*actions, "-h", "--help"):
                args.insert(0, self.default_action)
        namespace, extras = super().parse_known_args(args, namespace)
        if extras and " " in self.prog:  # a subcommand: say which one did not take them
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (`{self.prog} --help` lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="playbill", description="Playbill: the critic and the playwright.")
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (default: $PLAYBILL_CONFIG or ./config.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument("--version", action="version", version=f"playbill {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups = CommandGroups(commands)
    show = commands.add_parser("config", help="print the settings in force (the token only as set/unset)")
    show.add_argument("--example", action="store_true", help="print the documented example config.toml instead")
    show.set_defaults(handler=_show_config)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(commands, groups)
    return parser


def _show_config(args: argparse.Namespace, settings: Settings) -> int:
    from playbill.settings import discord_token

    if args.example:
        sys.stdout.write(example_config())
        return 0
    shown = settings.shown()
    shown["discord_token"] = "set (from the environment)" if discord_token() else "not set"
    print_json(shown)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except (OSError, ValueError) as exc:
        print(f"error: bad settings: {exc}", file=sys.stderr)
        return 2
    if not args.verbose and argv is None:  # the real command line; a caller of main([...]) keeps its stderr
        hide_native_logs()  # before logging binds sys.stderr
    configure_logging(settings, verbose=args.verbose)
    try:
        use_model_store(settings)  # files or the database: every registry this process opens
        code = int(args.handler(args, settings) or 0)
        sys.stdout.flush()  # a reader that has gone shows up here at the latest, not as a message at exit
        return code
    except BrokenPipeError:  # `playbill ... | head -1`: the reader has what it wanted
        _discard_stdout()
        return BROKEN_PIPE_EXIT
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except OSError as exc:  # any other disk or file problem: one line naming the path, no traceback
        print(f"error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def os_error_line(exc: OSError) -> str:
    """An OS error no command turned into its own message: a storage problem (read-only, full, not
    ours to write) as engine.errors.StorageError words it, anything else with its path."""
    import errno

    from playbill.engine.errors import StorageError

    if exc.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM):
        return str(StorageError.from_os_error(exc))
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


BROKEN_PIPE_EXIT = 141  # what a shell reports for a process a closed pipe stopped (128 + SIGPIPE)


def _discard_stdout() -> None:
    """Point standard output at /dev/null, so the flush at exit does not fail again loudly."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (a test's capture): nothing is flushed at exit
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
