"""`help request|ack|claim|handoff|refer|accept|resolve|list|show`, `ack`, `alerts`: rapid
response (help requests with a life cycle, acknowledged alerts)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .common import now_ms, on_id, opened
from .output import duration, print_json, print_rows, when

if TYPE_CHECKING:
    from node.local import Peer
    from protocol.help import HelpState
    from protocol.identity import NodeId


def _labeller(me: NodeId, peers: dict[NodeId, Peer]) -> Any:
    from protocol.identity import NodeId

    def label(raw: bytes) -> str:
        if raw == me.raw:
            return "you"
        peer = peers.get(NodeId(raw))
        return peer.label if peer else NodeId(raw).short

    return label


def _row(state: HelpState, me: NodeId, peers: dict[NodeId, Peer], now: int) -> dict[str, Any]:
    from protocol.identity import NodeId

    label = _labeller(me, peers)
    first = state.first_response
    return {
        "id": state.id.hex(),
        "need": state.request.need,
        "region": state.request.region,
        "text": state.request.text,
        "requester": str(NodeId(state.requester)),
        "requester_name": label(state.requester),
        "created": state.created,
        "age_ms": max(now - state.created, 0),
        "target_ms": state.request.target_ms,
        "first_response_ms": None if first is None else max(first - state.created, 0),
        "overdue": state.overdue(now),
        "acknowledged_by": [label(m) for m, _ in state.acks],
        "claimed_by": [label(m) for m, _ in state.claims],
        "holder": None if state.holder is None else label(state.holder),
        "holder_id": None if state.holder is None else str(NodeId(state.holder)),
        "claims": [str(NodeId(m)) for m, _ in state.claims],
        "acks": [str(NodeId(m)) for m, _ in state.acks],
        "you_claimed_late": state.late_claim(me.raw),
        "referrals": [
            {
                "id": r.id.hex(),
                "by": label(r.by),
                "contact": r.contact.hex(),
                "accepted": r.accepted,
            }
            for r in state.referrals
        ],
        "resolved": None
        if state.resolved is None
        else {
            "by": label(state.resolved[0]),
            "at": state.resolved[1],
            "outcome": state.resolved[2],
        },
        "history": [
            {
                "id": e.event.id.hex(),
                "op": e.event.step.op.value,
                "by": label(e.event.author),
                "author": str(NodeId(e.event.author)),
                "at": e.event.created,
                "ignored": e.ignored,
                "late": e.late,
            }
            for e in state.history
        ],
    }


async def cmd_help_request(args: argparse.Namespace) -> int:
    from node.help_requests import request

    async with opened(args, notify=True) as local:
        record = await request(
            local, need=args.need, region=args.region, to=args.to, text=args.text, now_ms=now_ms()
        )
    print(f"{record.id.hex()}  help request ({args.need}, {args.region.upper()}) to {args.to}")
    return 0


async def cmd_help_step(args: argparse.Namespace) -> int:
    from node.help_requests import step
    from protocol.help import Op

    op = Op(args.op)
    arg = getattr(args, "peer", None) or getattr(args, "contact", None) or ""
    arg = arg or getattr(args, "referral", None) or ""
    async with opened(args, notify=True) as local:
        record, state = await step(
            local, args.id, op, now_ms(), arg=arg, outcome=getattr(args, "outcome", "") or ""
        )
        label = _labeller(local.node_id, await local.peers())
    print(f"{record.id.hex()}  {op.value} on request {state.id.hex()[:12]}")
    if op is Op.CLAIM and state.holder != local.node_id.raw and state.holder is not None:
        print(f"note: {label(state.holder)} claimed it first and holds it")
    return 0


async def cmd_help_list(args: argparse.Namespace) -> int:
    from node.help_requests import states
    from node.oncall import duties
    from protocol import limits
    from protocol.identity import NodeId

    now = now_ms()
    async with opened(args) as local:
        found = await states(local, now)
        peers = await local.peers()
        duty = await duties(local, now)
    open_ = [f.state for f in found.values() if f.state.open]
    open_.sort(key=lambda s: (not s.overdue(now), s.created))
    rows = [_row(s, local.node_id, peers, now) for s in open_[: limits.MAX_HELP_SHOWN]]
    label = _labeller(local.node_id, peers)
    for row, state in zip(rows, open_, strict=False):
        circle = state.request.circle
        on_call = duty[circle].on_call(now) if circle in duty else frozenset()
        row["on_call"] = sorted(label(m) for m in on_call)
        row["on_call_ids"] = sorted(str(NodeId(m)) for m in on_call)

    def cells(row: dict[str, Any]) -> dict[str, Any]:
        first = row["first_response_ms"]
        target = duration(row["target_ms"] / 1000)
        response = "none yet" if first is None else duration(first / 1000)
        return {
            "ID": row["id"][:12],
            "NEED": row["need"],
            "REGION": row["region"],
            "FROM": row["requester_name"],
            "TEXT": str(row["text"])[:40],
            "AGE": duration(row["age_ms"] / 1000),
            "FIRST RESPONSE": f"{response} / {target}" + (" OVERDUE" if row["overdue"] else ""),
            "ACKED BY": ", ".join(row["acknowledged_by"]) or "-",
            "HOLDER": (row["holder"] or "-")
            + (" (you claimed late)" if row["you_claimed_late"] else ""),
            "ON CALL": ", ".join(row["on_call"]) or "-",
        }

    print_rows(args.json, {"requests": rows}, "no open help requests this node can read", cells)
    return 0


async def cmd_help_show(args: argparse.Namespace) -> int:
    from node.help_requests import show

    now = now_ms()
    async with opened(args) as local:
        found = await show(local, args.id, now)
        peers = await local.peers()
    row = _row(found.state, local.node_id, peers, now)
    if args.json:
        print_json(row)
        return 0
    print(f"# help request {row['id'][:12]} ({row['need']}, {row['region']})")
    print(f"from: {row['requester_name']}   asked: {when(row['created'])}")
    print(row["text"])
    print()
    for entry in row["history"]:
        mark = f"  (ignored: {entry['ignored']})" if entry["ignored"] else ""
        mark += "  (late: another claim holds it)" if entry["late"] else ""
        print(f"{when(entry['at'])}  {entry['by']}: {entry['op']}{mark}")
    for ref in row["referrals"]:
        state = "accepted" if ref["accepted"] else "proposed"
        print(f"referral {ref['id'][:12]} by {ref['by']}: {state}")
    if row["resolved"]:
        print(f"resolved by {row['resolved']['by']}: {row['resolved']['outcome']}")
    return 0


async def cmd_ack(args: argparse.Namespace) -> int:
    from node.acks import ack

    record = await on_id(args, ack, notify=True)
    print(f"{record.id.hex()}  acknowledged alert {args.id}")
    return 0


async def cmd_alerts(args: argparse.Namespace) -> int:
    from node.acks import alerts

    async with opened(args) as local:
        rows = await alerts(local, now_ms())

    def cells(row: dict[str, Any]) -> dict[str, Any]:
        if "acknowledged" in row:
            acks = f"{len(row['acknowledged'])} acked"
            if row["not_yet"]:
                acks += ", not yet: " + ", ".join(m["name"] for m in row["not_yet"])
        elif row["ack_requested"]:
            acks = "you acked" if row.get("acknowledged_by_us") else "asks for ack"
        else:
            acks = "-"
        return {
            "ID": row["id"][:12],
            "WHEN": when(row["created"]),
            "FROM": row["from"],
            "URGENCY": row["urgency"],
            "TEXT": str(row["text"])[:60],
            "ACKS": acks,
        }

    print_rows(args.json, {"alerts": rows}, "no alerts this node can read", cells)
    return 0
