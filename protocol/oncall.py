"""On call, off duty, and a circle's first-response target: the content of a `duty` record
and the fold of a circle's duty records into one `Duty` (docs/spec/94-duty.md).

Every `duty` record is sealed to one circle and names it. Ops:
- `shift`: a member is on call from `from` to `to` (any member may add a shift for any
  member); a shift has a random `slot` id;
- `clear`: shifts are taken off the rota (by the shift's author, its member, or the owner);
- `away`: its author is off duty until `until` (0: back on duty now);
- `target`: the circle's first-response target for help requests (the owner only).

The fold is order-free: shifts are a set minus the cleared ones (a clear that arrives before
its shift still removes it), `away` and `target` are each author's latest (seq, record id).
Only records by current members count. Pure: `now` is an argument.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from protocol import limits
from protocol.circle import ID_BYTES as CIRCLE_ID_BYTES
from protocol.encoding import Value, as_bytes, as_int, as_list, check_keys
from protocol.errors import DecodeError

_NODE = 32


class Op(enum.StrEnum):
    SHIFT = "shift"
    CLEAR = "clear"
    AWAY = "away"
    TARGET = "target"


_COMMON = frozenset({"circle", "op", "seq"})
_KEYS: dict[Op, frozenset[str]] = {
    Op.SHIFT: frozenset({"slot", "member", "from", "to"}),
    Op.CLEAR: frozenset({"slots"}),
    Op.AWAY: frozenset({"until"}),
    Op.TARGET: frozenset({"target_ms"}),
}
_OPS: dict[str, Op] = {op.value: op for op in Op}


@dataclass(frozen=True, slots=True)
class DutyRecord:
    """The content of one `duty` record. Fields an op does not carry are 0 / empty."""

    circle: bytes
    op: Op
    seq: int
    slot: bytes = b""
    member: bytes = b""
    start: int = 0  # `from`
    end: int = 0  # `to`
    slots: tuple[bytes, ...] = ()
    until: int = 0
    target_ms: int = 0

    @classmethod
    def from_content(cls, content: dict[str, Value]) -> DutyRecord:
        """Strictly check a duty record's content (DecodeError names the first fault)."""
        if not isinstance(content, dict):
            raise DecodeError("duty content must be a map")
        name = content.get("op")
        if not isinstance(name, str) or name not in _OPS:
            raise DecodeError("unknown duty op")
        op = _OPS[name]
        check_keys(content, _COMMON | _KEYS[op], frozenset(), f"duty {op}")
        circle = as_bytes(content["circle"], CIRCLE_ID_BYTES, "circle")
        seq = as_int(content["seq"], "seq", 0, limits.MAX_DUTY_SEQ)
        if op is Op.SHIFT:
            start = as_int(content["from"], "from", 0, limits.MAX_TIMESTAMP_MS)
            end = as_int(content["to"], "to", 0, limits.MAX_TIMESTAMP_MS)
            if not start < end <= start + limits.MAX_ONCALL_SHIFT_MS:
                raise DecodeError("a shift must end after it starts, within the longest shift")
            return cls(
                circle,
                op,
                seq,
                slot=as_bytes(content["slot"], limits.DUTY_SLOT_BYTES, "slot"),
                member=as_bytes(content["member"], _NODE, "member"),
                start=start,
                end=end,
            )
        if op is Op.CLEAR:
            raw = as_list(content["slots"], what="slots")
            if not 1 <= len(raw) <= limits.MAX_DUTY_CLEARS:
                raise DecodeError("slots out of range")
            slots = [as_bytes(s, limits.DUTY_SLOT_BYTES, "slot") for s in raw]
            if slots != sorted(set(slots)):
                raise DecodeError("slots must be sorted and unique")
            return cls(circle, op, seq, slots=tuple(slots))
        if op is Op.AWAY:
            until = as_int(content["until"], "until", 0, limits.MAX_TIMESTAMP_MS)
            return cls(circle, op, seq, until=until)
        target = as_int(content["target_ms"], "target_ms", 1, limits.MAX_HELP_TARGET_MS)
        return cls(circle, op, seq, target_ms=target)

    def to_content(self) -> dict[str, Value]:
        """The content map `from_content` reads back as this record."""
        content: dict[str, Value] = {"circle": self.circle, "op": self.op.value, "seq": self.seq}
        if self.op is Op.SHIFT:
            content |= {"slot": self.slot, "member": self.member, "from": self.start}
            content["to"] = self.end
        elif self.op is Op.CLEAR:
            content["slots"] = list[Value](self.slots)
        elif self.op is Op.AWAY:
            content["until"] = self.until
        else:
            content["target_ms"] = self.target_ms
        return content


def as_checked(record: DutyRecord) -> DutyRecord:
    """Our own record passes the checks a peer's must pass (DecodeError if not)."""
    return DutyRecord.from_content(record.to_content())


# -- the fold ---------------------------------------------------------------------------------

Item = tuple[bytes, bytes, DutyRecord]  # (record id, author, content)


@dataclass(frozen=True, slots=True)
class Shift:
    slot: bytes
    member: bytes
    start: int
    end: int
    by: bytes  # who put it on the rota

    def covers(self, now: int) -> bool:
        return self.start <= now < self.end


