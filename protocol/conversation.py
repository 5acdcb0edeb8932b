"""The sync conversation with one peer (docs/spec/30-sync.md, "The conversation").

Owns one peer relationship end to end: message order (through `SyncSession`), the
reconciler and how much of its have/need was acted on, pending wants and their bound,
rounds and their limits, push bookkeeping (never back to the sender, never twice), the
per-peer quotas and the "synced" condition. Sans-IO: plaintext sync messages and local
facts go in, events come out, and `now` is an argument. It never reads a store, a clock
or a socket; the driver answers the events that ask for local facts.

    inputs (driver -> conversation)       events (conversation -> driver)
    receive(data, now)                    Send(data, urgent)       bytes for the peer
    set_items(items) / items_changed()    LoadItems()              give me set_items(...)
    begin_round(now)                      FilterNeeds(ids)         answer with want(ids, ...)
    take_deferred(ids) / ask(ids)
    want(ids)                             LookUp(ids, asked)       answer with serve(found)
    serve(found)                          CheckRecords(...)        answer with records_done
    records_done(errors)                  Denied(ids)              asked ids the peer lacks
                                          Penalise(error)          a non-fatal penalty
    push(records, now, lazy)              Synced()                 a round completed
    tick(now)                             Throttle(seconds)        read more slowly
    overdue(now) / hedged(ids)            (a query: ids to ask a second holder for)
    close()
                                          + the session's know-who and Hello events

A `RemoteProtocolError` from `receive` (or `records_done`, for a quota) enters FAILED and
is re-raised: the driver penalises the peer and closes. Every later call raises
`LocalProtocolError`.
"""

from __future__ import annotations

import enum
import hashlib
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from protocol import limits
from protocol.attachment import chunk_header
from protocol.envelope import SEALED_KINDS, check_sealed_layout
from protocol.errors import (
    LocalProtocolError,
    QuotaExceeded,
    RecordRejected,
    RemoteProtocolError,
    UnexpectedMessage,
)
from protocol.identity import NodeId
from protocol.lifecycle import Withdrawal
from protocol.networks import NetworkView
from protocol.quota import TokenBucket
from protocol.reconcile import Item, Reconciler
from protocol.record import Kind, Record, Scope, created_of
from protocol.revocation import check_revocation
from protocol.rounds import RoundLedger, check_round_gap
from protocol.session import (
    PeerAnswer,
    PeerHave,
    PeerHello,
    PeerIntroReply,
    PeerIntroRequest,
    PeerMissing,
    PeerQuery,
    PeerReconcile,
    PeerSyncDone,
    PeerWant,
    RecordsReceived,
    SyncSession,
)


class Role(enum.Enum):
    INITIATOR = "initiator"  # the side that dialled: runs reconciliation, sends SyncDone
    RESPONDER = "responder"  # answers every Reconcile of a round the peer opened


class ConversationState(enum.Enum):
    """Where the conversation stands with its rounds. See `_TRANSITIONS`."""

    IDLE = "idle"  # no round open (Hello, Want, Records, Missing, queries all allowed)
    RECONCILING = "reconciling"  # initiator: reconciliation messages still going back and forth
    SETTLING = "settling"  # initiator: reconciled; wants, serves or stores outstanding
    ROUND_OPEN = "round-open"  # responder: the peer opened a round and has not said SyncDone
    FAILED = "failed"  # terminal, after any error
    CLOSED = "closed"  # terminal, after close()


class _Input(enum.Enum):
    BEGIN = "begin"  # begin_round(), initiator
    RECONCILED = "reconciled"  # initiator: the reconciler finished (have/need complete)
    SETTLED = "settled"  # initiator: nothing outstanding; SyncDone sent
    PEER_ROUND = "peer-round"  # responder: a Reconcile opened a round
    PEER_DONE = "peer-done"  # responder: SyncDone closed it
    CLOSE = "close"


_I, _R = Role.INITIATOR, Role.RESPONDER
_S = ConversationState

