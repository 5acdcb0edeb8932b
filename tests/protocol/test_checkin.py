"""Check-in plans: the strict content schema, the duress mark only the other members read,
the fold that gives one state whatever order the records came in, and what a watcher raises
when (protocol/checkin.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import checkin, limits
from protocol.checkin import CheckIn, Item, Op, PlanState
from protocol.encoding import Value
from protocol.envelope import open_record, seal_record
from protocol.errors import DecodeError
from protocol.identity import Identity
from protocol.record import Kind, Scope
from tests.strategies import seeded

DEFENDER = Identity(b"\x11" * 32)
B = Identity(b"\x12" * 32)
C = Identity(b"\x13" * 32)
OUTSIDER = Identity(b"\x14" * 32)
PLAN = b"\x07" * 16
CIRCLE = b"\x09" * 16
T0 = 1_800_000_000_000
EVERY, GRACE = 12 * 3600_000, 2 * 3600_000
D = DEFENDER.node_id.raw


def plan(seq: int = 0, at: int = T0, k: int = 2) -> CheckIn:
    return CheckIn(
        PLAN, Op.PLAN, D, seq, circle=CIRCLE, every=EVERY, grace=GRACE,
        next_due=at + EVERY, confirmations=k, escalate="network", message="call the lawyer",
    )  # fmt: skip


def item(n: int, author: bytes, at: int, content: CheckIn) -> Item:
    return (bytes([n]) * 32, author, at, content)


def report(n: int, who: Identity, op: Op, seq: int, round_: int) -> Item:
    content = CheckIn(PLAN, op, D, seq, round=round_)
    return item(n, who.node_id.raw, T0 + 1000 * n, content)


def folded(items: list[Item]) -> PlanState:
    state = checkin.fold(items)
    assert state is not None
    return state


# -- content ------------------------------------------------------------------------------


def test_every_op_round_trips_and_seals_like_any_record() -> None:
    mark = checkin.make_mark([B.node_id.x25519()], False, seeded("m"))
    for content in (
        plan(),
        CheckIn(PLAN, Op.CHECKIN, D, 1, next_due=T0 + EVERY, mark=mark),
        CheckIn(PLAN, Op.PAUSE, D, 2, next_due=T0 + 3 * EVERY),
        CheckIn(PLAN, Op.RESUME, D, 3, next_due=T0 + EVERY),
        CheckIn(PLAN, Op.REACHED, D, 0, round=T0 + EVERY),
        CheckIn(PLAN, Op.UNREACHABLE, D, 1, round=T0 + EVERY),
        CheckIn(PLAN, Op.ESCALATED, D, 2, round=T0 + EVERY),
    ):
        assert CheckIn.from_content(content.to_content()) == content
    record = seal_record(
        DEFENDER, Kind.CHECKIN, plan().to_content(), created=T0, expires=T0 + 1000,
        scope=Scope.NETWORK, recipients=[], network_key=None, random=seeded("r"),
        circle_keys=[b"\x05" * 32],
    )  # fmt: skip
    body = open_record(record, B, None, circle_keys=[b"\x05" * 32])
    assert CheckIn.from_content(body.content) == plan()


BAD: list[tuple[str, dict[str, Value]]] = [
    ("unknown checkin op", {**plan().to_content(), "op": "cancel"}),
    ("lacks", {k: v for k, v in plan().to_content().items() if k != "grace"}),
    ("unknown key", {**plan().to_content(), "mark": b""}),
    ("plan must be 16 bytes", {**plan().to_content(), "plan": b"\x00" * 15}),
    ("every out of range", {**plan().to_content(), "every": 999}),
    ("every out of range", {**plan().to_content(), "every": limits.MAX_CHECKIN_EVERY_MS + 1}),
    ("confirmations out of range", {**plan().to_content(), "confirmations": 0}),
    ("escalate is empty", {**plan().to_content(), "escalate": ""}),
    ("message too long", {**plan().to_content(), "message": "x" * 2049}),
    ("seq must be an integer", {**plan().to_content(), "seq": True}),
    (
        "mark is not whole slots",
        CheckIn(PLAN, Op.CHECKIN, D, 1, next_due=T0, mark=b"\x00" * 65).to_content(),
    ),
    (
        "mark is not whole slots",
        CheckIn(PLAN, Op.CHECKIN, D, 1, next_due=T0, mark=b"\x00" * 64 * 129).to_content(),
    ),
    ("round out of range", {**CheckIn(PLAN, Op.REACHED, D, 0).to_content(), "round": -1}),
]


@pytest.mark.parametrize(("error", "content"), BAD)
def test_malformed_content_is_a_decode_error_naming_the_field(
    error: str, content: dict[str, Value]
) -> None:
    with pytest.raises(DecodeError, match=error):
        CheckIn.from_content(content)


# -- the duress mark ----------------------------------------------------------------------


def test_duress_mark_reads_only_to_responders_and_is_the_same_size_either_way() -> None:
    responders = [B.node_id.x25519(), C.node_id.x25519()]
    ok = checkin.make_mark(responders, False, seeded("ok"))
    duress = checkin.make_mark(responders, True, seeded("duress"))
    assert len(ok) == len(duress) == 2 * limits.CHECKIN_MARK_SLOT_BYTES
    for who in (B, C):
        assert checkin.read_mark(ok, who.x25519_public(), who.x25519_secret()) is False
        assert checkin.read_mark(duress, who.x25519_public(), who.x25519_secret()) is True
    for who in (DEFENDER, OUTSIDER):  # the defender's own device cannot tell
        assert checkin.read_mark(duress, who.x25519_public(), who.x25519_secret()) is None
    broken = bytes(64) + duress[64:]
    assert checkin.read_mark(broken, B.x25519_public(), B.x25519_secret()) is None  # B's slot
    assert checkin.read_mark(broken, C.x25519_public(), C.x25519_secret()) is True


# -- the fold ---------------------------------------------------------------------------------


def test_state_moves_ok_due_missed_and_a_checkin_starts_a_new_round() -> None:
    items = [item(1, D, T0, plan())]
    state = folded(items)
    due = T0 + EVERY
    assert [state.status(t) for t in (T0, due, due + GRACE - 1, due + GRACE)] == [
        "ok", "due", "due", "missed",
    ]  # fmt: skip
    assert checkin.next_wake(state, T0) == due + GRACE
    assert checkin.due_events(state, due + GRACE - 1) == []
    assert [e.kind for e in checkin.due_events(state, due + GRACE)] == ["missed"]
    at = due + GRACE + 5
    items.append(item(2, D, at, CheckIn(PLAN, Op.CHECKIN, D, 1, next_due=at + EVERY)))
    again = folded(items)
    assert again.status(at) == "ok" and again.round == at + EVERY and again.last_checkin == at


def test_one_unreachable_does_not_escalate_two_do_and_reached_cancels() -> None:
    base = [item(1, D, T0, plan())]
    round_ = T0 + EVERY
    missed = round_ + GRACE
    one = folded([*base, report(2, B, Op.UNREACHABLE, 0, round_)])
    assert one.status(missed) == "missed" and not checkin.needs_escalation(one)
    two = folded(
        [*base, report(2, B, Op.UNREACHABLE, 0, round_), report(3, C, Op.UNREACHABLE, 0, round_)]
    )
    assert two.status(missed) == "escalated" and checkin.needs_escalation(two)
    said = folded(
        [
            *base,
            report(2, B, Op.UNREACHABLE, 0, round_),
            report(3, C, Op.UNREACHABLE, 0, round_),
            report(4, C, Op.ESCALATED, 1, round_),
        ]
    )
    assert said.status(missed) == "escalated" and not checkin.needs_escalation(said)
    reached = folded(
        [*base, report(2, B, Op.UNREACHABLE, 0, round_), report(3, C, Op.REACHED, 0, round_)]
    )
    assert reached.status(missed) == "ok" and checkin.next_wake(reached, round_) is None
    # A member changing its mind: its latest report counts.
    changed = folded(
        [*base, report(2, B, Op.UNREACHABLE, 0, round_), report(3, B, Op.REACHED, 1, round_)]
    )
    assert changed.unreachable == () and changed.reached == (B.node_id.raw,)
    # Reports about an earlier round, or the defender reporting on itself, do not count.
    stale = folded(
        [
            *base,
            report(2, B, Op.UNREACHABLE, 0, round_ - 1),
            report(3, DEFENDER, Op.UNREACHABLE, 0, round_),
            report(4, C, Op.UNREACHABLE, 0, round_),
        ]
    )
    assert stale.unreachable == (C.node_id.raw,)


def test_only_the_defender_moves_its_plan_and_pause_holds_until_its_end() -> None:
    base = [item(1, D, T0, plan())]
    forged = CheckIn(PLAN, Op.CHECKIN, D, 5, next_due=T0 + 100 * EVERY)
    state = folded([*base, item(2, B.node_id.raw, T0 + 1, forged)])
    assert state.next_due == T0 + EVERY  # B cannot check in for the defender
    assert checkin.fold([item(2, B.node_id.raw, T0, plan())]) is None  # nor plan for it
    until = T0 + 3 * EVERY
    paused = folded([*base, item(2, D, T0 + 5, CheckIn(PLAN, Op.PAUSE, D, 1, next_due=until))])
    assert paused.status(until - 1) == "paused" and paused.status(until) == "due"
    assert checkin.due_events(paused, until - 1) == []


def test_duress_is_an_event_only_for_a_checkin_the_caller_read_as_duress() -> None:
    state = folded(
        [
            item(1, D, T0, plan()),
            item(2, D, T0 + 9, CheckIn(PLAN, Op.CHECKIN, D, 1, next_due=T0 + EVERY)),
        ]
    )
    assert [e.kind for e in checkin.due_events(state, T0 + 10, duress=True)] == ["duress"]
    assert checkin.due_events(state, T0 + 10, duress=False) == []


def _history() -> list[Item]:
    round_ = T0 + 2 * EVERY
    return [
        item(1, D, T0, plan()),
        item(2, D, T0 + 5, CheckIn(PLAN, Op.CHECKIN, D, 1, next_due=T0 + EVERY)),
        item(3, D, T0 + 9, plan(seq=2, at=T0 + EVERY, k=1)),
        item(4, D, T0 + 20, CheckIn(PLAN, Op.CHECKIN, D, 3, next_due=round_, mark=b"\x01" * 64)),
        report(5, B, Op.UNREACHABLE, 0, round_),
        report(6, C, Op.UNREACHABLE, 0, round_ - 1),
        report(7, C, Op.REACHED, 1, round_),
        report(8, B, Op.REACHED, 1, round_),
        report(9, B, Op.UNREACHABLE, 2, round_),
        report(10, C, Op.ESCALATED, 2, round_),
    ]


@settings(max_examples=200, deadline=None)
@given(st.permutations(_history()), st.integers(min_value=1, max_value=10))
def test_any_order_and_any_prefix_set_fold_to_one_state(order: list[Item], keep: int) -> None:
    assert checkin.fold(order) == checkin.fold(_history())
    subset = order[:keep]
    assert checkin.fold(subset) == checkin.fold(sorted(subset, key=lambda i: i[0]))


def test_vectors_are_current() -> None:
    script = Path(__file__).parents[2] / "docs" / "vectors" / "make_checkin_vectors.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True)
    assert done.returncode == 0, done.stdout.decode()
    vectors = json.loads(script.with_name("checkin.json").read_text())
    for case in vectors["contents"]:
        content = CheckIn.from_content(json_content(case))
        assert content.op.value == case["op"]


def json_content(case: dict[str, str]) -> dict[str, Value]:
    from protocol.encoding import unpack

    value = unpack(bytes.fromhex(case["content"]))
    assert isinstance(value, dict)
    return value
