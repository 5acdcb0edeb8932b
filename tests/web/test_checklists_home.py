"""The web app's home in a real headless Chromium on a real `canopy run` node: a checklist
due for review is on the attention list (its title inert), and leaves it once every item is
ticked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from node.demo import NodeProcess
from tests.web.conftest import App, Nodes, open_app

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]

TITLE = "Office <b>lock-up</b> <script>alert('x')</script>"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(nodes: Nodes) -> AsyncIterator[NodeProcess]:
    made = await nodes.node("a", "Legal Aid A")
    await made.start()
    yield made


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def app(browser: Any, node: NodeProcess) -> AsyncIterator[App]:
    opened = await open_app(browser, node)
    yield opened
    assert opened.dialogs == [], f"a dialog fired: {opened.dialogs}"
    await opened.page.context.close()


async def test_a_due_checklist_is_on_home_until_every_item_is_ticked(
    node: NodeProcess, app: App, tmp_path: Path
) -> None:
    await app.goto("/")
    attention = app.page.locator("section").first
    assert "checklist" not in (await attention.inner_text())
    path = tmp_path / "office.md"
    path.write_text(f"# {TITLE}\n\n- [ ] Lock the door\n- [ ] Shred the visitor log\n")
    _, out, _ = await node.cli("publish", "checklist", str(path))
    rid = out.split()[0]
    await app.goto("/")
    text = await attention.inner_text()
    assert "1 checklist is due for review" in text and f"{TITLE} (0/2)" in text, text
    assert await app.page.locator("section b").count() == 0  # the title is text, not markup
    for item in ("1", "2"):
        await node.cli("checklist", "tick", rid, item)
    await app.goto("/")
    assert "checklist" not in (await attention.inner_text())
