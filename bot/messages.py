"""The plain request and response the features speak; Discord and the console adapt them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from playbill.terminal import strip_controls

Source = Literal["discord", "console", "cli"]


@dataclass(frozen=True)
class Request:
    """Who asks, from where. `is_admin` is decided by the adapter (Discord permissions, or the
    person at the local console, who owns the files anyway)."""

    source: Source
    user_id: int
    guild_id: int | None = None
    channel_id: int | None = None
    display_name: str = ""
    is_admin: bool = False


@dataclass
class Field:
    name: str
    value: str
    inline: bool = True


@dataclass
class EmbedData:
    title: str
    description: str = ""
    colour: int = 0x5865F2
    fields: list[Field] = field(default_factory=list)
    footer: str = ""


@dataclass
class FileData:
    filename: str
    data: bytes


@dataclass
class Response:
    """What a feature says to a person: Discord sends it (discord_io.reply), the console prints `plain()`."""

    text: str = ""
    embed: EmbedData | None = None
    files: list[FileData] = field(default_factory=list)
    ephemeral: bool = False

    def plain(self) -> str:
        """The response as terminal text (the console)."""
        parts = [self.text] if self.text else []
        if self.embed is not None:
            parts.append(f"== {self.embed.title} ==")
            if self.embed.description:
                parts.append(self.embed.description)
            parts += [f"{f.name}: {f.value}" for f in self.embed.fields]
            if self.embed.footer:
                parts.append(f"({self.embed.footer})")
        parts += [f"[file {f.filename}: {len(f.data)} bytes]" for f in self.files]
        return terminal_text("\n".join(parts))


_ESCAPED = re.compile(r"\\([*_~|`>\\#\-\[\]()])")


def terminal_text(text: str) -> str:
    """Discord-safe text made readable and harmless at a terminal: escapes, zero-width spaces and
    bold markers removed (a terminal renders no markdown and pings nobody), and whatever could
    drive the terminal (escape sequences, control and bidi characters a member typed) dropped
    by the one terminal rule, `playbill.terminal.strip_controls`."""
    text = strip_controls(text).replace("\u200b", "").replace("**", "")
    text = re.sub(r"`([^`\n]*)`", r"\1", text)
    return _ESCAPED.sub(r"\1", text)
