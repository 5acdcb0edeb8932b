"""protocol/introductions.py: the table of introduction states, every allowed and every
refused move, the rows it reads and writes (the stored format existing stores hold)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import introductions as intro
from protocol.encoding import Value, pack, unpack
from protocol.errors import LocalProtocolError, VerificationError
from protocol.identity import Identity
from protocol.introductions import Direction, IntroInput, IntroState
from protocol.messages import IntroRequest, IntroStatus

ASKER = Identity(b"\x31" * 32)
INTRODUCER = Identity(b"\x32" * 32)
OUT, IN = Direction.OUT, Direction.IN
S, In = IntroState, IntroInput

# Written out again here, independently of the module's table: what a reviewer reads.
ALLOWED = {
    (OUT, S.QUEUED, In.SEND): S.SENT,
    (OUT, S.QUEUED, In.REPLY_APPROVED): S.APPROVED,
    (OUT, S.QUEUED, In.REPLY_DECLINED): S.DECLINED,
    (OUT, S.QUEUED, In.REPLY_UNKNOWN): S.UNKNOWN,
    (OUT, S.SENT, In.REPLY_APPROVED): S.APPROVED,
    (OUT, S.SENT, In.REPLY_DECLINED): S.DECLINED,
    (OUT, S.SENT, In.REPLY_UNKNOWN): S.UNKNOWN,
    (IN, S.PENDING, In.APPROVE): S.APPROVED,
    (IN, S.PENDING, In.DECLINE): S.DECLINED,
}
EVERY = list(itertools.product(Direction, IntroState, IntroInput))


def test_state_values_are_the_stored_status_strings() -> None:
    """Existing stores hold these strings: renaming one would orphan their rows."""
    assert {s.value for s in IntroState} == {
        "queued", "sent", "pending", "approved", "declined", "unknown"
    }  # fmt: skip
    assert {d.value for d in Direction} == {"out", "in"}
    assert intro.INITIAL == {OUT: S.QUEUED, IN: S.PENDING}


@pytest.mark.parametrize(("direction", "state", "event"), sorted(ALLOWED, key=str))
def test_every_allowed_move(direction: Direction, state: IntroState, event: IntroInput) -> None:
    assert intro.transition(direction, state, event) is ALLOWED[(direction, state, event)]


@pytest.mark.parametrize(
    ("direction", "state", "event"), [k for k in EVERY if k not in ALLOWED], ids=str
)
def test_every_refused_move(direction: Direction, state: IntroState, event: IntroInput) -> None:
    assert intro.transition(direction, state, event) is None


def test_a_request_awaits_a_reply_until_it_has_one() -> None:
    assert frozenset({S.QUEUED, S.SENT}) == intro.AWAITING_REPLY
    for status in IntroStatus:
        outcome = intro.transition(OUT, S.SENT, intro.reply_input(status))
        assert outcome is not None and outcome not in intro.AWAITING_REPLY
        assert outcome.value == status.name.lower()  # approved, declined, unknown


@given(st.sampled_from(Direction), st.lists(st.sampled_from(IntroInput), max_size=12))
def test_any_sequence_of_inputs_ends_in_a_reachable_state(
    direction: Direction, events: list[IntroInput]
) -> None:
    """From the initial state, applying whatever the table allows: a decided state is
    final (nothing moves it again), and an outgoing request never becomes pending nor an
    incoming one queued or sent."""
    state = intro.INITIAL[direction]
    for event in events:
        nxt = intro.transition(direction, state, event)
        if state in (S.APPROVED, S.DECLINED, S.UNKNOWN):
            assert nxt is None
        if nxt is not None:
            state = nxt
    if direction is OUT:
        assert state is not S.PENDING
    else:
        assert state in (S.PENDING, S.APPROVED, S.DECLINED)


def _request(note: str = "for a client in Mombasa") -> IntroRequest:
    return IntroRequest.create(
        ASKER, b"\x01" * 16, b"\x02" * 32, INTRODUCER.node_id.raw, note, hops=2
    )


def test_new_row_is_the_stored_layout_and_holds_the_signed_request() -> None:
    request = _request()
    row = intro.new_row(OUT, request, 1_700_000_000_000, "shelter", "KE-30")
    assert row == {
        "dir": "out",
        "teaser": request.teaser_id,
        "introducer": request.introducer,
        "asker": request.asker,
        "note": request.note,
        "signature": request.signature,
        "status": "queued",
        "created": 1_700_000_000_000,
        "kind": "shelter",
        "region": "KE-30",
    }
    stored = unpack(pack(row))  # as the store keeps it
    assert isinstance(stored, dict)
    again = intro.request_of(request.request_id, stored, 0)
    assert again == IntroRequest(
        request.request_id, request.teaser_id, request.introducer, request.asker,
        request.note, 0, request.signature,
    )  # fmt: skip
    again.verify()  # the asker's signature survives the row (hops is not signed)
    assert intro.new_row(IN, request, 5, "shelter", "KE-30")["status"] == "pending"


def test_a_row_whose_request_was_altered_no_longer_verifies() -> None:
    row = intro.new_row(IN, _request(), 5, "lawyer", "KE")
    row["note"] = "something else"
    with pytest.raises(VerificationError):
        intro.request_of(b"\x01" * 16, row, 0).verify()


def test_moved_changes_the_status_only_and_refuses_what_the_table_refuses() -> None:
    row: dict[str, Value] = {**intro.new_row(IN, _request(), 5, "lawyer", "KE"), "extra": 1}
    approved = intro.moved(row, In.APPROVE)
    assert approved == {**row, "status": "approved"}
    assert row["status"] == "pending"  # the input row is left as it was
    assert approved is not None and intro.moved(approved, In.DECLINE) is None
    assert intro.moved(row, In.SEND) is None  # not a move of an incoming request
    assert intro.moved({**row, "status": "from-a-later-version"}, In.APPROVE) is None
    assert intro.state_of({**row, "status": "from-a-later-version"}) is None
    with pytest.raises(LocalProtocolError):
        intro.direction_of({"status": "pending"})


def test_reply_due_once_decided_until_replied() -> None:
    pending = intro.new_row(IN, _request(), 5, "lawyer", "KE")
    assert intro.reply_due(pending) is None
    approved = intro.moved(pending, In.APPROVE)
    declined = intro.moved(pending, In.DECLINE)
    assert approved is not None and declined is not None
    assert intro.reply_due(approved) is IntroStatus.APPROVED
    assert intro.reply_due(declined) is IntroStatus.DECLINED
    assert intro.reply_due({**approved, "replied": True}) is None
    ours = intro.moved(intro.new_row(OUT, _request(), 5, "lawyer", "KE"), In.REPLY_APPROVED)
    assert ours is not None and intro.reply_due(ours) is None  # we owe nobody a reply


def test_request_of_refuses_a_row_with_a_field_of_the_wrong_type() -> None:
    row = intro.new_row(OUT, _request(), 5, "lawyer", "KE")
    with pytest.raises(LocalProtocolError):
        intro.request_of(b"\x01" * 16, {**row, "teaser": "not bytes"}, 0)
