"""The help request rules (protocol/help.py): strict schemas, and a fold that gives one
state from the same records in any order, the earlier of two claims holding the request."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import help as rules
from protocol import limits
from protocol.content import Alert, check_content
from protocol.encoding import pack
from protocol.envelope import open_record
from protocol.errors import DecodeError, NotForUs
from protocol.help import AlertAck, Event, Op, Request, Step, fold
from protocol.identity import Identity
from protocol.record import Kind, Record

RID = bytes(range(32))
REQUESTER, B, C, D = (bytes([n]) * 32 for n in (1, 2, 3, 4))
REQUEST = Request("legal", "KE", "Detained at the border post", limits.DEFAULT_HELP_TARGET_MS)
T0 = 1_800_000_000_000


def ev(n: int, author: bytes, at: int, op: Op, ref: bytes = b"", outcome: str = "") -> Event:
    return Event(bytes([n]) * 32, author, T0 + at, Step(op, RID, ref, outcome))


def state(events: list[Event]) -> rules.HelpState:
    return fold(RID, REQUESTER, T0, REQUEST, events)


def test_schemas_round_trip_and_refuse_unknown_or_missing_fields() -> None:
    for content in (
        REQUEST.to_content(),
        Request("shelter", "CD-NK", "x", 60_000, bytes(16)).to_content(),
        Step(Op.CLAIM, RID).to_content(),
        Step(Op.HANDOFF, RID, B).to_content(),
        Step(Op.RESOLVE, RID, outcome="Released on bail").to_content(),
    ):
        assert rules.from_content(content).to_content() == content
        check_content(Kind.HELP, content)
    bad = [
        {**REQUEST.to_content(), "need": "money"},
        {**REQUEST.to_content(), "region": "kenya"},
        {**REQUEST.to_content(), "text": "  "},
        {**REQUEST.to_content(), "text": "x" * (limits.MAX_HELP_TEXT_BYTES + 1)},
        {**REQUEST.to_content(), "target_ms": 0},
        {**REQUEST.to_content(), "extra": 1},
        {"op": "claim"},
        {"op": "claim", "request": RID[:31]},
        {"op": "handoff", "request": RID},
        {"op": "resolve", "request": RID, "outcome": ""},
        {"op": "steal", "request": RID},
        {"op": "claim", "request": RID, "peer": B},
    ]
    for content in bad:
        with pytest.raises(DecodeError):
            check_content(Kind.HELP, content)  # type: ignore[arg-type]


def test_alert_ack_flag_is_optional_and_strict() -> None:
    assert Alert.from_content({"text": "t", "urgency": "high"}).ack is False
    assert Alert.from_content({"text": "t", "urgency": "high", "ack": True}).ack is True
    for value in (False, 1, "yes"):
        with pytest.raises(DecodeError):
            Alert.from_content({"text": "t", "urgency": "high", "ack": value})
    assert AlertAck.from_content({"alert": RID}).alert == RID
    with pytest.raises(DecodeError):
        check_content(Kind.ACK, {"alert": RID, "text": "seen"})


def test_the_earlier_claim_holds_and_the_later_claimant_is_marked_late() -> None:
    # Same created time: the record id breaks the tie (C's id 5 < B's id 6).
    s = state([ev(6, B, 10, Op.CLAIM), ev(5, C, 10, Op.CLAIM), ev(2, D, 5, Op.ACK)])
    assert s.holder == C
    assert [m for m, _ in s.claims] == [C, B]
    assert s.late_claim(B) and not s.late_claim(C)
    assert s.first_response == T0 + 5
    assert s.acks == ((D, T0 + 5),)


def test_only_the_holder_hands_off_and_only_requester_or_holder_resolves() -> None:
    s = state(
        [
            ev(1, B, 1, Op.CLAIM),
            ev(2, C, 2, Op.HANDOFF, D),  # not the holder: ignored
            ev(3, B, 3, Op.HANDOFF, C),
            ev(4, B, 4, Op.RESOLVE, outcome="by B"),  # B no longer holds it: ignored
            ev(5, C, 5, Op.RESOLVE, outcome="Safe house found"),
            ev(6, D, 6, Op.CLAIM),  # after the resolution: ignored
        ]
    )
    assert s.holder == C
    assert s.resolved == (C, T0 + 5, "Safe house found")
    assert [bool(e.ignored) for e in s.history] == [False, True, False, True, False, True]
    assert not s.open


def test_a_referral_is_accepted_by_the_requester_only() -> None:
    contact = bytes([9]) * 32
    refer = ev(1, B, 1, Op.REFER, contact)
    s = state([refer, ev(2, C, 2, Op.ACCEPT_REFERRAL, refer.id)])
    assert [r.accepted for r in s.referrals] == [False]
    s = state([refer, ev(3, REQUESTER, 3, Op.ACCEPT_REFERRAL, refer.id)])
    assert [(r.by, r.contact, r.accepted) for r in s.referrals] == [(B, contact, True)]


def test_overdue_when_no_response_came_within_the_target() -> None:
    target = REQUEST.target_ms
    assert not state([]).overdue(T0 + target)
    assert state([]).overdue(T0 + target + 1)
    assert not state([ev(1, B, target - 1, Op.ACK)]).overdue(T0 + 10 * target)
    assert state([ev(1, B, target + 1, Op.ACK)]).overdue(T0 + target + 2)


_steps = st.lists(
    st.tuples(
        st.integers(1, 250),
        st.sampled_from([REQUESTER, B, C, D]),
        st.integers(0, 20),
        st.sampled_from(list(Op)[1:]),
        st.sampled_from([B, C, D]),
    ),
    max_size=30,
    unique_by=lambda t: t[0],
)


@settings(max_examples=300, deadline=None)
@given(_steps, st.randoms(use_true_random=False))
def test_fold_is_the_same_whatever_order_the_steps_arrive_in(
    raw: list[tuple[int, bytes, int, Op, bytes]], rnd: object
) -> None:
    events = []
    for n, author, at, op, peer in raw:
        ref = peer if op is Op.HANDOFF else b""
        if op is Op.REFER:
            ref = bytes([7]) * 32
        if op is Op.ACCEPT_REFERRAL and events:
            ref = events[0].id
        elif op is Op.ACCEPT_REFERRAL:
            ref = bytes(32)
        events.append(ev(n, author, at, op, ref, "done" if op is Op.RESOLVE else ""))
    shuffled = list(events)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert state(shuffled) == state(events)
    assert state(events + events[:3]) == state(events)  # a step received twice counts once


# The published vectors (docs/vectors/help.json) ----------------------------------------------

_VECTORS = Path(__file__).resolve().parents[2] / "docs" / "vectors"


def test_help_vectors_open_with_the_circle_key_and_fold_to_the_published_state() -> None:
    data = json.loads((_VECTORS / "help.json").read_text())
    key = bytes.fromhex(data["circle_key"])
    reader = Identity(bytes.fromhex(data["seeds"]["c"]))
    names = {Identity(bytes.fromhex(s)).node_id.raw: n for n, s in data["seeds"].items()}
    first = Record.from_bytes(bytes.fromhex(data["request"]["record"]))
    body = open_record(first, reader, None, circle_keys=[key])
    assert pack(body.content).hex() == data["request"]["content"]
    request = rules.from_content(body.content)
    assert isinstance(request, Request)
    events = []
    for case in data["steps"]:
        record = Record.from_bytes(bytes.fromhex(case["record"]))
        opened = open_record(record, reader, None, circle_keys=[key])
        assert pack(opened.content).hex() == case["content"]
        step = rules.from_content(opened.content)
        assert isinstance(step, Step)
        events.append(Event(record.id, record.author.raw, record.created, step))
    got = fold(first.id, first.author.raw, first.created, request, events[::-1])
    want = data["state"]
    assert names[got.holder or b""] == want["holder"]
    assert [names[m] for m, _ in got.claims] == want["claims"]
    assert [names[e.event.author] for e in got.history if e.late] == want["late"]
    assert got.resolved is not None and got.resolved[2] == want["resolved"]
    assert got.first_response == want["first_response"]
    ack = Record.from_bytes(bytes.fromhex(data["alert_ack"]["record"]))
    requester = Identity(bytes.fromhex(data["seeds"]["requester"]))
    assert AlertAck.from_content(open_record(ack, requester, None).content).alert == bytes(32)
    with pytest.raises(NotForUs):  # sealed to the alert's author alone
        open_record(ack, reader, None, circle_keys=[key])


def test_help_vectors_are_fresh() -> None:
    script = _VECTORS / "make_help_vectors.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
