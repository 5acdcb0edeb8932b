"""Sync messages and the sync session: two real sessions joined by an in-memory pipe."""

from __future__ import annotations

import contextlib
import hashlib
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import limits
from protocol.errors import DecodeError, LocalProtocolError, RemoteProtocolError, UnexpectedMessage
from protocol.identity import Identity
from protocol.messages import (
    Have,
    Hello,
    MessageReader,
    Missing,
    Reconcile,
    Records,
    SyncDone,
    Want,
    decode_message,
    encode_message,
    split_records,
)
from protocol.reconcile import Reconciler
from protocol.record import Kind, Record, Scope
from protocol.session import (
    PeerHello,
    PeerMissing,
    PeerReconcile,
    PeerSyncDone,
    PeerWant,
    RecordsReceived,
    SessionState,
    SyncSession,
    record_id,
)

ids = st.binary(min_size=32, max_size=32)
messages = st.one_of(
    st.builds(
        Hello,
        st.integers(0, 2**32 - 1),
        st.text(max_size=20),
        st.lists(st.text(max_size=30), max_size=3).map(tuple),
    ),
    st.builds(Reconcile, st.binary(max_size=100)),
    st.just(SyncDone()),
    st.builds(Want, st.lists(ids, min_size=1, max_size=20).map(tuple)),
    st.builds(Missing, st.lists(ids, min_size=1, max_size=20).map(tuple)),
    st.builds(Have, st.lists(ids, min_size=1, max_size=20).map(tuple)),
    st.builds(Records, st.lists(st.binary(max_size=300), min_size=1, max_size=5).map(tuple)),
)


@given(messages)
def test_message_round_trip(message: object) -> None:
    framed = encode_message(message)  # type: ignore[arg-type]
    assert decode_message(framed[4:]) == message


@given(st.lists(messages, min_size=1, max_size=6), st.data())
def test_reader_reassembles_any_chunking(batch: list[object], data: st.DataObject) -> None:
    stream = b"".join(encode_message(m) for m in batch)  # type: ignore[arg-type]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    reader = MessageReader()
    out = []
    last = 0
    for cut in [*cuts, len(stream)]:
        reader.receive_data(stream[last:cut])
        last = cut
        while (m := reader.next_message()) is not None:
            out.append(m)
    assert out == batch


@given(st.binary(max_size=300))
def test_arbitrary_message_bytes_raise_only_remote_errors(blob: bytes) -> None:
    reader = MessageReader()
    reader.receive_data(struct.pack(">I", len(blob)) + blob)
    with contextlib.suppress(RemoteProtocolError):
        reader.next_message()


def test_length_bomb_rejected_before_buffering() -> None:
    reader = MessageReader()
    reader.receive_data(struct.pack(">I", limits.MAX_MESSAGE_BYTES + 1))
    with pytest.raises(DecodeError):
        reader.next_message()


def test_zero_length_rejected() -> None:
    reader = MessageReader()
    reader.receive_data(b"\x00\x00\x00\x00")
    with pytest.raises(DecodeError):
        reader.next_message()


def test_too_many_ids_rejected() -> None:
    from protocol.encoding import pack

    body = pack([2, [b"\x00" * 32] * (limits.MAX_IDS_PER_MESSAGE + 1)])
    with pytest.raises(DecodeError):
        decode_message(body)


def test_split_records_respects_budget() -> None:
    recs = [b"x" * 400] * 10
    batches = split_records(recs, budget=1000)
    assert [r for b in batches for r in b.records] == recs
    assert all(sum(len(r) + 5 for r in b.records) <= 1000 for b in batches)


def _record(n: int) -> bytes:
    return hashlib.sha256(str(n).encode()).digest() * 3


def _items(store: dict[bytes, bytes]) -> list[tuple[int, bytes]]:
    return sorted((0, rid) for rid in store)


def test_two_sessions_reconcile_and_exchange_what_each_lacks() -> None:
    """Client initiates, server answers; both end with the union, with no echo."""
    a_store = {record_id(_record(i)): _record(i) for i in range(0, 300)}
    b_store = {record_id(_record(i)): _record(i) for i in range(290, 600)}
    a, b = SyncSession(initiator=True), SyncSession(initiator=False)
    ra = Reconciler(_items(a_store))
    b_reconciler: Reconciler | None = None
    to_b = a.hello("A") + a.reconcile(ra.initiate())
    to_a = b.hello("B")
    done = False
    for _ in range(50):
        out_a, out_b = b"", b""
        for event in b.receive_data(to_b):
            if isinstance(event, PeerReconcile):
                b_reconciler = b_reconciler or Reconciler(_items(b_store))
                out_b += b.reconcile(b_reconciler.reconcile(event.payload) or b"")
            elif isinstance(event, PeerWant):
                out_b += b.records([b_store[i] for i in event.ids])
            elif isinstance(event, RecordsReceived):
                for rec in event.records:
                    b_store[record_id(rec)] = rec
            elif isinstance(event, PeerSyncDone):
                done = True
        for event in a.receive_data(to_a):
            if isinstance(event, PeerReconcile):
                following = ra.reconcile(event.payload)
                if following is not None:
                    out_a += a.reconcile(following)
                else:
                    out_a += a.want(ra.need) + a.records([a_store[i] for i in ra.have])
            elif isinstance(event, RecordsReceived):
                assert all(event.solicited)
                for rec in event.records:
                    a_store[record_id(rec)] = rec
                if not a.outstanding_wants:
                    out_a += a.sync_done()
            else:
                assert isinstance(event, PeerHello)
        to_a, to_b = out_b, out_a
        if not to_a and not to_b:
            break
    assert done
    assert a_store == b_store and len(a_store) == 600
    assert all(a.peer_knows(i) for i in ra.need + ra.have)


