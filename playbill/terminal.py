"""Text from members made harmless for a terminal: the one rule, used by every output that can
hold what a member typed (the CLI's tables and CSV, the console, the log file).

A review can carry escape sequences (`ESC ]0;title BEL` retitles a terminal, `ESC [2J` clears
it), C1 controls (`\\x9b` is a one-byte CSI on some terminals) and bidi overrides (`U+202E`
shows text backwards, hiding what it says). `strip_controls` drops them (for text a person
reads); `escape_controls` writes them out visibly (`\\x1b`) for data a person may still want to
read exactly, such as a CSV export. Tab and newline are kept by both: they move the cursor but
cannot drive the terminal. `json_escape_controls` finishes JSON text: json.dumps escapes C0
controls itself but leaves DEL, C1 and bidi controls raw.

Imports nothing of Playbill's (a leaf, like playbill.settings), so every layer may use it.
"""

from __future__ import annotations

import re

# One escape sequence: CSI (ESC [ ... final byte), OSC / DCS / APC / PM / SOS strings up to
# BEL or ST, any other two-byte ESC x, and the 8-bit CSI (0x9b ...).
_SEQUENCE = (
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[ -~]?"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
# Single characters: C0 controls but tab and newline, DEL, C1 controls, and the bidi
# controls (marks, embeddings, overrides, isolates).
_CONTROL_CHARS = r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
_SEQUENCE_OR_CONTROL = re.compile(f"{_SEQUENCE}|{_CONTROL_CHARS}")
_CONTROL = re.compile(_CONTROL_CHARS.replace(r"\x0b-\x1f", r"\x0b\x0c\x0e-\x1f"))  # CR is data in a CSV cell


def strip_controls(text: str) -> str:
    """`text` without escape sequences, control characters (but tab and newline) or bidi controls."""
    return _SEQUENCE_OR_CONTROL.sub("", text)


def escape_controls(text: str) -> str:
    """`text` with each control character written out visibly (ESC as `\\x1b`, U+202E as `\\u202e`);
    tab, newline and carriage return are kept as they are (data in a CSV cell)."""
    return _CONTROL.sub(_visible, text)


def json_escape_controls(dumped: str) -> str:
    """JSON text (json.dumps with ensure_ascii=False) with the controls it left raw as \\uXXXX
    escapes: the same data for a JSON reader, nothing for a terminal to act on."""
    return _CONTROL.sub(lambda match: f"\\u{ord(match.group()):04x}", dumped)


def has_controls(text: str) -> bool:
    """Whether `text` holds anything `strip_controls` would remove."""
    return _SEQUENCE_OR_CONTROL.search(text) is not None


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
