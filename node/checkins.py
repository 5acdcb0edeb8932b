"""Check-ins on an unlocked data directory: making a plan, checking in (with or without
duress), pausing, members' reports, escalation, and the rows `canopy checkin status` prints
(protocol/checkin.py holds the rules; node/checkin_watch.py the running node's timer).

The defender's own plan (its id, its circle, and the keyed hash of a duress PIN) is one row
of the sealed `checkin_plans` table, never sent. Everything else is `checkin` records sealed
to the plan's circle, so every member (and a restore, a bundle) folds the same state.
"""

from __future__ import annotations

import dataclasses
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

import nacl.pwhash

from node import circles
from node.content import parse_audience, publish_alert
from node.local import Local, random
from node.publish import publish
from node.readers import Malformed, open_kind, read
from node.trust import match_peers
from protocol import checkin, labels, limits
from protocol.checkin import CheckIn, Item, Op, PlanState
from protocol.circle import Circle
from protocol.errors import CanopyError
from protocol.identity import Identity, NodeId, random_bytes
from protocol.record import Kind, Record

TABLE = "checkin_plans"
_OWN = b"own-plan"
_UNITS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PIN_OPS = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
_PIN_MEM = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
PlanKey = tuple[bytes, bytes]  # (defender, plan id)


def parse_duration(text: str, what: str) -> int:
    """`30s`, `10m`, `12h`, `3d` in milliseconds; CanopyError (one line) otherwise."""
    match = re.fullmatch(r"\s*(\d{1,7})\s*([smhd])\s*", text or "")
    if not match:
        raise CanopyError(f"{what} {text!r}: write a duration as 30s, 10m, 12h or 3d")
    value = int(match.group(1)) * _UNITS[match.group(2)]
    if not limits.MIN_CHECKIN_EVERY_MS <= value <= limits.MAX_CHECKIN_EVERY_MS:
        raise CanopyError(f"{what} {text!r}: between 1s and 90d")
    return value


def open_items(
    records: Sequence[Record],
    identity: Identity,
    network_key: bytes | None,
    circle_keys: Sequence[bytes],
    now: int,
    malformed: Malformed | None = None,
) -> dict[PlanKey, list[Item]]:
    """The check-in records this node can open, grouped by (defender, plan). One that opens
    but breaks the schema is never folded; it goes to `malformed` (its author pays)."""
    return _by_plan(
        open_kind(
            records,
            Kind.CHECKIN,
            CheckIn.from_content,
            identity,
            network_key,
            circle_keys,
            now,
            malformed,
        )
    )


async def load(local: Local, now: int) -> dict[PlanKey, list[Item]]:
    return _by_plan(await read(local, Kind.CHECKIN, CheckIn.from_content, now))


def _by_plan(opened: Sequence[tuple[Record, CheckIn]]) -> dict[PlanKey, list[Item]]:
    out: dict[PlanKey, list[Item]] = {}
    for record, content in opened:
        item = (record.id, record.author.raw, record.created, content)
        out.setdefault((content.defender, content.plan), []).append(item)
    return out


@dataclass(frozen=True, slots=True)
class Own:
    """This node's own plan, as its sealed row keeps it."""

    plan: bytes
    circle: bytes
    pin_salt: bytes = b""
    pin_hash: bytes = b""


async def _own(local: Local) -> Own | None:
    row = (await local.store.rows(TABLE)).get(_OWN)
    if row is None:
        return None
    fields = {k: row.get(k, b"") for k in ("plan", "circle", "pin_salt", "pin_hash")}
    if not all(isinstance(v, bytes) for v in fields.values()):
        raise CanopyError("this node's check-in plan row is damaged")
    return Own(**fields)  # type: ignore[arg-type]


def _pin_hash(pin: str, salt: bytes) -> bytes:
    """The keyed hash a duress PIN is kept as: Argon2id under a per-plan random salt, with
    the PIN label, so the row (even opened) holds no PIN and each guess costs."""
    data = labels.CHECKIN_PIN + pin.encode("utf-8")
    out: bytes = nacl.pwhash.argon2id.kdf(32, data, salt, opslimit=_PIN_OPS, memlimit=_PIN_MEM)
    return out


