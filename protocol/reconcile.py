"""Range-based set reconciliation of (timestamp, id) items (docs/spec/35-reconcile.md).

Owns one side of one reconciliation: the range codec, the fingerprints and the splitting
rules (after Negentropy v1). Traffic grows with the difference between the two sets, not
their size. It never fetches records or talks to a store: it only learns which ids differ.

States and transitions are the table `_TRANSITIONS` below; any error from any state goes
to FAILED, and anything the table does not list raises UnexpectedMessage (a peer's fault)
or LocalProtocolError (our misuse).
"""

from __future__ import annotations

import enum
import hashlib
import operator
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from protocol import labels, limits
from protocol.encoding import as_bytes, as_int, as_list, pack, unpack
from protocol.errors import DecodeError, LocalProtocolError, UnexpectedMessage

Item = tuple[int, bytes]  # (timestamp_ms >= 0, 32-byte id)

RECONCILE_VERSION = 1
ID_BYTES = 32
FINGERPRINT_BYTES = 16
MODE_SKIP = 0
MODE_FINGERPRINT = 1
MODE_IDLIST = 2

_MOD = 1 << 256
_TS_BYTES = 8  # a key is u64 big-endian timestamp || 32-byte id (or zero-padded prefix)
_ZERO_KEY = bytes(_TS_BYTES + ID_BYTES)
_INF_KEY = b"\xff" * (_TS_BYTES + ID_BYTES)  # above every key: timestamps are < 2^63
_ENVELOPE_BYTES = 7  # fixarray + version + bin32 header: an upper bound on msgpack overhead
_MAX_BOUND_BYTES = 9 + 1 + ID_BYTES  # varint of a timestamp delta < 2^63, length, prefix
_INF_FINGERPRINT_BYTES = 1 + 1 + 1 + FINGERPRINT_BYTES  # bound(inf) || mode || fingerprint
# Room always kept free so a message can be closed: a pending Skip and a Fingerprint to inf.
_RESERVE = _MAX_BOUND_BYTES + 1 + _INF_FINGERPRINT_BYTES
# Progress needs the first answered range of every message to fit whole: a split into the
# most sub-ranges, or an id list just under the largest threshold, after a pending Skip.
assert (
    _ENVELOPE_BYTES
    + 2 * _RESERVE
    + max(
        limits.MAX_RECONCILE_BRANCHING * (_MAX_BOUND_BYTES + 1 + FINGERPRINT_BYTES),
        _MAX_BOUND_BYTES + 1 + 3 + limits.MAX_RECONCILE_IDLIST_THRESHOLD * ID_BYTES,
    )
    <= limits.MIN_RECONCILE_MESSAGE_BYTES
)


class ReconcileState(enum.Enum):
    """Where one side of a reconciliation stands. See the transition table `_TRANSITIONS`."""

    IDLE = "idle"
    AWAIT_REPLY = "await-reply"
    RESPONDING = "responding"
    DONE = "done"
    FAILED = "failed"


class _Input(enum.Enum):
    INITIATE = "initiate()"
    # reconcile(msg), named by what processing the message left us with:
    ANSWER_OPEN = "answered, Fingerprint ranges left open"  # responder
    ANSWER_FINAL = "answered, no Fingerprint range"  # responder: the initiator is done
    CONTINUE = "next message"  # initiator: mismatching ranges remain
    COMPLETE = "nothing left to send"  # initiator: have/need are complete


