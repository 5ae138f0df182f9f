"""A feature's commands at `playbill console`: each feature slice (bot/cogs/*.py) lists its own
`ConsoleCommand`s beside its cog, and the console dispatches from the one table they make
(`playbill.bot.console.command_table`), which its /help text is generated from."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playbill.bot.console import Console


@dataclass(frozen=True)
class ConsoleCommand:
    """`name usage`: `summary` in the help. `run(console, rest)` answers one line (`rest` is what
    follows the name). Two commands may share a name when one takes arguments and the other
    none (`/feedback ID right|wrong` votes, `/feedback` alone shows what the votes teach)."""

    name: str
    usage: str
    summary: str
    run: Callable[[Console, str], Awaitable[None]]
    admin: bool = False
    takes_arguments: bool | None = None  # None: with or without; else only this form of the name

    def accepts(self, rest: str) -> bool:
        return self.takes_arguments is None or self.takes_arguments == bool(rest)
