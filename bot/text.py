"""Showing text on Discord safely and within its limits.

User text is escaped (markdown and mentions) before it is shown; model output goes into a
code block whose backticks are broken up so nothing can close the block early. Replies also
carry AllowedMentions.none(), so even a missed escape cannot ping anyone.
"""

from __future__ import annotations

import re

from discord.utils import escape_markdown, escape_mentions

MESSAGE_LIMIT = 2000
EMBED_DESCRIPTION_LIMIT = 4096
EMBED_FIELD_LIMIT = 1024
ZWSP = "\u200b"
CODE_FENCE = "```"

_MENTION = re.compile(r"<([@#])")


def safe(text: str) -> str:
    """User text as literal Discord text: no formatting, no @everyone/@here, and user, role
    and channel mentions broken so they show as typed instead of as someone's name."""
    return _MENTION.sub("<\\1" + ZWSP, escape_mentions(escape_markdown(text, as_needed=False)))


def trim(text: str, limit: int, ellipsis: str = "…") -> str:
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(ellipsis))] + ellipsis


def quote_block(text: str, limit: int) -> str:
    """Escaped user text, trimmed so the escaped form fits `limit`."""
    shown = safe(text)
    if len(shown) <= limit:
        return shown
    # trim the raw text until its escaped form fits (escaping only grows text)
    raw = text[:limit]
    while raw and len(safe(raw)) > limit - 1:
        raw = raw[: max(0, len(raw) - max(1, (len(safe(raw)) - limit) + 1))]
    return safe(raw) + "…"


def defuse_code(text: str) -> str:
    """Text that cannot end a code block: every backtick is followed by a zero-width space."""
    return text.replace("`", "`" + ZWSP)


def code_block(text: str) -> str:
    return f"{CODE_FENCE}\n{defuse_code(text) or ' '}\n{CODE_FENCE}"


CODE_BLOCK_OVERHEAD = len(code_block("")) - 1  # fences and newlines around the body


def bar(probability: float, width: int = 10) -> str:
    """0.73 -> '███████░░░ 73%'."""
    p = min(1.0, max(0.0, float(probability)))
    filled = round(p * width)
    return "█" * filled + "░" * (width - filled) + f" {p:.0%}"


def split_for_messages(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` characters, broken at line ends or spaces where possible."""
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = rest.rfind("\n", 0, limit + 1)
        if cut < limit // 2:
            cut = rest.rfind(" ", 0, limit + 1)
        if cut < limit // 2:
            cut = limit
        pieces.append(rest[:cut].rstrip("\n"))
        rest = rest[cut:].lstrip("\n")
    if rest or not pieces:
        pieces.append(rest)
    return pieces


def scene_messages(scene: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """A scene as one or more code-block messages, each within Discord's message limit."""
    body_limit = limit - CODE_BLOCK_OVERHEAD - 1
    pieces = split_for_messages(defuse_code(scene), body_limit)
    return [f"{CODE_FENCE}\n{piece or ' '}\n{CODE_FENCE}" for piece in pieces]
