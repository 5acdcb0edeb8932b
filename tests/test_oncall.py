"""On call, off duty, a circle's response target and kept notices, end to end: real
`canopy run` processes on 127.0.0.1.

A circle of A (owner), B and C: with B on call, a new help request reaches B first and
loudest (urgency high, marked on call) and C as backup (normal); `help list` shows who is on
call and time to first response against the circle's target. With C off duty, a missed
check-in asks B (loud) and not C (kept at low urgency), and B's one "unreachable" escalates
(C is not waited for). Notices survive a restart without being raised again; status and
metrics carry counts only; nothing readable lands on disk.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from node.clock import now_ms
from node.demo import NodeProcess, scan_for, wait_until
from tests.conftest import Net
from tests.test_checkins import _all, circle_of, plans, watching
from tests.test_multinode import connected, link
from tests.test_operations import api_url, parse_metrics

pytestmark = pytest.mark.timeout(240)
REQUEST = "HERON-7731 detained at the Namanga border post, needs a lawyer tonight"


async def notices(node: NodeProcess, kind: str) -> list[dict[str, Any]]:
    return [a for a in (await node.api("/v1/alerts"))["alerts"] if a.get("kind") == kind]


async def three(net: Net) -> tuple[NodeProcess, NodeProcess, NodeProcess]:
    a = await net.node("A", "Amina Owner")
    b = await net.node("B", "Beta Oncall")
    c = await net.node("C", "Gamma Backup")
    for node in (a, b, c):
        await node.start()
    for x, y in ((a, b), (a, c), (b, c)):
        await link(x, y)
    await wait_until("links", lambda: _all(connected(a, 2), connected(b, 2), connected(c, 2)))
    return a, b, c


async def rota_on(node: NodeProcess, on_call: list[str]) -> bool:
    return bool((await node.json("circle", "oncall", "Safety"))["on_call_ids"] == on_call)


async def test_a_help_request_goes_first_and_loudest_to_the_member_on_call(net: Net) -> None:
    a, b, c = await three(net)
    await a.cli("circle", "create", "Safety", "--response-target", "45m")
    for member in (b, c):
        await a.cli("circle", "add", "Safety", member.node_id)
    await a.cli("circle", "oncall", "Safety", b.node_id, "--from", "now", "--to", "8h")
    rota = await a.json("circle", "oncall", "Safety")
    assert rota["on_call_ids"] == [b.node_id] and rota["response_target_ms"] == 45 * 60_000
    assert rota["on_call_now"][0].startswith("Beta Oncall")
    assert [s["member_id"] for s in rota["shifts"]] == [b.node_id] and rota["shifts"][0]["now"]
    await wait_until(
        "B and C hold the rota", lambda: _all(rota_on(b, [b.node_id]), rota_on(c, [b.node_id]))
    )

    _, out, _ = await a.cli(
        "help", "request", "--need", "legal", "--region", "KE", "--to", "circle:Safety", REQUEST
    )
    rid = out.split()[0]
    await wait_until(
        "B and C raise the request",
        lambda: _all(notices(b, "help_request"), notices(c, "help_request")),
        timeout=10,
    )
    (on_b,) = await notices(b, "help_request")
    (on_c,) = await notices(c, "help_request")
    assert on_b["urgency"] == "high" and on_b["on_call"] is True
    assert on_b["text"].startswith("ON CALL: HELP REQUEST (legal, KE)") and REQUEST in on_b["text"]
    assert on_c["urgency"] == "normal" and on_c["on_call"] is False
    assert not on_c["text"].startswith("ON CALL")
    assert await notices(a, "help_request") == []  # the requester is not asked its own
    listed = (await c.json("help", "list"))["requests"]
    assert [r["id"] for r in listed] == [rid]
    assert listed[0]["on_call_ids"] == [b.node_id] and listed[0]["target_ms"] == 45 * 60_000
    _, table, _ = await c.cli("help", "list")
    assert "ON CALL" in table and "Beta Oncall" in table and "none yet / 45 min" in table

    # Counts only in status and metrics: never the text or a name.
    status = await b.json("status")
    rr = status["rapid_response"]
    assert rr["help_open"] == 1 and rr["help_overdue"] == 0 and rr["on_call_circles"] == 1
    text = await metrics_text(b)
    samples = parse_metrics(text)
    assert samples["canopy_help_open"] == 1 and samples["canopy_on_call_circles"] == 1
    assert samples["canopy_help_overdue"] == 0 and samples["canopy_away"] == 0
    assert "HERON" not in text and "Amina" not in text and a.node_id not in text
    code, human, _ = await b.cli("status")
    assert "1 open help requests (0 overdue)" in human and "on call in 1" in human
    for shown in (str(status), human):
        assert "HERON" not in shown and "Amina" not in shown.split("peer")[0]

    # The owner clears the rota: nobody on call, so the next request is loud everywhere.
    await a.cli("circle", "oncall", "Safety", "--clear")
    await wait_until("B sees the rota cleared", lambda: rota_on(b, []))
    await wait_until("C sees the rota cleared", lambda: rota_on(c, []))
    await a.cli(
        "help", "request", "--need", "shelter", "--region", "KE", "--to", "circle:Safety", "x"
    )
    await wait_until(
        "both raise the second",
        lambda: _all(*(has(n, "help_request", 2) for n in (b, c))),
        timeout=10,
    )
    for node in (b, c):
        second = [n for n in await notices(node, "help_request") if "(shelter" in n["text"]]
        assert second[0]["urgency"] == "high" and second[0]["on_call"] is False

    # Kept across a restart: C's node neither forgets them nor raises them again.
    before = await notices(c, "help_request")
    await c.stop()
    await c.start()
    after = await notices(c, "help_request")
    assert [n["id"] for n in after] == [n["id"] for n in before]
    await wait_until("C reconnects", lambda: connected(c, 2))
    assert len(await notices(c, "help_request")) == 2  # what sync brings again is not new

    # Bad input: one line, no traceback.
    for args in (
        ("circle", "oncall", "Safety", b.node_id, "--from", "soon", "--to", "8h"),
        ("circle", "oncall", "Safety", b.node_id, "--from", "2h", "--to", "1h"),
        ("circle", "oncall", "Safety", b.node_id),
        ("circle", "oncall", "Nope"),
        ("circle", "set", "Safety", "--response-target", "forever"),
        ("away", "--until", "yesterday-ish"),
    ):
        code, _, err = await a.cli(*args, check=False)
        assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, args
    code, _, err = await b.cli("circle", "set", "Safety", "--response-target", "1h", check=False)
    assert code == 1 and "only the owner" in err
    for node in (a, b, c):
        scanned, hits = scan_for(node.data, [REQUEST.encode(), b"HERON-7731"])
        assert scanned >= 2 and hits == []


async def has(node: NodeProcess, kind: str, n: int) -> bool:
    return len(await notices(node, kind)) >= n


async def test_an_off_duty_member_is_not_asked(net: Net) -> None:
    a, b, c = await three(net)
    await circle_of(a, b, c)
    _, out, _ = await c.cli("away", "--until", "1d")
    assert "off duty until" in out
    await wait_until("B knows C is off duty", lambda: away_on(b, c))
    await wait_until("A knows C is off duty", lambda: away_on(a, c))
    await a.cli("checkin", "plan", "--every", "3s", "--grace", "2s", "--circle", "Safety")
    await a.cli("checkin")
    last = (await plans(a))[0]
    assert last["confirmations"] == 2
    await wait_until(
        "B and C watch A's plan",
        lambda: _all(
            watching(b, a, last_checkin=last["last_checkin"]),
            watching(c, a, last_checkin=last["last_checkin"]),
        ),
    )
    await a.kill9()  # seized
    await wait_until(
        "B and C note the missed check-in",
        lambda: _all(has(b, "checkin_missed", 1), has(c, "checkin_missed", 1)),
        timeout=20,
    )
    (on_b,) = await notices(b, "checkin_missed")
    (on_c,) = await notices(c, "checkin_missed")
    assert on_b["urgency"] == "high" and on_b["away"] is False  # nobody on call: B is asked
    assert on_c["urgency"] == "low" and on_c["away"] is True  # C is off duty: not asked
    assert (await plans(b))[0]["needed"] == 1  # the escalation waits for B alone
    code, out, _ = await b.cli("checkin", "unreachable", "Amina Owner")
    assert code == 0 and "escalated: alert" in out  # C was not waited for
    await wait_until("C sees it escalated", lambda: watching(c, a, state="escalated"))

    # A notice is kept across a restart and not raised again, though the plan stays missed.
    await b.stop()
    await b.start()
    assert len(await notices(b, "checkin_missed")) == 1
    assert (await b.json("status"))["rapid_response"]["checkins_escalated"] == 1

    # Off duty is not counted for claims either; back on duty, it is.
    _, out, _ = await b.cli(
        "help", "request", "--need", "medical", "--region", "KE", "--to", "circle:Safety", "y"
    )
    rid = out.split()[0]
    await wait_until("C reads the request", lambda: c_lists(c, rid))
    code, _, err = await c.cli("help", "claim", rid, check=False)
    assert code == 1 and "off duty" in err and "Traceback" not in err
    assert (await c.json("status"))["rapid_response"]["away"] == 1
    await c.cli("away", "--off")
    _, out, _ = await c.cli("away")
    assert out.strip() == "on duty"
    await c.cli("help", "claim", rid)


async def test_off_duty_running_out_by_the_clock_alone_refolds_the_watched_plans(
    net: Net,
) -> None:
    """C's away time ends with no record arriving: B's running watch folds A's plan again
    at that moment, so the escalation waits for two reports again, not one. And when C
    goes off duty after B's report is in (one now suffices), B's node publishes the
    escalation it owes: the plan escalates once, with its alert, and stays escalated."""
    a, b, c = await three(net)
    await circle_of(a, b, c)
    await a.cli("checkin", "plan", "--every", "3s", "--grace", "2s", "--circle", "Safety")
    await a.cli("checkin")
    last = (await plans(a))[0]
    await wait_until(
        "B and C watch A's plan",
        lambda: _all(
            watching(b, a, last_checkin=last["last_checkin"]),
            watching(c, a, last_checkin=last["last_checkin"]),
        ),
    )
    await a.kill9()  # seized
    await wait_until("B notes the missed check-in", lambda: has(b, "checkin_missed", 1), 20)
    _, out, _ = await c.cli("away", "--until", "15s")  # off duty: one report would do
    assert "off duty until" in out
    until = min(s["until"] for s in (await c.json("circle", "oncall", "Safety"))["away_now"])

    async def needed(node: NodeProcess, n: int) -> bool:
        return (await plans(node))[0]["needed"] == n

    await wait_until("B's watch needs one report while C is away", lambda: needed(b, 1))
    assert now_ms() < until, "the machine was too slow to see C off duty first"
    await wait_until("C back on duty by the clock: two reports again", lambda: needed(b, 2), 30)
    assert now_ms() >= until
    assert (await plans(b))[0]["state"] == "missed"

    code, out, _ = await b.cli("checkin", "unreachable", "Amina Owner")
    assert code == 0 and "escalated" not in out  # one of two
    assert not await readable_alerts(c)
    await c.cli("away", "--until", "1d")  # now B's one report suffices: B owes the escalation

    async def escalated(node: NodeProcess) -> bool:
        counts = (await node.json("status"))["rapid_response"]
        return counts["checkins_escalated"] == 1

    await wait_until("B's node escalates the plan it owes", lambda: escalated(b), 30)
    await wait_until("the escalation alert reaches C", lambda: readable_alerts(c), 30)
    await c.cli("away", "--off")  # back on duty: the published escalation stands
    await wait_until("C's report is needed again", lambda: needed(b, 2), 30)
    assert await escalated(b)
    assert len(await readable_alerts(c)) == 1  # sent once


async def readable_alerts(node: NodeProcess) -> list[dict[str, object]]:
    """Alerts (not the node's own notices: missed check-ins, help requests) it can read."""
    alerts = (await node.api("/v1/alerts"))["alerts"]
    notice = ("checkin_", "help_")
    return [x for x in alerts if x["readable"] and not str(x.get("kind", "")).startswith(notice)]


async def away_on(node: NodeProcess, member: NodeProcess) -> bool:
    rota = await node.json("circle", "oncall", "Safety")
    return [r["member_id"] for r in rota["away_now"]] == [member.node_id]


async def c_lists(node: NodeProcess, rid: str) -> bool:
    return rid in [r["id"] for r in (await node.json("help", "list"))["requests"]]


async def metrics_text(node: NodeProcess) -> str:
    token = json.loads((node.data / "node.json").read_text())["token"]
    async with aiohttp.ClientSession() as http:
        bearer = {"Authorization": f"Bearer {token}"}
        async with http.get(api_url(node) + "/metrics", headers=bearer) as response:
            assert response.status == 200
            return await response.text()
