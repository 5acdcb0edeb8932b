"""The sync conversation: two real conversations joined by an in-memory pipe."""

from __future__ import annotations

import hashlib

import nacl.utils
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import limits
from protocol.conversation import (
    _TRANSITIONS,
    CheckRecords,
    Conversation,
    ConversationEvent,
    ConversationState,
    Denied,
    FilterNeeds,
    LoadItems,
    LookUp,
    Penalise,
    Role,
    Send,
    Synced,
    check_record,
    eager_peers,
    may_receive,
    push_plan,
)
from protocol.encoding import Value
from protocol.envelope import seal_record
from protocol.errors import (
    LocalProtocolError,
    QuotaExceeded,
    RateLimited,
    RemoteProtocolError,
    UnexpectedMessage,
)
from protocol.identity import Identity, NodeId
from protocol.messages import (
    Have,
    Hello,
    Reconcile,
    Records,
    SyncDone,
    Want,
    encode_message,
    split_records,
)
from protocol.reconcile import Reconciler
from protocol.record import Kind, Record, Scope

NOW_MS = 1_800_000_000_000
HELLO = encode_message(Hello(1, "A", ()))
A, B, C = (Identity(hashlib.sha256(n).digest()) for n in (b"conv-a", b"conv-b", b"conv-c"))
_NETWORK_KEY = hashlib.sha256(b"conv-network").digest()


def _record(author: Identity, n: int, scope: Scope) -> Record:
    """A real sealed record (the conversation refuses a sealed kind without the layout)."""
    kind = Kind.ALERT if n % 7 == 0 else Kind.GUIDE
    created = NOW_MS - 10_000 + n * 13 % 5000
    content: dict[str, Value] = (
        {"text": f"alert {n}", "urgency": "high"}
        if kind is Kind.ALERT
        else {"title": f"guide {n}", "text": "x" * (4 * (1 + n % 5))}
    )
    peers = [i.node_id for i in (A, B, C) if i is not author]
    return seal_record(
        author,
        kind,
        content,
        created=created,
        expires=created + 86_400_000,
        scope=scope,
        recipients=peers if scope is Scope.PEERS else [],
        network_key=None if scope is Scope.PEERS else _NETWORK_KEY,
        random=nacl.utils.random,
    )


# Made once: signing is the slow part, and every example draws subsets of this pool.
POOL = [
    _record(author, n, scope)
    for n, (author, scope) in enumerate(
        (a, s) for a in (A, B, C) for s in (Scope.NETWORK, Scope.PEERS) for _ in range(8)
    )
]


def _exchangeable(record: Record, us: NodeId, peer: NodeId) -> bool:
    return record.scope is Scope.NETWORK or (
        record.scope is Scope.PEERS and record.author in (us, peer)
    )


class Side:
    """A minimal driver: a dict for a store, acting on every event at once."""

    def __init__(self, me: Identity, peer: Identity, role: Role, held: list[Record]) -> None:
        self.me = me.node_id
        self.peer = peer.node_id
        self.store = {r.id: r for r in held}
        self.conv = Conversation(us=self.me, peer=self.peer, role=role, now=0.0)
        self.outbox: list[bytes] = []
        self.penalties: list[RemoteProtocolError] = []
        self.synced = 0
        self.received: list[bytes] = []  # ids of every record that reached us, in order
        self.sent_ids: list[bytes] = []  # ids of every record our Sends carried

    def act(self, events: list[ConversationEvent]) -> None:
        queue = list(events)
        while queue:
            event = queue.pop(0)
            conv = self.conv
            if isinstance(event, Send):
                self.outbox.append(event.data)
                self.sent_ids += event.records
            elif isinstance(event, LoadItems):
                items = sorted(
                    (r.created, r.id)
                    for r in self.store.values()
                    if _exchangeable(r, self.me, self.peer)
                )
                queue += conv.set_items(items)
            elif isinstance(event, FilterNeeds):
                queue += conv.want([i for i in event.ids if i not in self.store])
            elif isinstance(event, LookUp):
                queue += self.look_up(event)
            elif isinstance(event, CheckRecords):
                errors: list[RemoteProtocolError] = []
                fresh = []
                for data, rid in zip(event.records, event.ids, strict=True):
                    self.received.append(rid)
                    try:
                        record = check_record(data, rid, NOW_MS, self.peer)
                    except RemoteProtocolError as exc:
                        errors.append(exc)
                        continue
                    if record.id not in self.store:
                        self.store[record.id] = record
                        fresh.append(record)
                if fresh:
                    conv.items_changed()
                queue += conv.records_done(errors)
                # A relay pushes what it stored to every peer: here, back to its sender,
                # which the conversation must refuse to do.
                queue += conv.push(fresh, 1.0)
            elif isinstance(event, Penalise):
                self.penalties.append(event.error)
            elif isinstance(event, Synced):
                self.synced += 1


    def look_up(self, event: LookUp) -> list[ConversationEvent]:
        found = {
            i: self.store[i].to_bytes()
            for i in event.ids
            if i in self.store and may_receive(self.store[i], self.peer, self.me)
        }
        return self.conv.serve(found)


