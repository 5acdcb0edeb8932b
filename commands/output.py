"""Everything the CLI writes goes through here: the escaping stream, tables (rich), JSON,
times."""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

# What must never reach a terminal raw, whoever wrote it (a peer's name, a guide's title or
# text, an error message): C0 and C1 controls but tab and newline (ESC starts CSI and OSC
# sequences: clear screen, window title, hyperlinks), DEL, the bidi embeddings, overrides,
# isolates and marks, line and paragraph separators, and lone surrogates.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNPRINTABLE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}\u2028\u2029\ud800-\udfff]")
_UNPRINTABLE_IN_CELL = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}\u2028\u2029\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"  # also a valid JSON escape: JSON lines stay JSON


def printable(text: str, *, cell: bool = False) -> str:
    """`text` with every character above shown as \\uXXXX; `cell`: tab and newline too."""
    if text.isascii() and text.isprintable():  # no control at all: nothing to escape
        return text
    return (_UNPRINTABLE_IN_CELL if cell else _UNPRINTABLE).sub(_escape, text)


class Printable:
    """A text stream that writes `printable(text)` to the stream it wraps: `main` puts one
    around stdout and stderr, so every line the CLI (or `canopy run`'s log) writes goes
    through it. --json output is unchanged by it: JSON already escapes all of these."""

    def __init__(self, stream: TextIO) -> None:
        self.unescaped = stream

    def write(self, text: str) -> int:
        self.unescaped.write(printable(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.unescaped, name)


def print_json(value: object) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def table(rows: list[list[str]], header: list[str]) -> None:
    """Columns under `header`, two spaces apart, drawn by rich. Every cell is escaped first
    and handed to rich as `Text` (never markup), so nothing a peer wrote is interpreted. On
    a terminal the header is bold and rich fits the table to its width; otherwise the lines
    are exactly the columns, nothing wrapped or cut, no trailing spaces (scripts parse it)."""
    from rich.cells import cell_len  # rich loads only for a command that draws a table

    cells = [[printable(str(c), cell=True) for c in row] for row in [header, *rows]]
    if _on_terminal():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        grid = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold")
        for title in cells[0]:
            grid.add_column(Text(title), no_wrap=False)
        for row in cells[1:]:
            grid.add_row(*(Text(c) for c in row))
        # rich's own styling must reach the terminal unescaped; the cells already are.
        Console(file=getattr(sys.stdout, "unescaped", sys.stdout)).print(grid)
        return
    # What rich draws here, without rich's per-cell rendering (seconds for 10,000 rows):
    # each cell padded to its column's width in terminal cells, two spaces between.
    sizes = [[len(c) if c.isascii() else cell_len(c) for c in row] for row in cells]
    widths = [max(r[i] for r in sizes) for i in range(len(header))]
    lines = []
    for row, size in zip(cells, sizes, strict=True):
        padded = [c + " " * (w - n) for c, n, w in zip(row, size, widths, strict=True)]
        lines.append("  ".join(padded).rstrip())
    print("\n".join(lines))


def _on_terminal() -> bool:
    return sys.stdout.isatty()


def fields(pairs: Sequence[tuple[str, object]], *, width: int, indent: str = "") -> None:
    """`label:` and value lines, the values aligned at column `width` after `indent`."""
    for label, value in pairs:
        print(f"{indent}{label + ':':<{width}}{value}")


Row = dict[str, Any]


def print_rows(
    as_json: bool, listing: dict[str, list[Row]], empty: str, cells: Callable[[Row], Row]
) -> bool:
    """What a listing command prints: with --json `listing` ({name: rows}), else `empty`
    when there are no rows, else a table of `cells` of each row ({header: cell}, in
    order). True when it printed a table."""
    (rows,) = listing.values()
    if as_json:
        print_json(listing)
        return False
    if not rows:
        print(empty)
        return False
    shown = [cells(row) for row in rows]
    table([list(row.values()) for row in shown], list(shown[0]))
    return True


def when(ms: int | None) -> str:
    if not ms:
        return "never"
    return _minute(ms // 60_000)


@functools.lru_cache(maxsize=4096)  # a listing of thousands of rows spans few minutes
def _minute(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
