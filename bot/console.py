"""`playbill console`: the bot's commands at a terminal, through the same features and database.

Reads one command a line (interactive or from a pipe) until /quit or end of input, and runs
it through the one command table (each feature's `CONSOLE` commands), printing each answer. Requests are recorded with source "console". The person at the
terminal owns the files, so the admin commands are open to them.
"""

from __future__ import annotations

import asyncio
import getpass
import io
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from playbill import metrics
from playbill.bot.console_command import ConsoleCommand
from playbill.bot.errors import describe
from playbill.bot.health import watch_services
from playbill.bot.messages import Request, Response
from playbill.bot.services import Services, missing_models_message, open_history
from playbill.engine.errors import InvalidInput
from playbill.settings import Settings

PROMPT = "playbill> "
HELP_COLUMN = 30  # where the help's summaries start


MAX_NAME_CHARS = 100  # as a Discord display name (and the history's user_name column)


def readable_text(line: str) -> str:
    """A line as text the history can keep: bytes that were not UTF-8 (read with surrogateescape,
    or any lone surrogate) become U+FFFD replacement characters, as they are answered."""
    try:
        return line.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return line.encode("utf-8", "replace").decode("utf-8")


class TerminalLines:
    """Lines typed at a terminal, read by the event loop itself (no thread blocked in read()),
    so Ctrl-C at the prompt ends the console at once instead of waiting for Enter."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._pending = b""
        self._lines: asyncio.Queue[str] = asyncio.Queue()
        self._watching = False

    def _on_readable(self) -> None:
        data = os.read(self.fd, 1 << 16)
        if not data:  # end of input (Ctrl-D)
            self.close()
            self._lines.put_nowait(readable_text(self._pending.decode("utf-8", "replace")) if self._pending else "")
            self._pending = b""
            self._lines.put_nowait("")
            return
        self._pending += data
        while b"\n" in self._pending:
            line, self._pending = self._pending.split(b"\n", 1)
            self._lines.put_nowait(line.decode("utf-8", "replace") + "\n")

    async def readline(self) -> str:
        """The next line with its newline; "" at the end of input."""
        if not self._watching and self._lines.empty():
            asyncio.get_running_loop().add_reader(self.fd, self._on_readable)
            self._watching = True
        return await self._lines.get()

    def close(self) -> None:
        if self._watching:
            asyncio.get_running_loop().remove_reader(self.fd)
            self._watching = False


def console_member(user_id: int | str | None = None, name: str | None = None) -> tuple[int, str]:
    """Who the console acts as: (Discord user id, display name). Default: the OS user (its uid
    and login name); `--user ID [--name NAME]` acts as another member, so votes, cooldowns and
    /forget-me can be tried as several people. A bad id or name: InvalidInput, one line."""
    if user_id is None:
        return _console_user_id(), name if name is not None else _console_user_name()
    text = str(user_id).strip()
    if not text.isdigit() or not 0 < int(text) < 2**63:
        raise InvalidInput(f"--user must be a Discord user id (a whole number from 1 to 2^63-1), not {str(user_id)[:40]!r}")
    if name is not None and (not name.strip() or len(name) > MAX_NAME_CHARS):
        raise InvalidInput(f"--name must be 1 to {MAX_NAME_CHARS} characters")
    return int(text), name.strip() if name is not None else f"member {text}"


class Console:
    """One person at the terminal: runs each line through the command table and prints the
    answers. Its surface for the features' console commands: `services`, `request` (who acts),
    `interactive`, `say`, `write`, `show`."""

    def __init__(self, services: Services, out: TextIO = sys.stdout, *, interactive: bool = False,
                 member: tuple[int, str] | None = None,
                 commands: tuple[ConsoleCommand, ...] | None = None) -> None:
        self.services = services
        self.out = out
        self.interactive = interactive
        user_id, name = member or console_member()
        self.request = Request(source="console", user_id=user_id, display_name=name, is_admin=True)
        self.commands = commands if commands is not None else command_table()
        self.done = False  # set by /quit

    def say(self, text: str = "") -> None:
        self.write(text + "\n")

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def banner(self) -> None:
        status = ", ".join(f"{name} {h.version}" for name, h in self.services.holders.items() if h.loaded)
        self.say(f"Playbill console. Models: {status or 'none'}. Type /help for commands, /quit to leave.")
        self.say(f"Acting as {self.request.display_name} (user {self.request.user_id}).")
        missing = self.services.missing_models()
        if missing:
            self.say(missing_models_message(missing, self.services.holders, self.services.settings))
        if not self.services.history.available:
            self.say("(history database unavailable: answers are not recorded)")

    async def run(self, lines: TextIO | TerminalLines) -> int:
        self.banner()
        while not self.done:
            if self.interactive:
                self.write(PROMPT)
            if isinstance(lines, TerminalLines):
                line = await lines.readline()
            else:
                line = await asyncio.to_thread(lines.readline)
            if not line:  # end of input
                break
            line = readable_text(line).strip()
            if not line:
                continue
            await self.execute(line)
            await self.services.drain()  # the history rows of this command are written before the next
        return 0

    def find(self, name: str, rest: str) -> ConsoleCommand | None:
        return next((c for c in self.commands if c.name == name and c.accepts(rest)), None)

    async def execute(self, line: str) -> None:
        name, _, rest = line.partition(" ")
        command = self.find(name, rest.strip())
        if command is None:
            self.say(f"unknown command {name[:40]!r}; type /help for the list")
            return
        try:
            await command.run(self, rest.strip())
        except Exception as exc:
            message, _ = describe(exc, context=f"console {name[:40]}")
            self.say(f"error: {message}")

    def help_text(self) -> str:
        """The command table as help: `name usage` and its summary, admin commands marked."""
        lines = []
        for c in self.commands:
            if not c.summary:  # an alias
                continue
            usage = f"{c.name} {c.usage}".rstrip()
            summary = c.summary + (" (admin)" if c.admin else "")
            lines.append(f"{usage:<{HELP_COLUMN}}{summary}" if len(usage) < HELP_COLUMN
                         else f"{usage}\n{'':<{HELP_COLUMN}}{summary}")
        return "\n".join(lines)

    def show(self, response: Response) -> None:
        self.say(response.plain())
        for f in response.files:
            folder = Path(self.services.settings.home) / "console"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{f.filename}"
            path.write_bytes(f.data)
            self.say(f"saved {path}")


def command_table() -> tuple[ConsoleCommand, ...]:
    """Every feature's console commands, in the features' order (imported here, when a console
    starts, so the features may import this module's types)."""
    from playbill.bot.features import CONSOLE_COMMANDS

    return CONSOLE_COMMANDS


def _console_user_id() -> int:
    return os.getuid() if hasattr(os, "getuid") else 0


def _console_user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no login name in some containers
        return "console"


async def run_console(settings: Settings, lines: TextIO | None = None, out: TextIO | None = None,
                      *, services: Services | None = None, member: tuple[int, str] | None = None) -> int:
    """The console loop; `member` (from `console_member`) is who it acts as, default the OS user."""
    lines = lines if lines is not None else sys.stdin
    out = out if out is not None else sys.stdout
    interactive = bool(getattr(lines, "isatty", lambda: False)())
    source: TextIO | TerminalLines = lines
    if lines is sys.stdin and hasattr(sys.stdin, "buffer"):
        # Our own reading of standard input: a terminal through the event loop (Ctrl-C works at
        # the prompt), a pipe as UTF-8 with undecodable bytes replaced (answered and recorded so).
        source = TerminalLines(sys.stdin.fileno()) if interactive else io.TextIOWrapper(
            sys.stdin.buffer, encoding="utf-8", errors="replace")
    own_services = services is None
    if services is None:
        services = Services.create(settings, history=open_history(settings, out))
    refresher = None
    unwatch = watch_services(services)  # metrics and readiness (`[metrics] port`)
    heartbeat = asyncio.get_running_loop().create_task(metrics.keep_heartbeat(), name="heartbeat")
    try:
        await services.refresh_models_async()
        refresher = asyncio.get_running_loop().create_task(services.keep_models_fresh(), name="model-refresh")
        if not interactive:
            services.cooldowns.seconds = 0  # a script's commands are not a member spamming the bot
        return await Console(services, out, interactive=interactive, member=member).run(source)
    finally:
        unwatch()
        heartbeat.cancel()
        if refresher is not None:
            refresher.cancel()
        if isinstance(source, TerminalLines):
            source.close()
        if own_services:
            services.close()
