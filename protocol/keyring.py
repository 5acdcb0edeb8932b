"""A reader's circle keys, and the memory of which slot opened its last sealed payloads.

A sealed payload hides its recipients (docs/spec/20-records.md), so a reader tries its keys
one by one: its own X25519 recipient slot (a scalar multiplication, the cost of ~15 failed
slot trials), the slot of each network it is in, then every epoch key of every circle it is
in. Records arrive and are read in runs (a circle's history, a network's guides): the key
that opened the last one most likely opens the next. A `KeyRing` is the tuple of circle keys
`unseal` takes, plus that memory: `unseal` tries the few most recently successful ways
first, then the rest in its usual order. The memory only changes the order of the trials,
never which payloads open; it stays in this process and is never written or sent. Pure: no
I/O; safe to share between threads (each update replaces one tuple).
"""

from __future__ import annotations

from collections.abc import Iterable

from protocol import limits
from protocol.errors import LocalProtocolError

OWN = "own"  # our X25519 recipient slot
NETWORK = "network"  # a network's slot, under that network's key
CIRCLE = "circle"  # a circle's slot, under one of its epoch keys

Way = tuple[str, bytes]  # (OWN, b""), (NETWORK, network key) or (CIRCLE, epoch key)


class KeyRing(tuple[bytes, ...]):
    """Circle keys (a tuple, equal to the plain tuple of the same keys) that remember the
    ways that opened the latest payloads, most recent first (at most RECENT_OPENERS)."""

    _recent: tuple[Way, ...]

    def __new__(cls, keys: Iterable[bytes] = ()) -> KeyRing:
        ring = super().__new__(cls, keys)
        if len(ring) > limits.MAX_CIRCLE_KEYS_TRIED:
            raise LocalProtocolError("too many circle keys")
        for key in ring:
            if not isinstance(key, bytes) or len(key) != 32:
                raise LocalProtocolError("circle keys must be 32 bytes")
        ring._recent = ()
        return ring

    def __repr__(self) -> str:  # never the keys themselves
        return f"KeyRing({len(self)} keys)"

    @property
    def recent(self) -> tuple[Way, ...]:
        return self._recent

    def opened_by(self, way: Way) -> None:
        """`way` opened a payload: try it first next time."""
        recent = self._recent
        if recent and recent[0] == way:
            return
        kept = tuple(w for w in recent if w != way)
        self._recent = (way, *kept)[: limits.RECENT_OPENERS]
