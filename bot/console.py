"""`playbill console`: the bot's commands at a terminal, through the same handlers and database.

Reads one command a line (interactive or from a pipe) until /quit or end of input, and
prints each answer. Requests are recorded with source "console". The person at the
terminal owns the files, so the admin commands are open to them.
"""

from __future__ import annotations

import asyncio
import getpass
import io
import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from playbill.bot import handlers
from playbill.bot.errors import describe
from playbill.bot.messages import Request, Response
from playbill.bot.recording import HistoryGateway
from playbill.bot.services import Services, missing_models_message
from playbill.engine.errors import InvalidInput
from playbill.history.errors import DamagedDatabase, SchemaOutdated
from playbill.terminal import strip_controls

PROMPT = "playbill> "
_SCENE_OPTION = re.compile(r"\s+(length|temperature)=(\S+)\s*$")
HISTORY_OPTIONS = {"user": int, "guild": int, "kind": str, "since": str, "until": str, "search": str,
                   "label": str, "limit": int}


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
    def __init__(self, services: Services, out: TextIO = sys.stdout, *, interactive: bool = False,
                 member: tuple[int, str] | None = None) -> None:
        self.services = services
        self.out = out
        self.interactive = interactive
        user_id, name = member or console_member()
        self.request = Request(source="console", user_id=user_id, display_name=name, is_admin=True)

    def say(self, text: str = "") -> None:
        self.out.write(strip_controls(text) + "\n")  # member text never drives the terminal
        self.out.flush()

    def banner(self) -> None:
        status = ", ".join(f"{name} {h.version}" for name, h in self.services.holders.items() if h.loaded)
        self.say(f"Playbill console. Models: {status or 'none'}. Type /help for commands, /quit to leave.")
        self.say(f"Acting as {self.request.display_name} (user {self.request.user_id}).")
        missing = self.services.missing_models()
        if missing:
            self.say(missing_models_message(missing, self.services.holders))
        if not self.services.history.available:
            self.say("(history database unavailable: answers are not recorded)")

    async def run(self, lines: TextIO | TerminalLines) -> int:
        self.banner()
        while True:
            if self.interactive:
                self.out.write(PROMPT)
                self.out.flush()
            if isinstance(lines, TerminalLines):
                line = await lines.readline()
            else:
                line = await asyncio.to_thread(lines.readline)
            if not line:  # end of input
                break
            line = readable_text(line).strip()
            if not line:
                continue
            if line in ("/quit", "/exit"):
                break
            await self.execute(line)
            await self.services.drain()  # the history rows of this command are written before the next
        return 0

    async def execute(self, line: str) -> None:
        command, _, rest = line.partition(" ")
        rest = rest.strip()
        try:
            if command == "/help":
                self.say(handlers.HELP)
            elif command == "/review-sentiment":
                self.show(await handlers.review_sentiment(self.services, self.request, rest))
            elif command == "/write-scene":
                await self.write_scene(rest)
            elif command == "/history":
                self.show(await handlers.admin_history(self.services, self.request, **_history_options(rest)))
            elif command == "/stats":
                since = _key_values(rest, {"since": str}).get("since", "7d")
                self.show(await handlers.admin_stats(self.services, self.request, since=since))
            elif command == "/model-status":
                self.show(await handlers.model_status(self.services, self.request))
            elif command == "/rollback":
                self.show(await handlers.rollback(self.services, self.request, rest))
            elif command == "/retrain":
                self.show(await handlers.retrain(self.services, self.request, rest or "all"))
            elif command == "/feedback" and not rest:
                self.show(await handlers.admin_feedback(self.services, self.request))
            elif command == "/feedback":
                self.show(await handlers.give_feedback(self.services, self.request, *_feedback_options(rest)))
            elif command == "/forget-me":
                self.show(await handlers.forget_me(self.services, self.request))
            else:
                self.say(f"unknown command {command[:40]!r}; type /help for the list")
        except Exception as exc:
            message, _ = describe(exc, context=f"console {command[:40]}")
            self.say(f"error: {message}")

    async def write_scene(self, rest: str) -> None:
        prompt, length, temperature = _scene_options(rest)
        streamed = False
        async for update in handlers.write_scene(self.services, self.request, prompt, length, temperature):
            if update.done:
                if streamed:
                    self.say()
                else:
                    self.say(update.text)
                self.say(f"(playwright {update.model_version})")
            elif self.interactive:  # at a terminal, show the scene as it is written
                if not streamed:
                    self.out.write(strip_controls(update.text))
                    streamed_len = len(update.text)
                    streamed = True
                else:
                    self.out.write(strip_controls(update.text[streamed_len:]))
                    streamed_len = len(update.text)
                self.out.flush()

    def show(self, response: Response) -> None:
        text = response.plain()
        if response.feedback_for:
            text += f"\n(right or wrong? /feedback {response.feedback_for} right|wrong)"
        self.say(text)
        for f in response.files:
            folder = Path(self.services.settings.home) / "console"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{f.filename}"
            path.write_bytes(f.data)
            self.say(f"saved {path}")