# The one transition table. Want, Missing, Records, Hello and the know-who messages leave
# the state as it is (their order is SyncSession's table); a Reconcile inside an open
# round does too. Anything not listed is LocalProtocolError (our misuse) or, for the
# peer's inputs, UnexpectedMessage; any error enters FAILED.
#
#   role       state        input       -> state        output
#   initiator  IDLE         begin       -> RECONCILING  Reconcile (or LoadItems first)
#   initiator  RECONCILING  reconciled  -> SETTLING     FilterNeeds / LookUp for the diff
#   initiator  SETTLING     settled     -> IDLE         SyncDone, Synced
#   responder  IDLE         peer-round  -> ROUND_OPEN   Reconcile reply (or LoadItems first)
#   responder  ROUND_OPEN   peer-done   -> IDLE         Synced
#   initiator  RECONCILING  tick, round older than MAX_ROUND_SECONDS -> FAILED (raises)
#              or SETTLING
#   either     any open     close       -> CLOSED
_TRANSITIONS: dict[tuple[Role, ConversationState, _Input], ConversationState] = {
    (_I, _S.IDLE, _Input.BEGIN): _S.RECONCILING,
    (_I, _S.RECONCILING, _Input.RECONCILED): _S.SETTLING,
    (_I, _S.SETTLING, _Input.SETTLED): _S.IDLE,
    (_R, _S.IDLE, _Input.PEER_ROUND): _S.ROUND_OPEN,
    (_R, _S.ROUND_OPEN, _Input.PEER_DONE): _S.IDLE,
    **{
        (role, state, _Input.CLOSE): _S.CLOSED
        for role in Role
        for state in (_S.IDLE, _S.RECONCILING, _S.SETTLING, _S.ROUND_OPEN)
    },
}
_REMOTE_INPUTS = frozenset({_Input.PEER_ROUND, _Input.PEER_DONE})


