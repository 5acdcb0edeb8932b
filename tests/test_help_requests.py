"""Help requests and acknowledged alerts end to end: real `canopy run` processes on
127.0.0.1 in one circle. A request's life cycle with two concurrent claims converges to one
state on every node; an accepted referral's contact reaches the requester only; B
acknowledges an alert and A sees B acknowledged and C not yet; no request text, outcome or
referred contact is readable in any data directory."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from node.demo import NodeProcess, scan_for, wait_until
from protocol.help import Request
from protocol.record import Kind
from tests.conftest import Net
from tests.test_multinode import link, three_nodes

pytestmark = pytest.mark.timeout(240)
REQUEST_TEXT = "Nadia detained at Namanga post since 06:00, lawyer needed fast"
OUTCOME = "Released on bail after counsel from Wakili Kamau"
CONTACT_NAME = "Wakili Kamau Advocates"
CIRCLE = "circle:Responders"


async def responders(net: Net) -> tuple[NodeProcess, NodeProcess, NodeProcess]:
    """A (requester) - B - C, plus a direct A - C link; all three in A's circle."""
    a, b, c = await three_nodes(net)
    await link(a, c)
    await a.cli("circle", "create", "Responders")
    for node in (b, c):
        await a.cli("circle", "add", "Responders", node.node_id)

    async def members() -> bool:
        lists = [(await n.json("circle", "list"))["circles"] for n in (b, c)]
        return all(len(x) == 1 and len(x[0]["members"]) == 3 for x in lists)

    await wait_until("every member knows the circle", members)
    return a, b, c


def canonical(shown: dict[str, Any]) -> dict[str, Any]:
    """What must be the same on every node (names are each node's own)."""
    return {
        "holder": shown["holder_id"],
        "claims": shown["claims"],
        "acks": shown["acks"],
        "resolved": None if shown["resolved"] is None else shown["resolved"]["outcome"],
        "referrals": [(r["id"], r["accepted"]) for r in shown["referrals"]],
        "history": [
            (e["id"], e["op"], e["author"], e["ignored"], e["late"]) for e in shown["history"]
        ],
    }


async def views(nodes: tuple[NodeProcess, ...], rid: str) -> list[dict[str, Any] | None]:
    out: list[dict[str, Any] | None] = []
    for node in nodes:
        code, text, _ = await node.cli("help", "show", rid, "--json", check=False)
        out.append(canonical(json.loads(text)) if code == 0 else None)
    return out


async def converged(nodes: tuple[NodeProcess, ...], rid: str, steps: int) -> bool:
    seen = await views(nodes, rid)
    first = seen[0]
    return first is not None and len(first["history"]) == steps and all(v == first for v in seen)


async def test_a_help_request_life_cycle_with_concurrent_claims_converges_everywhere(
    net: Net,
) -> None:
    a, b, c = await responders(net)
    nodes = (a, b, c)
    _, out, _ = await a.cli(
        "help", "request", "--need", "legal", "--region", "ke", "--to", CIRCLE, REQUEST_TEXT
    )
    rid = out.split()[0]
    await wait_until("the request reaches both responders", lambda: converged(nodes, rid, 0))
    listed = (await b.json("help", "list"))["requests"]
    assert [(r["id"], r["need"], r["region"], r["text"]) for r in listed] == [
        (rid, "legal", "KE", REQUEST_TEXT)
    ]
    assert listed[0]["first_response_ms"] is None and listed[0]["target_ms"] == 7_200_000

    await b.cli("help", "ack", rid[:12])
    # B and C claim at the same moment, each before it has seen the other's claim.
    await asyncio.gather(b.cli("help", "claim", rid), c.cli("help", "claim", rid))
    await wait_until("both claims everywhere", lambda: converged(nodes, rid, 3))
    state = (await views(nodes, rid))[0]
    assert state is not None
    assert sorted(state["claims"]) == sorted([b.node_id, c.node_id])  # both shown
    winner, loser = state["claims"]
    assert state["holder"] == winner  # the earlier (created, then record id) holds it
    late = next(n for n in (b, c) if n.node_id == loser)
    assert (await late.json("help", "show", rid))["you_claimed_late"] is True
    listed = (await a.json("help", "list"))["requests"]
    assert listed[0]["acknowledged_by"] and listed[0]["first_response_ms"] is not None

    # A refused step is one clear line, nothing stored.
    code, _, err = await late.cli("help", "handoff", rid, a.node_id, check=False)
    assert code == 1 and "holding" in err and "Traceback" not in err
    holder = next(n for n in (b, c) if n.node_id == winner)
    other = late
    await holder.cli("help", "handoff", rid, other.node_id)
    await wait_until("the handoff everywhere", lambda: converged(nodes, rid, 4))

    # The new holder refers a vetted contact; only once the requester accepts does the
    # contact reach it, sealed to the requester alone.
    _, out, _ = await other.cli(
        "contact", "add", "--kind", "lawyer", "--name", CONTACT_NAME, "--region", "KE",
        "--share", "private",
    )  # fmt: skip
    contact_id = out.split()[0]
    await other.cli("help", "refer", rid, contact_id)
    await wait_until("the referral everywhere", lambda: converged(nodes, rid, 5))
    assert not await _knows_contact(a)
    refer_id = (await a.json("help", "show", rid))["referrals"][0]["id"]
    await a.cli("help", "accept", rid, refer_id[:12])
    await wait_until("the contact reaches the requester", lambda: _knows_contact(a))
    assert not await _knows_contact(holder)  # sealed to the requester (and its sender) only

    await other.cli("help", "resolve", rid, "--outcome", OUTCOME)
    await wait_until("the resolution everywhere", lambda: converged(nodes, rid, 7))
    final = await views(nodes, rid)
    assert final[0] is not None and final[0]["resolved"] == OUTCOME
    assert (await c.json("help", "list"))["requests"] == []  # closed: no longer open
    shown = await a.json("help", "show", rid)  # the requester sees the whole history
    assert [e["op"] for e in shown["history"]] == [
        "ack", "claim", "claim", "handoff", "refer", "accept-referral", "resolve"
    ]  # fmt: skip

    code, _, err = await b.cli("help", "claim", "zz-not-an-id", check=False)
    assert code == 1 and "not a request id" in err and "Traceback" not in err
    code, _, err = await b.cli(
        "help", "request", "--need", "money", "--region", "KE", "--to", CIRCLE, "x", check=False
    )
    assert code == 2 and "Traceback" not in err

    for node in nodes:
        await node.stop()
    needles = [t.encode() for t in (REQUEST_TEXT, OUTCOME, CONTACT_NAME)]
    scanned, hits = scan_for(net.root, needles)
    assert scanned > 10 and hits == []


