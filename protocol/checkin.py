"""Check-ins watched by a circle: the content of a `checkin` record, the duress mark, the
fold of a plan's records into its state, and what a watcher raises when.

A plan belongs to one defender and is watched by the other members of one circle. Every
record about it is sealed to that circle (docs/spec/90-rapid-response.md): the defender's
`plan`, `checkin`, `pause` and `resume` (each saying when the next check-in is due), and the
members' `reached`, `unreachable` and `escalated` reports about one due time (a "round").
The state is a pure fold of those records: the same set, in any order, gives the same state.
Never reads the clock: `now` is an argument.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions

from protocol import limits, oncall
from protocol.circle import ID_BYTES as CIRCLE_ID_BYTES
from protocol.encoding import Value, as_bytes, as_int, as_str, check_keys
from protocol.errors import DecodeError
from protocol.identity import Random, random_bytes


class Op(enum.StrEnum):
    PLAN = "plan"
    CHECKIN = "checkin"
    PAUSE = "pause"
    RESUME = "resume"
    REACHED = "reached"
    UNREACHABLE = "unreachable"
    ESCALATED = "escalated"


DEFENDER_OPS = frozenset({Op.PLAN, Op.CHECKIN, Op.PAUSE, Op.RESUME})
REPORT_OPS = frozenset({Op.REACHED, Op.UNREACHABLE, Op.ESCALATED})
STATES = ("ok", "due", "missed", "escalated", "paused")

_COMMON = frozenset({"plan", "op", "defender", "seq"})
_KEYS: dict[Op, frozenset[str]] = {
    Op.PLAN: frozenset(
        {"circle", "every", "grace", "next_due", "confirmations", "escalate", "message"}
    ),
    Op.CHECKIN: frozenset({"next_due", "mark"}),
    Op.PAUSE: frozenset({"next_due"}),
    Op.RESUME: frozenset({"next_due"}),
    Op.REACHED: frozenset({"round"}),
    Op.UNREACHABLE: frozenset({"round"}),
    Op.ESCALATED: frozenset({"round"}),
}
_OPS: dict[str, Op] = {op.value: op for op in Op}
_MARK_PLAIN = limits.CHECKIN_MARK_SLOT_BYTES - nacl.bindings.crypto_box_SEALBYTES
_OK, _DURESS = 0, 1


@dataclass(frozen=True, slots=True)
class CheckIn:
    """The content of one `checkin` record. Fields an op does not carry are 0 / empty."""

    plan: bytes
    op: Op
    defender: bytes
    seq: int
    circle: bytes = b""
    every: int = 0
    grace: int = 0
    next_due: int = 0
    confirmations: int = 0
    escalate: str = ""
    message: str = ""
    mark: bytes = b""
    round: int = 0

    @classmethod
    def from_content(cls, content: dict[str, Value]) -> CheckIn:
        """Strictly check a check-in's content (DecodeError names the first bad field)."""
        if not isinstance(content, dict):
            raise DecodeError("checkin content must be a map")
        op_name = content.get("op")
        if not isinstance(op_name, str) or op_name not in _OPS:
            raise DecodeError("unknown checkin op")
        op = _OPS[op_name]
        check_keys(content, _COMMON | _KEYS[op], frozenset(), f"checkin {op}")
        every_max = limits.MAX_CHECKIN_EVERY_MS
        fields: dict[str, object] = {
            "plan": as_bytes(content["plan"], limits.CHECKIN_PLAN_ID_BYTES, "plan"),
            "op": op,
            "defender": as_bytes(content["defender"], 32, "defender"),
            "seq": as_int(content["seq"], "seq", 0, limits.MAX_CHECKIN_SEQ),
        }
        if "next_due" in content:
            fields["next_due"] = as_int(content["next_due"], "next_due", 0, limits.MAX_TIMESTAMP_MS)
        if "round" in content:
            fields["round"] = as_int(content["round"], "round", 0, limits.MAX_TIMESTAMP_MS)
        if op is Op.PLAN:
            fields["circle"] = as_bytes(content["circle"], CIRCLE_ID_BYTES, "circle")
            fields["every"] = as_int(
                content["every"], "every", limits.MIN_CHECKIN_EVERY_MS, every_max
            )
            fields["grace"] = as_int(content["grace"], "grace", 0, every_max)
            fields["confirmations"] = as_int(
                content["confirmations"], "confirmations", 1, limits.MAX_CHECKIN_MARK_SLOTS
            )
            fields["escalate"] = as_str(
                content["escalate"], "escalate", limits.MAX_CHECKIN_AUDIENCE_BYTES
            )
            if not fields["escalate"]:
                raise DecodeError("escalate is empty")
            fields["message"] = as_str(
                content["message"], "message", limits.MAX_CHECKIN_MESSAGE_BYTES
            )
        if op is Op.CHECKIN:
            mark = as_bytes(content["mark"], what="mark")
            slots, rest = divmod(len(mark), limits.CHECKIN_MARK_SLOT_BYTES)
            if rest or not 0 <= slots <= limits.MAX_CHECKIN_MARK_SLOTS:
                raise DecodeError("mark is not whole slots")
            fields["mark"] = mark
        return cls(**fields)  # type: ignore[arg-type]

    def to_content(self) -> dict[str, Value]:
        """The content map `from_content` reads back as this check-in."""
        content: dict[str, Value] = {
            "plan": self.plan,
            "op": self.op.value,
            "defender": self.defender,
            "seq": self.seq,
        }
        extra: dict[str, Value] = {
            "circle": self.circle,
            "every": self.every,
            "grace": self.grace,
            "next_due": self.next_due,
            "confirmations": self.confirmations,
            "escalate": self.escalate,
            "message": self.message,
            "mark": self.mark,
            "round": self.round,
        }
        content.update({key: extra[key] for key in _KEYS[self.op]})
        return content