# -- events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Framed plaintext for the peer; `urgent` bytes (alerts) go before anything queued.
    `records`: ids of the records it carries (for the driver's record of who got what)."""

    data: bytes
    urgent: bool = False
    records: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class LoadItems:
    """The driver must call `set_items` with this peer's exchangeable (created, id) items."""


@dataclass(frozen=True, slots=True)
class FilterNeeds:
    """Ids the peer holds and we lack by reconciliation: call `want` with those we neither
    hold nor are fetching from another peer (each FilterNeeds is answered by one `want`)."""

    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class LookUp:
    """Look these ids up (records this peer may receive, unexpired) and call `serve`.
    `asked[i]`: the peer asked for ids[i] (a Want), so a Missing is owed if we lack it."""

    ids: tuple[bytes, ...]
    asked: tuple[bool, ...]


@dataclass(frozen=True, slots=True)
class CheckRecords:
    """Check (`check_record`), store, then call `records_done`. Ids are unique in one event."""

    records: tuple[bytes, ...]
    ids: tuple[bytes, ...]
    solicited: tuple[bool, ...]


@dataclass(frozen=True, slots=True)
class Denied:
    """The peer answered Missing for these ids we asked: ask another peer in a later round."""

    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Penalise:
    """The peer did something that costs it score but not the connection."""

    error: RemoteProtocolError


@dataclass(frozen=True, slots=True)
class Synced:
    """A round with this peer completed (both sides): the driver may note `last_sync`."""


@dataclass(frozen=True, slots=True)
class Throttle:
    """The peer is over its message rate: read nothing more from it for `seconds`."""

    seconds: float


ConversationEvent = (
    Send
    | LoadItems
    | FilterNeeds
    | LookUp
    | CheckRecords
    | Denied
    | Penalise
    | Synced
    | Throttle
    | PeerHello
    | PeerQuery
    | PeerAnswer
    | PeerIntroRequest
    | PeerIntroReply
)


# -- the rules of who may receive what, and of a record from a peer -----------------------


def may_receive(
    record: Record, peer: NodeId, us: NodeId, networks: NetworkView | None = None
) -> bool:
    """Network-scoped records go to everyone but their author (with `networks`, only those
    of a network the two share); peers-scoped ones only from their author to its direct
    peers; private ones never (docs/SPEC.md "Who may receive")."""
    if record.author == peer or record.scope is Scope.PRIVATE:
        return False
    if networks is not None and not networks.carries(record):
        return False
    return record.scope is Scope.NETWORK or record.author == us


def eager_peers(
    rid: bytes, peers: Iterable[NodeId], k: int = limits.EAGER_PUSH_PEERS
) -> set[NodeId]:
    """Of the peers a record just stored here could be pushed to, those that get it whole
    even over a pruned link (`Conversation.pruned`); over a pruned link the others are
    offered its id (Have) and ask for it if they still lack it. A hub (more than
    EAGER_PUSH_HUB_PEERS of them) sends it whole to all: its copies are the graph's short
    paths and mostly arrive first. Otherwise the `k` chosen by a hash of the record id and
    the peer, so the choice differs per record and nobody steers it (docs/SPEC.md "Push")."""
    peers = list(peers)
    if len(peers) > limits.EAGER_PUSH_HUB_PEERS:
        return set(peers)
    ranked = sorted(peers, key=lambda p: hashlib.blake2b(rid + p.raw, digest_size=8).digest())
    return set(ranked[:k])


def push_plan(
    records: Sequence[Record], targets: Mapping[NodeId, bool], now_ms: int
) -> dict[NodeId, set[bytes]]:
    """Records just stored here, to be pushed to `targets` (each with whether its link is
    `pruned`): for each target, the ids it is offered by id (Have) instead of sent whole.
    Alerts always go whole. A record created more than PUSH_FRESH_MS ago is old news
    (caught up in a round, not just published): its id only, to every target. A fresh
    one goes whole over every eager link, and over a pruned link only to its
    `eager_peers` (docs/SPEC.md "Push")."""
    plan: dict[NodeId, set[bytes]] = {peer: set() for peer in targets}
    for r in records:
        if r.kind is Kind.ALERT:
            continue
        if now_ms - r.created > limits.PUSH_FRESH_MS:
            for offered in plan.values():
                offered.add(r.id)
            continue
        eager = eager_peers(r.id, targets)
        for peer, pruned in targets.items():
            if pruned and peer not in eager:
                plan[peer].add(r.id)
    return plan


def check_record(
    data: bytes, rid: bytes | None, now_ms: int, sender: NodeId, *, held: bool = False
) -> Record:
    """Decode, verify and time-check one record from `sender` (docs/SPEC.md "Validation
    on ingest", steps 1-5); RemoteProtocolError if it fails. Pure: may run on a thread.
    `held`: a copy of a record this node holds (its id is the hash of these very bytes,
    whose signature was checked when stored): every rule but the signature, again."""
    record = Record.from_bytes(data, known_id=rid)
    if not held:
        record.verify()
    record.check_time(now_ms)
    if record.scope is Scope.PRIVATE:
        raise RecordRejected("a private record never leaves its node")
    if record.scope is Scope.PEERS and record.author != sender:
        raise RecordRejected("a peers-scoped record may only come from its author")
    if record.kind is Kind.TOMBSTONE:
        Withdrawal.from_payload(record.payload)
    elif record.kind is Kind.REVOCATION:
        check_revocation(record)
    elif record.kind in SEALED_KINDS:
        check_sealed_layout(record.payload)  # what a relay can check without keys
    elif record.kind is Kind.CHUNK:
        chunk_header(record.payload)  # its layout; only a reader of the guide can open it
    return record


def hand_over(
    ids: Sequence[bytes], others: Sequence[Conversation]
) -> list[tuple[Conversation, list[bytes]]]:
    """Ids one peer denied, sat on or took with it: which of the `others` (in order) each
    is asked of now, taken from the first that announced and deferred it (`take_deferred`).
    The driver asks each conversation its ids with `ask` and counts them in flight."""
    remaining = list(ids)
    out: list[tuple[Conversation, list[bytes]]] = []
    for other in others:
        if not remaining:
            break
        taken = other.take_deferred(remaining) if other.open else []
        if taken:
            out.append((other, taken))
            gone = set(taken)
            remaining = [i for i in remaining if i not in gone]
    return out


# -- the conversation ---------------------------------------------------------------------


class Conversation:
    """One side of the sync conversation with one peer. See the module docstring."""

    def __init__(
        self,
        *,
        us: NodeId,
        peer: NodeId,
        role: Role,
        now: float,
        resync_interval: float = limits.RESYNC_INTERVAL_S,
        last_round: float | None = None,
    ) -> None:
        self.us = us
        self.peer = peer
        # The networks the two share (None: every network record passes, as with one
        # network); the node keeps it current (node/sync.py).
        self.networks: NetworkView | None = None
        self.role = role
        self.state = ConversationState.IDLE
        self.session = SyncSession(initiator=role is Role.INITIATOR)
        self.resync_interval = resync_interval
        # The exchangeable set, kept between rounds until `items_changed`; each round
        # takes a `fresh()` copy, so a round does not re-read and re-sort the whole set.
        self._items: Reconciler | None = None
        self._reconciler: Reconciler | None = None
        self._seen = (0, 0)  # how much of reconciler.have/need was acted on
        self._pending_payload: bytes | None = None  # responder: a Reconcile awaiting items
        self._begin_pending = False  # initiator: begin_round awaits items
        self._ledger: RoundLedger | None = None  # responder: what the open round announced
        self._round_messages = 0  # responder: Reconcile messages in the open round
        # When the last round began (either role): `last_round` carries it over from an
        # earlier connection with the same peer, so reconnecting does not reset the gaps.
        self._last_round = last_round
        self._unasked = 0  # initiator: records sent unasked in the current round
        self._unasked_bytes = 0
        self._capped = False  # initiator: the round hit its unasked bound; the rest goes next
        self._next_round = now  # initiator: when a resync round is due
        self.pushes_dropped = 0  # pushes over our allowance: the next round repairs them
        self._pending_wants: deque[bytes] = deque()
        self._deferred: dict[bytes, None] = {}  # announced by the peer, fetched elsewhere
        self._needs_unfiltered = 0  # FilterNeeds not yet answered by want()
        self._serve: deque[tuple[bytes, bool]] = deque()  # (id, asked by the peer)
        self._requested = 0  # of _serve and the batch being looked up, asked by the peer
        self._lookup: tuple[tuple[bytes, bool], ...] | None = None  # batch being looked up
        self._unchecked = 0  # CheckRecords not yet answered by records_done
        self._pushed: set[bytes] = set()  # ids sent to the peer whole or offered (Have)
        self._offered: set[bytes] = set()  # of _pushed, those offered by id only
        # Pruned (`push_plan`): records that do not rank this peer among their `eager_peers`
        # reach it by id (Have) only; set when the peer pushes or offers us one we sent it
        # whole (the link carried it both ways), cleared when it asks for one we offered.
        self.pruned = False
        self._now = now  # the latest `now` we were given (wants are stamped with it)
        self._asked: dict[bytes, float] = {}  # outstanding wants not yet released, by age
        self._hedged: set[bytes] = set()  # of _asked, those a second holder was asked for
        self._answered = now  # when the peer last answered a want (records or Missing)
        self.rounds = 0  # rounds completed
        self.reconcile_messages = 0  # Reconcile messages sent
        self.synced_once = False
        self.bytes_sent = 0
        self.bytes_received = 0
        self.record_bytes_sent = 0
        self.record_bytes_received = 0
        self._messages_in = TokenBucket.full(
            limits.PEER_MESSAGES_PER_S, limits.PEER_MESSAGES_BURST, now
        )
        self._queries_in = TokenBucket.full(
            limits.PEER_QUERIES_PER_S, limits.PEER_QUERIES_BURST, now
        )
        self._pushes_in = TokenBucket.full(
            limits.PEER_PUSH_RECORDS_PER_S, limits.PEER_PUSH_RECORDS_BURST, now
        )
        # We hold ourselves to the peer's push allowance: past it, pushes wait for a round.
        self._pushes_out = TokenBucket.full(
            limits.PEER_PUSH_RECORDS_PER_S, limits.PEER_PUSH_RECORDS_BURST, now
        )

    # -- state ---------------------------------------------------------------------------

    def _move(self, event: _Input) -> None:
        nxt = _TRANSITIONS.get((self.role, self.state, event))
        if nxt is None:
            if event in _REMOTE_INPUTS:
                raise UnexpectedMessage(f"{event.value} not allowed now")
            raise LocalProtocolError(f"{event.value} not allowed in state {self.state.value}")
        self.state = nxt

    def _require_open(self) -> None:
        if self.state in (ConversationState.FAILED, ConversationState.CLOSED):
            raise LocalProtocolError(f"conversation is {self.state.value}")

    def close(self) -> None:
        if self.state not in (ConversationState.FAILED, ConversationState.CLOSED):
            self._move(_Input.CLOSE)
        self.session.close()

    @property
    def open(self) -> bool:
        """Neither FAILED nor CLOSED: calls are still allowed."""
        return self.state not in (ConversationState.FAILED, ConversationState.CLOSED)

    @property
    def last_round(self) -> float | None:
        """When the last round with this peer began (to carry over to a new connection)."""
        return self._last_round

    def resync_soon(self) -> None:
        """Initiator: local records changed by other paths; the next round is due now
        (still no sooner than MIN_ROUND_INTERVAL_S after the previous one)."""
        self._next_round = float("-inf")

    @property
    def wanted(self) -> frozenset[bytes]:
        """Ids this conversation asked for or queued to ask, and has not released (Denied):
        free them, or ask another peer, when it ends."""
        return frozenset(self._asked) | frozenset(self._pending_wants)

    def round_due(self, now: float) -> bool:
        """Initiator: whether `begin_round` should run now (resync due or a push dropped,
        and never sooner than MIN_ROUND_INTERVAL_S after the previous round began)."""
        if self.role is not Role.INITIATOR or self.state is not ConversationState.IDLE:
            return False
        if self._last_round is not None and now - self._last_round < limits.MIN_ROUND_INTERVAL_S:
            return False
        return now >= self._next_round or self.pushes_dropped > 0

    # -- local facts in ------------------------------------------------------------------

    def hello(self, name: str = "", addresses: Sequence[str] = ()) -> list[ConversationEvent]:
        self._require_open()
        return [self._send(self.session.hello(name, addresses))]

    def items_changed(self) -> None:
        """The exchangeable set changed (a record stored, expired or withdrawn): the next
        round asks for it again. Until then the reconciler's set is reused between rounds."""
        self._items = None

    def set_items(self, items: Sequence[Item]) -> list[ConversationEvent]:
        """This peer's exchangeable set as sorted, unique (created, id) items."""
        self._require_open()
        self._items = Reconciler(
            items, presorted=True, idlist_threshold=limits.SYNC_IDLIST_THRESHOLD
        )
        if self._begin_pending:
            self._begin_pending = False
            return self._initiate()
        payload, self._pending_payload = self._pending_payload, None
        if payload is None:
            return []
        try:  # the peer's buffered Reconcile is processed only now
            return self._respond(payload)
        except RemoteProtocolError:
            self._fail()
            raise

    def begin_round(self, now: float) -> list[ConversationEvent]:
        """Initiator: start a reconciliation round (see `round_due`)."""
        self._require_open()
        self._now = now
        self._move(_Input.BEGIN)
        self._deferred.clear()  # this round announces afresh
        self._last_round = now
        self._next_round = now + self.resync_interval
        self.pushes_dropped = 0
        self._unasked = self._unasked_bytes = 0
        self._capped = False
        if self._items is None:
            self._begin_pending = True
            return [LoadItems()]
        return self._initiate()

    def want(self, ids: Sequence[bytes], deferred: Sequence[bytes] = ()) -> list[ConversationEvent]:
        """Answer to FilterNeeds: ask the peer for `ids`, within the bound. `deferred`: ids
        it announced that we are fetching from another peer; if that peer denies or sits
        on them, `take_deferred` offers them here again."""
        self._require_open()
        if self._needs_unfiltered:
            self._needs_unfiltered -= 1
        for rid in deferred:
            if len(self._deferred) < limits.MAX_WANT_OUTSTANDING:
                self._deferred[rid] = None
        self._pending_wants.extend(ids)
        return self._top_up() + self._maybe_settle()

    def take_deferred(self, ids: Sequence[bytes]) -> list[bytes]:
        """Of `ids` (denied by, or released from, another peer), those this peer announced
        and we deferred; they are forgotten here, so the driver asks them with `ask`."""
        taken = [rid for rid in ids if rid in self._deferred]
        for rid in taken:
            del self._deferred[rid]
        return taken

    def ask(self, ids: Sequence[bytes]) -> list[ConversationEvent]:
        """Ask the peer for ids outside a FilterNeeds answer (e.g. from `take_deferred`)."""
        self._require_open()
        self._pending_wants.extend(ids)
        return self._top_up()

    def serve(
        self, found: Mapping[bytes, bytes], later: Sequence[bytes] = ()
    ) -> list[ConversationEvent]:
        """Answer to LookUp: `found` maps each id we hold, the peer may receive and has not
        expired to its record bytes; the asked ones not in it get a Missing. `later`: ids
        of the LookUp the driver did not read yet (it bounds the bytes of one look-up):
        they go back to the front of the queue, in order, for the next LookUp."""
        self._require_open()
        if self._lookup is None:
            raise LocalProtocolError("serve() without a LookUp")
        batch, self._lookup = self._lookup, None
        if later:
            back = set(later)
            self._serve.extendleft(reversed([item for item in batch if item[0] in back]))
            batch = tuple(item for item in batch if item[0] not in back)
        self._requested = max(0, self._requested - sum(asked for _, asked in batch))
        sent_list: list[bytes] = []
        for rid, asked in batch:
            data = found.get(rid)
            if data is None:
                continue
            if not asked:  # unasked, in our round: within the round's byte bound
                if self._unasked_bytes + len(data) > limits.MAX_ROUND_BYTES:
                    self._capped = True
                    continue  # not sent, and no Missing: the next round finds it again
                self._unasked_bytes += len(data)
            sent_list.append(rid)
        sent = tuple(sent_list)
        out = [found[rid] for rid in sent]
        missing = [rid for rid, asked in batch if asked and rid not in found]
        events: list[ConversationEvent] = []
        if out:
            self.record_bytes_sent += sum(map(len, out))
            events.append(self._send(self.session.records(out, sent), records=sent))
        if missing:
            events.append(self._send(self.session.missing(missing)))
        return events + self._next_lookup() + self._maybe_settle()

    def records_done(self, errors: Sequence[RemoteProtocolError] = ()) -> list[ConversationEvent]:
        """Answer to CheckRecords: stored what passed; `errors` are the records that failed."""
        self._require_open()
        if self._unchecked:
            self._unchecked -= 1
        events: list[ConversationEvent] = [Penalise(e) for e in errors]
        return events + self._top_up() + self._maybe_settle()

    def push(
        self, records: Sequence[Record], now: float, lazy: Collection[bytes] = frozenset()
    ) -> list[ConversationEvent]:
        """Records just stored here (received elsewhere or published): send the ones this
        peer may receive and has neither sent nor been sent. Alerts are urgent and always
        go whole; of the others, those in `lazy` (see `push_plan`) are offered by id."""
        self._require_open()
        chosen = [
            r
            for r in records
            if may_receive(r, self.peer, self.us, self.networks)
            and not self.session.peer_knows(r.id)
            and r.id not in self._pushed
        ]
        if not chosen:
            return []
        if not self._pushes_out.take(len(chosen), now):
            self.pushes_dropped += 1
            return []
        self._pushed.update(r.id for r in chosen)
        events: list[ConversationEvent] = []
        offered = tuple(r.id for r in chosen if r.kind is not Kind.ALERT and r.id in lazy)
        self._offered.update(offered)
        for urgent in (True, False):
            group = [
                r for r in chosen if (r.kind is Kind.ALERT) is urgent and r.id not in offered
            ]
            if group:
                out = [r.to_bytes() for r in group]
                self.record_bytes_sent += sum(map(len, out))
                ids = tuple(r.id for r in group)
                data = self.session.records(out, ids)
                events.append(self._send(data, urgent=urgent, records=ids))
        if offered:
            events.append(self._send(self.session.have(offered)))
        return events

    def _crossed(self, rid: bytes) -> None:
        """The peer pushed or offered us `rid`, unasked: if we had sent it whole, that copy
        was wasted (it held the record already), so the link is pruned."""
        if rid in self._pushed and rid not in self._offered:
            self.pruned = True

    def push_dropped(self) -> None:
        """The driver dropped bytes for this peer (its queue was too long): the next round
        is due at once and repairs what was lost."""
        self.pushes_dropped += 1

    def tick(self, now: float) -> list[ConversationEvent]:
        """Time passes. Wants unanswered for WANT_TIMEOUT_S are released (Denied: the
        driver may fetch them elsewhere; a late answer is still accepted). A round of ours
        that has not completed in MAX_ROUND_SECONDS fails: the peer is stalling."""
        self._require_open()
        self._now = now
        stalled = (
            self.state in (ConversationState.RECONCILING, ConversationState.SETTLING)
            and self._last_round is not None
            and now - self._last_round > limits.MAX_ROUND_SECONDS
        )
        if stalled:
            self._fail()
            raise UnexpectedMessage("a round did not complete in time")
        expired: list[bytes] = []
        for rid, asked in self._asked.items():  # oldest first
            if now - asked < limits.WANT_TIMEOUT_S:
                break
            expired.append(rid)
        for rid in expired:
            del self._asked[rid]
            self._hedged.discard(rid)
        return [Denied(tuple(expired))] if expired else []

    def overdue(self, now: float) -> list[bytes]:
        """Ids asked at least WANT_HEDGE_S ago while the peer has answered none of our
        wants since (no asked record, no Missing): a peer sitting on them, or very slow.
        The driver may ask a second holder for them (`hand_over`), then call `hedged`
        with those it asked; they stay outstanding here (a late answer is still accepted)
        until WANT_TIMEOUT_S releases them. Bounded: each id is hedged once per want."""
        self._require_open()
        if now - self._answered < limits.WANT_HEDGE_S:
            return []
        out: list[bytes] = []
        for rid, asked in self._asked.items():  # oldest first
            if now - asked < limits.WANT_HEDGE_S:
                break
            if rid not in self._hedged:
                out.append(rid)
        return out

    def hedged(self, ids: Sequence[bytes]) -> None:
        """Of `overdue`, the ids a second holder was asked for: not offered again."""
        self._hedged.update(rid for rid in ids if rid in self._asked)

    # -- the peer's bytes in -------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> list[ConversationEvent]:
        """Feed decrypted stream bytes. Raises RemoteProtocolError (then FAILED)."""
        self._require_open()
        self._now = now
        self.bytes_received += len(data)
        events: list[ConversationEvent] = []
        try:
            wait = 0.0
            for event in self.session.receive_data(data):
                wait = max(wait, self._messages_in.charge(1, now))
                events += self._on(event, now)
            if wait > 0:
                events.append(Throttle(wait))
        except RemoteProtocolError:
            self._fail()
            raise
        return events

    def _fail(self) -> None:
        self.state = ConversationState.FAILED
        self.session.close()

    def _on(self, event: object, now: float) -> list[ConversationEvent]:
        if isinstance(event, PeerWant | PeerReconcile) and not self._queries_in.take(1, now):
            raise QuotaExceeded("query rate over quota")
        if isinstance(event, PeerReconcile):
            if self.role is Role.INITIATOR:
                return self._on_reply(event.payload)
            if self.state is ConversationState.IDLE:
                check_round_gap(self._last_round, now)  # RateLimited
                self._move(_Input.PEER_ROUND)
                self._last_round = now
                self._ledger = RoundLedger(now)
                self._round_messages = 0
                self._reconciler = None
            self._round_messages += 1
            if self._round_messages > limits.MAX_RECONCILE_ROUNDS:
                raise UnexpectedMessage("reconciliation does not converge")
            if self._items is None:
                self._pending_payload = event.payload
                return [LoadItems()]
            return self._respond(event.payload)
        if isinstance(event, PeerSyncDone):
            self._move(_Input.PEER_DONE)
            self._reconciler = None
            self._ledger = None
            return self._synced()
        if isinstance(event, PeerWant):
            ids = list(dict.fromkeys(event.ids))
            self._requested += len(ids)
            if self._requested > limits.MAX_SERVE_REQUESTED:
                raise UnexpectedMessage("asked for more records than the protocol allows")
            self._serve.extend((i, True) for i in ids)
            if self.pruned and not self._offered.isdisjoint(ids):
                self.pruned = False  # graft: it lacked what only we offered
            return self._next_lookup()
        if isinstance(event, PeerHave):
            # Offers count against the push allowance as the records themselves would.
            if not self._pushes_in.take(len(event.ids), now):
                raise QuotaExceeded("offered far more records than asked for")
            self._needs_unfiltered += 1
            for rid in event.ids:
                self._crossed(rid)
            return [FilterNeeds(event.ids)]
        if isinstance(event, PeerMissing):
            self._answered = now
            for rid in event.ids:
                self._asked.pop(rid, None)
                self._hedged.discard(rid)
            return [Denied(event.ids), *self._top_up(), *self._maybe_settle()]
        if isinstance(event, RecordsReceived):
            return self._on_records(event, now)
        assert isinstance(
            event, PeerHello | PeerQuery | PeerAnswer | PeerIntroRequest | PeerIntroReply
        )
        return [event]

    def _on_records(self, event: RecordsReceived, now: float) -> list[ConversationEvent]:
        records: list[bytes] = []
        ids: list[bytes] = []
        solicited: list[bool] = []
        seen: set[bytes] = set()
        unasked = 0
        ledger = self._ledger if self.state is ConversationState.ROUND_OPEN else None
        if ledger is not None and ledger.expired(now):
            ledger = None  # too old: what it sends unasked now counts as pushes
        count = size = 0
        for data, rid, asked in zip(event.records, event.ids, event.solicited, strict=True):
            self.record_bytes_received += len(data)
            self._asked.pop(rid, None)
            self._hedged.discard(rid)
            if asked:
                self._answered = now
            else:
                if ledger is not None and ledger.announced(rid, created_of(data)):
                    count += 1
                    size += len(data)
                else:
                    unasked += 1
                    self._crossed(rid)
            if rid in seen:
                continue  # a copy inside one message: charged above, checked once
            seen.add(rid)
            records.append(data)
            ids.append(rid)
            solicited.append(asked)
        if count and ledger is not None:
            ledger.charge(count, size)  # QuotaExceeded past the round's bounds
        if unasked and not self._pushes_in.take(unasked, now):
            raise QuotaExceeded("sent far more records than asked for")
        self._unchecked += 1
        return [CheckRecords(tuple(records), tuple(ids), tuple(solicited))]

    # -- rounds ----------------------------------------------------------------------------

    def _initiate(self) -> list[ConversationEvent]:
        assert self._items is not None
        self._reconciler = self._items.fresh()
        self._seen = (0, 0)
        return [self._reconcile(self._reconciler.initiate())]

    def _respond(self, payload: bytes) -> list[ConversationEvent]:
        if self._reconciler is None:
            assert self._items is not None
            self._reconciler = self._items.fresh()
        reply = self._reconciler.reconcile(payload) or b""
        if self._ledger is not None:
            self._ledger.announce(*self._reconciler.take_announced())
        return [self._reconcile(reply)]

    def _on_reply(self, payload: bytes) -> list[ConversationEvent]:
        reconciler = self._reconciler
        if reconciler is None or self.state is not ConversationState.RECONCILING:
            raise UnexpectedMessage("reconcile reply that was not asked for")
        following = reconciler.reconcile(payload)
        have_seen, need_seen = self._seen
        have, need = reconciler.have, reconciler.need
        self._seen = (len(have), len(need))
        events: list[ConversationEvent] = []
        if len(need) > need_seen:
            self._needs_unfiltered += 1
            events.append(FilterNeeds(tuple(need[need_seen:])))
        if len(have) > have_seen:
            # What we send unasked in one round is bounded (the peer cuts us off past it);
            # the rest is found again by the next round, which then comes soon.
            fresh_have = have[have_seen:]
            room = max(0, limits.MAX_ROUND_RECORDS - self._unasked)
            if len(fresh_have) > room:
                fresh_have, self._capped = fresh_have[:room], True
            self._unasked += len(fresh_have)
            self._serve.extend((i, False) for i in fresh_have)
            events += self._next_lookup()
        if following is not None:
            if reconciler.rounds > limits.MAX_RECONCILE_ROUNDS:
                raise UnexpectedMessage("reconciliation does not converge")
            events.append(self._reconcile(following))
            return events
        self._move(_Input.RECONCILED)
        return events + self._maybe_settle()

    def _maybe_settle(self) -> list[ConversationEvent]:
        """Initiator: SyncDone once reconciliation is complete and nothing is outstanding."""
        if (
            self.state is not ConversationState.SETTLING
            or self._pending_wants
            or self.session.outstanding_wants
            or self._needs_unfiltered
            or self._serve
            or self._lookup is not None
            or self._unchecked
        ):
            return []
        self._move(_Input.SETTLED)
        self._reconciler = None
        return [self._send(self.session.sync_done()), *self._synced()]

    def _synced(self) -> list[ConversationEvent]:
        if self.role is Role.INITIATOR:  # the next round: soon if this one was capped
            wait = limits.MIN_ROUND_INTERVAL_S if self._capped else self.resync_interval
            self._next_round = self._now + wait
        self.rounds += 1
        self.synced_once = True
        return [Synced()]

    # -- wants and serving -------------------------------------------------------------------

    def _top_up(self) -> list[ConversationEvent]:
        room = self.session.want_capacity()
        batch: list[bytes] = []
        outstanding = self.session.outstanding_wants
        while self._pending_wants and len(batch) < room:
            rid = self._pending_wants.popleft()
            if rid not in outstanding:
                batch.append(rid)
        batch = list(dict.fromkeys(batch))
        for rid in batch:
            self._asked[rid] = self._now
        return [self._send(self.session.want(batch))] if batch else []

    def _next_lookup(self) -> list[ConversationEvent]:
        if self._lookup is not None or not self._serve:
            return []
        take = min(len(self._serve), limits.SERVE_CHUNK_IDS)
        self._lookup = tuple(self._serve.popleft() for _ in range(take))
        return [LookUp(tuple(i for i, _ in self._lookup), tuple(a for _, a in self._lookup))]

    def _reconcile(self, payload: bytes) -> Send:
        self.reconcile_messages += 1
        return self._send(self.session.reconcile(payload))

    def _send(self, data: bytes, urgent: bool = False, records: tuple[bytes, ...] = ()) -> Send:
        self.bytes_sent += len(data)
        return Send(data, urgent, records)
