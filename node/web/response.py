"""The web app's door to rapid response, beside actions.py: check-ins, help requests and
acknowledged alerts, through the very functions `canopy checkin`, `canopy help` and
`canopy ack` / `canopy alerts` call (node/checkins.py, node/help_requests.py, node/acks.py);
no rule lives here.

What home shows to act on now must stay cheap: check-ins come from the running node's
in-memory watch (node/checkin_watch.py); open help requests and alerts awaiting our
acknowledgement are folded once and kept, folded again only when the records the node
holds may have changed (its in-memory version that sync also uses: a record stored or
deleted here, one written by `canopy`, trust changed). No I/O otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from node.clock import now_ms
from node.web.actions import RunningNode, _changed
from protocol import limits
from protocol.errors import CanopyError
from protocol.identity import NodeId

NEEDS_ACTION = ("missed", "escalated")  # a watched plan in one of these is for home


# -- check-ins --------------------------------------------------------------------------------


async def checkin_rows(node: RunningNode) -> list[dict[str, object]]:
    """What `canopy checkin status` lists: the plans this node makes and watches."""
    from node.checkins import rows

    return await rows(node.local, now_ms())


async def check_in(node: RunningNode, pin: str) -> int:
    """`canopy checkin [--pin PIN]`: the same work and the same answer under duress."""
    from node.checkins import check_in as checked_in

    state = await checked_in(node.local, duress=False, pin=pin or None, now=now_ms())
    await _changed(node)
    return state.next_due


async def report(node: RunningNode, defender: str, reached: bool) -> tuple[int, int, bool]:
    """`canopy checkin reached|unreachable DEFENDER`: (unreachable, needed, escalated)."""
    from node.checkins import report as recorded
    from protocol.checkin import Op

    op = Op.REACHED if reached else Op.UNREACHABLE
    state, alert = await recorded(node.local, defender, op, now_ms())
    await _changed(node)
    return len(state.unreachable), state.confirmations, alert is not None


# -- help requests ----------------------------------------------------------------------------


def needs() -> tuple[str, ...]:
    from protocol.help import NEEDS

    return NEEDS


async def circle_names(node: RunningNode) -> list[str]:
    from node import circles

    states = (await circles.circles(node.local)).values()
    return sorted(c.name for c in states if c.is_member(node.node_id))


async def help_rows(node: RunningNode, *, open_only: bool = True) -> list[dict[str, Any]]:
    """The rows `canopy help list` shows (open ones, overdue first), as `--json` has them."""
    from commands.help_requests import _row
    from node.help_requests import states

    now = now_ms()
    found = [f.state for f in (await states(node.local, now)).values()]
    shown = [s for s in found if s.open or not open_only]
    shown.sort(key=lambda s: (not s.open, not s.overdue(now), s.created))
    peers = await node.local.peers()
    return [_row(s, node.node_id, peers, now) for s in shown[: limits.MAX_HELP_SHOWN]]


async def ask_for_help(node: RunningNode, *, need: str, region: str, to: str, text: str) -> str:
    """`canopy help request --need N --region CC --to circle:NAME TEXT`."""
    from node.help_requests import request
    from protocol.help import NEEDS

    if need not in NEEDS:
        raise CanopyError(f"need {need!r}: choose one of {', '.join(NEEDS)}")
    record = await request(node.local, need=need, region=region, to=to, text=text, now_ms=now_ms())
    await _changed(node)
    return record.id.hex()


STEPS = ("ack", "claim", "handoff", "refer", "accept-referral", "resolve")  # as `canopy help`
_ARG = {"handoff": "peer", "refer": "contact", "accept-referral": "referral"}  # its form field


async def help_step(
    node: RunningNode, ref: str, op: str, outcome: str, form: Mapping[str, str] | None = None
) -> bool:
    """`canopy help ack|claim|handoff|refer|accept|resolve ID [ARG]`; whether another claim
    was earlier and holds it."""
    from node.help_requests import step
    from protocol.help import Op

    if op not in STEPS:
        raise CanopyError(f"no such step {op!r}")
    arg = (form or {}).get(_ARG.get(op, ""), "").strip()
    if op in _ARG and not arg:
        raise CanopyError(f"choose a {_ARG[op]} first")
    _, state = await step(node.local, ref, Op(op), now_ms(), arg=arg, outcome=outcome)
    await _changed(node)
    return Op(op) is Op.CLAIM and state.holder not in (None, node.node_id.raw)


async def help_choices(node: RunningNode, ref: str, find: Mapping[str, str]) -> dict[str, Any]:
    """A request's page: its row (`canopy help show ID --json`, as `r`), the members to
    hand it to (its circle's, not us), the know-who contacts to refer (what `canopy query`
    finds offline here with `find`'s text, kind and region; teasers have no details to
    send), and a name for each referral's contact where this node can read it."""
    from commands.help_requests import _row
    from node import circles
    from node.directory import readable_contact
    from node.help_requests import show

    now = now_ms()
    found = await show(node.local, ref, now)
    state, me = found.state, node.node_id
    peers = await node.local.peers()
    members: list[dict[str, str]] = []
    circle = state.request.circle
    held = (await circles.circles(node.local)).get(circle) if circle is not None else None
    for raw in sorted(held.members if held is not None else ()):
        if raw != me.raw:
            peer = peers.get(NodeId(raw))
            members.append(
                {"id": str(NodeId(raw)), "name": peer.label if peer else NodeId(raw).short}
            )
    members.sort(key=lambda m: m["name"].casefold())
    contacts: list[dict[str, Any]] = []
    find_error = ""
    if state.requester != me.raw and state.open:
        from node.web.actions import query

        wanted = {k: find.get(k, "").strip()[:200] for k in ("text", "kind", "region")}
        try:
            result = await query(node, lang="", network=False, **wanted)
            contacts = [r for r in result["results"] if not r.get("teaser")]
        except CanopyError as exc:  # a bad kind or region typed in the picker
            find_error = str(exc)
    named: dict[str, str] = {}
    for referral in state.referrals:
        try:
            _, _, contact = await readable_contact(node.local, referral.contact.hex())
        except CanopyError:
            continue  # the requester reads it only once it accepts and the details come
        named[referral.id.hex()] = f"{contact.name} ({contact.kind}, {contact.region})"
    return {
        "r": _row(state, me, peers, now),
        "mine": state.requester == me.raw,
        "holding": state.holder == me.raw,
        "members": members,
        "contacts": contacts,
        "find_error": find_error,
        "referral_names": named,
    }