def _run(a: Side, b: Side, now: float = 1.0, limit: int = 10_000) -> None:
    for _ in range(limit):
        if not a.outbox and not b.outbox:
            return
        for src, dst in ((a, b), (b, a)):
            data, src.outbox = b"".join(src.outbox), []
            if data:
                dst.act(dst.conv.receive(data, now))
    raise AssertionError("the conversation did not go quiet")


def _pair(held_a: list[Record], held_b: list[Record]) -> tuple[Side, Side]:
    a = Side(A, B, Role.INITIATOR, held_a)
    b = Side(B, A, Role.RESPONDER, held_b)
    a.act(a.conv.hello("A"))
    b.act(b.conv.hello("B"))
    return a, b


def _expected(side: Side, other: Side) -> set[bytes]:
    return set(side.store) | {
        r.id
        for r in other.store.values()
        if may_receive(r, side.me, other.me) and _exchangeable(r, other.me, side.me)
    }


subsets = st.lists(st.sampled_from(POOL), unique_by=lambda r: r.id, max_size=len(POOL))


@settings(max_examples=60, deadline=None)
@given(subsets, subsets)
def test_two_conversations_converge_for_random_sets(
    held_a: list[Record], held_b: list[Record]
) -> None:
    a, b = _pair(held_a, held_b)
    want_a, want_b = _expected(a, b), _expected(b, a)
    a.act(a.conv.begin_round(1.0))
    _run(a, b)
    assert set(a.store) == want_a
    assert set(b.store) == want_b
    assert a.synced == b.synced == 1
    assert a.conv.state is b.conv.state is ConversationState.IDLE
    assert not a.penalties and not b.penalties
    # A second round finds nothing to move: one round trip, no records.
    before = (a.conv.record_bytes_sent, b.conv.record_bytes_sent)
    a.act(a.conv.begin_round(1.0 + limits.MIN_ROUND_INTERVAL_S))
    _run(a, b, now=1.0 + limits.MIN_ROUND_INTERVAL_S)
    assert (a.conv.record_bytes_sent, b.conv.record_bytes_sent) == before
    assert a.synced == b.synced == 2


@settings(max_examples=40, deadline=None)
@given(subsets, subsets)
def test_never_sends_a_record_back_to_its_sender_or_twice(
    held_a: list[Record], held_b: list[Record]
) -> None:
    a, b = _pair(held_a, held_b)
    a.act(a.conv.begin_round(1.0))
    _run(a, b)
    # Push everything each side holds, twice: nothing the other sent or was sent goes again.
    for _ in range(2):
        a.act(a.conv.push(list(a.store.values()), 2.0))
        b.act(b.conv.push(list(b.store.values()), 2.0))
        _run(a, b, now=2.0)
    for side in (a, b):
        assert len(side.received) == len(set(side.received)), "a record arrived twice"
        assert all(side.store[i].author != side.me for i in side.received), "sent back"
    # The driver learns which records each Send carried: exactly what arrived.
    assert sorted(a.sent_ids) == sorted(b.received)
    assert sorted(b.sent_ids) == sorted(a.received)


