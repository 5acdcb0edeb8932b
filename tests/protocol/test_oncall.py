"""The duty fold (protocol/oncall.py): the same records in any order give the same rota,
off-duty marks and target; only members count; loudness and the reports an escalation
waits for follow the rota."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from protocol import checkin, limits
from protocol.checkin import CheckIn
from protocol.checkin import Op as COp
from protocol.encoding import pack
from protocol.envelope import open_record
from protocol.errors import DecodeError
from protocol.identity import Identity
from protocol.oncall import (
    Duty,
    DutyRecord,
    Loudness,
    Op,
    away_ended,
    fold,
    loudness,
    needed,
    next_away_end,
)
from protocol.record import Record

CIRCLE = b"\x01" * 16
OWNER, B, C, OUTSIDER = (bytes([n]) * 32 for n in (10, 11, 12, 13))
MEMBERS = frozenset({OWNER, B, C})
T = 1_800_000_000_000
H = 3_600_000


def shift(slot: int, member: bytes, start: int, end: int, seq: int = 0) -> DutyRecord:
    return DutyRecord(
        CIRCLE, Op.SHIFT, seq, slot=bytes([slot]) * 16, member=member, start=start, end=end
    )


def clear(*slots: int, seq: int = 0) -> DutyRecord:
    return DutyRecord(CIRCLE, Op.CLEAR, seq, slots=tuple(sorted(bytes([s]) * 16 for s in slots)))


def away(until: int, seq: int) -> DutyRecord:
    return DutyRecord(CIRCLE, Op.AWAY, seq, until=until)


def target(ms: int, seq: int) -> DutyRecord:
    return DutyRecord(CIRCLE, Op.TARGET, seq, target_ms=ms)


def item(n: int, author: bytes, rec: DutyRecord) -> tuple[bytes, bytes, DutyRecord]:
    return (bytes([n]) * 32, author, rec)


ITEMS = [
    item(1, OWNER, shift(1, B, T, T + 8 * H)),
    item(2, B, shift(2, C, T + 8 * H, T + 16 * H)),
    item(3, C, clear(2)),  # C takes its own shift off
    item(4, OWNER, target(H, 0)),
    item(5, OWNER, target(30 * 60_000, 1)),  # the owner's latest target holds
    item(6, B, target(60_000, 0)),  # not the owner's: nothing
    item(7, C, away(T + 2 * H, 1)),
    item(8, C, away(T + 5 * H, 0)),  # older seq: the seq-1 record holds
    item(9, OUTSIDER, shift(3, OUTSIDER, T, T + H)),  # not a member: nothing
    item(10, OUTSIDER, clear(1)),  # nor its clear
]


def test_the_same_duty_records_in_any_order_fold_to_the_same_state() -> None:
    states = {
        repr(fold(CIRCLE, OWNER, MEMBERS, perm)) for perm in itertools.permutations(ITEMS[:6])
    }
    assert len(states) == 1
    full = [
        fold(CIRCLE, OWNER, MEMBERS, list(reversed(ITEMS))),
        fold(CIRCLE, OWNER, MEMBERS, ITEMS),
    ]
    assert full[0] == full[1]
    duty = full[0]
    assert [s.slot[0] for s in duty.shifts] == [1]  # C's cleared itself; the outsider's never
    assert duty.target_ms == 30 * 60_000 and duty.target_set
    assert duty.away == {C: T + 2 * H}


def test_a_clear_that_arrives_before_its_shift_still_removes_it() -> None:
    later = [item(3, C, clear(2)), item(2, B, shift(2, C, T, T + H))]
    assert fold(CIRCLE, OWNER, MEMBERS, later).shifts == ()
    # Only the shift's author, its member or the owner may clear it.
    by_other = [item(3, OWNER, shift(2, B, T, T + H)), item(4, C, clear(2))]
    assert len(fold(CIRCLE, OWNER, MEMBERS, by_other).shifts) == 1


def test_on_call_covers_the_shift_and_not_an_off_duty_member() -> None:
    duty = fold(CIRCLE, OWNER, MEMBERS, ITEMS)
    assert duty.on_call(T - 1) == frozenset()
    assert duty.on_call(T) == {B}
    assert duty.on_call(T + 8 * H) == frozenset()
    both = fold(CIRCLE, OWNER, MEMBERS, [*ITEMS, item(11, OWNER, shift(4, C, T, T + H))])
    assert both.on_call(T + 1) == {B}  # C is on the rota but off duty until T + 2h
    assert both.on_call(T + 2 * H - 1) == {B}
    assert both.next_change(T) == T + H


def test_loudness_on_call_first_backup_quieter_away_never_loud() -> None:
    duty = fold(CIRCLE, OWNER, MEMBERS, ITEMS)
    assert loudness(duty, B, T + 1) is Loudness.ON_CALL
    assert loudness(duty, OWNER, T + 1) is Loudness.BACKUP
    assert loudness(duty, C, T + 1) is Loudness.AWAY
    assert loudness(duty, OWNER, T + 9 * H) is Loudness.OPEN  # nobody on call: all loud
    assert loudness(None, OWNER, T) is Loudness.OPEN
    assert loudness(Duty(CIRCLE), C, T) is Loudness.OPEN


def test_an_off_duty_member_is_not_waited_for_to_escalate() -> None:
    assert needed(2, [B, C], frozenset()) == 2
    assert needed(2, [B, C], frozenset({C})) == 1
    assert needed(2, [B, C], frozenset({B, C})) == 1
    plan = CheckIn(
        b"p" * 16,
        COp.PLAN,
        OWNER,
        0,
        circle=CIRCLE,
        every=1000,
        grace=0,
        next_due=T,
        confirmations=2,
        escalate="network",
        message="m",
    )
    report = CheckIn(b"p" * 16, COp.UNREACHABLE, OWNER, 0, round=T)
    items = [(b"1" * 32, OWNER, T - 1000, plan), (b"2" * 32, B, T + 5, report)]
    everyone = checkin.fold(items, responders=MEMBERS)
    without_c = checkin.fold(items, responders=MEMBERS, away=frozenset({C}))
    assert everyone is not None and without_c is not None
    assert not everyone.escalated and checkin.needs_escalation(without_c)


def test_off_duty_running_out_by_the_clock_is_seen_once_at_its_end() -> None:
    duty = fold(CIRCLE, OWNER, MEMBERS, ITEMS)  # C off duty until T + 2h
    assert next_away_end([duty], T) == T + 2 * H
    assert next_away_end([duty], T + 2 * H) is None  # back on duty: nothing left to wait for
    assert not away_ended([duty], T, T + 2 * H - 1)
    assert away_ended([duty], T, T + 2 * H)  # the check that passes its end refolds
    assert not away_ended([duty], T + 2 * H, T + 3 * H)  # ... and only that one
    before = needed(2, [B, C], duty.away_now(T + 2 * H - 1))
    assert (before, needed(2, [B, C], duty.away_now(T + 2 * H))) == (1, 2)
    assert next_away_end([Duty(CIRCLE)], T) is None


@pytest.mark.parametrize(
    "content",
    [
        {
            "circle": CIRCLE,
            "op": "shift",
            "seq": 0,
            "slot": b"s" * 16,
            "member": B,
            "from": 5,
            "to": 5,
        },
        {
            "circle": CIRCLE,
            "op": "shift",
            "seq": 0,
            "slot": b"s" * 16,
            "member": B,
            "from": 0,
            "to": limits.MAX_ONCALL_SHIFT_MS + 1,
        },
        {"circle": CIRCLE, "op": "clear", "seq": 0, "slots": []},
        {"circle": CIRCLE, "op": "clear", "seq": 0, "slots": [b"b" * 16, b"a" * 16]},
        {"circle": CIRCLE, "op": "away", "seq": 0, "until": -1},
        {"circle": CIRCLE, "op": "target", "seq": 0, "target_ms": 0},
        {"circle": CIRCLE, "op": "target", "seq": 0, "target_ms": 1, "extra": 1},
        {"circle": b"short", "op": "away", "seq": 0, "until": 0},
        {"circle": CIRCLE, "op": "nap", "seq": 0},
    ],
)
def test_a_malformed_duty_record_is_a_decode_error(content: dict[str, object]) -> None:
    with pytest.raises(DecodeError):
        DutyRecord.from_content(content)  # type: ignore[arg-type]


def test_duty_content_round_trips() -> None:
    for _, _, rec in ITEMS:
        assert DutyRecord.from_content(rec.to_content()) == rec


# The published vectors (docs/vectors/duty.json) ----------------------------------------------

_VECTORS = Path(__file__).resolve().parents[2] / "docs" / "vectors"


def test_duty_vectors_open_with_the_circle_key_and_fold_to_the_published_state() -> None:
    data = json.loads((_VECTORS / "duty.json").read_text())
    key = bytes.fromhex(data["circle_key"])
    people = {n: Identity(bytes.fromhex(s)) for n, s in data["seeds"].items()}
    raw = {n: i.node_id.raw for n, i in people.items()}
    names = {v: k for k, v in raw.items()}
    items = []
    for case in data["records"]:
        record = Record.from_bytes(bytes.fromhex(case["record"]))
        body = open_record(record, people["b"], None, circle_keys=[key])
        assert pack(body.content).hex() == case["content"]
        items.append((record.id, record.author.raw, DutyRecord.from_content(body.content)))
    circle = bytes.fromhex(data["circle"])
    duty = fold(circle, raw["owner"], frozenset(raw.values()), items[::-1])
    want, at = data["state"], data["state"]["at"]
    assert [s.slot.hex() for s in duty.shifts] == want["shifts"]
    assert sorted(names[m] for m in duty.on_call(at)) == want["on_call"]
    assert {names[m]: u for m, u in duty.away.items()} == want["away"]
    assert duty.target_ms == want["target_ms"]
    assert {n: loudness(duty, raw[n], at).value for n in raw} == want["loudness"]
    assert needed(2, [raw["b"], raw["c"]], duty.away_now(at)) == want["needed_of_2"]


def test_duty_vectors_are_fresh() -> None:
    script = _VECTORS / "make_duty_vectors.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
