"""Browser tests of the web app: real `canopy run` nodes on loopback, driven through Debian's
Chromium by Playwright (`executable_path`, so no browser is downloaded). The nodes and the
browser are shared by the tests of one module, to keep the browser tests' time small.

A missing browser fails these tests with one line; only CANOPY_SKIP_BROWSER=1 skips them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from node.demo import NodeProcess

CHROMIUM = Path(os.environ.get("CANOPY_CHROMIUM", "/usr/bin/chromium"))


def chromium() -> str:
    if os.environ.get("CANOPY_SKIP_BROWSER") == "1":
        pytest.skip("CANOPY_SKIP_BROWSER=1: browser tests skipped")
    if not CHROMIUM.exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: apt-get install -y chromium"
            " (or set CANOPY_SKIP_BROWSER=1 to skip the browser tests)",
            pytrace=False,
        )
    return str(CHROMIUM)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    path = chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=path, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            await launched.close()


class Nodes:
    """Data directories and `canopy run` processes of one test module."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.all: list[NodeProcess] = []

    async def node(self, label: str, name: str) -> NodeProcess:
        node = NodeProcess(self.root, label, name)
        await node.init()
        self.all.append(node)
        return node

    async def stop(self) -> None:
        for node in self.all:
            await node.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def nodes(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Nodes]:
    made = Nodes(tmp_path_factory.mktemp("web"))
    try:
        yield made
    finally:
        await made.stop()


async def sign_in_url(node: NodeProcess) -> str:
    """`canopy ui`'s first line of stdout."""
    _, out, _ = await node.cli("ui")
    return out.splitlines()[0]


@dataclass
class App:
    """One signed-in browser context on one node's app."""

    page: Any
    base: str  # http://127.0.0.1:PORT/ui
    dialogs: list[str] = field(default_factory=list)  # what injected script opened: none

    async def goto(self, path: str) -> Any:
        response = await self.page.goto(self.base + path)
        assert response is not None
        return response


async def open_app(browser: Any, node: NodeProcess, locale: str = "en-GB") -> App:
    """A new browser context signed in to `node`'s app, recording any dialog that fires."""
    context = await browser.new_context(locale=locale)
    page = await context.new_page()
    url = await sign_in_url(node)
    app = App(page, url.split("/ui/", 1)[0] + "/ui")

    async def on_dialog(dialog: Any) -> None:
        app.dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    response = await page.goto(url)
    assert response is not None and response.ok, "the sign-in link did not open the app"
    return app
