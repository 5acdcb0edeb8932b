"""Introductions: where a request for the details behind an on-request teaser stands, on
the side that asks (outgoing) and on the introducer's side (incoming), and the one table of
the moves between (docs/spec/70-contacts-and-queries.md, "Introductions").

Pure: a stored row comes in as a value and goes out as a new value; never sends, stores or
reads the clock (node/introductions.py does, and decides what a refused move means there).
A state's value is the status string stored in the row, so existing stores keep loading.
"""

from __future__ import annotations

import enum

from protocol.encoding import Value
from protocol.errors import LocalProtocolError
from protocol.messages import IntroRequest, IntroStatus


class Direction(enum.Enum):
    OUT = "out"  # we asked
    IN = "in"  # a peer asked us: we are the introducer


class IntroState(enum.Enum):
    """A stored introduction's status. See `_TRANSITIONS`."""

    QUEUED = "queued"  # out: written by `canopy introduce`; the running node sends it
    SENT = "sent"  # out: on its way to the introducer; waiting for the reply
    PENDING = "pending"  # in: waiting for our decision
    APPROVED = "approved"  # out: the introducer approved (the details come by sync); in: we did
    DECLINED = "declined"  # out: the introducer declined; in: we did
    UNKNOWN = "unknown"  # out: the introducer does not hold that contact (or none was reached)


class IntroInput(enum.Enum):
    SEND = "send"  # out: the request went out on a connection
    REPLY_APPROVED = "reply-approved"  # out: the introducer's IntroReply
    REPLY_DECLINED = "reply-declined"
    REPLY_UNKNOWN = "reply-unknown"
    APPROVE = "approve"  # in: `canopy introductions approve`
    DECLINE = "decline"  # in: `canopy introductions decline`


_O, _I = Direction.OUT, Direction.IN
_S, _In = IntroState, IntroInput

# The initial state of each direction: a request of ours is queued; one to us is pending.
INITIAL = {_O: _S.QUEUED, _I: _S.PENDING}

# The one transition table. Anything not listed is refused (`transition` returns None):
# a reply to a request that already has its answer, a second decision, a decision on a
# request of ours. What the node does on each move:
#
#   direction  state    input           -> state     output
#   out        QUEUED   send            -> SENT      IntroRequest toward the introducer
#   out        QUEUED   reply-approved  -> APPROVED  (a reply may overtake our own write of SENT)
#   out        QUEUED   reply-declined  -> DECLINED
#   out        QUEUED   reply-unknown   -> UNKNOWN
#   out        SENT     reply-approved  -> APPROVED  none: the details arrive by sync
#   out        SENT     reply-declined  -> DECLINED
#   out        SENT     reply-unknown   -> UNKNOWN
#   in         PENDING  approve         -> APPROVED  the details sealed to the asker; IntroReply
#   in         PENDING  decline         -> DECLINED  IntroReply
#
# An incoming request that is decided owes the peer it came from one IntroReply (`reply_due`);
# the row's `replied` flag records that it went, so the state itself does not move again.
_TRANSITIONS: dict[tuple[Direction, IntroState, IntroInput], IntroState] = {
    (_O, _S.QUEUED, _In.SEND): _S.SENT,
    **{
        (_O, state, reply): outcome
        for state in (_S.QUEUED, _S.SENT)
        for reply, outcome in (
            (_In.REPLY_APPROVED, _S.APPROVED),
            (_In.REPLY_DECLINED, _S.DECLINED),
            (_In.REPLY_UNKNOWN, _S.UNKNOWN),
        )
    },
    (_I, _S.PENDING, _In.APPROVE): _S.APPROVED,
    (_I, _S.PENDING, _In.DECLINE): _S.DECLINED,
}

_REPLY_INPUTS = {
    IntroStatus.APPROVED: _In.REPLY_APPROVED,
    IntroStatus.DECLINED: _In.REPLY_DECLINED,
    IntroStatus.UNKNOWN: _In.REPLY_UNKNOWN,
}
_REPLIES = {_S.APPROVED: IntroStatus.APPROVED, _S.DECLINED: IntroStatus.DECLINED}
# Requests of ours still waiting for an answer: the states a reply may move.
AWAITING_REPLY = frozenset(s for (d, s, i) in _TRANSITIONS if d is _O and i is _In.REPLY_APPROVED)


def transition(direction: Direction, state: IntroState, event: IntroInput) -> IntroState | None:
    """The state after `event`, or None if the table refuses it."""
    return _TRANSITIONS.get((direction, state, event))


def reply_input(status: IntroStatus) -> IntroInput:
    """The input an introducer's IntroReply of `status` is to a request of ours."""
    return _REPLY_INPUTS[status]


# -- stored rows ------------------------------------------------------------------------------


def new_row(
    direction: Direction, request: IntroRequest, created: int, kind: str, region: str
) -> dict[str, Value]:
    """The stored row of a new introduction, in its direction's initial state. `kind` and
    `region`: the teaser's, so that a list of requests says what each is about."""
    return {
        "dir": direction.value,
        "teaser": request.teaser_id,
        "introducer": request.introducer,
        "asker": request.asker,
        "note": request.note,
        "signature": request.signature,
        "status": INITIAL[direction].value,
        "created": created,
        "kind": kind,
        "region": region,
    }


def direction_of(row: dict[str, Value]) -> Direction:
    """A stored row's direction (a row without one was never written by us: LocalProtocolError)."""
    try:
        return Direction(row.get("dir"))
    except ValueError:
        raise LocalProtocolError("an introduction row without a direction") from None


def state_of(row: dict[str, Value]) -> IntroState | None:
    """A stored row's state; None for a status this version does not know."""
    try:
        return IntroState(row.get("status"))
    except ValueError:
        return None


def moved(row: dict[str, Value], event: IntroInput) -> dict[str, Value] | None:
    """The row after `event` (its status changed, everything else kept), or None if the
    table refuses the move from the row's state."""
    state = state_of(row)
    if state is None:
        return None
    nxt = transition(direction_of(row), state, event)
    return None if nxt is None else {**row, "status": nxt.value}


def reply_due(row: dict[str, Value]) -> IntroStatus | None:
    """The IntroReply a stored incoming request still owes the peer it came from, if any:
    once decided, until its `replied` flag says the reply went."""
    if direction_of(row) is not _I or row.get("replied"):
        return None
    state = state_of(row)
    return None if state is None else _REPLIES.get(state)


def request_of(request_id: bytes, row: dict[str, Value], hops: int) -> IntroRequest:
    """The signed IntroRequest a stored row holds, to send with `hops` still allowed."""
    return IntroRequest(
        request_id,
        _bytes(row["teaser"]),
        _bytes(row["introducer"]),
        _bytes(row["asker"]),
        str(row.get("note") or ""),
        hops,
        _bytes(row["signature"]),
    )


def _bytes(value: Value) -> bytes:
    if not isinstance(value, bytes):
        raise LocalProtocolError("an introduction row field is not bytes")
    return value