# -- on call and off duty ---------------------------------------------------------------------


async def duty(node: RunningNode) -> dict[str, Any]:
    """`canopy circle oncall NAME` for each circle with others that this node is in (who is
    on call now, who is off duty), and `canopy away`: until when we are off duty (0: on)."""
    from node import circles, oncall

    now = now_ms()
    states = (await circles.circles(node.local)).values()
    named = sorted(
        (c for c in states if c.is_member(node.node_id) and len(c.members) > 1),
        key=lambda c: c.name.casefold(),
    )
    rotas = [
        await oncall.rota(node.local, c.id.hex(), now)
        for c in named
        if c.name != circles.PEERS_CIRCLE
    ]
    until = await oncall.away_until(node.local, now)
    return {"rotas": rotas, "away_until": until if until > now else 0}


async def set_away(node: RunningNode, until: str, *, off: bool) -> int:
    """`canopy away --until WHEN` / `canopy away --off`: off duty in every circle this node
    is in, or back on duty; returns the until (0: back on duty)."""
    from node import oncall

    now = now_ms()
    moment = 0 if off else oncall.parse_when(until, now, "until")
    await oncall.set_away(node.local, moment, now)
    await _changed(node)
    return moment


# -- acknowledged alerts ----------------------------------------------------------------------


async def alert_rows(node: RunningNode) -> list[dict[str, object]]:
    """What `canopy alerts --json` lists: received and sent, with who acknowledged ours."""
    from node.acks import alerts

    return await alerts(node.local, now_ms())


async def acknowledge(node: RunningNode, ref: str) -> None:
    """`canopy ack ID`: sealed to the alert's author alone."""
    from node.acks import ack

    await ack(node.local, ref, now_ms())
    await _changed(node)


# -- what home shows to act on now ------------------------------------------------------------


@dataclass
class Pending:
    """Home's cache of what was folded from records: open help requests (their states) and
    alerts asking us for an acknowledgement, with the node's records version they were
    folded at."""

    version: tuple[int, ...] | None = None
    requests: list[Any] = field(default_factory=list)
    alerts: list[dict[str, object]] = field(default_factory=list)


async def needs_action(node: RunningNode, pending: Pending) -> dict[str, list[dict[str, Any]]]:
    """Missed, escalated and duress check-ins of plans we watch; open help requests of
    others, overdue or not yet acknowledged (overdue first); alerts awaiting our ack."""
    from node.acks import alerts
    from node.help_requests import states

    now = now_ms()
    version = node._items_version()
    if version != pending.version:
        pending.requests = [
            f.state for f in (await states(node.local, now)).values() if f.state.open
        ]
        pending.alerts = [
            row
            for row in await alerts(node.local, now)
            if row["direction"] == "received"
            and row["ack_requested"]
            and not row.get("acknowledged_by_us")
        ]
        pending.version = version
    return {
        "checkins": _checkins(node, now),
        "requests": _requests(node, pending.requests, now),
        "alerts": pending.alerts,
    }


def _checkins(node: RunningNode, now: int) -> list[dict[str, Any]]:
    watch = node.checkins
    labels = {p.raw: peer.label for p, peer in watch.book.peers.items()}
    out = []
    for key, state in watch.states.items():
        if state.defender == node.node_id.raw:
            continue
        status = state.status(now)
        duress = bool(watch.duress.get(key))
        if status in NEEDS_ACTION or duress:
            who = NodeId(state.defender)
            out.append(
                {
                    "defender": str(who),
                    "name": labels.get(state.defender, who.short),
                    "state": status,
                    "duress": duress,
                    "next_due": state.next_due,
                    "unreachable": len(state.unreachable),
                    "confirmations": state.confirmations,
                }
            )
    out.sort(key=lambda r: (not r["duress"], r["state"] != "missed", r["next_due"]))
    return out


def _requests(node: RunningNode, states: list[Any], now: int) -> list[dict[str, Any]]:
    labels = {p.raw: peer.label for p, peer in node.checkins.book.peers.items()}
    out = []
    for state in states:
        if state.requester == node.node_id.raw or not state.open:
            continue
        overdue, unacked = state.overdue(now), not state.acks
        if overdue or unacked:
            who = NodeId(state.requester)
            out.append(
                {
                    "id": state.id.hex(),
                    "need": state.request.need,
                    "region": state.request.region,
                    "from": labels.get(state.requester, who.short),
                    "created": state.created,
                    "overdue": overdue,
                    "acknowledged": not unacked,
                }
            )
    out.sort(key=lambda r: (not r["overdue"], r["created"]))
    return out