# -- the duress mark -----------------------------------------------------------------------


def make_mark(responders: Sequence[bytes], duress: bool, random: Random) -> bytes:
    """One sealed box per responder's Curve25519 public key, each of a flag byte (ok or
    duress) and random padding: the same length either way, and unreadable to the defender
    (who keeps no ephemeral secret), so its device cannot tell which it sent."""
    if len(responders) > limits.MAX_CHECKIN_MARK_SLOTS:
        raise DecodeError("too many responders for one mark")
    flag = bytes([_DURESS if duress else _OK])
    return b"".join(
        _sealed_box(flag + random_bytes(random, _MARK_PLAIN - 1), key, random)
        for key in responders
    )


def _sealed_box(message: bytes, public: bytes, random: Random) -> bytes:
    """libsodium's sealed box (crypto_box_seal), its ephemeral key drawn from `random` so
    vectors are reproducible: epk || crypto_box(message, BLAKE2b-192(epk || pk), pk, esk)."""
    eph_pk, eph_sk = nacl.bindings.crypto_box_seed_keypair(random_bytes(random, 32))
    nonce = hashlib.blake2b(eph_pk + public, digest_size=24).digest()
    boxed: bytes = nacl.bindings.crypto_box(message, nonce, public, eph_sk)
    return eph_pk + boxed


def read_mark(mark: bytes, x25519_public: bytes, x25519_secret: bytes) -> bool | None:
    """Whether the mark says duress to the holder of this Curve25519 key pair; None when no
    slot opens for it (the defender itself, a member who joined later) or a slot is bad."""
    size = limits.CHECKIN_MARK_SLOT_BYTES
    for start in range(0, len(mark) - size + 1, size):
        try:
            plain = nacl.bindings.crypto_box_seal_open(
                mark[start : start + size], x25519_public, x25519_secret
            )
        except nacl.exceptions.CryptoError:
            continue
        if len(plain) != _MARK_PLAIN or plain[0] not in (_OK, _DURESS):
            return None
        return plain[0] == _DURESS
    return None


# -- the fold ---------------------------------------------------------------------------------

Item = tuple[bytes, bytes, int, CheckIn]  # (record id, author, created, content)


@dataclass(frozen=True, slots=True)
class PlanState:
    """A plan as its records make it. `round` is the due time the members' reports are
    about: the `next_due` of the defender's latest record."""

    plan: bytes
    defender: bytes
    circle: bytes
    every: int
    grace: int
    confirmations: int
    escalate: str
    message: str
    next_due: int
    paused: bool  # the defender's latest record is a pause (until `next_due`)
    last_checkin: int  # when the defender last checked in (0: never since the plan)
    mark: bytes  # the duress mark of that check-in
    seq: int  # the defender's latest seq on this plan
    reached: tuple[bytes, ...]  # members whose latest report on `round` is "reached"
    unreachable: tuple[bytes, ...]  # ... and "unreachable"
    escalated_by: tuple[bytes, ...]  # members that published the escalation of `round`
    needed: int = 0  # "unreachable" reports that escalate now (0: `confirmations`)

    @property
    def round(self) -> int:
        return self.next_due

    @property
    def escalated(self) -> bool:
        """Escalated once anyone published it, or when K members say unreachable and none
        reached the defender: deterministic whatever order the reports came in."""
        if self.escalated_by:
            return True
        return not self.reached and len(self.unreachable) >= (self.needed or self.confirmations)

    @property
    def missed_at(self) -> int:
        """When the round is missed: its due time plus the grace."""
        return self.next_due + self.grace

    def status(self, now: int) -> str:
        if self.escalated:
            return "escalated"
        if self.paused and now < self.next_due:
            return "paused"
        if self.reached or now < self.next_due:
            return "ok"
        return "due" if now < self.missed_at else "missed"


