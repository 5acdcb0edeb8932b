"""Progress of long work (export, import, backup): a bar on a terminal, plain lines otherwise.

Owns only how progress is shown. Descriptions are fixed words chosen by the caller; never
a title, a name or any content.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import (
    Progress as RichProgress,
)

PLAIN_EVERY_S = 2.0  # without a terminal: at most one line this often (plus the last)


class Progress:
    """`with Progress("importing", total, stream) as p: p.advance(n)`.

    On a terminal this draws a rich progress bar on `stream`; otherwise it writes lines
    such as "importing: 500/2000 records (25%)" at most every PLAIN_EVERY_S seconds and
    once at the end, so logs and pipes stay readable."""

    def __init__(
        self, what: str, total: int, stream: TextIO | None = None, unit: str = "records"
    ) -> None:
        self.what = what
        self.total = max(0, total)
        self.unit = unit
        # The CLI escapes what it prints (cli._Printable); a bar's own sequences must pass.
        self.stream = stream or getattr(sys.stderr, "unescaped", sys.stderr)
        self.done = 0
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None
        self._last_line = 0.0

    def __enter__(self) -> Progress:
        if self.stream.isatty():
            from rich.console import Console

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(self.unit),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=self.total)
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=self.done)
            return
        now = time.monotonic()
        if now - self._last_line >= PLAIN_EVERY_S and self.done < self.total:
            self._last_line = now
            self._line()

    def _line(self) -> None:
        pct = f" ({100 * self.done // self.total}%)" if self.total else ""
        print(f"{self.what}: {self.done}/{self.total} {self.unit}{pct}", file=self.stream)
        self.stream.flush()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif kind is None:
            self._line()
