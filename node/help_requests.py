"""Help requests on an unlocked data directory: making a request, its steps (ack, claim,
handoff, refer, accept-referral, resolve), folding what this node can read into states, and
sending an accepted referral's contact to the requester (protocol/help.py holds the rules).

Every `help` record is sealed to the request's audience: the circle the request names (its
id is in the request), else the network. Nothing readable is written to disk: states are
folded in memory from the sealed records each time.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from node import circles
from node.content import Audience, parse_audience
from node.directory import readable_contact, seal_contact
from node.local import Local
from node.publish import publish, store_own
from node.readers import read
from node.store import row_of
from node.trust import match_peers, parse_node_id
from protocol import help as rules
from protocol import limits
from protocol.encoding import pack, unpack
from protocol.errors import CanopyError, DecodeError
from protocol.help import Event, HelpState, Op, Request, Step
from protocol.identity import NodeId
from protocol.record import Kind, Record, Scope

_SENT = "help_referrals_sent"  # sealed setting: refer record ids whose contact we sent


@dataclass(frozen=True, slots=True)
class Folded:
    """A request's folded state and the record that made it (for its audience)."""

    state: HelpState
    record: Record


async def request(
    local: Local, *, need: str, region: str, to: str, text: str, now_ms: int
) -> Record:
    """Seal a new help request to `to` (`circle:NAME` or `network`) and store it."""
    region = region.strip().upper()
    audience = await parse_audience(local, to)
    if not (audience.circle or audience.network) or audience.grows:
        raise CanopyError("a help request goes to circle:NAME (or the network)")
    circle_id = (await circles.find(local, audience.circle)).id if audience.circle else None
    target = limits.DEFAULT_HELP_TARGET_MS
    if circle_id is not None:  # the circle's own first-response target (circle set)
        from node.oncall import duty_of

        target = (await duty_of(local, circle_id, now_ms)).target_ms
    content = Request(need, region, text, target, circle_id).to_content()
    try:
        rules.from_content(content)  # what every reader checks: refuse it here first
    except DecodeError as exc:
        raise CanopyError(f"cannot send this help request: {exc}") from None
    return (await publish(local, audience, Kind.HELP, content, now_ms))[0]


def fold_all(items: Sequence[tuple[Record, Request | Step]]) -> dict[bytes, Folded]:
    """Every request among `items`, folded with the steps that name it."""
    requests: dict[bytes, tuple[Record, Request]] = {}
    steps: dict[bytes, list[Event]] = defaultdict(list)
    for record, content in items:
        if isinstance(content, Request):
            requests[record.id] = (record, content)
        else:
            steps[content.request].append(
                Event(record.id, record.author.raw, record.created, content)
            )
    return {
        rid: Folded(
            rules.fold(rid, record.author.raw, record.created, req, steps.get(rid, [])), record
        )
        for rid, (record, req) in requests.items()
    }


async def states(local: Local, now_ms: int) -> dict[bytes, Folded]:
    return fold_all(await read(local, Kind.HELP, rules.from_content, now_ms))


def _find(found: dict[bytes, Folded], ref: str) -> Folded:
    ref = ref.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{6,64}", ref):
        raise CanopyError(f"not a request id: {ref!r} (expected 6 to 64 hex characters)")
    named = [f for rid, f in found.items() if rid.hex().startswith(ref)]
    if not named:
        raise CanopyError(f"no help request {ref} that this node can read")
    if len(named) > 1:
        raise CanopyError(f"{ref} matches several requests; give more of the id")
    return named[0]


async def show(local: Local, ref: str, now_ms: int) -> Folded:
    return _find(await states(local, now_ms), ref)


async def _audience(local: Local, req: Request) -> Audience:
    """The request's audience: its circle (which we must be in), else the network."""
    if req.circle is None:
        return Audience(Scope.NETWORK, (), True)
    state = (await circles.circles(local)).get(req.circle)
    if state is None or not state.is_member(local.node_id):
        raise CanopyError("this node is no longer in the circle of that request")
    return Audience(Scope.NETWORK, (), False, state.name, (state.key,))


