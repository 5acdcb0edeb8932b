"""On call, off duty and first-response targets on an unlocked data directory: the `duty`
records of every circle this node is in, folded into one `Duty` per circle, and the commands'
work (`circle oncall`, `circle set --response-target`, `away`). protocol/oncall.py holds the
rules. Every `duty` record is sealed to its circle's current epoch key, like a check-in: a
relay sees a record of some size at some time, and nothing of the rota.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from node import circles
from node.content import parse_audience
from node.local import Local, random
from node.publish import publish
from node.readers import Malformed, open_kind, read
from node.trust import match_peers, parse_node_id
from protocol import limits, oncall
from protocol.circle import Circle
from protocol.errors import CanopyError, DecodeError
from protocol.identity import Identity, NodeId, random_bytes
from protocol.oncall import Duty, DutyRecord, Item, Op, Shift
from protocol.record import Kind, Record

_UNITS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_when(text: str, now: int, what: str) -> int:
    """A moment as a user writes it: `now`, a duration from now (`30m`, `12h`, `3d`), or an
    ISO date or date-time (`2026-12-24`, `2026-12-24T18:00`, UTC unless it says otherwise)."""
    raw = (text or "").strip()
    if raw.lower() == "now":
        return now
    match = re.fullmatch(r"\+?(\d{1,7})([smhd])", raw)
    if match:
        return now + int(match.group(1)) * _UNITS[match.group(2)]
    try:
        moment = datetime.fromisoformat(raw.replace(" ", "T", 1) if " " in raw else raw)
    except ValueError:
        raise CanopyError(
            f"{what} {text!r}: write now, a duration (30m, 12h, 3d) or a date"
            " (2026-12-24 or 2026-12-24T18:00, UTC)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_target(text: str) -> int:
    """A first-response target (`30m`, `2h`, `1d`) in milliseconds."""
    match = re.fullmatch(r"\s*(\d{1,7})\s*([smhd])\s*", text or "")
    value = int(match.group(1)) * _UNITS[match.group(2)] if match else 0
    if not 60_000 <= value <= limits.MAX_HELP_TARGET_MS:
        raise CanopyError(f"--response-target {text!r}: a duration from 1m to 30d, e.g. 2h")
    return value


def open_items(
    records: Sequence[Record],
    identity: Identity,
    network_key: bytes | Sequence[bytes] | None,
    circle_keys: Sequence[bytes],
    now: int,
    malformed: Malformed | None = None,
) -> list[Item]:
    """The duty records this node can open. One that opens but breaks the schema is never
    folded; it goes to `malformed` (its author pays)."""
    opened = open_kind(
        records,
        Kind.DUTY,
        DutyRecord.from_content,
        identity,
        network_key,
        circle_keys,
        now,
        malformed,
    )
    return _items(opened)


def _items(opened: Sequence[tuple[Record, DutyRecord]]) -> list[Item]:
    return [(record.id, record.author.raw, content) for record, content in opened]


def fold_all(states: Sequence[Circle], items: Sequence[Item]) -> dict[bytes, Duty]:
    """The duty state of each circle in `states` from `items`."""
    by_circle: dict[bytes, list[Item]] = {}
    for item in items:
        by_circle.setdefault(item[2].circle, []).append(item)
    return {
        c.id: oncall.fold(c.id, c.owner.raw, c.members, by_circle.get(c.id, ())) for c in states
    }


async def _load(local: Local, now: int) -> tuple[list[Circle], list[Item]]:
    mine = [c for c in (await circles.circles(local)).values() if c.is_member(local.node_id)]
    return mine, _items(await read(local, Kind.DUTY, DutyRecord.from_content, now))


async def duties(local: Local, now: int) -> dict[bytes, Duty]:
    """The duty state of every circle this node is in, by circle id."""
    mine, items = await _load(local, now)
    return fold_all(mine, items)


async def duty_of(local: Local, circle_id: bytes, now: int) -> Duty:
    found = (await duties(local, now)).get(circle_id)
    return found if found is not None else Duty(circle_id)


async def _publish(local: Local, state: Circle, content: DutyRecord, now: int) -> Record:
    try:
        content = oncall.as_checked(content)
    except DecodeError as exc:
        raise CanopyError(f"cannot record this: {exc}") from None
    audience = await parse_audience(local, "circle:" + state.id.hex())
    return (await publish(local, audience, Kind.DUTY, content.to_content(), now))[0]


async def _seq(local: Local, circle_id: bytes, now: int) -> int:
    _, items = await _load(local, now)
    return oncall.next_seq(items, local.node_id.raw, circle_id)


async def _member(local: Local, state: Circle, ref: str) -> NodeId:
    ref = ref.strip()
    if ref in ("me", "self", "you"):
        return local.node_id
    peers = [p for p in (await local.peers()).values() if p.node_id.raw in state.members]
    named = [p.node_id for p in match_peers(peers, ref)]
    if len(named) > 1:
        raise CanopyError(f"{ref!r} matches several members; give more of the id")
    node = named[0] if named else parse_node_id(ref)
    if node.raw not in state.members:
        raise CanopyError(f"{node.short} is not a member of circle {state.name!r}")
    return node


async def add_shift(
    local: Local, circle_ref: str, peer_ref: str, start: int, end: int, now: int
) -> tuple[Circle, Shift]:
    """Put a member of the circle on call from `start` to `end`."""
    state = await circles.find(local, circle_ref)
    member = await _member(local, state, peer_ref)
    if end <= start:
        raise CanopyError("--to must be after --from")
    if end - start > limits.MAX_ONCALL_SHIFT_MS:
        raise CanopyError("one on-call shift is at most 31 days: add several")
    if end <= now:
        raise CanopyError("that shift is already over")
    slot = random_bytes(random, limits.DUTY_SLOT_BYTES)
    seq = await _seq(local, state.id, now)
    content = DutyRecord(
        state.id, Op.SHIFT, seq, slot=slot, member=member.raw, start=start, end=end
    )
    await _publish(local, state, content, now)
    return state, Shift(slot, member.raw, start, end, local.node_id.raw)


async def clear_shifts(
    local: Local, circle_ref: str, peer_ref: str | None, now: int
) -> tuple[Circle, int]:
    """Take shifts off the circle's rota: all of one member's (or every shift, with None)
    that this node may clear (those it added, its own, or any when it owns the circle)."""
    state = await circles.find(local, circle_ref)
    duty = await duty_of(local, state.id, now)
    who = None if peer_ref is None else (await _member(local, state, peer_ref)).raw
    me, owner = local.node_id.raw, state.owner.raw
    slots = sorted(
        s.slot
        for s in duty.shifts
        if (who is None or s.member == who) and me in (s.by, s.member, owner)
    )
    if not slots:
        raise CanopyError(f"no shift on the rota of {state.name!r} that you may clear")
    for start in range(0, len(slots), limits.MAX_DUTY_CLEARS):
        chunk = tuple(slots[start : start + limits.MAX_DUTY_CLEARS])
        content = DutyRecord(state.id, Op.CLEAR, await _seq(local, state.id, now), slots=chunk)
        await _publish(local, state, content, now)
    return state, len(slots)


async def set_away(local: Local, until: int, now: int) -> list[Circle]:
    """Mark this node off duty until `until` (0: back on duty now) in every circle it is
    in: one record sealed to each."""
    if until and until <= now:
        raise CanopyError("--until must be in the future")
    if until > now + limits.MAX_AWAY_MS:
        raise CanopyError("--until is at most a year ahead")
    mine, items = await _load(local, now)
    # Every named circle with others in it; the implicit peers circles carry no duty.
    mine = [c for c in mine if len(c.members) > 1 and c.name != circles.PEERS_CIRCLE]
    if not mine:
        raise CanopyError("this node is in no circle with others: nobody to tell")
    for state in mine:
        seq = oncall.next_seq(items, local.node_id.raw, state.id)
        await _publish(local, state, DutyRecord(state.id, Op.AWAY, seq, until=until), now)
    return mine


async def set_target(local: Local, circle_ref: str, target_ms: int, now: int) -> Circle:
    """The owner sets its circle's first-response target for help requests."""
    state = await circles.find(local, circle_ref)
    if state.owner != local.node_id:
        raise CanopyError(f"only the owner of {state.name!r} sets its response target")
    seq = await _seq(local, state.id, now)
    await _publish(local, state, DutyRecord(state.id, Op.TARGET, seq, target_ms=target_ms), now)
    return state