async def _knows_contact(node: NodeProcess) -> bool:
    result = await node.json("query", "--kind", "lawyer", "--region", "KE")
    return any(CONTACT_NAME in str(row) for row in result["results"])


async def test_an_acknowledged_alert_shows_who_acknowledged_and_who_has_not_yet(
    net: Net,
) -> None:
    a, b, c = await responders(net)
    _, out, _ = await a.cli("alert", "--ack", "--to", CIRCLE, "Raid expected tonight, confirm")
    aid = out.split()[0]
    assert "asked 2 recipient(s)" in out

    async def received(node: NodeProcess) -> bool:
        rows = (await node.json("alerts"))["alerts"]
        return [(r["id"], r["ack_requested"]) for r in rows] == [(aid, True)]

    await wait_until("the alert reaches B and C", lambda: _both(received(b), received(c)))
    await b.cli("ack", aid[:12])

    async def acked_by_b() -> bool:
        (row,) = (await a.json("alerts"))["alerts"]
        return [m["id"] for m in row["acknowledged"]] == [b.node_id]

    await wait_until("A sees B's acknowledgement", acked_by_b)
    (row,) = (await a.json("alerts"))["alerts"]
    assert row["direction"] == "sent"
    assert [m["id"] for m in row["not_yet"]] == [c.node_id]
    assert (await b.json("alerts"))["alerts"][0]["acknowledged_by_us"] is True
    # The acknowledgement is sealed to A alone: C holds nothing it can read of it.
    assert (await c.json("alerts"))["alerts"][0]["acknowledged_by_us"] is False
    code, _, err = await a.cli("ack", aid, check=False)
    assert code == 1 and "yours" in err and "Traceback" not in err


async def _both(*checks: Any) -> bool:
    return all(await asyncio.gather(*checks))


async def test_malformed_help_records_from_a_peer_are_never_shown_and_cost_their_author(
    tmp_path: Path,
) -> None:
    from tests.test_hostile_content import HOSTILE, RAW, counts, hostile_peer, sealed

    target = NodeProcess(tmp_path, "T", "Target")
    await target.init()
    await target.start()
    try:
        peer, hostile, invite = await hostile_peer(target)
        key = invite.network_key
        fine = Request("medical", "KE", f"Injured at the march {HOSTILE}", 7_200_000)
        good = sealed(hostile, key, Kind.HELP, fine.to_content())
        bad = [
            {**fine.to_content(), "need": "weapons"},
            {**fine.to_content(), "text": "x" * 5000},
            {"op": "claim", "request": good.id, "peer": bytes(32)},
            {"op": "resolve", "request": good.id, "outcome": 7},
        ]
        records = [sealed(hostile, key, Kind.HELP, c) for c in bad]  # type: ignore[arg-type]
        records.append(sealed(hostile, key, Kind.ACK, {"alert": b"short"}))
        await peer.send(peer.session.records([r.to_bytes() for r in [*records, good]]))

        async def stored() -> bool:
            held = await counts(target)
            return held.get("help", 0) == len(bad) + 1 and held.get("ack", 0) == 1

        await wait_until("every record stored", stored)
        status = await target.api("/v1/status")
        assert status["rejected"]["content_malformed"] == len(records)
        _, out, _ = await target.cli("help", "list")
        assert "Injured at the march" in out and not RAW.search(out)  # escaped, one request
        listed = (await target.json("help", "list"))["requests"]
        assert [r["id"] for r in listed] == [good.id.hex()]
        rows = {r["id"]: r for r in (await target.json("peers"))["peers"]}
        assert int(rows[str(hostile.node_id)]["score"]) < 100
        await peer.close()
    finally:
        await target.stop()