messages = st.one_of(
    st.binary(max_size=64),
    st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=4).map(
        lambda ids: encode_message(Want(tuple(ids)))
    ),
    st.sampled_from(POOL).map(lambda r: encode_message(Records((r.to_bytes(),)))),
    st.binary(max_size=64).map(lambda p: encode_message(Reconcile(p))),
    st.just(encode_message(SyncDone())),
    st.just(HELLO),
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(Role)), st.lists(messages, max_size=8))
def test_any_bytes_from_a_peer_raise_only_remote_protocol_errors(
    role: Role, chunks: list[bytes]
) -> None:
    side = Side(A, B, role, POOL[:5])
    side.act(side.conv.hello("A"))
    if role is Role.INITIATOR:
        side.act(side.conv.begin_round(0.0))
    try:
        for chunk in chunks:
            side.act(side.conv.receive(chunk, 1.0))
    except RemoteProtocolError:
        assert side.conv.state is ConversationState.FAILED
        with pytest.raises(LocalProtocolError):
            side.conv.receive(b"", 1.0)


def test_unasked_records_in_a_round_are_charged_against_what_reconciliation_announced() -> None:
    """A round opened with one Reconcile does not admit unannounced records: they are
    pushes, on the push allowance, and past it the peer is cut off (issue 11 item 6)."""
    b = Side(B, A, Role.RESPONDER, [])
    b.act(b.conv.hello("B"))
    b.act(b.conv.receive(HELLO, 0.0))
    # A round whose initiator announces nothing (it holds nothing).
    b.act(b.conv.receive(encode_message(Reconcile(Reconciler([]).initiate())), 0.0))
    assert b.conv.state is ConversationState.ROUND_OPEN
    # One record per message: the session takes a record repeated within a message once.
    junk = encode_message(next(iter(split_records([POOL[0].to_bytes()]))))
    with pytest.raises(QuotaExceeded):
        for _ in range(limits.PEER_PUSH_RECORDS_BURST + 1):
            b.act(b.conv.receive(junk, 0.0))
    assert b.conv.state is ConversationState.FAILED


def test_announced_records_are_admitted_within_a_round() -> None:
    records = POOL[:20]
    a, b = _pair(records, [])
    a.act(a.conv.begin_round(1.0))
    _run(a, b)
    assert set(b.store) >= {r.id for r in records if may_receive(r, B.node_id, A.node_id)}
    assert not b.penalties


def test_rounds_are_throttled_per_peer() -> None:
    a, b = _pair(POOL[:3], [])
    a.act(a.conv.begin_round(1.0))
    _run(a, b)
    assert not a.conv.round_due(1.0 + limits.MIN_ROUND_INTERVAL_S / 2)
    assert not a.conv.round_due(1.0 + limits.RESYNC_INTERVAL_S / 2)
    assert a.conv.round_due(1.0 + limits.RESYNC_INTERVAL_S)
    # A peer that opens rounds faster than the gap allows is refused.
    c = Side(B, A, Role.RESPONDER, [])
    c.act(c.conv.hello("B"))
    c.act(c.conv.receive(HELLO, 0.0))
    round_ = encode_message(Reconcile(Reconciler([]).initiate()))
    c.act(c.conv.receive(round_, 0.0))
    c.act(c.conv.receive(encode_message(SyncDone()), 0.0))
    with pytest.raises(RateLimited):
        c.conv.receive(round_, limits.MIN_ROUND_GAP_S / 2)


def test_responder_keeps_its_items_between_rounds_until_they_change() -> None:
    a, b = _pair(POOL[:4], POOL[4:8])
    loads = 0
    act = b.act

    def counting(events: list[ConversationEvent]) -> None:
        nonlocal loads
        loads += sum(isinstance(e, LoadItems) for e in events)
        act(events)

    b.act = counting  # type: ignore[method-assign]
    now = 1.0
    for _ in range(3):
        a.act(a.conv.begin_round(now))
        _run(a, b, now=now)
        now += limits.MIN_ROUND_INTERVAL_S
    # Loaded for the first round, again after records arrived, then reused.
    assert loads == 2


def test_transition_table_has_a_failed_state_and_only_open_sources() -> None:
    sources = {state for _, state, _ in _TRANSITIONS}
    assert ConversationState.FAILED not in sources
    assert ConversationState.CLOSED not in sources
    conv = Conversation(us=A.node_id, peer=B.node_id, role=Role.RESPONDER, now=0.0)
    with pytest.raises(LocalProtocolError):
        conv.begin_round(0.0)
    conv.close()
    with pytest.raises(LocalProtocolError):
        conv.receive(b"", 0.0)