async def away_until(local: Local, now: int) -> int:
    """Until when this node is off duty (0: it is on duty), the latest it said anywhere."""
    me = local.node_id.raw
    return max((d.away.get(me, 0) for d in (await duties(local, now)).values()), default=0)


async def rota(local: Local, circle_ref: str, now: int) -> dict[str, object]:
    """What `canopy circle oncall NAME` lists: the circle's shifts, who is on call and who
    is off duty now, and its response target."""
    state = await circles.find(local, circle_ref)
    duty = await duty_of(local, state.id, now)
    names = {p.node_id.raw: p.label for p in (await local.peers()).values()}
    names[local.node_id.raw] = "you"

    def name(raw: bytes) -> str:
        return names.get(raw, NodeId(raw).short)

    on_call = duty.on_call(now)
    return {
        "circle": state.name,
        "circle_id": state.id.hex(),
        "response_target_ms": duty.target_ms,
        "response_target_set": duty.target_set,
        "on_call_now": sorted(name(m) for m in on_call),
        "on_call_ids": sorted(str(NodeId(m)) for m in on_call),
        "away_now": [
            {"member": name(m), "member_id": str(NodeId(m)), "until": duty.away[m]}
            for m in sorted(duty.away_now(now))
        ],
        "shifts": [
            {
                "slot": s.slot.hex(),
                "member": name(s.member),
                "member_id": str(NodeId(s.member)),
                "from": s.start,
                "to": s.end,
                "by": name(s.by),
                "now": s.member in on_call and s.covers(now),
                "over": s.end <= now,
            }
            for s in duty.shifts
            if s.end > now - 86_400_000  # what ended over a day ago is history, not rota
        ],
    }


def iso(ms: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).strftime(
        "%Y-%m-%d %H:%M UTC"
    )
