"""The guide list pages instead of rendering every guide: on a real `canopy run` node holding
120 readable guides, each page shows at most UI_GUIDES_PER_PAGE of them, newest first, with
previous/next links that keep the filters; a page past the last, or not a number, shows
the last or the first. Over HTTP: no page here needs a browser."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from html import unescape

import aiohttp
import nacl.utils
import pytest
import pytest_asyncio

from node.clock import now_ms
from node.content import row_of
from node.demo import PASSPHRASE, NodeProcess
from node.local import Local
from protocol import limits
from protocol.envelope import seal_record
from protocol.record import Kind, Record, Scope
from tests.web.conftest import Nodes, sign_in_url

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]

GUIDES = 120
PER = limits.UI_GUIDES_PER_PAGE


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def app(nodes: Nodes) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    node: NodeProcess = await nodes.node("paged", "Paged Org")
    local = await Local.open(node.data, PASSPHRASE.encode())
    try:
        key = await local.network_key()
        now = now_ms()
        rows = []
        for i in range(GUIDES):
            content = {
                "title": f"Guide {i:03d} {'even' if i % 2 == 0 else 'odd'}", "lang": "en",
                "topics": ["safety"], "region": "KE", "format": "text/markdown",
                "filename": "g.md", "text": "Text.\n",
            }  # fmt: skip
            record = seal_record(
                local.identity, Kind.GUIDE, content,  # type: ignore[arg-type]
                created=now - 10_000 + i, expires=now + limits.DEFAULT_GUIDE_LIFETIME_MS,
                scope=Scope.NETWORK, recipients=(), network_key=key, random=nacl.utils.random,
            )  # fmt: skip
            rows.append(row_of(Record.from_bytes(record.to_bytes()), local=True))
        await local.store.put_records(rows, now)
    finally:
        await local.close()
    await node.start()
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.get(await sign_in_url(node), allow_redirects=False) as response:
        assert response.status == 303
    base = str(json.loads((node.data / "node.json").read_text())["api"]).rstrip("/")
    yield http, base
    await http.close()


async def _list(app: tuple[aiohttp.ClientSession, str], query: str) -> tuple[list[str], str]:
    http, base = app
    async with http.get(f"{base}/ui/guides{query}") as response:
        assert response.status == 200
        html = await response.text()
    return re.findall(r"<bdi>(Guide \d{3} \w+)</bdi>", html), html


def _link(html: str, rel: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)" rel="{rel}">', html)
    return unescape(found.group(1)) if found else None


async def test_the_list_shows_one_page_newest_first_with_a_next_link(
    app: tuple[aiohttp.ClientSession, str],
) -> None:
    titles, html = await _list(app, "")
    assert len(titles) == PER
    assert titles[0].startswith("Guide 119") and titles[-1].startswith(f"Guide {119 - PER + 1:03d}")
    assert "120 of 120 guides" in html
    assert _link(html, "prev") is None
    assert _link(html, "next") == "/ui/guides?page=2"
    last = -(-GUIDES // PER)
    titles, html = await _list(app, f"?page={last}")
    assert len(titles) == GUIDES - (last - 1) * PER
    assert titles[-1].startswith("Guide 000")
    assert _link(html, "next") is None and _link(html, "prev") == f"/ui/guides?page={last - 1}"


async def test_page_links_keep_the_filters(app: tuple[aiohttp.ClientSession, str]) -> None:
    titles, html = await _list(app, "?q=even")
    assert len(titles) == PER and all(t.endswith("even") for t in titles)
    assert "60 of 120 guides" in html
    following = _link(html, "next")
    assert following == "/ui/guides?q=even&page=2"
    titles, html = await _list(app, following[len("/ui/guides") :])
    assert len(titles) == 60 - PER and all(t.endswith("even") for t in titles)


@pytest.mark.parametrize("page", ["999", "-1", "two", "0", "9" * 40])
async def test_a_page_out_of_range_shows_the_first_or_last(
    app: tuple[aiohttp.ClientSession, str], page: str
) -> None:
    titles, _ = await _list(app, f"?page={page}")
    assert titles  # never an empty page or an error
    assert titles[0].startswith("Guide 119" if page != "999" else "Guide 019")


async def test_a_kept_page_gives_way_to_a_guide_published_or_withdrawn(
    app: tuple[aiohttp.ClientSession, str],
) -> None:
    """Pages are kept made between views (node/web/listings.py), never past a change: a
    guide published through the app shows on the first page the very next view (the app
    answers once the node has read what it wrote), and once withdrawn it is gone from it."""
    http, base = app
    before, _ = await _list(app, "")  # made, and now kept
    assert before == (await _list(app, ""))[0]
    async with http.get(f"{base}/ui/guides/new") as response:
        csrf = re.findall(r'name="csrf" value="([^"]+)"', await response.text())[0]
    form = {"csrf": csrf, "title": "Guide 900 fresh", "text": "New.\n", "lang": "en",
            "topics": "safety", "region": "KE", "to": "peers"}  # fmt: skip
    async with http.post(f"{base}/ui/guides", data=form, allow_redirects=False) as response:
        assert response.status == 303
        rid = response.headers["Location"].rsplit("/", 1)[1]
    shown, _ = await _list(app, "")
    assert shown[0] == "Guide 900 fresh" and shown[1:] == before[: PER - 1]
    withdraw = {"csrf": csrf}
    async with http.post(
        f"{base}/ui/guides/{rid}/withdraw", data=withdraw, allow_redirects=False
    ) as response:
        assert response.status == 303
    assert (await _list(app, ""))[0] == before