def _transcript(held_a: list[Record], held_b: list[Record]) -> tuple[list[bytes], list[bytes]]:
    """Every message each side sent in one real round, in order."""
    a, b = _pair(held_a, held_b)
    a.act(a.conv.begin_round(1.0))
    sent_a: list[bytes] = []
    sent_b: list[bytes] = []
    for _ in range(1000):
        if not a.outbox and not b.outbox:
            break
        for src, dst, log in ((a, b, sent_a), (b, a, sent_b)):
            data, src.outbox = b"".join(src.outbox), []
            if data:
                log.append(data)
                dst.act(dst.conv.receive(data, 1.0))
    return sent_a, sent_b


TRANSCRIPT_A, TRANSCRIPT_B = _transcript(POOL[:30], POOL[20:])


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([Role.INITIATOR, Role.RESPONDER]),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255), st.booleans()), max_size=4),
)
def test_a_mutated_real_round_raises_only_remote_protocol_errors(
    role: Role, mutations: list[tuple[int, int, bool]]
) -> None:
    """The peer's side of a real round, with bytes flipped, cut or repeated."""
    side = (
        Side(A, B, Role.INITIATOR, POOL[:30])
        if role is Role.INITIATOR
        else Side(B, A, Role.RESPONDER, POOL[20:])
    )
    side.act(side.conv.hello())
    if role is Role.INITIATOR:
        side.act(side.conv.begin_round(1.0))
    stream = bytearray(b"".join(TRANSCRIPT_B if role is Role.INITIATOR else TRANSCRIPT_A))
    for at, value, repeat in mutations:
        at %= len(stream)
        if repeat:
            stream[at:at] = stream[at : at + 64]
        else:
            stream[at] = value
    try:
        for start in range(0, len(stream), 997):
            side.act(side.conv.receive(bytes(stream[start : start + 997]), 1.0))
    except RemoteProtocolError:
        assert side.conv.state is ConversationState.FAILED


def test_a_silent_peer_cannot_hold_wanted_ids_hostage() -> None:
    """Wants a peer never answers are released after WANT_TIMEOUT_S, and the round it
    stalls fails after MAX_ROUND_SECONDS, so the ids can be fetched from another peer."""
    a, b = _pair([], POOL[:6])
    a.act(a.conv.begin_round(1.0))
    # B answers reconciliation, but every Records and Missing it sends is lost.
    for _ in range(50):
        for src, dst in ((a, b), (b, a)):
            data, src.outbox = b"".join(src.outbox), []
            if data and dst is a:
                kept = [m for m in _messages(data) if m[5] not in (5, 7)]  # Records, Missing
                data = b"".join(kept)
            if data:
                dst.act(dst.conv.receive(data, 1.0))
    asked = a.conv.session.outstanding_wants
    assert asked and a.conv.state is ConversationState.SETTLING
    assert a.conv.tick(1.0 + limits.WANT_TIMEOUT_S / 2) == []
    (released,) = a.conv.tick(1.0 + limits.WANT_TIMEOUT_S)
    assert isinstance(released, Denied) and set(released.ids) == asked
    assert a.conv.tick(2.0 + limits.WANT_TIMEOUT_S) == []  # released once
    assert not a.conv.wanted  # and not handed back again when the connection ends
    with pytest.raises(UnexpectedMessage):
        a.conv.tick(2.0 + limits.MAX_ROUND_SECONDS)
    assert a.conv.state is ConversationState.FAILED


def _stalled_pair(lose_answers: bool) -> tuple[Side, Side]:
    """A asks B for records in a round at t = 1; B's Records and Missing are lost or not."""
    a, b = _pair([], POOL[:6])
    a.act(a.conv.begin_round(1.0))
    for _ in range(50):
        for src, dst in ((a, b), (b, a)):
            data, src.outbox = b"".join(src.outbox), []
            if data and dst is a and lose_answers:
                data = b"".join(m for m in _messages(data) if m[5] not in (5, 7))
            if data:
                dst.act(dst.conv.receive(data, 1.0))
    return a, b