def _scene_options(rest: str) -> tuple[str, int | None, float | None]:
    """(prompt, length, temperature) from `PROMPT [length=N] [temperature=T]`."""
    options: dict[str, Any] = {}
    while True:
        m = _SCENE_OPTION.search(" " + rest)
        if not m:
            break
        key, value = m.group(1), m.group(2)
        try:
            options[key] = int(value) if key == "length" else float(value)
        except ValueError:
            raise InvalidInput(f"{key} must be a number (got {value!r})") from None
        rest = (" " + rest)[: m.start()].strip()
    if len(rest) >= 2 and rest[0] == rest[-1] and rest[0] in "\"'":
        rest = rest[1:-1]
    return rest, options.get("length"), options.get("temperature")


def _key_values(rest: str, allowed: dict[str, type]) -> dict[str, Any]:
    try:
        tokens = shlex.split(rest)
    except ValueError as exc:
        raise InvalidInput(f"could not read the options: {exc}") from None
    values: dict[str, Any] = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or key not in allowed:
            raise InvalidInput(f"unknown option {token!r}; options are {', '.join(k + '=' for k in allowed)}")
        try:
            values[key] = allowed[key](value)
        except ValueError:
            raise InvalidInput(f"{key} must be a number (got {value!r})") from None
    return values


def _feedback_options(rest: str) -> tuple[int, str]:
    parts = rest.split()
    if len(parts) != 2 or not parts[0].isdigit() or parts[1] not in handlers.VERDICTS:
        raise InvalidInput("usage: /feedback ID right|wrong (the id is shown under each verdict)")
    return int(parts[0]), parts[1]


def _history_options(rest: str) -> dict[str, Any]:
    values = _key_values(rest, HISTORY_OPTIONS)
    if "limit" in values and not 1 <= values["limit"] <= 1000:
        raise InvalidInput("limit must be between 1 and 1000")
    return values


def _console_user_id() -> int:
    return os.getuid() if hasattr(os, "getuid") else 0


def _console_user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no login name in some containers
        return "console"


async def run_console(settings: Any, lines: TextIO | None = None, out: TextIO | None = None,
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
    try:
        await services.refresh_models_async()
        refresher = asyncio.get_running_loop().create_task(_refresh_forever(services), name="model-refresh")
        if not interactive:
            services.cooldowns.seconds = 0  # a script's commands are not a member spamming the bot
        return await Console(services, out, interactive=interactive, member=member).run(source)
    finally:
        if refresher is not None:
            refresher.cancel()
        if isinstance(source, TerminalLines):
            source.close()
        if own_services:
            services.close()


async def _refresh_forever(services: Services) -> None:
    """Swap in a newly promoted version (the warm-up's, a retrain's) while the console is open."""
    while True:
        await asyncio.sleep(services.settings.bot.model_refresh_seconds)
        await services.refresh_models_async()


def open_history(settings: Any, out: TextIO | None = None) -> Any:
    """The history gateway (schema upgraded to head); a disabled one if it cannot be opened."""
    try:
        gateway = HistoryGateway.open(settings.database_url, settings.spool_dir)
    except (SchemaOutdated, DamagedDatabase):  # refuse to start: the line says what to do
        raise
    except Exception as exc:  # the console still answers without a database
        message, _ = describe(exc, context="opening the history database")
    else:
        return gateway
    if out is not None:
        out.write(f"warning: history database unavailable: {message}\n")
    return HistoryGateway(None)