# The one transition table. An error while processing goes to FAILED from any state;
# anything not listed is refused and leaves the state FAILED too (a message after DONE is
# the peer's fault: UnexpectedMessage; initiate() twice is ours: LocalProtocolError).
#
#   state        input          output                 next
#   IDLE         INITIATE       first message          AWAIT_REPLY  (we are the initiator)
#   IDLE         ANSWER_OPEN    reply                  RESPONDING   (we are the responder)
#   IDLE         ANSWER_FINAL   reply                  DONE
#   RESPONDING   ANSWER_OPEN    reply                  RESPONDING
#   RESPONDING   ANSWER_FINAL   reply                  DONE
#   AWAIT_REPLY  CONTINUE       next message           AWAIT_REPLY
#   AWAIT_REPLY  COMPLETE       None                   DONE
_TRANSITIONS: dict[tuple[ReconcileState, _Input], ReconcileState] = {
    (ReconcileState.IDLE, _Input.INITIATE): ReconcileState.AWAIT_REPLY,
    (ReconcileState.IDLE, _Input.ANSWER_OPEN): ReconcileState.RESPONDING,
    (ReconcileState.IDLE, _Input.ANSWER_FINAL): ReconcileState.DONE,
    (ReconcileState.RESPONDING, _Input.ANSWER_OPEN): ReconcileState.RESPONDING,
    (ReconcileState.RESPONDING, _Input.ANSWER_FINAL): ReconcileState.DONE,
    (ReconcileState.AWAIT_REPLY, _Input.CONTINUE): ReconcileState.AWAIT_REPLY,
    (ReconcileState.AWAIT_REPLY, _Input.COMPLETE): ReconcileState.DONE,
}
# The states in which reconcile(msg) reads a message at all.
_READS = frozenset(state for state, event in _TRANSITIONS if event is not _Input.INITIATE)


@dataclass(frozen=True, slots=True)
class Bound:
    """An upper bound: items strictly below (timestamp, prefix zero-padded) are in the range.

    `timestamp is None` is infinity (above every item); its prefix is empty.
    """

    timestamp: int | None
    prefix: bytes = b""

    @property
    def key(self) -> bytes:
        if self.timestamp is None:
            return _INF_KEY
        return self.timestamp.to_bytes(_TS_BYTES, "big") + self.prefix.ljust(ID_BYTES, b"\0")


INFINITY = Bound(None)


@dataclass(frozen=True, slots=True)
class Range:
    """One range of a message: everything from the previous bound up to `upper`."""

    upper: Bound
    mode: int
    fingerprint: bytes = b""
    ids: tuple[bytes, ...] = ()


# Varints: base 128, most significant digit first, high bit set on all but the last byte.


def encode_varint(value: int) -> bytes:
    if not 0 <= value < 1 << 64:
        raise LocalProtocolError("varint out of range")
    out = bytearray([value & 0x7F])
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.reverse()
    return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise DecodeError("truncated varint")
    if data[pos] == 0x80:
        raise DecodeError("varint not in shortest form")
    value = 0
    for i in range(pos, min(pos + 10, len(data))):
        byte = data[i]
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            if value >= 1 << 64:
                raise DecodeError("varint out of range")
            return value, i + 1
    raise DecodeError("truncated or overlong varint")


def fingerprint(id_sum: int, count: int) -> bytes:
    """BLAKE2b-128 of (sum of ids mod 2^256, 32 bytes little-endian) || (count, u64 big-endian)."""
    data = (id_sum % _MOD).to_bytes(32, "little") + count.to_bytes(8, "big")
    person = labels.RECONCILE_FINGERPRINT
    return hashlib.blake2b(data, digest_size=FINGERPRINT_BYTES, person=person).digest()


class _Writer:
    """Encodes ranges into a message body, delta-encoding timestamps as it goes."""

    __slots__ = ("body", "count", "fingerprints", "last_ts")

    def __init__(self) -> None:
        self.body = bytearray()
        self.last_ts = 0
        self.count = 0
        self.fingerprints = 0

    def mark(self) -> tuple[int, int, int, int]:
        return len(self.body), self.last_ts, self.count, self.fingerprints

    def rollback(self, mark: tuple[int, int, int, int]) -> None:
        size, self.last_ts, self.count, self.fingerprints = mark
        del self.body[size:]

    def bound(self, bound: Bound) -> None:
        if bound.timestamp is None:
            self.body += b"\x00\x00"
            self.last_ts = limits.MAX_TIMESTAMP_MS
            return
        self.body += encode_varint(1 + bound.timestamp - self.last_ts)
        self.body.append(len(bound.prefix))
        self.body += bound.prefix
        self.last_ts = bound.timestamp

    def skip(self, bound: Bound) -> None:
        self.bound(bound)
        self.body.append(MODE_SKIP)
        self.count += 1

    def fingerprint(self, bound: Bound, fp: bytes) -> None:
        self.bound(bound)
        self.body.append(MODE_FINGERPRINT)
        self.body += fp
        self.count += 1
        self.fingerprints += 1

    def idlist(self, bound: Bound, ids: Sequence[bytes]) -> None:
        self.bound(bound)
        self.body.append(MODE_IDLIST)
        self.body += encode_varint(len(ids))
        for i in sorted(ids):
            self.body += i
        self.count += 1

    def message(self) -> bytes:
        return pack([RECONCILE_VERSION, bytes(self.body)])