async def _peer(local: Local, ref: str) -> NodeId:
    named = [p.node_id for p in match_peers(list((await local.peers()).values()), ref)]
    if len(named) > 1:
        raise CanopyError(f"{ref!r} matches several peers; give more of the id")
    return named[0] if named else parse_node_id(ref)


async def step(
    local: Local, ref: str, op: Op, now_ms: int, *, arg: str = "", outcome: str = ""
) -> tuple[Record, HelpState]:
    """Make one step on request `ref` and store it; refused here (CanopyError) if the fold
    would ignore it. Returns the record and the state with it applied."""
    found = _find(await states(local, now_ms), ref)
    target = b""
    if op is Op.HANDOFF:
        target = (await _peer(local, arg)).raw
    elif op is Op.REFER:
        record, _, _ = await readable_contact(local, arg)
        target = record.id
    elif op is Op.ACCEPT_REFERRAL:
        target = _referral(found.state, arg)
    circle_id = found.state.request.circle
    if op is Op.CLAIM and circle_id is not None:  # off duty: not counted for claims
        from node.oncall import duty_of, iso

        duty = await duty_of(local, circle_id, now_ms)
        if duty.is_away(local.node_id.raw, now_ms):
            until = iso(duty.away[local.node_id.raw])
            raise CanopyError(f"you are off duty until {until}: `canopy away --off` to claim")
    content = Step(op, found.state.id, target, outcome).to_content()
    try:
        typed = rules.from_content(content)
    except DecodeError as exc:
        raise CanopyError(f"cannot {op.value}: {exc}") from None
    assert isinstance(typed, Step)
    audience = await _audience(local, found.state.request)
    sealed = await publish(
        local, audience, Kind.HELP, content, max(now_ms, found.state.created), store=False
    )
    record = sealed[0]  # one per network for --to network, the first first
    state = found.state
    events = [e.event for e in state.history]
    event = Event(record.id, local.node_id.raw, record.created, typed)
    after = rules.fold(state.id, state.requester, state.created, state.request, [*events, event])
    mine = next(e for e in after.history if e.event.id == record.id)
    if mine.ignored:
        raise CanopyError(f"cannot {op.value} request {state.id.hex()[:12]}: {mine.ignored}")
    await store_own(local, sealed, now_ms)
    return record, after


def _referral(state: HelpState, ref: str) -> bytes:
    ref = ref.strip().lower()
    named = [r.id for r in state.referrals if ref and r.id.hex().startswith(ref)]
    if len(named) != 1:
        raise CanopyError(f"no single referral {ref!r} on that request (see: canopy help show)")
    return named[0]


async def send_accepted_referrals(local: Local, now_ms: int) -> int:
    """For each referral of ours its requester accepted, publish the contact sealed to the
    requester alone (once); returns how many were sent."""
    raw = await local.store.get_setting(_SENT)
    listed = unpack(raw) if raw else []
    sent = {i for i in listed if isinstance(i, bytes)} if isinstance(listed, list) else set()
    fresh: list[bytes] = []
    for folded in (await states(local, now_ms)).values():
        for referral in folded.state.referrals:
            if referral.by != local.node_id.raw or not referral.accepted or referral.id in sent:
                continue
            try:
                _, _, contact = await readable_contact(local, referral.contact.hex())
            except CanopyError:
                continue  # withdrawn or expired since: nothing to send
            copy = seal_contact(
                local,
                contact.to_content(),
                Scope.NETWORK,
                [NodeId(folded.state.requester)],
                None,
                now_ms,
                now_ms + limits.DEFAULT_CONTACT_LIFETIME_MS,
            )
            await local.store.put_records([row_of(copy, local=True)], now_ms)
            fresh.append(referral.id)
    if fresh:
        await local.store.set_setting(_SENT, pack(sorted(sent | set(fresh))))
    return len(fresh)
