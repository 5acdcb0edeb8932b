"""Role-aware pages, in a real Chromium on a real `canopy run` node: staff see only the
controls their role may use. A reader sees no Publish, no Add contact, no Send alert, no
vouch, no invite, no distrust and no wipe; an editor sees what editors may do but none of the
admin's controls; the operator (an admin) sees them all, which shows the checks look for
controls that exist. The server's 403 for the same requests is tested in test_staff.py."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pyotp
import pytest
import pytest_asyncio

from node.demo import NodeProcess
from tests.web.conftest import Nodes, open_app

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]

PASSWORD = "correct horse battery staple"

# (page, what marks the control, the least role that may use it)
CONTROLS = [
    ("/", 'a[href="/ui/wipe"]', "admin"),
    ("/guides", 'a[href="/ui/guides/new"]', "editor"),
    ("/alerts", 'form[action="/ui/alerts"]', "editor"),
    ("/knowwho", 'form[action="/ui/knowwho/contacts"]', "editor"),
    ("/knowwho?search=1", 'form[action="/ui/knowwho/vouch"]', "editor"),
    ("/peers", 'form[action="/ui/peers/invite"]', "admin"),
    ("/peers", 'form[action="/ui/peers/accept"]', "admin"),
]
RANK = {"reader": 0, "editor": 1, "admin": 2}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(nodes: Nodes) -> AsyncIterator[NodeProcess]:
    node = await nodes.node("roles", "Roles Org")
    await node.start()
    # One contact of our own, so that a directory search shows a vouch button.
    await node.cli(
        "contact", "add", "--kind", "lawyer", "--name", "Amina Wanjiru", "--region", "KE",
        "--lang", "sw", "--channel", "phone:+254700000001", "--share", "peers",
    )  # fmt: skip
    yield node


def _base(node: NodeProcess) -> str:
    return str(json.loads((node.data / "node.json").read_text())["api"]).rstrip("/") + "/ui"


async def _staff_page(browser: Any, node: NodeProcess, name: str, role: str) -> Any:
    """A browser context enrolled (and so signed in) as staff user `name` with `role`."""
    _, out, _ = await node.cli("ui", "user", "add", name, "--role", role)
    url = out.splitlines()[0]
    context = await browser.new_context(locale="en-GB")
    page = await context.new_page()
    response = await page.goto(url)
    assert response is not None and response.ok
    secret = await page.text_content("#totp-secret")
    assert secret and re.fullmatch(r"[A-Z2-7]+", secret)
    await page.fill("#password", PASSWORD)
    await page.fill("#again", PASSWORD)
    await page.fill("#code", pyotp.TOTP(secret).at(time.time()))
    await page.click("form[action='/ui/enrol'] button[type=submit]")
    await page.wait_for_url(re.compile(r".*/ui/$"))
    assert await page.locator("form[action='/ui/signout']").count() == 1  # signed in
    return page


async def _present(page: Any, base: str) -> set[tuple[str, str]]:
    found = set()
    for path, selector, _ in CONTROLS:
        response = await page.goto(base + path)
        assert response is not None and response.status == 200, path
        if await page.locator(selector).count():
            found.add((path, selector))
    return found


def _allowed(role: str) -> set[tuple[str, str]]:
    return {(p, s) for p, s, least in CONTROLS if RANK[role] >= RANK[least]}


async def test_operator_sees_every_control(browser: Any, server: NodeProcess) -> None:
    app = await open_app(browser, server)
    try:
        assert await _present(app.page, app.base) == _allowed("admin")
    finally:
        await app.page.context.close()


async def test_reader_sees_no_publish_contact_alert_or_admin_controls(
    browser: Any, server: NodeProcess
) -> None:
    page = await _staff_page(browser, server, "rita-reader", "reader")
    try:
        base = _base(server)
        assert await _present(page, base) == set()
        response = await page.goto(base + "/guides/new")  # the editor's form itself
        assert response is not None and response.status == 403
        await page.goto(base + "/knowwho?search=1")
        assert await page.get_by_text("Amina Wanjiru").count() == 1  # reads and searches
    finally:
        await page.context.close()


async def test_editor_sees_editor_controls_but_not_admin_ones(
    browser: Any, server: NodeProcess
) -> None:
    page = await _staff_page(browser, server, "ed-editor", "editor")
    try:
        assert await _present(page, _base(server)) == _allowed("editor")
        response = await page.goto(_base(server) + "/guides/new")
        assert response is not None and response.status == 200
    finally:
        await page.context.close()