def encode_message(ranges: Sequence[Range]) -> bytes:
    """The canonical bytes of a message holding `ranges` (no validation: for tests and vectors)."""
    writer = _Writer()
    for rng in ranges:
        if rng.mode == MODE_SKIP:
            writer.skip(rng.upper)
        elif rng.mode == MODE_FINGERPRINT:
            writer.fingerprint(rng.upper, rng.fingerprint)
        else:
            writer.idlist(rng.upper, rng.ids)
    return writer.message()


def decode_message(
    data: bytes, *, max_bytes: int = limits.MAX_RECONCILE_MESSAGE_BYTES
) -> list[Range]:
    """Decode and validate one message; DecodeError for bad bytes, UnexpectedMessage for order."""
    value = as_list(unpack(data, max_bytes=max_bytes), 2, "reconcile message")
    if as_int(value[0], "reconcile version") != RECONCILE_VERSION:
        raise DecodeError("unknown reconcile version")
    body = as_bytes(value[1], what="reconcile ranges")
    ranges: list[Range] = []
    pos = 0
    last_ts = 0
    prev_key = _ZERO_KEY
    prev_mode = -1
    end = len(body)
    while pos < end:
        if len(ranges) >= limits.MAX_RECONCILE_RANGES:
            raise DecodeError("too many ranges")
        code, pos = _read_varint(body, pos)
        if pos >= end:
            raise DecodeError("truncated bound")
        plen = body[pos]
        pos += 1
        if plen > ID_BYTES:
            raise DecodeError("bound prefix too long")
        if pos + plen > end:
            raise DecodeError("truncated bound")
        prefix = body[pos : pos + plen]
        pos += plen
        if plen and prefix[-1] == 0:
            raise DecodeError("bound prefix ends in a zero byte")
        if code == 0:
            if plen:
                raise DecodeError("infinite bound with a prefix")
            bound = INFINITY
        else:
            ts = last_ts + code - 1
            if ts > limits.MAX_TIMESTAMP_MS:
                raise DecodeError("bound timestamp out of range")
            bound = Bound(ts, prefix)
            last_ts = ts
        key = bound.key
        if key <= prev_key:
            raise UnexpectedMessage("range bounds not increasing")
        prev_key = key
        if pos >= end:
            raise DecodeError("truncated range")
        mode = body[pos]
        pos += 1
        if mode == MODE_SKIP:
            if prev_mode == MODE_SKIP:
                raise UnexpectedMessage("two Skip ranges in a row")
            rng = Range(bound, MODE_SKIP)
        elif mode == MODE_FINGERPRINT:
            if pos + FINGERPRINT_BYTES > end:
                raise DecodeError("truncated fingerprint")
            rng = Range(bound, MODE_FINGERPRINT, fingerprint=body[pos : pos + FINGERPRINT_BYTES])
            pos += FINGERPRINT_BYTES
        elif mode == MODE_IDLIST:
            count, pos = _read_varint(body, pos)
            if count * ID_BYTES > end - pos:
                raise DecodeError("truncated id list")
            stop = pos + count * ID_BYTES
            ids = tuple(body[p : p + ID_BYTES] for p in range(pos, stop, ID_BYTES))
            pos = stop
            if any(ids[i] >= ids[i + 1] for i in range(count - 1)):
                raise UnexpectedMessage("id list not strictly increasing")
            rng = Range(bound, MODE_IDLIST, ids=ids)
        else:
            raise DecodeError("unknown range mode")
        prev_mode = mode
        ranges.append(rng)
    if prev_mode == MODE_SKIP:
        raise UnexpectedMessage("message ends with a Skip range")
    return ranges


