"""The node's one wall clock, in milliseconds since the Unix epoch.

Every wall-clock read in node/ and bench/ goes through `now_ms`. protocol/ never reads it:
there time is an argument, so the protocol's tests need no clock tricks.
"""

from __future__ import annotations

import time


def now_ms() -> int:
    """The wall clock now, in whole milliseconds (the unit of `created` and `expires`)."""
    return int(time.time() * 1000)
