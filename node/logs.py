"""Log setup for `canopy run`: readable text or one JSON object per line, on stderr.

Owns the log format only. What is logged is decided where it happens, under one rule:
events, counts, reasons and short peer ids; never content, peer or contact names, addresses
of people, phone numbers or key material (tests/test_operations.py scans the logs for a
marker). The one name that is logged, by design, is a staff user's name, and only in the web
app's audit log (canopy.web.audit: who did which action, never what it carried).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """{"ts": ISO-8601 UTC, "level", "logger", "msg"[, "exc"]} on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(fmt: str, level: str, stream: TextIO | None = None) -> None:
    """Route every logger to `stream` (stderr) in `fmt` ("text" or "json") at `level`."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party chatter that could name files or hosts at debug level stays quiet.
    for noisy in ("aiosqlite", "asyncio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
