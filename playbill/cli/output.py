"""One renderer per output format (table, csv, json), shared by every listing the CLI prints.

A command queries once and describes what it found as a `Listing` (its items, the record each
item is in JSON and CSV, and the columns a table shows) or a `Report` (a JSON object, a CSV
listing, and the blocks a person reads); `render` hands it to the renderer of the format asked
for. The rules of each format live here and nowhere else:

- table: one line per row, cut to the terminal, text never read as rich markup, terminal
  control sequences dropped (playbill.terminal);
- csv: RFC 4180 (CRLF between records), nested values as JSON, control characters escaped
  visibly and OWASP's formula rule (a cell starting with = + - @ tab or CR gets a leading ');
- json: everything, exact (control characters as \\uXXXX escapes).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from playbill.terminal import escape_controls, json_escape_controls, strip_controls

FORMATS = ("table", "csv", "json")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # OWASP's CSV injection rule


@dataclass(frozen=True)
class Column:
    """One column of a table: its header and the text of its cell for an item."""

    name: str
    text: Callable[[Any], Any]  # the cell's text (None: empty)
    width: int | None = None  # cut to this many characters (None: as long as its longest cell)
    flexible: bool = False  # shares with the other flexible columns what the rest leave of the terminal
    numeric: bool = False  # right-aligned
    shown_from: int = 0  # shown only on a terminal at least this wide
    style: Callable[[Any], str | None] | None = None  # a rich style for the cell (e.g. red for a failure)


@dataclass
class Listing:
    """Rows of one kind: `record` gives an item as JSON does, `columns` as a table does."""

    items: Sequence[Any]
    fields: Sequence[str]  # the record's keys in order (the CSV header, also when there are no items)
    record: Callable[[Any], dict[str, Any]]
    columns: Sequence[Column] = ()
    empty: str = "nothing to show"
    title: str | None = None
    note: str | None = None  # a line on stderr under the table (e.g. "more rows exist")


@dataclass
class Report:
    """A result that is more than rows: `data` as JSON, `table` as CSV, `blocks` (lines and
    listings, in order) for a person."""

    data: dict[str, Any]
    table: Listing
    blocks: list[str | Listing] = field(default_factory=list)


def render(view: Listing | Report, fmt: str, out: TextIO | None = None) -> None:
    """Write `view` in `fmt` (one of FORMATS) to `out` (default: standard output)."""
    out = out or sys.stdout
    if fmt == "json":
        write_json(view, out)
    elif fmt == "csv":
        write_csv(view.table if isinstance(view, Report) else view, out)
    elif fmt == "table":
        if isinstance(view, Report):
            for block in view.blocks:
                write_table(block, out) if isinstance(block, Listing) else write_line(block, out)
        else:
            write_table(view, out)
    else:
        raise ValueError(f"unknown output format {fmt!r} (one of {', '.join(FORMATS)})")


# --- json --------------------------------------------------------------------------------


def write_json(view: Listing | Report, out: TextIO) -> None:
    data = view.data if isinstance(view, Report) else [view.record(item) for item in view.items]
    out.write(json_escape_controls(json.dumps(data, ensure_ascii=False, indent=1, default=str)) + "\n")


# --- csv ---------------------------------------------------------------------------------


def csv_cell(value: Any) -> str:
    """A value as a CSV cell: nested values as JSON, None empty, control characters escaped
    visibly, and a leading ' on text a spreadsheet would run as a formula."""
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False)
    text = escape_controls(str(value))
    if isinstance(value, str) and text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def write_csv(listing: Listing, out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(listing.fields)
    for item in listing.items:
        record = listing.record(item)
        writer.writerow([csv_cell(record.get(name)) for name in listing.fields])


# --- table -------------------------------------------------------------------------------


def _console(out: TextIO):
    from rich.console import Console

    return Console(file=out, highlight=False)


def cell(value: Any, width: int | None = None):
    """One line of plain text (never rich markup, no terminal controls), cut to `width`."""
    from rich.text import Text

    text = "" if value is None else " ".join(strip_controls(str(value)).split())
    if width is not None and len(text) > width:
        text = text[: max(1, width - 1)] + "…"
    return Text(text)


def write_line(line: str, out: TextIO) -> None:
    """A line of the report as plain text (terminal controls dropped)."""
    from rich.text import Text

    _console(out).print(Text(strip_controls(line)))


def write_table(listing: Listing, out: TextIO) -> None:
    from rich import box
    from rich.table import Table

    console = _console(out)
    if not listing.items:
        console.print(cell(listing.empty))
        return
    columns = [c for c in listing.columns if console.width >= c.shown_from]
    # Every cell is one line: the flexible columns share what the others leave.
    texts = [[column.text(item) for column in columns] for item in listing.items]
    natural = [max(len(column.name), *(len(str(row[i] or "")) for row in texts)) for i, column in enumerate(columns)]
    flexible = [i for i, c in enumerate(columns) if c.flexible]
    taken = sum(natural[i] if c.width is None else min(c.width, natural[i])
                for i, c in enumerate(columns) if i not in flexible)
    share = max(12, (console.width - taken - 2 * len(columns)) // max(1, len(flexible)))
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, collapse_padding=True,
                  title=listing.title, title_justify="left")
    for column in columns:
        table.add_column(column.name, no_wrap=True, justify="right" if column.numeric else "left")
    for item, row in zip(listing.items, texts, strict=True):
        cells = []
        for i, column in enumerate(columns):
            shown = cell(row[i], share if i in flexible else column.width)
            style = column.style(item) if column.style else None
            if style:
                shown.stylize(style)
            cells.append(shown)
        table.add_row(*cells)
    console.print(table)
    if listing.note:
        print(listing.note, file=sys.stderr)
