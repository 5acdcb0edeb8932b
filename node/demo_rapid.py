"""`canopy demo --rapid-response`: check-ins watched by a circle, a help request with its life
cycle, and an acknowledged alert, on five real `canopy run` nodes on 127.0.0.1.

A, a defender, plans check-ins watched by B and C (her circle) and checks in once under
duress (her own screen shows a normal check-in; B and C are told). Her node is then seized
(kill -9): B and C raise the missed check-in by themselves; B's "could not reach" does not
escalate, C's does, and the plan's message reaches D, a third organisation, through R, a
relay that cannot read it. D asks B and C's circle for help; C acknowledges, B and C claim
at the same moment (the earlier wins, the later is told), the holder refers a vetted
contact, D accepts it, and the request is resolved. B's alert asking for acknowledgement is
acknowledged by C, and B sees who has and who has not yet. Every data directory, the seized
one too, is then scanned for the plan's message and every text sent. Names are fictional.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from node.demo import NodeProcess, wait_until
from node.demo_story import Demo, scan_all

MESSAGE = "Amina Wanjiru missed her check-in on the Namanga road: call her lawyer, then the desk"
REQUEST = "Amina Wanjiru unreachable since 06:00 near Namanga; needs a lawyer and a safe house"
CONTACT = "Wakili Njeri Kamau Advocates"
OUTCOME = "Located at Namanga police post; released on bail with counsel from Wakili Kamau"
ALERT = "Checkpoint on the Namanga road tonight: confirm you have seen this"
CIRCLE = "Rapid Responders"
NAMES = {
    "A": "Amina Wanjiru (defender)",
    "B": "Haki Legal Aid (Nairobi)",
    "C": "Pwani Paralegals (Mombasa)",
    "R": "Community relay (Kisumu)",
    "D": "Protection Desk (Arusha)",
}


async def _all(*checks: Any) -> bool:
    return all(await asyncio.gather(*checks))


async def _plan_of(node: NodeProcess, defender: NodeProcess) -> dict[str, Any] | None:
    rows = (await node.json("checkin", "status"))["plans"]
    return next((p for p in rows if p["defender"] == defender.node_id), None)


async def _notices(node: NodeProcess, kind: str) -> list[dict[str, Any]]:
    return [a for a in (await node.api("/v1/alerts"))["alerts"] if a.get("kind") == kind]


async def _connected(node: NodeProcess, count: int) -> bool:
    peers = (await node.json("peers"))["peers"]
    return sum(p["state"] == "connected" for p in peers) == count


async def _story(root: Path, nodes: dict[str, NodeProcess]) -> int:
    a, b, c, r, d = nodes.values()
    say = print
    for node in nodes.values():
        say(f"{node.label}: {node.name:28} id {node.node_id[:10]}")
    for x, y in ((a, b), (a, c), (b, c), (b, r), (c, r), (r, d)):
        await x.invite(y)
    await wait_until("the links", lambda: _all(_connected(a, 2), _connected(r, 3)))
    say("A-B, A-C, B-C linked; B and C reach D only through the relay R\n")

    say("== a check-in plan watched by the circle, not by the defender's own device")
    await a.cli("circle", "create", "Safety")
    for member in (b, c):
        await a.cli("circle", "add", "Safety", member.node_id)
    args = ["--every", "12s", "--grace", "3s", "--circle", "Safety", "--message", MESSAGE]
    _, out, _ = await a.cli("checkin", "plan", *args, "--escalate-to", d.node_id)
    say(f"$ canopy checkin plan --every 12s --grace 3s --circle Safety --escalate-to D\n{out}")
    _, out, _ = await a.cli("checkin", "--duress")
    say(f"$ canopy checkin --duress   (A: her screen shows an ordinary check-in)\n{out}")

    async def flagged() -> bool:
        rows = [await _plan_of(n, a) for n in (b, c)]
        raised = await _all(_notices(b, "checkin_duress"), _notices(c, "checkin_duress"))
        return raised and all(p is not None and p["duress"] for p in rows)

    await wait_until("B and C to see the duress mark", flagged)
    mine = await _plan_of(a, a)
    assert mine is not None
    say(f"A's own status: state {mine['state']}, duress shown: {mine['duress']}")
    (duress,) = await _notices(b, "checkin_duress")
    say(f"B's notice: {duress['text']}\n")

    say("== A's node is seized (kill -9): the circle notices by itself")
    due, grace = mine["next_due"], mine["grace_ms"]
    await a.kill9()
    await wait_until(
        "B and C to raise the missed check-in",
        lambda: _all(_notices(b, "checkin_missed"), _notices(c, "checkin_missed")),
        timeout=grace / 1000 + 30,
    )
    for node in (b, c):
        (notice,) = await _notices(node, "checkin_missed")
        late = (notice["received_at_ms"] - due - grace) / 1000
        say(f"{node.label} raised it {late:.2f} s after due + grace: {notice['text'][:60]}…")
    _, out, _ = await b.cli("checkin", "unreachable", a.node_id[:12])
    say(f"$ canopy checkin unreachable A   (B)\n{out}")
    await wait_until("C to count B's report", lambda: _unreachable(c, a, 1))
    d_before = [x for x in (await d.api("/v1/alerts"))["alerts"] if x["readable"]]
    say(f"one 'could not reach' does not escalate: D holds {len(d_before)} readable alerts")
    _, out, _ = await c.cli("checkin", "unreachable", a.node_id[:12])
    say(f"$ canopy checkin unreachable A   (C)\n{out}")

    async def d_reads() -> bool:
        return [x.get("text") for x in (await d.api("/v1/alerts"))["alerts"]] == [MESSAGE]

    await wait_until("the escalation to reach D through R", d_reads)
    held = (await r.api("/v1/alerts"))["alerts"]
    blind = bool(held) and not any(x["readable"] for x in held)
    say(f"D reads the escalation: {MESSAGE!r}")
    say(f"R relayed {len(held)} alert(s) it cannot read; R watches no plan: {await _no_plans(r)}")
    _, out, _ = await b.cli("checkin", "status")
    say(f"$ canopy checkin status   (B)\n{out}")

    say("== D asks B and C's circle for help")
    await b.cli("circle", "create", CIRCLE)
    for member in (c, d):
        await b.cli("circle", "add", CIRCLE, member.node_id)
    await wait_until("D to know the circle", lambda: _in_circle(d))
    _, out, _ = await d.cli(
        "help", "request", "--need", "legal", "--region", "KE", "--to", f"circle:{CIRCLE}", REQUEST
    )
    rid = out.split()[0]
    say(f"$ canopy help request --need legal --region KE --to 'circle:{CIRCLE}' …   (D)\n{out}")
    await wait_until("the request to reach B and C", lambda: _all(_sees(b, rid), _sees(c, rid)))
    await c.cli("help", "ack", rid[:12])
    say("C acknowledges it; B and C claim it at the same moment")
    await asyncio.gather(b.cli("help", "claim", rid), c.cli("help", "claim", rid))
    await wait_until("both claims everywhere", lambda: _converged((b, c, d), rid, 3))
    shown = await d.json("help", "show", rid)
    holder = b if shown["holder_id"] == b.node_id else c
    late = c if holder is b else b
    told = (await late.json("help", "show", rid))["you_claimed_late"]
    say(f"both claims shown; {holder.label}'s was earlier and holds it; {late.label} told: {told}")
    _, out, _ = await holder.cli(
        "contact", "add", "--kind", "lawyer", "--name", CONTACT, "--region", "KE-28",
        "--share", "private",
    )  # fmt: skip
    await holder.cli("help", "refer", rid, out.split()[0])
    await wait_until("the referral to reach D", lambda: _converged((b, c, d), rid, 4))
    refer = (await d.json("help", "show", rid))["referrals"][0]["id"]
    await d.cli("help", "accept", rid, refer[:12])
    await wait_until("the referred contact to reach D", lambda: _knows_contact(d))
    say(f"{holder.label} refers a vetted lawyer; D accepts and only then receives the details")
    await holder.cli("help", "resolve", rid, "--outcome", OUTCOME)
    await wait_until("the resolution everywhere", lambda: _converged((b, c, d), rid, 6))
    _, out, _ = await d.cli("help", "show", rid)
    say(f"$ canopy help show {rid[:12]}   (D: the requester sees the whole history)\n{out}")

    say("== an alert asking for acknowledgement")
    _, out, _ = await b.cli("alert", "--ack", "--to", f"circle:{CIRCLE}", ALERT)
    aid = out.split()[0]
    say(f"$ canopy alert --ack --to 'circle:{CIRCLE}' …   (B)\n{out}")
    await wait_until("the alert to reach C and D", lambda: _all(_got(c, aid), _got(d, aid)))
    await c.cli("ack", aid[:12])
    await wait_until("B to see C's acknowledgement", lambda: _acked(b, aid, c))
    _, out, _ = await b.cli("alerts")
    say(f"$ canopy alerts   (B: who acknowledged, who has not yet)\n{out}")

    texts = (MESSAGE, REQUEST, CONTACT, OUTCOME, ALERT)
    clean = scan_all(nodes, [t.encode() for t in texts], "the plan's message and every text sent")
    ok = clean and blind and told is True
    say(json.dumps({"ok": ok}))
    return 0 if ok else 1


async def _unreachable(node: NodeProcess, defender: NodeProcess, count: int) -> bool:
    plan = await _plan_of(node, defender)
    return plan is not None and plan["unreachable"] == count


async def _no_plans(node: NodeProcess) -> bool:
    return (await node.json("checkin", "status"))["plans"] == []


async def _in_circle(node: NodeProcess) -> bool:
    return any(x["name"] == CIRCLE for x in (await node.json("circle", "list"))["circles"])


async def _sees(node: NodeProcess, rid: str) -> bool:
    return any(x["id"] == rid for x in (await node.json("help", "list"))["requests"])


async def _converged(nodes: tuple[NodeProcess, ...], rid: str, steps: int) -> bool:
    seen = []
    for node in nodes:
        code, text, _ = await node.cli("help", "show", rid, "--json", check=False)
        if code != 0:
            return False
        shown = json.loads(text)
        seen.append((shown["holder_id"], [(e["id"], e["ignored"]) for e in shown["history"]]))
    return len(seen[0][1]) == steps and all(v == seen[0] for v in seen)


async def _knows_contact(node: NodeProcess) -> bool:
    result = await node.json("query", "--kind", "lawyer", "--region", "KE")
    return any(CONTACT in str(row) for row in result["results"])


async def _got(node: NodeProcess, aid: str) -> bool:
    return any(x["id"] == aid for x in (await node.json("alerts"))["alerts"])


async def _acked(node: NodeProcess, aid: str, by: NodeProcess) -> bool:
    rows = [x for x in (await node.json("alerts"))["alerts"] if x["id"] == aid]
    return bool(rows) and by.node_id in [m["id"] for m in rows[0].get("acknowledged", [])]


DEMO = Demo("rapid response", NAMES, _story)