@dataclass(frozen=True, slots=True)
class Duty:
    """One circle's rota, who is off duty until when, and its first-response target."""

    circle: bytes
    shifts: tuple[Shift, ...] = ()  # live shifts, by (start, member, slot)
    away: dict[bytes, int] = field(default_factory=dict)  # member -> until (latest record)
    target_ms: int = limits.DEFAULT_HELP_TARGET_MS
    target_set: bool = False  # the owner set it (else the default)

    def is_away(self, member: bytes, now: int) -> bool:
        return self.away.get(member, 0) > now

    def away_now(self, now: int) -> frozenset[bytes]:
        return frozenset(m for m, until in self.away.items() if until > now)

    def on_call(self, now: int) -> frozenset[bytes]:
        """Members on call at `now`: a live shift covers it and they are not off duty."""
        return frozenset(
            s.member for s in self.shifts if s.covers(now) and not self.is_away(s.member, now)
        )

    def next_change(self, now: int) -> int | None:
        """When `on_call` or `away_now` may next change by time alone (None: never)."""
        times = [s.start for s in self.shifts if s.start > now]
        times += [s.end for s in self.shifts if s.end > now]
        times += [u for u in self.away.values() if u > now]
        return min(times, default=None)


def fold(circle: bytes, owner: bytes, members: frozenset[bytes], items: Iterable[Item]) -> Duty:
    """The duty state of `circle` from its records, in any order: the same set gives the same
    state everywhere. Records by non-members, or naming another circle, count for nothing;
    a shift for a non-member is not on the rota."""
    shifts: dict[bytes, tuple[bytes, bytes, DutyRecord]] = {}
    clears: list[tuple[bytes, DutyRecord]] = []
    latest_away: dict[bytes, tuple[int, bytes, int]] = {}
    target: tuple[int, bytes, int] | None = None
    for rid, author, rec in items:
        if rec.circle != circle or author not in members:
            continue
        if rec.op is Op.SHIFT and rec.member in members:
            held = shifts.get(rec.slot)
            if held is None or rid < held[0]:  # a slot id reused: the lower record id holds
                shifts[rec.slot] = (rid, author, rec)
        elif rec.op is Op.CLEAR:
            clears.append((author, rec))
        elif rec.op is Op.AWAY:
            seen = latest_away.get(author)
            if seen is None or (rec.seq, rid) > seen[:2]:
                latest_away[author] = (rec.seq, rid, rec.until)
        elif (
            rec.op is Op.TARGET
            and author == owner
            and (target is None or (rec.seq, rid) > target[:2])
        ):
            target = (rec.seq, rid, rec.target_ms)
    cleared: set[bytes] = set()
    for author, rec in clears:
        for slot in rec.slots:
            held = shifts.get(slot)
            if held is not None and author in (held[1], held[2].member, owner):
                cleared.add(slot)
    live = [
        Shift(rec.slot, rec.member, rec.start, rec.end, author)
        for slot, (_, author, rec) in shifts.items()
        if slot not in cleared
    ]
    live.sort(key=lambda s: (s.start, s.member, s.slot))
    return Duty(
        circle=circle,
        shifts=tuple(live[: limits.MAX_ONCALL_SHIFTS]),
        away={m: v[2] for m, v in sorted(latest_away.items())},
        target_ms=target[2] if target else limits.DEFAULT_HELP_TARGET_MS,
        target_set=target is not None,
    )


def next_seq(items: Iterable[Item], author: bytes, circle: bytes) -> int:
    """The seq `author`'s next duty record about `circle` takes: one past its highest."""
    return 1 + max((r.seq for _, a, r in items if a == author and r.circle == circle), default=-1)


# -- who is asked, and how loudly ----------------------------------------------------------


class Loudness(enum.StrEnum):
    """How a member's node raises a new help request or a missed check-in of its circle."""

    ON_CALL = "on-call"  # this member is on call: urgent, marked "on call"
    OPEN = "open"  # nobody is on call now: every member's node raises it urgently
    BACKUP = "backup"  # someone else is on call: raised at normal urgency, not marked
    AWAY = "away"  # this member is off duty: kept, at low urgency, never loud


URGENCY = {
    Loudness.ON_CALL: "high",
    Loudness.OPEN: "high",
    Loudness.BACKUP: "normal",
    Loudness.AWAY: "low",
}


def loudness(duty: Duty | None, me: bytes, now: int) -> Loudness:
    """How loudly the node of `me` raises its circle's notice at `now`."""
    if duty is None:
        return Loudness.OPEN
    if duty.is_away(me, now):
        return Loudness.AWAY
    on_call = duty.on_call(now)
    if me in on_call:
        return Loudness.ON_CALL
    return Loudness.BACKUP if on_call else Loudness.OPEN


def needed(confirmations: int, responders: Iterable[bytes], away: frozenset[bytes]) -> int:
    """The "unreachable" reports that escalate a plan: its K, but never more than the
    responders who are on duty (an off-duty member is not waited for); at least 1."""
    on_duty = [r for r in responders if r not in away]
    return max(1, min(confirmations, len(on_duty)))


def away_ended(duties: Iterable[Duty], since: int, now: int) -> bool:
    """Whether someone's off-duty time ran out by the clock alone in (since, now]: who is
    on duty changed with no record, so the plans of their circles must be folded again."""
    return any(since < until <= now for duty in duties for until in duty.away.values())


def next_away_end(duties: Iterable[Duty], now: int) -> int | None:
    """When someone's off-duty time next runs out by the clock alone (None: nobody away)."""
    return min((u for duty in duties for u in duty.away.values() if u > now), default=None)