async def _circle_of(local: Local, circle_id: bytes) -> Circle:
    state = (await circles.circles(local)).get(circle_id)
    if state is None or not state.is_member(local.node_id):
        raise CanopyError("this node is no longer in its check-in plan's circle")
    return state


async def _publish(local: Local, circle_id: bytes, content: CheckIn, now: int) -> Record:
    audience = await parse_audience(local, "circle:" + circle_id.hex())
    return (await publish(local, audience, Kind.CHECKIN, content.to_content(), now))[0]


async def _canonical_audience(local: Local, to: str) -> str:
    """The escalation audience as every member can seal to it: `network`, a circle by id,
    or full node ids (a name is ours alone; `peers` is nobody else's to use)."""
    if to.strip() in ("peers", "peers-now"):
        raise CanopyError("--escalate-to: peers are yours alone; give network, circle:NAME or ids")
    audience = await parse_audience(local, to)
    if audience.network:
        return "network"
    if audience.circle:
        state = await circles.find(local, to.strip().removeprefix("circle:"))
        return "circle:" + state.id.hex()
    return ",".join(str(r) for r in audience.recipients)


async def make_plan(
    local: Local,
    *,
    every: int,
    grace: int,
    circle_ref: str,
    message: str | None,
    confirmations: int | None,
    escalate_to: str,
    duress_pin: str | None,
    now: int,
) -> tuple[PlanState, Circle]:
    """Set (or change) this node's plan: watched by the other members of the circle."""
    state = await circles.find(local, circle_ref)
    responders = [m for m in state.members if m != local.node_id.raw]
    if not responders:
        raise CanopyError(f"circle {state.name!r} has nobody else in it to watch your check-ins")
    if len(responders) > limits.MAX_CHECKIN_MARK_SLOTS:
        raise CanopyError(f"a check-in circle holds at most {limits.MAX_CHECKIN_MARK_SLOTS} others")
    default = min(limits.DEFAULT_CHECKIN_CONFIRMATIONS, len(responders))
    k = default if confirmations is None else confirmations
    if not 1 <= k <= len(responders):
        raise CanopyError(f"--confirmations must be 1 to {len(responders)} (the others in it)")
    if grace > every:
        raise CanopyError("--grace must not be longer than --every")
    escalate = await _canonical_audience(local, escalate_to)
    text = message or (
        f"{await local.name() or local.node_id.short} missed a check-in and could not be"
        f" reached by {k} members of their circle. Please act on your safety protocol."
    )
    if len(text.encode("utf-8")) > limits.MAX_CHECKIN_MESSAGE_BYTES:
        raise CanopyError(f"--message is limited to {limits.MAX_CHECKIN_MESSAGE_BYTES} bytes")
    if duress_pin is not None and not 4 <= len(duress_pin) <= 64:
        raise CanopyError("--duress-pin must be 4 to 64 characters")
    own = await _own(local)
    items = (await load(local, now)).get((local.node_id.raw, own.plan), []) if own else []
    plan_id = own.plan if own else random_bytes(random, limits.CHECKIN_PLAN_ID_BYTES)
    me = local.node_id.raw
    if own is not None and own.circle != state.id:  # moved: the old circle stops watching
        pause = CheckIn(
            own.plan,
            Op.PAUSE,
            me,
            checkin.next_seq(items, me),
            next_due=min(now + limits.MAX_CHECKIN_EVERY_MS, limits.MAX_TIMESTAMP_MS),
        )
        items.append((b"", me, now, pause))
        await _publish(local, own.circle, pause, now)
    content = CheckIn(
        plan_id,
        Op.PLAN,
        me,
        checkin.next_seq(items, me),
        circle=state.id,
        every=every,
        grace=grace,
        next_due=now + every,
        confirmations=k,
        escalate=escalate,
        message=text,
    )
    record = await _publish(local, state.id, content, now)
    salt, pin = (own.pin_salt, own.pin_hash) if own else (b"", b"")
    if duress_pin is not None:
        salt = random_bytes(random, 16)
        pin = _pin_hash(duress_pin, salt)
    row = {"plan": plan_id, "circle": state.id, "pin_salt": salt, "pin_hash": pin}
    await local.store.put_row(TABLE, _OWN, row)  # type: ignore[arg-type]
    items.append((record.id, me, now, content))
    folded = checkin.fold(items)
    assert folded is not None
    return folded, state


