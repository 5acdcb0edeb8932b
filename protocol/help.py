"""Help requests with a life cycle, and acknowledgements of alerts (docs/spec/92-help-requests.md).

A help request is a `help` record (op `request`) sealed to its audience, usually a circle;
every later step is another `help` record of the same audience naming the request's record
id: `ack`, `claim`, `handoff` (to a peer), `refer` (a know-who contact), `accept-referral`
(the requester takes a referral up), `resolve` (with an outcome). `fold` gives one state from
any set of them in any order: steps are applied in (created, record id) order, and a step
that breaks a rule against the state it meets is kept in the history, marked ignored.

Two claims: both are shown, the earlier (created, then record id) holds the request, the
later is marked late so its author is told. An acknowledgement of an alert is an `ack`
record naming the alert, sealed to the alert's author alone (`AlertAck`).

Pure: no clock, no I/O; time comes in as the records' `created`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

from protocol import limits
from protocol.encoding import Value, as_bytes, as_int, as_str, check_keys
from protocol.errors import DecodeError

RECORD_ID_BYTES = 32
NODE_BYTES = 32
CIRCLE_ID_BYTES = 16
NEEDS = (
    "legal",
    "medical",
    "psychosocial",
    "digital-security",
    "shelter",
    "relocation",
    "emergency-funds",
    "other",
)
_REGION = re.compile(r"[A-Z]{2}(-[A-Z0-9]{1,3})?")


class Op(enum.StrEnum):
    REQUEST = "request"
    ACK = "ack"
    CLAIM = "claim"
    HANDOFF = "handoff"
    REFER = "refer"
    ACCEPT_REFERRAL = "accept-referral"
    RESOLVE = "resolve"


# The keys each op's content holds besides "op" (all required).
_KEYS: dict[Op, frozenset[str]] = {
    Op.REQUEST: frozenset({"need", "region", "text", "target_ms"}),
    Op.ACK: frozenset({"request"}),
    Op.CLAIM: frozenset({"request"}),
    Op.HANDOFF: frozenset({"request", "peer"}),
    Op.REFER: frozenset({"request", "contact"}),
    Op.ACCEPT_REFERRAL: frozenset({"request", "referral"}),
    Op.RESOLVE: frozenset({"request", "outcome"}),
}
_REQUEST_OPTIONAL = frozenset({"circle"})


def _text(value: Value, what: str, max_bytes: int) -> str:
    text = as_str(value, what, max_bytes)
    if not text.strip():
        raise DecodeError(f"{what} is empty")
    return text


@dataclass(frozen=True, slots=True)
class Request:
    """The content of a request: what is needed, where, and the first-response target."""

    need: str
    region: str
    text: str
    target_ms: int
    circle: bytes | None = None  # the circle it is sealed to: steps are sealed to it too

    def to_content(self) -> dict[str, Value]:
        content: dict[str, Value] = {
            "op": Op.REQUEST.value,
            "need": self.need,
            "region": self.region,
            "text": self.text,
            "target_ms": self.target_ms,
        }
        if self.circle is not None:
            content["circle"] = self.circle
        return content


@dataclass(frozen=True, slots=True)
class Step:
    """The content of a state change naming a request; `ref` is the op's argument (the
    peer of a handoff, the contact of a referral, the referral accepted), `outcome` a
    resolution's text."""

    op: Op
    request: bytes
    ref: bytes = b""
    outcome: str = ""

    def to_content(self) -> dict[str, Value]:
        content: dict[str, Value] = {"op": self.op.value, "request": self.request}
        if self.op is Op.HANDOFF:
            content["peer"] = self.ref
        elif self.op is Op.REFER:
            content["contact"] = self.ref
        elif self.op is Op.ACCEPT_REFERRAL:
            content["referral"] = self.ref
        elif self.op is Op.RESOLVE:
            content["outcome"] = self.outcome
        return content


def from_content(content: dict[str, Value]) -> Request | Step:
    """Strictly check a `help` record's content (DecodeError names the first fault)."""
    if not isinstance(content, dict):
        raise DecodeError("help content must be a map")
    raw = content.get("op")
    if not isinstance(raw, str) or raw not in Op.__members__.values():
        raise DecodeError("unknown help op")
    op = Op(raw)
    optional = _REQUEST_OPTIONAL if op is Op.REQUEST else frozenset()
    check_keys(content, _KEYS[op] | {"op"}, optional, "help")
    if op is Op.REQUEST:
        need = as_str(content["need"], "need")
        if need not in NEEDS:
            raise DecodeError("unknown need")
        region = as_str(content["region"], "region", 8)
        if not _REGION.fullmatch(region):
            raise DecodeError("region must be a country code (CC or CC-SUB)")
        circle = content.get("circle")
        return Request(
            need=need,
            region=region,
            text=_text(content["text"], "text", limits.MAX_HELP_TEXT_BYTES),
            target_ms=as_int(content["target_ms"], "target_ms", 1, limits.MAX_HELP_TARGET_MS),
            circle=None if circle is None else as_bytes(circle, CIRCLE_ID_BYTES, "circle"),
        )
    request = as_bytes(content["request"], RECORD_ID_BYTES, "request")
    if op is Op.HANDOFF:
        return Step(op, request, as_bytes(content["peer"], NODE_BYTES, "peer"))
    if op is Op.REFER:
        return Step(op, request, as_bytes(content["contact"], RECORD_ID_BYTES, "contact"))
    if op is Op.ACCEPT_REFERRAL:
        return Step(op, request, as_bytes(content["referral"], RECORD_ID_BYTES, "referral"))
    if op is Op.RESOLVE:
        outcome = _text(content["outcome"], "outcome", limits.MAX_HELP_OUTCOME_BYTES)
        return Step(op, request, outcome=outcome)
    return Step(op, request)


