"""What a peer may send us unasked during a reconciliation round it started
(docs/spec/60-revocation-and-defences.md, "Rounds").

Pure bookkeeping for the responder: the round's start, what reconciliation announced
(protocol.reconcile's `take_announced`), and the records and bytes charged to the round.
It never reads a clock or a store: the caller passes `now` (seconds, any monotonic clock).
"""

from __future__ import annotations

from bisect import bisect_right

from protocol import limits
from protocol.errors import QuotaExceeded, RateLimited

_TS_BYTES = 8


def item_key(created: int, rid: bytes) -> bytes:
    """A record's reconciliation key: u64 big-endian `created` || id (as protocol.reconcile)."""
    return created.to_bytes(_TS_BYTES, "big") + rid


class RoundLedger:
    """One round a peer opened with us, from its first Reconcile to its SyncDone.

    An unasked record belongs to the round only if reconciliation announced it: its id was
    in one of the initiator's IdLists and we lacked it, or its key falls in a range we
    answered with our whole IdList (the only places the initiator learns what we lack).
    Anything else unasked is a push, on the push allowance. A round admits at most
    MAX_ROUND_RECORDS and MAX_ROUND_BYTES of unasked records (more: QuotaExceeded), and
    admits none once MAX_ROUND_SECONDS have passed since it opened.
    """

    def __init__(self, now: float) -> None:
        self.started = now
        self.records = 0
        self.bytes = 0
        self._ids: set[bytes] = set()
        self._lowers: list[bytes] = []  # sorted, disjoint [lower, upper) ranges
        self._uppers: list[bytes] = []

    def announce(self, ids: list[bytes], ranges: list[tuple[bytes, bytes]]) -> None:
        self._ids.update(ids)
        if ranges:
            pairs = sorted([*zip(self._lowers, self._uppers, strict=True), *ranges])
            self._lowers = [lo for lo, _ in pairs]
            self._uppers = [hi for _, hi in pairs]

    def expired(self, now: float) -> bool:
        return now - self.started > limits.MAX_ROUND_SECONDS

    def announced(self, rid: bytes, created: int | None) -> bool:
        """Whether reconciliation announced this record (`created`: None if unknown)."""
        if rid in self._ids:
            return True
        if created is None or not 0 <= created < 1 << 63:
            return False
        key = item_key(created, rid)
        at = bisect_right(self._lowers, key) - 1
        return at >= 0 and key < self._uppers[at]

    def charge(self, records: int, size: int) -> None:
        """Count announced unasked records against the round; QuotaExceeded past a bound."""
        self.records += records
        self.bytes += size
        if self.records > limits.MAX_ROUND_RECORDS or self.bytes > limits.MAX_ROUND_BYTES:
            raise QuotaExceeded("sent more unasked records than a round allows")


def check_round_gap(last_started: float | None, now: float) -> None:
    """Responder: RateLimited if the peer opens a round too soon after its previous one."""
    if last_started is not None and now - last_started < limits.MIN_ROUND_GAP_S:
        raise RateLimited("reconciliation rounds opened too often")
