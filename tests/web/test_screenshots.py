"""Screenshots of every page of the web app at 1280 px and 390 px wide, in English and
Arabic, on a node with content, saved into .cache/screenshots/ (git-ignored) for a person
to look at. Each page is also checked for what a screenshot would show broken: nothing
wider than the window (no sideways scrolling at 390 px), and the document direction right
for the language. One set is committed under docs/screenshots/ (README, "Screenshots")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.web.conftest import Nodes, sign_in_url
from tests.web.filled import Filled, filled
from tests.web.test_accessibility import PAGES, app_base

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]

SHOTS = Path(__file__).resolve().parents[2] / ".cache" / "screenshots"
WIDTHS = (1280, 390)
LOCALES = {"en": "en-GB", "ar": "ar"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(nodes: Nodes, tmp_path_factory: pytest.TempPathFactory) -> Filled:
    return await filled(nodes, tmp_path_factory.mktemp("sources"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tabs(browser: Any, node: Filled) -> AsyncIterator[dict[tuple[str, bool], Any]]:
    opened: dict[tuple[str, bool], Any] = {}
    for lang, locale in LOCALES.items():
        for signed_in in (True, False):
            context = await browser.new_context(locale=locale)  # the app's real CSP
            tab = await context.new_page()
            if signed_in:
                response = await tab.goto(await sign_in_url(node.a))
                assert response is not None and response.ok
            opened[(lang, signed_in)] = tab
    yield opened
    for tab in opened.values():
        await tab.context.close()


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("lang", list(LOCALES))
@pytest.mark.parametrize("name", list(PAGES))
async def test_page_fits_the_window_and_is_saved(
    tabs: dict[tuple[str, bool], Any], node: Filled, name: str, lang: str, width: int
) -> None:
    signed_in, visit = PAGES[name]
    tab = tabs[(lang, signed_in)]
    await tab.set_viewport_size({"width": width, "height": 900})
    await visit(tab, app_base(node), node)
    assert await tab.get_attribute("html", "dir") == ("rtl" if lang == "ar" else "ltr")
    overflow = await tab.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    wide = await tab.evaluate(
        """(() => { const w = document.documentElement.clientWidth;
        return [...document.querySelectorAll('main *, header *')]
          .filter(e => { const r = e.getBoundingClientRect();
                         return r.width > 0 && (r.right > w + 1 || r.left < -1); })
          .slice(0, 5).map(e => e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className); })()"""
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    slug = name.replace(" ", "-")
    await tab.screenshot(path=str(SHOTS / f"{slug}-{lang}-{width}.png"), full_page=True)
    assert overflow <= 0 and not wide, f"{name} ({lang}, {width} px) overflows: {wide}"
