"""Accessibility of every page of the web app, in English and in Arabic (right-to-left):
axe-core (installed from npm at test time, pinned, into .cache/npm like the interop
tests' packages) reports no serious or critical violation; and the publish form can be
filled and submitted with the keyboard alone.

No node/npm on PATH: the axe tests are skipped (as the interop tests are); npm present but
the install fails: they fail. A missing browser fails them (tests/web/conftest.py)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.npm_packages import MODULES, npm_env
from tests.web.conftest import Nodes, open_app, sign_in_url
from tests.web.filled import Filled, filled

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]

PINNED = {"axe-core": "4.14.1"}
AXE = MODULES / "axe-core" / "axe.min.js"
LOCALES = {"en": "en-GB", "ar": "ar"}
BAD = ("serious", "critical")
REPORT = MODULES.parents[1] / "a11y" / "axe-results.txt"  # .cache/a11y/


@pytest.fixture(scope="module")
def axe() -> Path:
    npm_env(PINNED, "the axe-core accessibility check")
    REPORT.unlink(missing_ok=True)
    return AXE


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(nodes: Nodes, tmp_path_factory: pytest.TempPathFactory) -> Filled:
    return await filled(nodes, tmp_path_factory.mktemp("sources"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tabs(browser: Any, node: Filled) -> AsyncIterator[dict[tuple[str, bool], Any]]:
    """One page per (language, signed in?). The CSP (script-src 'self') would block the
    injected axe.min.js, so these contexts bypass it: for the axe check only; every other
    browser test, and the keyboard test here, runs under the app's real CSP."""
    opened: dict[tuple[str, bool], Any] = {}
    for lang, locale in LOCALES.items():
        for signed_in in (True, False):
            context = await browser.new_context(locale=locale, bypass_csp=True)
            tab = await context.new_page()
            if signed_in:
                response = await tab.goto(await sign_in_url(node.a))
                assert response is not None and response.ok, "the sign-in link did not work"
            opened[(lang, signed_in)] = tab
    yield opened
    for tab in opened.values():
        await tab.context.close()


Visit = Callable[[Any, str, Filled], Awaitable[None]]


def path(route: str) -> Visit:
    async def visit(tab: Any, base: str, node: Filled) -> None:
        await tab.goto(
            base + route.format(guide=node.guide_id, peer=node.b.node_id, request=node.request_id)
        )

    return visit


async def invite(tab: Any, base: str, node: Filled) -> None:
    await tab.goto(base + "/peers")
    async with tab.expect_navigation():
        await tab.click("form[action='/ui/peers/invite'] button[type=submit]")
    assert await tab.locator("#invite-code").count() == 1


async def enrol(tab: Any, base: str, node: Filled) -> None:
    await tab.goto(base + node.enrol_url.split("/ui", 1)[1])


# name -> (signed in?, how to get there). Search, results, add contact, the review queue
# and introductions are sections of the know-who page.
PAGES: dict[str, tuple[bool, Visit]] = {
    "home": (True, path("/")),
    "guides": (True, path("/guides")),
    "guides filtered": (True, path("/guides?lang=en&topic=digital-security&q=phone")),
    "guide": (True, path("/guides/{guide}")),
    "publish": (True, path("/guides/new")),
    "know-who": (True, path("/knowwho")),
    "know-who results": (True, path("/knowwho?search=1&text=&kind=lawyer&region=KE&network=1")),
    "know-who no results": (True, path("/knowwho?search=1&text=nobody-at-all")),
    "alerts": (True, path("/alerts")),
    "check-ins": (True, path("/checkins")),
    "help requests": (True, path("/help")),
    "help request": (True, path("/help/{request}")),
    "peers": (True, path("/peers")),
    "invite": (True, invite),
    "peer": (True, path("/peers/{peer}")),
    "status": (True, path("/status")),
    "wipe": (True, path("/wipe")),
    "staff": (True, path("/staff")),
    "error": (True, path("/peers/" + "0" * 52)),
    "not found": (True, path("/no-such-page")),
    "sign-in": (False, path("/signin")),
    "signed out": (False, path("/")),
    "link refused": (False, path("/signin?token=used-or-made-up")),
    "enrol": (False, enrol),
}