def test_message_before_hello_is_unexpected() -> None:
    s = SyncSession(initiator=False)
    with pytest.raises(UnexpectedMessage):
        s.receive_data(encode_message(SyncDone()))
    assert s.state is SessionState.FAILED
    with pytest.raises(LocalProtocolError):
        s.receive_data(b"")


def test_second_hello_is_unexpected() -> None:
    s = SyncSession(initiator=False)
    s.receive_data(encode_message(Hello(1)))
    with pytest.raises(UnexpectedMessage):
        s.receive_data(encode_message(Hello(1)))


def test_unasked_reconcile_reply_is_unexpected() -> None:
    s = SyncSession(initiator=True)
    s.receive_data(encode_message(Hello(1)))
    with pytest.raises(UnexpectedMessage):
        s.receive_data(encode_message(Reconcile(b"x")))


def test_sync_done_only_from_the_initiator_and_once_per_round() -> None:
    s = SyncSession(initiator=True)
    s.receive_data(encode_message(Hello(1)))
    with pytest.raises(UnexpectedMessage):
        s.receive_data(encode_message(SyncDone()))
    r = SyncSession(initiator=False)
    r.receive_data(encode_message(Hello(1)) + encode_message(Reconcile(b"x")))
    r.receive_data(encode_message(SyncDone()))
    with pytest.raises(UnexpectedMessage):
        r.receive_data(encode_message(SyncDone()))


def test_responder_accepts_a_new_round_after_sync_done() -> None:
    r = SyncSession(initiator=False)
    r.receive_data(encode_message(Hello(1)) + encode_message(Reconcile(b"x")))
    r.receive_data(encode_message(SyncDone()))
    events = r.receive_data(encode_message(Reconcile(b"y")) + encode_message(SyncDone()))
    assert [type(e) for e in events] == [PeerReconcile, PeerSyncDone]


def test_missing_only_for_ids_we_asked() -> None:
    s = SyncSession(initiator=True)
    s.want([b"\x01" * 32])
    events = s.receive_data(encode_message(Hello(1)) + encode_message(Missing((b"\x01" * 32,))))
    assert isinstance(events[-1], PeerMissing) and not s.outstanding_wants
    with pytest.raises(UnexpectedMessage):
        s.receive_data(encode_message(Missing((b"\x02" * 32,))))


def test_wrong_version_is_unexpected() -> None:
    with pytest.raises(UnexpectedMessage):
        SyncSession(initiator=False).receive_data(encode_message(Hello(2)))


def test_outstanding_wants_are_bounded() -> None:
    s = SyncSession(initiator=True)
    many = [i.to_bytes(32, "big") for i in range(limits.MAX_WANT_OUTSTANDING)]
    s.want(many)
    assert s.want_capacity() == 0
    with pytest.raises(LocalProtocolError):
        s.want([b"\xff" * 32])


def test_pushed_records_are_marked_unsolicited_and_not_echoed() -> None:
    s = SyncSession(initiator=False)
    rec = _record(1)
    events = s.receive_data(encode_message(Hello(1)) + encode_message(Records((rec,))))
    received = next(e for e in events if isinstance(e, RecordsReceived))
    assert received.solicited == (False,)
    assert s.peer_knows(record_id(rec))


def test_received_records_carry_their_ids_and_decode_to_the_same() -> None:
    # The node hands these ids to Record.from_bytes(known_id=...) to skip hashing again:
    # they must be exactly the ids the record computes for itself.
    author = Identity(bytes(32))
    recs = tuple(
        Record.create(
            author, Kind.GUIDE, created=n, expires=n + 1, scope=Scope.NETWORK, payload=b"x"
        ).to_bytes()
        for n in (1, 2)
    )
    s = SyncSession(initiator=False)
    events = s.receive_data(encode_message(Hello(1)) + encode_message(Records(recs)))
    received = next(e for e in events if isinstance(e, RecordsReceived))
    assert received.ids == tuple(record_id(r) for r in recs)
    for data, rid in zip(received.records, received.ids, strict=True):
        assert Record.from_bytes(data, known_id=rid).id == Record.from_bytes(data).id == rid


def test_have_matches_the_spec_vector() -> None:
    """docs/spec/30-sync.md, "Push and relay": the framed bytes of a Have of two ids."""
    spec = (Path(__file__).resolve().parents[2] / "docs/spec/30-sync.md").read_text()
    framed = encode_message(Have((bytes(32), bytes(range(32)))))
    assert framed.hex() in spec.replace("\n", "").replace(" ", "")
    assert decode_message(framed[4:]) == Have((bytes(32), bytes(range(32))))
