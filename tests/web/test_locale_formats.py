"""Dates and numbers per locale, on a real `canopy run` node over HTTP (no browser needed):
a guide dated 9 March, 13:05 UTC and 1,234 guides held for others are written the way
English, French and Arabic write them (Babel's CLDR formats), on the guide list, on the
guide's own page and in the live alert feed; none is left in the raw form of the code."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

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
from protocol.identity import Identity
from protocol.record import Kind, Record, Scope
from tests.web.conftest import Nodes, sign_in_url

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]

YEAR = datetime.now(UTC).year - 1  # always in the past; the guide stays valid for years
CREATED = datetime(YEAR, 3, 9, 13, 5, tzinfo=UTC)
HELD_FOR_OTHERS = 1234
# CLDR's medium date-time of each locale (Babel), with " UTC" added by the page.
DATE = {
    "en": f"Mar 9, {YEAR}, 1:05:00\u202fPM UTC",
    "fr": f"9 mars {YEAR}, 13:05:00 UTC",
    "ar": f"09\u200f/03\u200f/{YEAR}، 1:05:00 م UTC",
}
NUMBER = {"en": "1,234", "fr": "1\u202f234", "ar": "1,234"}


def _guide(author: Identity, net_key: bytes, created: int, title: str) -> bytes:
    content = {
        "title": title, "lang": "en", "topics": ["safety"], "region": "KE",
        "format": "text/markdown", "filename": "g.md", "text": "# Hello\n\nText.\n",
    }  # fmt: skip
    return seal_record(
        author, Kind.GUIDE, content,  # type: ignore[arg-type]
        created=created, expires=created + limits.MAX_LIFETIME_MS, scope=Scope.NETWORK,
        recipients=(), network_key=net_key, random=nacl.utils.random,
    ).to_bytes()  # fmt: skip


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(nodes: Nodes) -> AsyncIterator[tuple[NodeProcess, str]]:
    node = await nodes.node("locales", "Locale Org")
    local = await Local.open(node.data, PASSPHRASE.encode())
    try:
        created = int(CREATED.timestamp() * 1000)
        ours = _guide(local.identity, await local.network_key(), created, "Dated guide")
        other_key = nacl.utils.random(32)  # another network's guides: held, not readable
        someone = Identity(nacl.utils.random(32))
        theirs = [
            _guide(someone, other_key, now_ms() - 1000 - i, f"t{i}") for i in range(HELD_FOR_OTHERS)
        ]
        rows = [row_of(Record.from_bytes(ours), local=True)]
        rows += [row_of(Record.from_bytes(d), local=False) for d in theirs]
        await local.store.put_records(rows, now_ms())
        guide_id = Record.from_bytes(ours).id.hex()
    finally:
        await local.close()
    await node.start()
    yield node, guide_id


async def _session(node: NodeProcess) -> aiohttp.ClientSession:
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.get(await sign_in_url(node), allow_redirects=False) as response:
        assert response.status == 303
    return http


def _base(node: NodeProcess) -> str:
    return str(json.loads((node.data / "node.json").read_text())["api"]).rstrip("/")


async def _page(http: aiohttp.ClientSession, url: str, lang: str) -> str:
    async with http.get(url, headers={"Accept-Language": lang}) as response:
        assert response.status == 200, url
        return await response.text()


@pytest.mark.parametrize("lang", ["fr", "ar", "en"])
async def test_guide_pages_write_dates_and_numbers_in_the_page_locale(
    server: tuple[NodeProcess, str], lang: str
) -> None:
    node, guide_id = server
    http = await _session(node)
    try:
        listing = await _page(http, _base(node) + "/ui/guides", lang)
        assert f'lang="{lang}"' in listing
        assert DATE[lang] in listing
        assert NUMBER[lang] in listing
        assert str(HELD_FOR_OTHERS) not in listing  # never the raw int
        one = await _page(http, f"{_base(node)}/ui/guides/{guide_id}", lang)
        assert DATE[lang] in one
        for other in set(DATE) - {lang}:
            assert DATE[other] not in listing and DATE[other] not in one
    finally:
        await http.close()


async def test_live_feed_dates_an_alert_in_the_page_locale(
    server: tuple[NodeProcess, str],
) -> None:
    node, _ = server
    http = await _session(node)
    try:
        headers = {"Accept-Language": "fr"}
        async with http.get(_base(node) + "/ui/alerts/feed", headers=headers) as feed:
            assert feed.status == 200
            assert (await feed.content.readline()).startswith(b": open")
            await node.cli("alert", "Le bureau ferme à 16 h")
            async with asyncio.timeout(20):
                while not (line := await feed.content.readline()).startswith(b"data: "):
                    pass
        event = json.loads(line[len(b"data: ") :])
        created = datetime.fromtimestamp(event["created"] / 1000, UTC)
        months = ("janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.",
                  "oct.", "nov.", "déc.")  # fmt: skip
        when = f"{created.day} {months[created.month - 1]} {created.year}, {created:%H:%M:%S} UTC"
        assert event["when"] == when
    finally:
        await http.close()
