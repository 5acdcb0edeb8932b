"""The web app end to end in a real headless Chromium, on real `canopy run` nodes: what a
staff member does in A's app reaches B's app (guides, contacts, alerts), and an invite made
in A's app is accepted in C's app by pasting it. Also: peer-supplied markup renders inert."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from node.demo import NodeProcess, wait_until
from tests.web.conftest import App, Nodes, open_app

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]

HOSTILE = "<script>alert('x')</script><img src=x onerror=alert('y')>\u202eevil"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def trio(nodes: Nodes) -> AsyncIterator[tuple[NodeProcess, NodeProcess, NodeProcess]]:
    a = await nodes.node("a", "Legal Aid A")
    b = await nodes.node("b", "Shelter B")
    c = await nodes.node("c", "Helpdesk C")
    _, code, _ = await a.cli("invite", "--address", a.address)
    await b.cli("accept", code.strip())
    for node in (a, b, c):
        await node.start()

    async def connected() -> bool:
        rows = (await a.api("/v1/peers"))["peers"]
        return any(r["state"] == "connected" for r in rows)

    await wait_until("A and B connected", connected)
    yield a, b, c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def apps(browser: Any, trio: tuple[NodeProcess, ...]) -> AsyncIterator[tuple[App, ...]]:
    opened = tuple([await open_app(browser, node) for node in trio])
    yield opened
    for app in opened:
        assert app.dialogs == [], f"a dialog fired: {app.dialogs}"
        await app.page.context.close()


async def until_shown(app: App, path: str, selector: str, what: str) -> Any:
    """Reload `path` until `selector` is on it (the record is travelling between nodes)."""

    async def shown() -> bool:
        await app.goto(path)
        return await app.page.locator(selector).count() > 0

    await wait_until(what, shown, timeout=30)
    return app.page.locator(selector)


async def test_guide_published_in_a_is_read_in_b(apps: tuple[App, ...]) -> None:
    a, b, _ = apps
    await a.goto("/guides/new")
    await a.page.fill("#title", "Phone hygiene at checkpoints")
    await a.page.fill("#text", "# Phone hygiene\n\nLog out of **every** account.\n")
    await a.page.fill("#lang", "en")
    await a.page.check("input[name=to][value=peers]")
    await a.page.click("button[value=publish]")
    await a.page.wait_for_url(re.compile(r"/ui/guides/[0-9a-f]{64}$"))
    assert "published" in await a.page.inner_text(".flash")
    link = await until_shown(b, "/guides", "a:has-text('Phone hygiene at checkpoints')", "guide")
    await link.first.click()
    await b.page.wait_for_selector(".body strong")
    assert await b.page.inner_text(".body strong") == "every"
    assert "Legal Aid A" in await b.page.inner_text(".meta")


async def test_contact_added_in_a_is_found_from_b(apps: tuple[App, ...]) -> None:
    a, b, _ = apps
    await a.goto("/knowwho")
    await a.page.select_option("#c-kind", "lawyer")
    await a.page.fill("#c-name", "Wanjiru Land Rights Clinic")
    await a.page.fill("#c-region", "KE")
    await a.page.fill("#c-langs", "sw, en")
    await a.page.select_option("#c-share", "network")
    await a.page.click("text=Add the contact")
    await a.page.wait_for_selector(".flash")
    search = "/knowwho?search=1&text=Wanjiru&kind=lawyer&network=1"
    found = await until_shown(b, search, ".results li:has-text('Wanjiru Land Rights Clinic')", "")
    assert "Legal Aid A" in await found.first.inner_text()  # its voucher, by name


async def test_alert_from_a_appears_in_b_feed_within_a_second(apps: tuple[App, ...]) -> None:
    a, b, _ = apps
    await b.goto("/alerts")
    await b.page.wait_for_function("document.getElementById('feed') !== null")
    await a.goto("/alerts")
    await a.page.fill("#a-text", "Checkpoint on the Mombasa road: avoid it tonight")
    await a.page.select_option("#a-urgency", "high")
    async with a.page.expect_navigation():
        await a.page.click("text=Send the alert")
    sent = time.monotonic()
    await b.page.wait_for_selector("#feed li:has-text('Mombasa road')", timeout=1000)
    elapsed = time.monotonic() - sent
    assert elapsed < 1.0, f"the alert took {elapsed:.2f} s to appear"
    assert b.page.url.endswith("/ui/alerts")  # no reload: the live feed showed it


async def test_invite_made_in_a_is_accepted_in_c_by_pasting(
    apps: tuple[App, ...], trio: tuple[NodeProcess, ...]
) -> None:
    a, _, c = apps
    await a.goto("/peers")
    await a.page.click("text=Make an invite")
    code = await a.page.input_value("#invite-code")
    assert await a.page.locator(".qr svg").count() == 1  # the QR code, inline
    await c.goto("/peers")
    await c.page.fill("#code", code)
    await c.page.click("text=Accept and trust")
    await c.page.wait_for_url(re.compile(r"/ui/peers/"))
    node_a = trio[0]
    safety = (await node_a.json("id"))["safety_code"]
    assert await c.page.inner_text(".safety.large") == safety
    rows = await until_shown(a, "/peers", "tr:has-text('Helpdesk C')", "C trusted by A")
    assert await rows.count() == 1


async def test_peer_supplied_markup_renders_inert(apps: tuple[App, ...]) -> None:
    a, b, _ = apps
    await a.goto("/guides/new")
    await a.page.fill("#title", HOSTILE)
    await a.page.fill(
        "#text",
        f"{HOSTILE}\n\n[click me](javascript:alert('z'))\n\n<iframe src=javascript:alert(1)>",
    )
    await a.page.click("button[value=publish]")
    await a.page.wait_for_url(re.compile(r"/ui/guides/[0-9a-f]{64}$"))
    await a.goto("/knowwho")
    await a.page.fill("#c-name", "Clinic " + HOSTILE)
    await a.page.fill("#c-region", "KE")
    await a.page.select_option("#c-share", "network")
    await a.page.click("text=Add the contact")
    await a.page.wait_for_selector(".flash")
    link = await until_shown(b, "/guides", "a:has-text('evil')", "hostile guide")
    await link.first.click()
    await b.page.wait_for_selector("article h1")
    title = await b.page.inner_text("article h1")
    assert "<script>" in title and "\\u202e" in title and "\u202e" not in title
    body = b.page.locator(".body")
    assert await body.locator("script, img, iframe").count() == 0
    assert await b.page.locator("a[href^='javascript']").count() == 0
    assert "click me" in await body.inner_text()
    for app in (a, b):
        hits = await until_shown(app, "/knowwho?search=1&text=Clinic", ".results li", "contact")
        assert "<script>" in await hits.first.inner_text()
        assert await app.page.locator(".results script, .results img").count() == 0
    await a.goto("/")  # the home page lists A's own alerts and peers: nothing fires there
    assert a.dialogs == [] and b.dialogs == []