async def _own_state(local: Local, now: int) -> tuple[Own, list[Item], PlanState]:
    own = await _own(local)
    if own is None:
        raise CanopyError("this node has no check-in plan (canopy checkin plan --help)")
    items = (await load(local, now)).get((local.node_id.raw, own.plan), [])
    state = checkin.fold(items)
    if state is None:
        raise CanopyError("this node's check-in plan has expired; set it again")
    return own, items, state


async def check_in(local: Local, *, duress: bool, pin: str | None, now: int) -> PlanState:
    """Check in: the next check-in is due one interval from now. The duress mark is sealed
    to the other members; the same work is done, and the same returned, either way."""
    own, items, state = await _own_state(local, now)
    members = (await _circle_of(local, own.circle)).members
    if pin is not None:
        if not own.pin_hash:
            raise CanopyError("this plan has no duress PIN; set one with checkin plan")
        given = _pin_hash(pin, own.pin_salt)
        duress = duress or hmac.compare_digest(given, own.pin_hash)
    responders = [NodeId(m).x25519() for m in sorted(members) if m != local.node_id.raw]
    mark = checkin.make_mark(responders, duress, random)
    me = local.node_id.raw
    content = CheckIn(
        own.plan, Op.CHECKIN, me, checkin.next_seq(items, me), next_due=now + state.every, mark=mark
    )
    record = await _publish(local, own.circle, content, now)
    folded = checkin.fold([*items, (record.id, me, now, content)])
    assert folded is not None
    return folded


async def pause(local: Local, *, until: int | None, now: int) -> PlanState:
    """Pause until `until` (then a check-in is due), or with None resume: due one interval
    from now."""
    own, items, state = await _own_state(local, now)
    me = local.node_id.raw
    op, due = (Op.PAUSE, until) if until is not None else (Op.RESUME, now + state.every)
    content = CheckIn(own.plan, op, me, checkin.next_seq(items, me), next_due=due)
    record = await _publish(local, own.circle, content, now)
    folded = checkin.fold([*items, (record.id, me, now, content)])
    assert folded is not None
    return folded


async def member_sets(local: Local) -> dict[bytes, frozenset[bytes]]:
    """The members of every circle this node is in now, by circle id."""
    states = (await circles.circles(local)).values()
    return {c.id: c.members for c in states if c.is_member(local.node_id)}


def fold_in(
    items: list[Item],
    members: dict[bytes, frozenset[bytes]],
    away: dict[bytes, frozenset[bytes]] | None = None,
) -> PlanState | None:
    """A plan's state if it is one of a circle this node is in and its defender is a member,
    folded from the records of current members only (anyone else holding a key, or naming
    the circle, moves nothing). With `away` (who is off duty now, by circle), the
    escalation waits for no more reports than the members on duty can give."""
    state = checkin.fold(items)
    if state is None:
        return None
    circle = members.get(state.circle)
    if circle is None or state.defender not in circle:
        return None
    gone = (away or {}).get(state.circle, frozenset())
    ours = [i for i in items if i[1] in circle]
    return checkin.fold(ours, responders=circle, away=gone)


async def watched(local: Local, now: int) -> dict[PlanKey, tuple[list[Item], PlanState]]:
    """Every plan this node makes or watches (of a circle it is in now), with its records."""
    from node.oncall import duties

    members = await member_sets(local)
    away = {cid: duty.away_now(now) for cid, duty in (await duties(local, now)).items()}
    out: dict[PlanKey, tuple[list[Item], PlanState]] = {}
    for key, items in (await load(local, now)).items():
        state = fold_in(items, members, away)
        if state is not None:
            out[key] = (items, state)
    return out


