"""Check-ins watched by the circle, end to end: real `canopy run` processes on 127.0.0.1.

A defender (A) plans check-ins watched by a circle of B and C, checks in, and is seized
(kill -9): B and C raise the missed check-in by themselves; one "unreachable" does not
escalate, two do, and the plan's message reaches a third organisation (D) through a relay
(R) that cannot read it. A duress check-in is a normal one on the defender's node and
flagged on the responders'. No data directory holds the plan's message in clear.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest

from node.demo import NodeProcess, scan_for, wait_until
from protocol.checkin import CheckIn, Op
from protocol.encoding import Value
from protocol.record import Kind
from tests.conftest import Net
from tests.test_hostile_content import _has, _rejected, hostile_peer, sealed, watch
from tests.test_multinode import connected, link

pytestmark = pytest.mark.timeout(240)
MESSAGE = "ESCALATE-KESTREL-5521: Amina did not check in at the border"


async def _all(*checks: Any) -> bool:
    return all(await asyncio.gather(*checks))


async def plans(node: NodeProcess) -> list[dict[str, Any]]:
    return list((await node.json("checkin", "status"))["plans"])


async def notices(node: NodeProcess, kind: str) -> list[dict[str, Any]]:
    return [a for a in (await node.api("/v1/alerts"))["alerts"] if a.get("kind") == kind]


async def circle_of(defender: NodeProcess, *members: NodeProcess) -> None:
    await defender.cli("circle", "create", "Safety")
    for member in members:
        await defender.cli("circle", "add", "Safety", member.node_id)


async def watching(node: NodeProcess, defender: NodeProcess, **want: object) -> bool:
    rows = [p for p in await plans(node) if p["defender"] == defender.node_id]
    return len(rows) == 1 and all(rows[0][k] == v for k, v in want.items())


async def test_seized_defender_missed_then_two_unreachable_escalate_to_a_third_org(
    net: Net,
) -> None:
    a = await net.node("A", "Amina Defender")
    b = await net.node("B", "Beta Responder")
    c = await net.node("C", "Gamma Responder")
    r = await net.node("R", "Relay Hub")
    d = await net.node("D", "Delta Org")
    for node in (a, b, c, r, d):
        await node.start()
    for x, y in ((a, b), (a, c), (b, c), (b, r), (c, r), (r, d)):
        await link(x, y)
    await wait_until("links", lambda: _all(connected(a, 2), connected(r, 3), connected(d, 1)))
    await circle_of(a, b, c)
    await a.cli(
        "checkin", "plan", "--every", "3s", "--grace", "2s", "--circle", "Safety",
        "--message", MESSAGE, "--escalate-to", d.node_id,
    )  # fmt: skip
    await a.cli("checkin")
    last = (await plans(a))[0]
    assert last["mine"] and last["state"] == "ok" and last["confirmations"] == 2
    await wait_until(
        "B and C watch A's plan",
        lambda: _all(
            watching(b, a, last_checkin=last["last_checkin"]),
            watching(c, a, last_checkin=last["last_checkin"]),
        ),
    )
    watcher = await watch(b)  # `canopy watch` on B prints the notice as it is raised
    await a.kill9()  # seized: its node says nothing more
    due, grace = last["next_due"], last["grace_ms"]

    async def both_raised() -> bool:
        return bool(await notices(b, "checkin_missed")) and bool(await notices(c, "checkin_missed"))

    await wait_until("B and C raise the missed check-in", both_raised, timeout=20)
    for node in (b, c):
        (notice,) = await notices(node, "checkin_missed")
        assert notice["defender"] == a.node_id and notice["created"] == due
        assert notice["received_at_ms"] - due <= grace + 5000
        assert notice["received_at_ms"] >= due + grace  # never before the grace is over
        assert (await plans(node))[0]["state"] == "missed"
    assert watcher.stdout is not None
    try:
        line = await asyncio.wait_for(watcher.stdout.readline(), 10)
    finally:
        watcher.kill()
        await watcher.wait()
    assert line.startswith(b"!! ") and b"MISSED CHECK-IN: Amina Defender" in line

    code, out, _ = await b.cli("checkin", "unreachable", "Amina Defender")
    assert code == 0 and "1 of 2" in out and "escalated" not in out
    await wait_until("C counts B's report", lambda: watching(c, a, unreachable=1))
    assert (await d.api("/v1/alerts"))["alerts"] == []
    assert (await plans(b))[0]["state"] == "missed"

    code, out, _ = await c.cli("checkin", "unreachable", a.node_id[:10])
    assert code == 0 and "2 of 2" in out and "escalated: alert" in out

    async def d_reads_it() -> bool:
        alerts = (await d.api("/v1/alerts"))["alerts"]
        return [x.get("text") for x in alerts if x["readable"]] == [MESSAGE]

    await wait_until("the escalation reaches D through R", d_reads_it)
    held = (await r.api("/v1/alerts"))["alerts"]
    assert [x["readable"] for x in held] == [False]  # R relayed it and cannot read it
    assert all(x.get("text") is None for x in held)
    await wait_until("B sees the plan escalated", lambda: watching(b, a, state="escalated"))
    await wait_until("B raises the escalation", lambda: notices(b, "checkin_escalated"))
    code, _, err = await b.cli("checkin", "unreachable", "Amina Defender", check=False)
    assert code == 1 and "already escalated" in err and "Traceback" not in err
    # R relays A's plan and check-ins, and reads none of them; D never sees the plan.
    assert await plans(r) == [] and await plans(d) == []
    assert (await r.json("status"))["records"].get("checkin", 0) >= 4
    for node in (a, b, c, r, d):
        scanned, hits = scan_for(node.data, [MESSAGE.encode(), b"KESTREL"])
        assert scanned >= 2 and hits == []


def _shape(out: str) -> str:
    return re.sub(r"\d", "N", out)


async def test_duress_checkin_is_normal_on_the_defender_and_flagged_on_responders(
    net: Net,
) -> None:
    a = await net.node("A", "Amina Defender")
    b = await net.node("B", "Beta Responder")
    c = await net.node("C", "Gamma Responder")
    for node in (a, b, c):
        await node.start()
    await link(a, b)
    await link(a, c)
    await wait_until("links", lambda: connected(a, 2))
    await circle_of(a, b, c)
    await a.cli(
        "checkin", "plan", "--every", "1h", "--grace", "10m", "--circle", "Safety",
        "--duress-pin", "7391",
    )  # fmt: skip
    _, normal, _ = await a.cli("checkin", "--pin", "1111")
    first = (await plans(a))[0]["last_checkin"]
    await wait_until(
        "B and C see a normal check-in",
        lambda: _all(
            watching(b, a, last_checkin=first, duress=False),
            watching(c, a, last_checkin=first, duress=False),
        ),
    )
    await asyncio.sleep(0.01)  # a later millisecond than the first check-in
    _, under_pin, _ = await a.cli("checkin", "--pin", "7391")
    second = (await plans(a))[0]
    assert _shape(under_pin) == _shape(normal)  # the defender's screen says the same
    assert second["duress"] is False and second["state"] == "ok"
    for node in (b, c):
        await wait_until("the duress flag", lambda n=node: watching(n, a, duress=True, state="ok"))
        await wait_until("a duress notice", lambda n=node: notices(n, "checkin_duress"))
    assert await notices(a, "checkin_duress") == []
    _, plain, _ = await a.cli("checkin")
    await wait_until("B sees the next one as normal", lambda: watching(b, a, duress=False))
    _, flagged, _ = await a.cli("checkin", "--duress")
    assert _shape(flagged) == _shape(plain) == _shape(normal)
    await wait_until("B flags --duress", lambda: watching(b, a, duress=True))
    assert (await plans(a))[0]["duress"] is False
    # Bad input: one line, no traceback.
    for args in (
        ("checkin", "plan", "--every", "12x", "--grace", "1h", "--circle", "Safety"),
        ("checkin", "plan", "--every", "1h", "--grace", "2h", "--circle", "Safety"),
        ("checkin", "plan", "--every", "1h", "--grace", "1m", "--circle", "Nope"),
        ("checkin", "pause", "--for", "soon"),
        (
            "checkin",
            "plan",
            "--every",
            "1h",
            "--grace",
            "1m",
            "--circle",
            "Safety",
            "--confirmations",
            "0",
        ),
        (
            "checkin",
            "plan",
            "--every",
            "1h",
            "--grace",
            "1m",
            "--circle",
            "Safety",
            "--confirmations",
            "3",
        ),
        (
            "checkin",
            "plan",
            "--every",
            "1h",
            "--grace",
            "1m",
            "--circle",
            "Safety",
            "--escalate-to",
            "peers",
        ),
    ):
        code, _, err = await a.cli(*args, check=False)
        assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, args
    code, _, err = await b.cli("checkin", "unreachable", "Amina Defender", check=False)
    assert code == 1 and "not missed" in err
    code, _, err = await c.cli("checkin", check=False)
    assert code == 1 and "no check-in plan" in err
    await a.cli("checkin", "pause", "--for", "3d")
    await wait_until("B sees the pause", lambda: watching(b, a, state="paused"))
    await a.cli("checkin", "resume")
    await wait_until("B sees the resume", lambda: watching(b, a, state="ok"))


async def test_hostile_checkins_cost_their_author_and_a_plan_outside_our_circles_raises_nothing(
    net: Net,
) -> None:
    target = await net.node("T", "Target")
    await target.start()
    peer, hostile, invite = await hostile_peer(target)
    me, plan_id, now = hostile.node_id.raw, b"\x05" * 16, int(time.time() * 1000)
    good = CheckIn(
        plan_id, Op.PLAN, me, 0, circle=b"\x06" * 16, every=1000, grace=0, next_due=now + 1000,
        confirmations=1, escalate="network", message="not our circle",
    )  # fmt: skip
    bad: list[dict[str, Value]] = [
        {**good.to_content(), "op": "explode"},
        {**good.to_content(), "every": 1},
        {**good.to_content(), "mark": b"\x00" * 64},
        {**CheckIn(plan_id, Op.CHECKIN, me, 1, next_due=now).to_content(), "mark": b"\x00" * 7},
    ]
    records = [sealed(hostile, invite.network_key, Kind.CHECKIN, c) for c in bad]
    fine = sealed(hostile, invite.network_key, Kind.CHECKIN, good.to_content())
    await peer.send(peer.session.records([r.to_bytes() for r in [*records, fine]]))
    await wait_until("check-ins stored", lambda: _has(target, "checkin", len(bad) + 1))
    await wait_until("malformed check-ins cost their author", lambda: _rejected(target, len(bad)))

    async def past_due() -> bool:  # had the node watched it, the plan was missed by now
        return int(time.time() * 1000) > now + 2000

    await wait_until("the foreign plan's due time passes", past_due)
    assert await plans(target) == []
    assert (await target.api("/v1/status"))["checkins"] == {}
    assert (await target.api("/v1/alerts"))["alerts"] == []
    await peer.close()