def test_wants_a_peer_sits_on_are_offered_to_a_second_holder_once() -> None:
    """Ids a peer has not answered for WANT_HEDGE_S, while it answered no want at all, are
    overdue: offered once for a second holder, still outstanding until WANT_TIMEOUT_S."""
    a, _ = _stalled_pair(lose_answers=True)
    asked = a.conv.session.outstanding_wants
    assert asked
    assert a.conv.overdue(1.0 + limits.WANT_HEDGE_S / 2) == []
    overdue = a.conv.overdue(1.0 + limits.WANT_HEDGE_S)
    assert set(overdue) == asked
    a.conv.hedged(overdue[:1])
    assert set(a.conv.overdue(2.0 + limits.WANT_HEDGE_S)) == asked - {overdue[0]}
    a.conv.hedged(overdue)
    assert a.conv.overdue(3.0 + limits.WANT_HEDGE_S) == []  # each id once
    assert set(a.conv.wanted) == asked  # hedging releases nothing
    (released,) = a.conv.tick(1.0 + limits.WANT_TIMEOUT_S)
    assert isinstance(released, Denied) and set(released.ids) == asked


def test_a_peer_that_answers_its_wants_is_never_hedged() -> None:
    a, _ = _stalled_pair(lose_answers=False)
    assert a.synced == 1 and not a.conv.session.outstanding_wants
    assert a.conv.overdue(1.0 + limits.WANT_TIMEOUT_S) == []


def _messages(data: bytes) -> list[bytes]:
    out = []
    while data:
        size = int.from_bytes(data[:4], "big")
        out.append(data[: 4 + size])
        data = data[4 + size :]
    return out


def test_an_id_fetched_elsewhere_is_offered_again_when_that_peer_fails_us() -> None:
    """Reconciliation with C announced x, but x was being fetched from B; when B denies
    it (or sits on it, or closes), the driver takes x back from C's deferred ids and asks
    C at once instead of waiting for the next round with C."""
    x, y = POOL[0].id, POOL[1].id
    conv = Conversation(us=A.node_id, peer=C.node_id, role=Role.INITIATOR, now=0.0)
    assert conv.want([], deferred=[x]) == []
    assert conv.take_deferred([y, x]) == [x]
    assert conv.take_deferred([x]) == []  # offered once
    (send,) = conv.ask([x])
    assert isinstance(send, Send) and send.data == encode_message(Want((x,)))
    assert x in conv.wanted


class OneAtATime(Side):
    """A driver that reads one record per LookUp (as a byte bound on big records would) and
    hands the rest back with `serve(found, later)`."""

    lookups = 0

    def look_up(self, event: LookUp) -> list[ConversationEvent]:
        self.lookups += 1
        first = event.ids[:1]
        found = {
            i: self.store[i].to_bytes()
            for i in first
            if i in self.store and may_receive(self.store[i], self.peer, self.me)
        }
        return self.conv.serve(found, event.ids[1:])


def test_ids_a_lookup_hands_back_are_served_by_the_next_and_the_sets_converge() -> None:
    held = [r for r in POOL if r.author == B.node_id and r.scope is Scope.NETWORK]
    a = Side(A, B, Role.INITIATOR, [])
    b = OneAtATime(B, A, Role.RESPONDER, held)
    a.act(a.conv.hello("A"))
    b.act(b.conv.hello("B"))
    a.act(a.conv.begin_round(1.0))
    _run(a, b)
    assert set(a.store) == {r.id for r in held}
    assert a.synced == b.synced == 1 and not a.penalties and not b.penalties
    assert b.lookups >= len(held)  # one record per look-up: every id came back for the next


def _crossed_pair(record: Record) -> tuple[Side, Side]:
    """A and B both got `record` elsewhere and pushed it to each other at once: the copies
    cross, so each side prunes the link."""
    a, b = _pair([record], [record])
    a.act(a.conv.push([record], 1.0))
    b.act(b.conv.push([record], 1.0))
    _run(a, b)
    return a, b


def test_a_link_is_pruned_when_whole_copies_cross() -> None:
    network = [r for r in POOL if r.author == C.node_id and r.kind is Kind.GUIDE]
    a, b = _pair([network[0]], [])
    a.act(a.conv.push([network[0]], 1.0))
    _run(a, b)
    assert not a.conv.pruned and not b.conv.pruned, "a copy the peer lacked prunes nothing"
    a, b = _crossed_pair(network[1])
    assert a.conv.pruned and b.conv.pruned