class Reconciler:
    """One side of one reconciliation.

    States: IDLE -> (initiate) AWAIT_REPLY -> ... -> DONE; FAILED after any error.
    The side that calls `initiate()` is the initiator and alone learns `have` and `need`;
    the side whose first call is `reconcile()` is the responder and only answers.
    """

    def __init__(
        self,
        items: Sequence[Item],
        *,
        presorted: bool = False,
        max_message_bytes: int = limits.MAX_RECONCILE_MESSAGE_BYTES,
        branching: int = limits.RECONCILE_BRANCHING,
        idlist_threshold: int = limits.RECONCILE_IDLIST_THRESHOLD,
        initiator_idlist_threshold: int = limits.RECONCILE_INITIATOR_IDLIST_THRESHOLD,
    ) -> None:
        # branching and thresholds are local choices (the peer never needs to know them);
        # the bounds on them are what makes MIN_RECONCILE_MESSAGE_BYTES always enough.
        if max_message_bytes < limits.MIN_RECONCILE_MESSAGE_BYTES:
            raise LocalProtocolError("max_message_bytes below MIN_RECONCILE_MESSAGE_BYTES")
        if not 2 <= branching <= limits.MAX_RECONCILE_BRANCHING:
            raise LocalProtocolError("branching out of range")
        if not branching <= idlist_threshold <= limits.MAX_RECONCILE_IDLIST_THRESHOLD:
            raise LocalProtocolError("idlist_threshold out of range")
        if not 1 <= initiator_idlist_threshold <= limits.MAX_RECONCILE_IDLIST_THRESHOLD:
            raise LocalProtocolError("initiator_idlist_threshold out of range")
        self._max = max_message_bytes
        self._body_limit = max_message_bytes - _ENVELOPE_BYTES
        self._branching = branching
        self._threshold = idlist_threshold
        self._ithreshold = initiator_idlist_threshold
        # 40-byte keys (u64 big-endian timestamp || id) sort exactly as (timestamp, id), and
        # bytes sort and bisect far faster than tuples in CPython.
        keys = _keys(items)
        if presorted:
            if __debug__ and any(map(operator.ge, keys, keys[1:])):
                raise LocalProtocolError("presorted items are not sorted and unique")
        else:
            keys = sorted(set(keys))
        if keys and keys[-1][0] >= 0x80:
            raise LocalProtocolError("item timestamp out of range")
        self._keys = keys
        self._ids = [k[_TS_BYTES:] for k in keys]
        # Prefix sums: the id sum of any range is one subtraction, so a fingerprint is O(1).
        from_le = int.from_bytes
        self._prefix = [0, *accumulate(from_le(i, "little") for i in self._ids)]
        self._state = ReconcileState.IDLE
        self._initiator = False
        self._have: list[bytes] = []
        self._need: list[bytes] = []
        self._seen: set[bytes] = set()
        self._rounds = 0
        # Responder: what the initiator may send us unasked (docs/spec/35-reconcile.md,
        # "What a round announces"): ids of its IdLists we lack, and the key ranges we
        # answered with our whole IdList (it learns its `have` there, never elsewhere).
        self._announced_ids: list[bytes] = []
        self._announced_ranges: list[tuple[bytes, bytes]] = []

    def fresh(self) -> Reconciler:
        """A new reconciler, in IDLE, over the same items and settings: what a node keeps
        between rounds so that a round does not re-read and re-sort its whole set."""
        new = object.__new__(Reconciler)
        new._max = self._max
        new._body_limit = self._body_limit
        new._branching = self._branching
        new._threshold = self._threshold
        new._ithreshold = self._ithreshold
        new._keys = self._keys
        new._ids = self._ids
        new._prefix = self._prefix
        new._state = ReconcileState.IDLE
        new._initiator = False
        new._have = []
        new._need = []
        new._seen = set()
        new._rounds = 0
        new._announced_ids = []
        new._announced_ranges = []
        return new

    def take_announced(self) -> tuple[list[bytes], list[tuple[bytes, bytes]]]:
        """Responder: the ids and key ranges (lower, upper) announced since the last call."""
        out = (self._announced_ids, self._announced_ranges)
        self._announced_ids, self._announced_ranges = [], []
        return out

    # Public surface.

    @property
    def state(self) -> ReconcileState:
        return self._state

    @property
    def have(self) -> list[bytes]:
        """Initiator: ids we hold that the peer lacks (accumulated across rounds)."""
        return list(self._have)

    @property
    def need(self) -> list[bytes]:
        """Initiator: ids the peer holds that we lack (accumulated across rounds)."""
        return list(self._need)

    @property
    def done(self) -> bool:
        return self._state is ReconcileState.DONE

    @property
    def rounds(self) -> int:
        """Messages this side has sent."""
        return self._rounds

    def initiate(self) -> bytes:
        """The initiator's first message: one Fingerprint (or, for a small set, one IdList)."""
        if (self._state, _Input.INITIATE) not in _TRANSITIONS:
            raise LocalProtocolError("initiate() is only allowed once, before reconcile()")
        self._initiator = True
        writer = _Writer()
        n = len(self._ids)
        if n < self._threshold:
            writer.idlist(INFINITY, self._ids)
        else:
            writer.fingerprint(INFINITY, self._fingerprint(0, n))
        self._move(_Input.INITIATE)
        self._rounds += 1
        return writer.message()

    def reconcile(self, message: bytes) -> bytes | None:
        """Process the peer's message; return the next message, or None when we are done."""
        state = self._state
        if state is ReconcileState.FAILED:
            raise LocalProtocolError("reconciliation already failed")
        if not isinstance(message, bytes | bytearray | memoryview):
            raise LocalProtocolError("reconcile() takes bytes")
        try:
            if state not in _READS:
                raise UnexpectedMessage("reconciliation message after the end")
            ranges = decode_message(bytes(message), max_bytes=self._max)
            if not self._initiator and not ranges:
                raise UnexpectedMessage("an initiator message holds at least one range")
            writer = self._process(ranges)
        except Exception:
            self._state = ReconcileState.FAILED
            raise
        if self._initiator:
            self._move(_Input.CONTINUE if writer.count else _Input.COMPLETE)
            if self._state is ReconcileState.DONE:
                return None
        else:
            # The initiator answers only mismatching Fingerprint ranges: without one in our
            # reply it will send nothing more.
            self._move(_Input.ANSWER_OPEN if writer.fingerprints else _Input.ANSWER_FINAL)
        self._rounds += 1
        return writer.message()

    def _move(self, event: _Input) -> None:
        nxt = _TRANSITIONS.get((self._state, event))
        if nxt is None:
            was, self._state = self._state, ReconcileState.FAILED
            raise UnexpectedMessage(f"{event.value} in state {was.value}")
        self._state = nxt

    # Internals.

    def _fingerprint(self, lo: int, hi: int) -> bytes:
        return fingerprint(self._prefix[hi] - self._prefix[lo], hi - lo)

    def _split_bound(self, index: int) -> Bound:
        """The shortest bound above item index-1 and at most item index."""
        head = self._keys[index][:_TS_BYTES]
        if self._keys[index - 1][:_TS_BYTES] != head:
            return Bound(int.from_bytes(head, "big"))
        ts = int.from_bytes(head, "big")
        prev, cur = self._ids[index - 1], self._ids[index]
        k = 0
        while prev[k] == cur[k]:
            k += 1
        return Bound(ts, cur[: k + 1])

    def _fits(self, writer: _Writer) -> bool:
        return (
            len(writer.body) + _RESERVE <= self._body_limit
            and writer.count + 2 <= limits.MAX_RECONCILE_RANGES
        )

    def _split(self, writer: _Writer, lo: int, hi: int, upper: Bound) -> bool:
        """Answer a mismatching range; True if with our whole IdList for it."""
        n = hi - lo
        if n < (self._ithreshold if self._initiator else self._threshold):
            writer.idlist(upper, self._ids[lo:hi])
            return True
        buckets = min(n, self._branching)
        per, extra = divmod(n, buckets)
        cur = lo
        for b in range(buckets):
            nxt = cur + per + (1 if b < extra else 0)
            bound = upper if b == buckets - 1 else self._split_bound(nxt)
            writer.fingerprint(bound, self._fingerprint(cur, nxt))
            cur = nxt
        return False

    def _learn(self, theirs: tuple[bytes, ...], lo: int, hi: int) -> None:
        ours = self._ids[lo:hi]
        their_set = set(theirs)
        our_set = set(ours)
        for i in ours:
            if i not in their_set and i not in self._seen:
                self._seen.add(i)
                self._have.append(i)
        for i in theirs:
            if i not in our_set and i not in self._seen:
                self._seen.add(i)
                self._need.append(i)

    def _process(self, ranges: list[Range]) -> _Writer:
        writer = _Writer()
        keys = self._keys
        n = len(keys)
        lo = 0
        lower = _ZERO_KEY  # key of the previous range's upper bound
        pending: Bound | None = None  # a Skip not yet written (dropped if nothing follows)
        for rng in ranges:
            upper = rng.upper
            hi = n if upper.timestamp is None else bisect_left(keys, upper.key, lo)
            if rng.mode == MODE_SKIP:
                pending = upper
                lo, lower = hi, upper.key
                continue
            if rng.mode == MODE_FINGERPRINT:
                if rng.fingerprint == self._fingerprint(lo, hi):
                    pending = upper
                    lo, lower = hi, upper.key
                    continue
            elif self._initiator:  # IdList: the responder's ids; we learn and stop here.
                self._learn(rng.ids, lo, hi)
                pending = upper
                lo, lower = hi, upper.key
                continue
            else:  # IdList as responder: the initiator's ids we lack are announced.
                ours = set(self._ids[lo:hi])
                self._announced_ids += [i for i in dict.fromkeys(rng.ids) if i not in ours]
            mark = writer.mark()
            if pending is not None:
                writer.skip(pending)
            whole_idlist = False
            if rng.mode == MODE_FINGERPRINT:
                whole_idlist = self._split(writer, lo, hi, upper)
            else:  # IdList as responder: answer with our ids in that range.
                writer.idlist(upper, self._ids[lo:hi])
            if not self._fits(writer):
                writer.rollback(mark)
                if pending is not None:
                    writer.skip(pending)
                if rng.mode == MODE_IDLIST and not self._initiator:
                    lo = self._partial_idlist(writer, lo, hi, lower)
                writer.fingerprint(INFINITY, self._fingerprint(lo, n))
                return writer
            if whole_idlist and not self._initiator:
                self._announced_ranges.append((lower, upper.key))
            pending = None
            lo, lower = hi, upper.key
        return writer

    def _partial_idlist(self, writer: _Writer, lo: int, hi: int, lower: bytes) -> int:
        """Write as many of our ids in [lo, hi) as fit; return where the rest begins."""
        room = self._body_limit - len(writer.body) - _RESERVE - _MAX_BOUND_BYTES - 1 - 3
        count = min(room // ID_BYTES, hi - lo - 1)
        if count < 1:
            return lo
        cut = lo + count
        bound = self._split_bound(cut)
        writer.idlist(bound, self._ids[lo:cut])
        self._announced_ranges.append((lower, bound.key))
        return cut


def _keys(items: Sequence[Item]) -> list[bytes]:
    """The 40-byte key of every item; LocalProtocolError for anything that is not an Item."""
    try:
        keys = [ts.to_bytes(_TS_BYTES, "big") + rid for ts, rid in items]
    except (TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise LocalProtocolError("items must be (timestamp >= 0, 32-byte id) tuples") from exc
    if not all(len(k) == _TS_BYTES + ID_BYTES and type(k) is bytes for k in keys):
        raise LocalProtocolError("item id must be 32 bytes")
    if any(type(ts) is not int for ts, _ in items):
        raise LocalProtocolError("item timestamp must be an int")
    return keys
