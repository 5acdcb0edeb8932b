"""Traffic with one peer, as the know-who side sees it: the sliding window each peer's
queries and introduction requests are held to, and sending a reply on a connection that
may have closed meanwhile.

Never decides what is sent (node.query_network and node.introductions do).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from contextlib import suppress

from node.connection import PeerConnection
from protocol.errors import LocalProtocolError


class RateWindow:
    """At most `limit` events per key in any `window` seconds (sliding)."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._events: dict[bytes, deque[float]] = {}

    def allow(self, key: bytes, now: float, *, reserve: int = 0) -> bool:
        """Count one event unless `limit - reserve` are already in the window (`reserve`:
        what is kept for callers that pass none)."""
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - self.window:
            events.popleft()
        if len(events) >= self.limit - reserve:
            return False
        events.append(now)
        return True


def send_quietly(conn: PeerConnection, make: Callable[[], bytes]) -> None:
    """Send what `make` frames on `conn`, unless the connection closed meanwhile."""
    with suppress(LocalProtocolError):
        conn.send(make())