def test_lazy_pushes_offer_ids_and_the_peer_fetches_only_what_it_lacks() -> None:
    """Over a pruned link, records offered by id (Have) reach the peer through its Want,
    once each; ids it already holds are not asked for; the offering side never pushes
    them again; the Want grafts the link (eager again)."""
    first = next(r for r in POOL if r.author == C.node_id and r.kind is Kind.GUIDE)
    a, b = _crossed_pair(first)
    a.sent_ids.clear()
    mine = [_record(A, n, Scope.NETWORK) for n in range(1, 7)]  # no alert (n % 7 == 0)
    a.store.update((r.id, r) for r in mine)
    b.store.update((r.id, r) for r in mine[:2])
    lazy = {r.id for r in mine}
    a.act(a.conv.push(mine[:2], 2.0, lazy))
    assert not a.sent_ids, "offered records went whole"
    _run(a, b, now=2.0)
    assert a.conv.pruned, "ids the peer held (no Want) graft nothing"
    a.act(a.conv.push(mine[2:], 2.0, lazy))
    assert not a.sent_ids, "offered records went whole"
    _run(a, b, now=2.0)
    assert sorted(b.received) == sorted(r.id for r in [first, *mine[2:]])
    assert set(b.store) == {r.id for r in [first, *mine]}
    assert not a.conv.pruned, "a Want for an offered id grafts the link"
    a.act(a.conv.push(mine, 3.0))  # offered once: never pushed again on this connection
    assert not a.outbox


def test_push_plan_offers_by_id_over_pruned_links_and_old_news_everywhere() -> None:
    peers = [Identity(hashlib.sha256(bytes([n])).digest()).node_id for n in range(6)]
    fresh = _record(A, 1, Scope.NETWORK)
    now_ms = fresh.created + limits.PUSH_FRESH_MS
    eager = eager_peers(fresh.id, peers)
    targets = {p: n % 2 == 0 for n, p in enumerate(peers)}  # every other link pruned
    plan = push_plan([fresh], targets, now_ms)
    assert {p for p, ids in plan.items() if ids} == {
        p for p, pruned in targets.items() if pruned and p not in eager
    }
    assert all(not ids for ids in push_plan([fresh], dict.fromkeys(peers, False), now_ms).values())
    old = push_plan([fresh], dict.fromkeys(peers, False), now_ms + 1)
    assert all(ids == {fresh.id} for ids in old.values()), "old news goes by id everywhere"
    alert = _record(A, 7, Scope.NETWORK)
    assert alert.kind is Kind.ALERT
    late = push_plan([alert], dict.fromkeys(peers, True), alert.created + 10**9)
    assert all(not ids for ids in late.values()), "alerts always go whole"


def test_eager_peers_are_a_few_chosen_per_record() -> None:
    peers = [Identity(hashlib.sha256(bytes([n])).digest()).node_id for n in range(40)]
    chosen = [frozenset(eager_peers(bytes([n]) * 32, peers[:8])) for n in range(40)]
    assert all(len(c) == limits.EAGER_PUSH_PEERS for c in chosen)
    assert len(set(chosen)) > 10, "the same peers for every record"
    assert eager_peers(bytes(32), peers[:2]) == set(peers[:2])
    hub = peers[: limits.EAGER_PUSH_HUB_PEERS + 1]
    assert eager_peers(bytes(32), hub) == set(hub), "a hub sends every peer the record whole"
    assert len(eager_peers(bytes(32), hub[:-1])) == limits.EAGER_PUSH_PEERS


def test_a_flood_of_offers_is_charged_as_pushes() -> None:
    a, b = _pair([], [])
    _run(a, b)  # the Hellos
    total = limits.PEER_PUSH_RECORDS_BURST + limits.MAX_IDS_PER_MESSAGE
    flood = [hashlib.blake2b(n.to_bytes(4, "big"), digest_size=32).digest() for n in range(total)]
    data = b"".join(
        encode_message(Have(tuple(flood[i : i + limits.MAX_IDS_PER_MESSAGE])))
        for i in range(0, len(flood), limits.MAX_IDS_PER_MESSAGE)
    )
    with pytest.raises(QuotaExceeded):
        b.conv.receive(data, 1.0)
