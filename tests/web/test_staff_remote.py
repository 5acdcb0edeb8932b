"""`[ui] remote = true` on a real node: what a reverse proxy forwards (the public Host and
Origin) reaches the web app and only it; over the proxy only named staff sign in, the
operator's one-time link is refused there and stays valid on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from node.demo import NodeProcess
from tests.web.conftest import Nodes, sign_in_url
from tests.web.test_staff import PASSWORD, Staff, add_user

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]

PUBLIC = "https://canopy.example.org"
PROXIED = {"Host": "canopy.example.org", "X-Forwarded-For": "203.0.113.7"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def remote(nodes: Nodes) -> AsyncIterator[NodeProcess]:
    node = await nodes.node("remote", "Remote Org")
    node.env.update(CANOPY_UI_REMOTE="true", CANOPY_UI_PUBLIC_URL=PUBLIC)
    await node.start()
    yield node


def loopback(node: NodeProcess) -> str:
    return str(json.loads((node.data / "node.json").read_text())["api"]).rstrip("/")


async def fetch(url: str, headers: dict[str, str], method: str = "GET") -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, headers=headers, allow_redirects=False) as r,
    ):
        return r.status


async def test_the_proxy_reaches_the_web_app_only(remote: NodeProcess) -> None:
    base = loopback(remote)
    assert await fetch(base + "/ui/signin", PROXIED) == 200
    # The local API's own routes are not served under the public name, token or not.
    assert await fetch(base + "/v1/status", PROXIED) == 421
    # A name nobody configured is still refused (DNS rebinding).
    assert await fetch(base + "/ui/signin", {"Host": "evil.example"}) == 421


async def test_operator_link_is_refused_over_the_proxy_but_works_on_loopback(
    remote: NodeProcess,
) -> None:
    url = await sign_in_url(remote)
    path = url.split("/ui/", 1)[1]
    assert await fetch(loopback(remote) + "/ui/" + path, PROXIED) == 403
    assert await fetch(url, {}) == 303  # not spent by the refusal


async def test_named_staff_enrol_and_sign_in_over_the_proxy(remote: NodeProcess) -> None:
    url = await add_user(remote, "proxied-pat", "editor")
    assert url.startswith(PUBLIC + "/ui/enrol?token=")
    member = Staff(loopback(remote), PUBLIC, PROXIED)  # every request as the proxy forwards it
    fresh = Staff(loopback(remote), PUBLIC, PROXIED)
    try:
        assert await member.enrol(url.replace(PUBLIC, "http://127.0.0.1")) == 303
        assert (await member.get("/ui/"))[0] == 200
        form = {"name": "proxied-pat", "password": PASSWORD, "code": member.code(30)}
        async with fresh.http.post(
            fresh.base + "/ui/signin", data=form, headers={"Origin": PUBLIC}, allow_redirects=False
        ) as r:
            assert r.status == 303
            assert "Secure" in r.headers.get("Set-Cookie", "")
        assert (await fresh.get("/ui/"))[0] == 200
        # A crafted POST from another origin is refused before the app sees it.
        async with fresh.http.post(
            fresh.base + "/ui/guides",
            data={"csrf": "x"},
            headers={"Origin": "https://evil.example"},
        ) as r:
            assert r.status == 403
    finally:
        await member.close()
        await fresh.close()
