"""Everything the CLI writes goes through here: the escaping stream, tables, JSON, times."""

from __future__ import annotations

import json
import re
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
    cells = [[printable(str(c), cell=True) for c in row] for row in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def when(ms: int | None) -> str:
    if not ms:
        return "never"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