async def _pick(local: Local, ref: str, now: int) -> tuple[list[Item], PlanState]:
    plans = {k: v for k, v in (await watched(local, now)).items() if k[0] != local.node_id.raw}
    ref = ref.strip()
    peers = [p for p in (await local.peers()).values() if p.node_id.raw in {k[0] for k in plans}]
    named = {p.node_id.raw for p in match_peers(peers, ref)}
    if len(ref) >= 4:
        named |= {k[0] for k in plans if str(NodeId(k[0])).startswith(ref.lower())}
    hits = [v for k, v in plans.items() if k[0] in named]
    if not hits:
        raise CanopyError(f"no check-in plan you watch is by {ref!r} (canopy checkin status)")
    if len(hits) > 1:
        raise CanopyError(f"{ref!r} names several defenders; give more of the id")
    return hits[0]


async def report(local: Local, ref: str, op: Op, now: int) -> tuple[PlanState, Record | None]:
    """Record that we reached the defender (cancels) or could not; when ours is the K-th
    "unreachable", publish the plan's escalation as an alert (and say so, once)."""
    items, state = await _pick(local, ref, now)
    status = state.status(now)
    if status == "escalated":
        raise CanopyError("this plan is already escalated")
    if op is Op.UNREACHABLE and status not in ("due", "missed"):
        raise CanopyError(f"the defender's check-in is not missed (it is {status})")
    me = local.node_id.raw
    content = CheckIn(
        state.plan, op, state.defender, checkin.next_seq(items, me), round=state.round
    )
    record = await _publish(local, state.circle, content, now)
    items = [*items, (record.id, me, now, content)]
    folded = checkin.fold(items)
    assert folded is not None
    folded = dataclasses.replace(folded, needed=state.needed)  # who is off duty: not waited for
    if not checkin.needs_escalation(folded):
        return folded, None
    return await escalate(local, folded, items, now)


async def escalate(
    local: Local, state: PlanState, items: Sequence[Item], now: int
) -> tuple[PlanState, Record]:
    """Publish the plan's escalation as an alert to the audience the defender chose, and
    the circle's record that it was sent (so nobody sends it twice)."""
    me = local.node_id.raw
    alert = await publish_alert(
        local,
        state.message,
        to=state.escalate,
        urgency="high",
        now_ms=now,
        lifetime_ms=limits.DEFAULT_ALERT_LIFETIME_MS,
    )
    said = CheckIn(
        state.plan, Op.ESCALATED, state.defender, checkin.next_seq(items, me), round=state.round
    )
    record = await _publish(local, state.circle, said, now)
    folded = checkin.fold([*items, (record.id, me, now, said)])
    assert folded is not None
    return dataclasses.replace(folded, needed=state.needed), alert


def duress_of(state: PlanState, identity: Identity) -> bool:
    """Whether the latest check-in's mark says duress to this node (never to the defender)."""
    if state.defender == identity.node_id.raw or not state.mark:
        return False
    return bool(checkin.read_mark(state.mark, identity.x25519_public(), identity.x25519_secret()))


async def rows(local: Local, now: int) -> list[dict[str, object]]:
    """What `canopy checkin status` lists: the plans this node makes and watches."""
    names = {p.node_id.raw: p.label for p in (await local.peers()).values()}
    circle_names = {c.id: c.name for c in (await circles.circles(local)).values()}
    out = []
    for (defender, _), (_, state) in sorted((await watched(local, now)).items()):
        mine = defender == local.node_id.raw
        out.append(
            {
                "plan": state.plan.hex(),
                "defender": str(NodeId(defender)),
                "defender_name": "you" if mine else names.get(defender, NodeId(defender).short),
                "mine": mine,
                "circle": circle_names.get(state.circle, state.circle.hex()[:12]),
                "every_ms": state.every,
                "grace_ms": state.grace,
                "next_due": state.next_due,
                "state": state.status(now),
                "last_checkin": state.last_checkin or None,
                "confirmations": state.confirmations,
                "needed": state.needed or state.confirmations,  # fewer if members are away
                "unreachable": len(state.unreachable),
                "reached": len(state.reached),
                "duress": duress_of(state, local.identity),
            }
        )
    return out
