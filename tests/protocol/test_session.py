"""Sync messages and the sync session: two real sessions joined by an in-memory pipe."""

from __future__ import annotations

import contextlib
import hashlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import limits
from protocol.errors import DecodeError, LocalProtocolError, RemoteProtocolError, UnexpectedMessage
from protocol.messages import (
    Have,
    HaveDone,
    Hello,
    MessageReader,
    Records,
    Want,
    decode_message,
    encode_message,
    split_records,
)
from protocol.session import (
    PeerHave,
    PeerHaveDone,
    PeerHello,
    PeerWant,
    RecordsReceived,
    SessionState,
    SyncComplete,
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
    st.builds(Have, st.lists(ids, min_size=1, max_size=20).map(tuple)),
    st.just(HaveDone()),
    st.builds(Want, st.lists(ids, min_size=1, max_size=20).map(tuple)),
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


def test_two_sessions_sync_what_each_lacks() -> None:
    a_store = {record_id(_record(i)): _record(i) for i in range(0, 30)}
    b_store = {record_id(_record(i)): _record(i) for i in range(20, 50)}
    a, b = SyncSession(), SyncSession()
    to_b = a.hello("A") + a.have(list(a_store)) + a.have_done()
    to_a = b.hello("B") + b.have(list(b_store)) + b.have_done()
    complete = {"a": False, "b": False}
    for _ in range(10):
        next_to_b, next_to_a = b"", b""
        for side, session, incoming, store in (("b", b, to_b, b_store), ("a", a, to_a, a_store)):
            out = b""
            for event in session.receive_data(incoming):
                if isinstance(event, PeerHave):
                    missing = [i for i in event.ids if i not in store]
                    if missing:
                        out += session.want(missing)
                elif isinstance(event, PeerWant):
                    out += session.records([store[i] for i in event.ids])
                elif isinstance(event, RecordsReceived):
                    assert all(event.solicited)
                    for rec in event.records:
                        store[record_id(rec)] = rec
                elif isinstance(event, SyncComplete):
                    complete[side] = True
                else:
                    assert isinstance(event, PeerHello | PeerHaveDone)
            if side == "b":
                next_to_a += out
            else:
                next_to_b += out
        to_a, to_b = next_to_a, next_to_b
        if not to_a and not to_b:
            break
    assert a_store == b_store and len(a_store) == 50
    assert complete == {"a": True, "b": True}


def test_message_before_hello_is_unexpected() -> None:
    s = SyncSession()
    with pytest.raises(UnexpectedMessage):
        s.receive_data(encode_message(HaveDone()))
    assert s.state is SessionState.FAILED
    with pytest.raises(LocalProtocolError):
        s.receive_data(b"")


def test_second_hello_and_second_have_done_are_unexpected() -> None:
    s = SyncSession()
    s.receive_data(encode_message(Hello(1)))
    with pytest.raises(UnexpectedMessage):
        s.receive_data(encode_message(Hello(1)))
    s = SyncSession()
    s.receive_data(encode_message(Hello(1)) + encode_message(HaveDone()))
    with pytest.raises(UnexpectedMessage):
        s.receive_data(encode_message(Have((b"\x01" * 32,))))


def test_want_for_unoffered_id_is_unexpected() -> None:
    s = SyncSession()
    s.have([b"\x01" * 32])
    s.receive_data(encode_message(Hello(1)) + encode_message(Want((b"\x01" * 32,))))
    with pytest.raises(UnexpectedMessage):
        s.receive_data(encode_message(Want((b"\x02" * 32,))))


def test_wrong_version_is_unexpected() -> None:
    with pytest.raises(UnexpectedMessage):
        SyncSession().receive_data(encode_message(Hello(2)))


def test_outstanding_wants_are_bounded() -> None:
    s = SyncSession()
    many = [i.to_bytes(32, "big") for i in range(limits.MAX_WANT_OUTSTANDING)]
    s.want(many)
    assert s.want_capacity() == 0
    with pytest.raises(LocalProtocolError):
        s.want([b"\xff" * 32])


def test_pushed_records_are_marked_unsolicited_and_not_echoed() -> None:
    s = SyncSession()
    rec = _record(1)
    events = s.receive_data(encode_message(Hello(1)) + encode_message(Records((rec,))))
    received = next(e for e in events if isinstance(e, RecordsReceived))
    assert received.solicited == (False,)
    assert s.peer_knows(record_id(rec))
