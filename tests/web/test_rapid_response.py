"""Rapid response in the web app, in a real Chromium on three real `canopy run` nodes: A (a
defender) and B and C, her circle. A checks in with the page's button and B's page shows
it; when A stops checking in, B's open alerts page shows the missed check-in live and B's
home puts it at the top; B's "Could not reach" does not escalate, C's does. B asks the
circle for help from the form; A's home shows it unacknowledged; A acknowledges, claims and
resolves it from the request's page, C's later claim is told it is late, and B (the
requester) sees the whole history. A's alert asking for acknowledgement shows B an
"Acknowledge" button; A's page then shows B acknowledged and C not yet. Every new POST is
refused without the CSRF token, and the role table lets readers only read."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from node.demo import NodeProcess, wait_until
from node.web import roles
from tests.web.conftest import App, Nodes, open_app

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]

REQUEST = "Journalist held at Namanga post since 06:00, needs a lawyer"
OUTCOME = "Released on bail with counsel"
SECOND = "Family of a detained journalist needs a lawyer in Kajiado by morning"
LAWYER = "Wanjiru Mwangi Advocates"
ALERT = "Raid expected at the office tonight: confirm you have seen this"


async def _connected(node: NodeProcess, count: int) -> bool:
    rows = (await node.api("/v1/peers"))["peers"]
    return sum(r["state"] == "connected" for r in rows) >= count


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def circle(nodes: Nodes) -> AsyncIterator[tuple[NodeProcess, NodeProcess, NodeProcess]]:
    a = await nodes.node("A", "Amina Defender")
    b = await nodes.node("B", "Beta Responders")
    c = await nodes.node("C", "Gamma Responders")
    for node in (a, b, c):
        await node.start()
    for x, y in ((a, b), (a, c), (b, c)):
        _, code, _ = await x.cli("invite", "--address", x.address)
        await y.cli("accept", code.strip())
    await wait_until("the links", lambda: _connected(a, 2))
    await a.cli("circle", "create", "Safety")
    for member in (b, c):
        await a.cli("circle", "add", "Safety", member.node_id)

    async def members_know() -> bool:
        for node in (b, c):
            circles = (await node.json("circle", "list"))["circles"]
            if not circles or len(circles[0]["members"]) != 3:
                return False
        return True

    await wait_until("B and C know the circle", members_know)
    yield a, b, c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def apps(
    browser: Any, circle: tuple[NodeProcess, NodeProcess, NodeProcess]
) -> dict[str, App]:
    return {n.label: await open_app(browser, n) for n in circle}


async def _text(app: App, selector: str) -> str:
    return str(await app.page.locator(selector).inner_text())


async def _reloaded_has(app: App, path: str, selector: str, text: str) -> bool:
    await app.goto(path)
    locator = app.page.locator(selector)
    return await locator.count() > 0 and text in await locator.first.inner_text()


async def test_missed_checkin_shows_live_and_first_on_home_and_two_reports_escalate(
    circle: tuple[NodeProcess, NodeProcess, NodeProcess], apps: dict[str, App]
) -> None:
    a = circle[0]
    await a.cli("checkin", "plan", "--every", "12s", "--grace", "2s", "--circle", "Safety")
    app_a, app_b, app_c = apps["A"], apps["B"], apps["C"]
    await app_a.goto("/checkins")
    async with app_a.page.expect_navigation():
        await app_a.page.click("form.checkin button[type=submit]")
    assert "Checked in" in await _text(app_a, "p.flash")
    last = await _text(app_a, "dl.mine dd.last")
    assert last != "—"
    await wait_until(
        "B's page shows A's check-in",
        lambda: _reloaded_has(app_b, "/checkins", "li[data-defender] dd.last", last),
    )
    assert "Amina Defender" in await _text(app_b, "li[data-defender]")
    await app_b.goto("/alerts")  # open: the missed check-in must come in without reloading
    feed = app_b.page.locator("#feed li", has_text="MISSED CHECK-IN")
    assert await feed.count() == 0, "the check-in was missed before the page opened"
    await feed.wait_for(timeout=30_000)
    assert "Amina Defender" in await feed.inner_text()
    assert await feed.locator("strong.notice").inner_text() == "Missed check-in"

    await app_b.goto("/")
    act = app_b.page.locator("section.act")
    assert "Missed check-in: Amina Defender" in await act.inner_text()
    headings = await app_b.page.locator("main h2").all_inner_texts()
    assert headings[0] == "Act now"  # before every other section
    async with app_b.page.expect_navigation():
        await app_b.page.click("section.act a[href='/ui/checkins#watched']")
    async with app_b.page.expect_navigation():
        await app_b.page.click("li[data-defender] button:has-text('Could not reach')")
    assert "enough members" in await _text(app_b, "p.flash")
    assert await _text(app_b, "li[data-defender] dd.unreachable") == "1 of 2"
    assert "missed" in await _text(app_b, "li[data-defender] dd.plan-state")

    await wait_until(
        "C counts B's report",
        lambda: _reloaded_has(app_c, "/checkins", "li[data-defender] dd.unreachable", "1 of 2"),
    )
    async with app_c.page.expect_navigation():
        await app_c.page.click("li[data-defender] button:has-text('Could not reach')")
    assert "escalation message is sent" in await _text(app_c, "p.flash")
    assert "escalated" in await _text(app_c, "li[data-defender] dd.plan-state")
    assert await app_c.page.locator("li[data-defender] button").count() == 0
    await wait_until(
        "B's home says escalated",
        lambda: _reloaded_has(app_b, "/", "section.act", "Escalated: Amina Defender"),
    )
    # A, the defender, is told nothing about it on its own pages.
    await app_a.goto("/")
    assert await app_a.page.locator("section.act").count() == 0


async def test_help_request_from_the_form_taken_on_and_resolved_from_its_page(
    circle: tuple[NodeProcess, NodeProcess, NodeProcess], apps: dict[str, App]
) -> None:
    a, _, c = circle
    app_a, app_b, app_c = apps["A"], apps["B"], apps["C"]
    await app_b.goto("/help")
    await app_b.page.select_option("#h-need", "legal")
    await app_b.page.fill("#h-region", "KE")
    await app_b.page.select_option("#h-to", "Safety")
    await app_b.page.fill("#h-text", REQUEST)
    async with app_b.page.expect_navigation():
        await app_b.page.click("form[action='/ui/help'] button[type=submit]")
    assert "sent to the circle" in await _text(app_b, "p.flash")
    match = re.search(r"/ui/help/([0-9a-f]{64})$", app_b.page.url)
    assert match is not None
    rid = match.group(1)

    await wait_until(
        "A's home shows the unacknowledged request",
        lambda: _reloaded_has(app_a, "/", "section.act", "not yet acknowledged"),
    )
    await app_a.page.click(f"section.act a[href='/ui/help/{rid}']")
    await app_a.page.wait_for_url(re.compile(rid))
    assert REQUEST in await _text(app_a, "main .body")
    for op in ("ack", "claim"):
        async with app_a.page.expect_navigation():
            await app_a.page.click(f"form[action='/ui/help/{rid}/{op}'] button")
    assert "you hold this request" in await _text(app_a, "p.flash")
    assert "Amina Defender" not in await _text(app_a, "dd.holder")  # "you"
    await app_a.goto("/")
    assert await app_a.page.locator(f"section.act a[href='/ui/help/{rid}']").count() == 0

    async def c_sees_a_hold() -> bool:
        return (await c.json("help", "show", rid))["holder_id"] == a.node_id

    await wait_until("C sees A holding it", c_sees_a_hold)
    await app_c.goto(f"/help/{rid}")
    async with app_c.page.expect_navigation():
        await app_c.page.click(f"form[action='/ui/help/{rid}/claim'] button")
    assert "claimed it first" in await _text(app_c, "p.flash")
    assert "you claimed later" in await _text(app_c, "dd.holder")

    await app_a.goto(f"/help/{rid}")
    await app_a.page.fill("#h-outcome", OUTCOME)
    async with app_a.page.expect_navigation():
        await app_a.page.click(f"form[action='/ui/help/{rid}/resolve'] button")
    assert "closed" in await _text(app_a, "p.flash")

    async def requester_sees_it_all() -> bool:
        await app_b.goto(f"/help/{rid}")
        ops = await app_b.page.locator("ol.history li").evaluate_all(
            "items => items.map(i => i.dataset.op)"
        )
        return bool(ops == ["ack", "claim", "claim", "resolve"])

    await wait_until("B sees the whole history", requester_sees_it_all)
    assert OUTCOME in await _text(app_b, "dd.resolved")
    assert await app_b.page.locator("form[action$='/claim']").count() == 0  # closed
    await app_b.goto("/help")
    assert "No open help requests" in await _text(app_b, "section[aria-labelledby=open-h]")


async def test_help_request_handed_off_referred_and_the_referral_accepted_from_the_pages(
    circle: tuple[NodeProcess, NodeProcess, NodeProcess], apps: dict[str, App]
) -> None:
    """A claims B's request and hands it to C from the page; C finds a private know-who
    contact with the picker (by name, kind, region) and refers it; B, the requester, sees a
    referral it cannot read, accepts it from its page, and then holds the contact."""
    a, b, c = circle
    app_a, app_b, app_c = apps["A"], apps["B"], apps["C"]
    await c.cli(
        "contact", "add", "--kind", "lawyer", "--name", LAWYER, "--region", "KE",
        "--channel", "phone:+254700000001", "--share", "private",
    )  # fmt: skip
    _, out, _ = await b.cli(
        "help", "request", "--need", "legal", "--region", "KE", "--to", "circle:Safety", SECOND
    )
    rid = out.split()[0]

    async def holder_is(node: NodeProcess, who: NodeProcess) -> bool:
        return (await node.json("help", "show", rid))["holder_id"] == who.node_id

    await wait_until(
        "A reads the request", lambda: _reloaded_has(app_a, f"/help/{rid}", "main .body", SECOND)
    )
    assert await app_a.page.locator("form.handoff").count() == 0  # A holds nothing yet
    async with app_a.page.expect_navigation():
        await app_a.page.click(f"form[action='/ui/help/{rid}/claim'] button")
    names = await app_a.page.locator("#h-peer option").all_inner_texts()
    assert sorted(n.split(" (")[0] for n in names) == ["Beta Responders", "Gamma Responders"]
    await app_a.page.select_option("#h-peer", c.node_id)
    async with app_a.page.expect_navigation():
        await app_a.page.click("form.handoff button[type=submit]")
    assert "Handed off" in await _text(app_a, "p.flash")
    assert "Gamma Responders" in await _text(app_a, "dd.holder")
    assert await app_a.page.locator("form.handoff").count() == 0  # no longer A's to hand

    await wait_until("C holds it", lambda: holder_is(c, c))
    await app_c.goto(f"/help/{rid}")
    assert await app_c.page.locator("form.handoff").count() == 1
    await app_c.page.fill("#f-text", "Wanjiru")
    await app_c.page.select_option("#f-kind", "shelter")
    async with app_c.page.expect_navigation():
        await app_c.page.click("form.find-contact button[type=submit]")
    assert await app_c.page.locator("#h-contact").count() == 0  # a lawyer, not a shelter
    assert await app_c.page.locator("p.no-contacts").count() == 1
    await app_c.page.select_option("#f-kind", "lawyer")
    await app_c.page.fill("#f-region", "KE")
    async with app_c.page.expect_navigation():
        await app_c.page.click("form.find-contact button[type=submit]")
    csrf = await app_c.page.locator("input[name=csrf]").first.input_value()
    for contact, said in (("", "choose a contact first"), ("f" * 64, "f" * 12)):
        refused = await app_c.page.request.post(
            f"{app_c.base}/help/{rid}/refer", form={"csrf": csrf, "contact": contact}
        )  # a crafted referral: refused in one line, nothing recorded
        body = await refused.text()
        assert refused.status == 400 and said in body and "Traceback" not in body
    option = app_c.page.locator("#h-contact option")
    assert await option.count() == 1 and LAWYER in await option.inner_text()
    async with app_c.page.expect_navigation():
        await app_c.page.click("form.refer button[type=submit]")
    assert "Referral proposed" in await _text(app_c, "p.flash")
    assert LAWYER in await _text(app_c, "ul.referrals")  # the referrer reads its own

    await wait_until(
        "B sees the referral",
        lambda: _reloaded_has(app_b, f"/help/{rid}", "ul.referrals", "proposed"),
    )
    assert LAWYER not in await app_b.page.content()  # not before B accepts
    assert await app_b.page.locator(f"form[action='/ui/help/{rid}/claim']").count() == 0
    async with app_b.page.expect_navigation():
        await app_b.page.click("ul.referrals button:has-text('Accept this referral')")
    assert "Referral accepted" in await _text(app_b, "p.flash")
    assert "accepted" in await _text(app_b, "ul.referrals .referral-state")
    assert await app_b.page.locator("ul.referrals button").count() == 0

    async def b_holds_the_contact() -> bool:
        rows = (await b.json("query", "Wanjiru"))["results"]
        return any(r.get("name") == LAWYER for r in rows)

    await wait_until("the contact reaches B", b_holds_the_contact)
    await app_b.goto(f"/help/{rid}")
    assert "Gamma Responders" in await _text(app_b, "ul.referrals a.referred[href='/ui/knowwho']")
    # B does not hold it: a crafted hand-off is refused with the fold's reason, in one line.
    response = await app_b.page.request.post(
        f"{app_b.base}/help/{rid}/handoff",
        form={
            "csrf": await app_b.page.locator("input[name=csrf]").first.input_value(),
            "peer": a.node_id,
        },
    )
    assert response.status == 400 and "only the member holding" in await response.text()


async def test_alert_acknowledged_from_the_page_shows_who_has_and_who_not_yet(
    circle: tuple[NodeProcess, NodeProcess, NodeProcess], apps: dict[str, App]
) -> None:
    a = circle[0]
    app_a, app_b = apps["A"], apps["B"]
    _, out, _ = await a.cli("alert", "--ack", "--to", "circle:Safety", ALERT)
    aid = out.split()[0]
    await wait_until(
        "B's home asks for the acknowledgement",
        lambda: _reloaded_has(app_b, "/", "section.act", "asks you to acknowledge"),
    )
    await app_b.goto("/alerts")
    item = app_b.page.locator(f"ul.acks li[data-id='{aid}']")
    assert ALERT in await item.inner_text()
    async with app_b.page.expect_navigation():
        await item.locator("button:has-text('Acknowledge')").click()
    assert "only the alert's sender" in await _text(app_b, "p.flash")
    assert (
        "You acknowledged it"
        in await app_b.page.locator(f"ul.acks li[data-id='{aid}']").inner_text()
    )
    await app_b.goto("/")
    assert await app_b.page.locator("section.act", has_text="asks you to acknowledge").count() == 0

    await wait_until(
        "A sees B's acknowledgement",
        lambda: _reloaded_has(app_a, "/alerts", f"li[data-id='{aid}'] .acked", "Beta Responders"),
    )
    assert "Gamma Responders" in await _text(app_a, f"li[data-id='{aid}'] .not-yet")
    assert await app_a.page.locator(f"li[data-id='{aid}'] button").count() == 0  # ours


async def test_the_rota_shows_on_both_pages_and_off_duty_is_set_and_cleared_from_them(
    circle: tuple[NodeProcess, NodeProcess, NodeProcess], apps: dict[str, App]
) -> None:
    a, b, c = circle
    app_a, app_c = apps["A"], apps["C"]
    await app_c.goto("/help")
    assert "nobody (every member is asked)" in await _text(app_c, "dd.on-call")
    await a.cli("circle", "oncall", "Safety", b.node_id, "--from", "now", "--to", "8h")
    for path in ("/help", "/checkins"):
        await wait_until(
            f"C's {path} shows B on call",
            lambda path=path: _reloaded_has(app_c, path, "dd.on-call", "Beta Responders"),
        )
    assert "You are on duty" in await _text(app_c, "p.you-duty")
    day = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%d")
    await app_c.page.fill("#d-until", day)
    async with app_c.page.expect_navigation():
        await app_c.page.click("form.away button[type=submit]")
    assert app_c.page.url.endswith("/ui/checkins")  # back where it was asked
    assert "off duty" in await _text(app_c, "p.flash")
    assert "off duty until" in await _text(app_c, "p.you-duty")
    _, out, _ = await c.cli("away")
    assert out.startswith(f"off duty until {day}")  # what `canopy away` set, the same
    await wait_until(
        "A sees C off duty",
        lambda: _reloaded_has(app_a, "/help", "dd.away-now", "Gamma Responders"),
    )
    await app_c.goto("/help")
    async with app_c.page.expect_navigation():
        await app_c.page.click("form.back-on-duty button")
    assert "back on duty" in await _text(app_c, "p.flash")
    assert (await c.cli("away"))[1].strip() == "on duty"
    await wait_until(
        "A sees C back on duty",
        lambda: _reloaded_has(app_a, "/help", "dd.away-now", "nobody"),
    )
    await app_c.goto("/help")
    await app_c.page.fill("#d-until", "2001-01-01")  # in the past: refused in one line
    async with app_c.page.expect_navigation():
        await app_c.page.click("form.away button[type=submit]")
    assert "in the future" in await _text(app_c, "main")


async def test_every_rapid_response_post_needs_the_csrf_token(apps: dict[str, App]) -> None:
    app = apps["B"]
    await app.goto("/")
    for path in (
        "/checkins",
        "/checkins/" + "a" * 52 + "/unreachable",
        "/help",
        "/help/" + "0" * 64 + "/claim",
        "/alerts/" + "0" * 64 + "/ack",
        "/away",
    ):
        response = await app.page.request.post(app.base + path, form={"outcome": "x"})
        assert response.status == 403, path


async def test_readers_read_and_editors_act_on_every_rapid_response_route() -> None:
    routes = [
        "/ui/checkins",
        "/ui/checkins/{defender}/{outcome}",
        "/ui/help",
        "/ui/help/{id}/{op}",
        "/ui/alerts/{id}/ack",
        "/ui/away",
    ]
    for route in routes:
        assert not roles.may("reader", "POST", route), route
        assert roles.may("editor", "POST", route), route
        assert roles.may("reader", "GET", route.split("/{")[0]), route