def app_base(node: Filled) -> str:
    runtime = json.loads((node.a.data / "node.json").read_text())
    return str(runtime["api"]).rstrip("/") + "/ui"


def described(violations: list[dict[str, Any]], name: str, lang: str) -> str:
    lines = []
    for v in violations:
        for n in v["nodes"]:
            target = " ".join(str(t) for t in n["target"])
            where = f"{v['id']} [{v['impact']}] on {name} ({lang}): {target}"
            lines.append(f"{where}  {n['html'][:160]}")
    return "\n".join(lines)


@pytest.mark.parametrize("lang", list(LOCALES))
@pytest.mark.parametrize("name", list(PAGES))
async def test_page_has_no_serious_accessibility_violation(
    axe: Path, tabs: dict[tuple[str, bool], Any], node: Filled, name: str, lang: str
) -> None:
    signed_in, visit = PAGES[name]
    tab = tabs[(lang, signed_in)]
    base = app_base(node)
    await visit(tab, base, node)
    assert await tab.get_attribute("html", "lang") == lang
    assert await tab.get_attribute("html", "dir") == ("rtl" if lang == "ar" else "ltr")
    await tab.add_script_tag(path=str(axe))
    assert await tab.evaluate("typeof axe") == "object", "axe.min.js was not injected"
    result = await tab.evaluate("axe.run(document, {resultTypes: ['violations']})")
    bad = [v for v in result["violations"] if v["impact"] in BAD]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with REPORT.open("a") as out:  # the per-page result, for the closing note
        other = sorted(f"{v['id']}[{v['impact']}]" for v in result["violations"])
        out.write(
            f"{name} ({lang}): {len(result['passes'])} rules passed;"
            f" violations: {', '.join(other) or 'none'}\n"
        )
    assert not bad, "\n" + described(bad, name, lang)


async def test_axe_check_catches_a_violation(axe: Path, tabs: dict[tuple[str, bool], Any]) -> None:
    # Negative control: the same injection and filter report a field without a label.
    tab = tabs[("en", True)]
    await tab.evaluate(
        "document.querySelector('main').insertAdjacentHTML('beforeend', '<input id=x-unlab>')"
    )
    result = await tab.evaluate("axe.run(document, {resultTypes: ['violations']})")
    ids = {v["id"] for v in result["violations"] if v["impact"] in BAD}
    assert "label" in ids


async def test_publish_form_works_with_the_keyboard_alone(browser: Any, node: Filled) -> None:
    app = await open_app(browser, node.a)  # the app's real CSP
    page = app.page
    await app.goto("/guides/new")
    typed = {
        "title": "Keyboard-only guide",
        "text": "# Typed\n\nWith the keyboard alone.",
        "lang": "en",
        "topics": "accessibility",
        "region": "KE",
    }
    reached: list[str] = []
    await page.keyboard.press("Tab")
    first = await page.evaluate("document.activeElement.className")
    assert first == "skip", "the first tab stop is not the skip link"
    for _ in range(80):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(
            "(() => { const e = document.activeElement;"
            " return [e.id, e.name || '', e.type || '', e.value || ''] })()"
        )
        ident, name, kind, value = focused
        reached.append(ident or f"{name}:{value}")
        if ident in typed:
            await page.keyboard.type(typed.pop(ident))
        elif name == "to" and kind == "radio":
            await page.keyboard.press("Space")  # peers: the checked one by default
        elif name == "action" and value == "publish":
            assert not typed, f"publish reached before {sorted(typed)}"
            async with page.expect_navigation():
                await page.keyboard.press("Enter")
            break
    else:
        pytest.fail(f"never reached the publish button; tab order: {reached}")
    await page.wait_for_url(re.compile(r"/ui/guides/[0-9a-f]{64}$"))
    assert await page.inner_text("h1") == "Keyboard-only guide"

    await app.goto("/guides")
    assert await page.locator("a:has-text('Keyboard-only guide')").count() == 1
    await page.context.close()