def _latest(items: Iterable[Item]) -> Item | None:
    return max(items, key=lambda item: (item[3].seq, item[0]), default=None)


def fold(
    items: Iterable[Item],
    *,
    responders: Iterable[bytes] | None = None,
    away: frozenset[bytes] = frozenset(),
) -> PlanState | None:
    """The state of one plan from its records (those naming one (defender, plan)); None
    without a plan record by the defender. Defender ops count only when the defender wrote
    them; reports only from other authors, and only about the current round. Given the
    circle's `responders` and who of them is off duty (`away`), the escalation needs K
    reports or as many as are on duty, if fewer (protocol/oncall.py `needed`)."""
    mine: list[Item] = []
    reports: dict[bytes, list[Item]] = {}
    key: tuple[bytes, bytes] | None = None
    for item in items:
        _, author, _, content = item
        if key is None:
            key = (content.defender, content.plan)
        if (content.defender, content.plan) != key:
            continue
        if content.op in DEFENDER_OPS:
            if author == content.defender:
                mine.append(item)
        elif author != content.defender:
            reports.setdefault(author, []).append(item)
    plan = _latest(i for i in mine if i[3].op is Op.PLAN)
    latest = _latest(mine)
    if plan is None or latest is None:
        return None
    settings, now_due = plan[3], latest[3].next_due
    checkin = _latest(i for i in mine if i[3].op is Op.CHECKIN and i[3].seq > settings.seq)
    by_op: dict[Op, list[bytes]] = {Op.REACHED: [], Op.UNREACHABLE: [], Op.ESCALATED: []}
    for author, theirs in sorted(reports.items()):
        on_round = [i for i in theirs if i[3].round == now_due]
        if any(i[3].op is Op.ESCALATED for i in on_round):
            by_op[Op.ESCALATED].append(author)
        said = _latest(i for i in on_round if i[3].op is not Op.ESCALATED)
        if said is not None:
            by_op[said[3].op].append(author)
    return PlanState(
        plan=settings.plan,
        defender=settings.defender,
        circle=settings.circle,
        every=settings.every,
        grace=settings.grace,
        confirmations=settings.confirmations,
        escalate=settings.escalate,
        message=settings.message,
        next_due=now_due,
        paused=latest[3].op is Op.PAUSE,
        last_checkin=checkin[2] if checkin else 0,
        mark=checkin[3].mark if checkin else b"",
        seq=latest[3].seq,
        reached=tuple(by_op[Op.REACHED]),
        unreachable=tuple(by_op[Op.UNREACHABLE]),
        escalated_by=tuple(by_op[Op.ESCALATED]),
        needed=0
        if responders is None
        else oncall.needed(
            settings.confirmations, [r for r in responders if r != settings.defender], away
        ),
    )


def next_seq(items: Iterable[Item], author: bytes) -> int:
    """The seq `author`'s next record about this plan takes: one past its highest."""
    return 1 + max((i[3].seq for i in items if i[1] == author), default=-1)


# -- what a watcher raises ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """Something a watching member's node raises once: `kind` is "missed", "escalated" or
    "duress"; `at` the round (or the check-in's time, for duress) it is about."""

    kind: str
    plan: bytes
    defender: bytes
    at: int


def due_events(state: PlanState, now: int, duress: bool = False) -> list[Event]:
    """What a watcher should raise about `state` at `now` (it raises each event once):
    a missed round once due + grace passed with no newer check-in, its escalation, and a
    check-in whose mark said duress to this watcher."""
    events: list[Event] = []
    status = state.status(now)
    if status == "missed":
        events.append(Event("missed", state.plan, state.defender, state.round))
    elif status == "escalated":
        events.append(Event("escalated", state.plan, state.defender, state.round))
    if duress and state.last_checkin:
        events.append(Event("duress", state.plan, state.defender, state.last_checkin))
    return events


def next_wake(state: PlanState, now: int) -> int | None:
    """When `due_events` may next say something new by time alone: the round's due time
    plus grace, if that is still ahead; None otherwise (only a new record changes it)."""
    if state.escalated or state.reached:
        return None
    at = state.missed_at
    return at if at > now else None


def needs_escalation(state: PlanState) -> bool:
    """Whether a member who just reported should publish the escalation: K members say
    unreachable, nobody reached the defender, and nobody published it yet."""
    return not state.escalated_by and state.escalated