@dataclass(frozen=True, slots=True)
class AlertAck:
    """The content of an `ack` record: "I saw this alert", sealed to its author alone."""

    alert: bytes

    @classmethod
    def from_content(cls, content: dict[str, Value]) -> AlertAck:
        if not isinstance(content, dict):
            raise DecodeError("ack content must be a map")
        check_keys(content, frozenset({"alert"}), frozenset(), "ack")
        return cls(as_bytes(content["alert"], RECORD_ID_BYTES, "alert"))

    def to_content(self) -> dict[str, Value]:
        return {"alert": self.alert}


# -- the fold --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """One `help` record as the fold takes it: its id, author (raw), created and content."""

    id: bytes
    author: bytes
    created: int
    step: Step


@dataclass(frozen=True, slots=True)
class Entry:
    """One step of a request's history, and what it did ("" if applied, else why not)."""

    event: Event
    ignored: str = ""
    late: bool = False  # a claim that came after another: its author is told who holds it


@dataclass(frozen=True, slots=True)
class Referral:
    id: bytes  # the refer record's id
    by: bytes
    contact: bytes
    accepted: bool


@dataclass(frozen=True, slots=True)
class HelpState:
    """A request as every node holding the same records sees it."""

    id: bytes
    requester: bytes
    created: int
    request: Request
    history: tuple[Entry, ...]
    acks: tuple[tuple[bytes, int], ...]  # (member, when), first ack of each member
    claims: tuple[tuple[bytes, int], ...]  # every claim, in fold order: the first won
    holder: bytes | None  # who holds it now: the winning claimant, then each handoff
    referrals: tuple[Referral, ...]
    resolved: tuple[bytes, int, str] | None  # (by, when, outcome)
    first_response: int | None  # created of the first step by someone other than the requester

    @property
    def open(self) -> bool:
        return self.resolved is None

    def overdue(self, now_ms: int) -> bool:
        """No first response yet and the target has passed (or it came late)."""
        due = self.created + self.request.target_ms
        return (self.first_response or now_ms) > due

    def late_claim(self, member: bytes) -> bool:
        """Whether `member` claimed but another claim won: it should be told."""
        return any(e.late and e.event.author == member for e in self.history)


def _order(event: Event) -> tuple[int, bytes]:
    return event.created, event.id


def fold(
    request_id: bytes, requester: bytes, created: int, request: Request, events: Iterable[Event]
) -> HelpState:
    """The state of one request from its steps, in any order: the same set gives the same
    state everywhere. Steps naming another request are left out; a step received twice
    (same record id) counts once."""
    chosen = sorted({e.id: e for e in events if e.step.request == request_id}.values(), key=_order)
    chosen = chosen[: limits.MAX_HELP_STEPS]
    history: list[Entry] = []
    acks: dict[bytes, int] = {}
    claims: list[tuple[bytes, int]] = []
    holder: bytes | None = None
    referrals: dict[bytes, Referral] = {}
    resolved: tuple[bytes, int, str] | None = None
    first: int | None = None
    for event in chosen:
        step, who = event.step, event.author
        why, late = _refusal(step, who, requester, holder, referrals, resolved, acks), False
        if not why:
            if step.op is Op.ACK:
                acks[who] = event.created
            elif step.op is Op.CLAIM:
                claims.append((who, event.created))
                if holder is None:
                    holder = who
                else:
                    late = True
            elif step.op is Op.HANDOFF:
                holder = step.ref
            elif step.op is Op.REFER:
                referrals[event.id] = Referral(event.id, who, step.ref, False)
            elif step.op is Op.ACCEPT_REFERRAL:
                old = referrals[step.ref]
                referrals[step.ref] = Referral(old.id, old.by, old.contact, True)
            elif step.op is Op.RESOLVE:
                resolved = (who, event.created, step.outcome)
            if who != requester and first is None:
                first = event.created
        history.append(Entry(event, why, late))
    return HelpState(
        id=request_id,
        requester=requester,
        created=created,
        request=request,
        history=tuple(history),
        acks=tuple(acks.items()),
        claims=tuple(claims),
        holder=holder,
        referrals=tuple(referrals.values()),
        resolved=resolved,
        first_response=first,
    )


def _refusal(
    step: Step,
    who: bytes,
    requester: bytes,
    holder: bytes | None,
    referrals: dict[bytes, Referral],
    resolved: tuple[bytes, int, str] | None,
    acks: dict[bytes, int],
) -> str:
    """Why `step` by `who` does nothing against the state so far ("" if it applies)."""
    if resolved is not None:
        return "the request was already resolved"
    if step.op is Op.REQUEST:
        return "a request cannot name another request"
    if step.op in (Op.ACK, Op.CLAIM, Op.REFER) and who == requester:
        return "the requester cannot do this to its own request"
    if step.op is Op.ACK and who in acks:
        return "already acknowledged"
    if step.op is Op.CLAIM and who == holder:
        return "already holds it"
    if step.op is Op.HANDOFF and who != holder:
        return "only the member holding the request can hand it off"
    if step.op is Op.HANDOFF and step.ref == who:
        return "cannot hand off to oneself"
    if step.op is Op.ACCEPT_REFERRAL:
        if who != requester:
            return "only the requester accepts a referral"
        referral = referrals.get(step.ref)
        if referral is None:
            return "no such referral (yet)"
        if referral.accepted:
            return "referral already accepted"
    if step.op is Op.RESOLVE and who not in (requester, holder):
        return "only the requester or the member holding it can resolve it"
    return ""
