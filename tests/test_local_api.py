"""The local API of a real `canopy run` process on 127.0.0.1 against a browser's requests.

A page the operator opens can make the browser send requests to 127.0.0.1 under a DNS name
of its own (DNS rebinding) or from its own origin; neither may read anything, and /metrics
needs the token unless the operator made it public.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import aiohttp
import pytest

from node.demo import NodeProcess
from tests.conftest import Net

pytestmark = pytest.mark.timeout(120)


def runtime(node: NodeProcess) -> tuple[str, str]:
    data = json.loads((node.data / "node.json").read_text())
    return str(data["api"]), str(data["token"])


async def get(url: str, **headers: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        return response.status, await response.text()


async def test_foreign_host_and_origin_are_refused_and_metrics_needs_the_token(net: Net) -> None:
    a = await net.node("A")
    await a.start()
    api, token = runtime(a)
    port = urlsplit(api).port
    bearer = f"Bearer {token}"

    # A rebinding page: the browser sends the attacker's name as Host (and, for a page's
    # own fetch, may omit Origin). Even with the token, the request is refused.
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}"):
        for route in ("/metrics", "/v1/status", "/healthz"):
            status, body = await get(api + route, Host=host, Authorization=bearer)
            assert status == 421, (host, route, status)
            assert "canopy" not in body
    # A foreign page posting or fetching across origins: Origin names it.
    for origin in ("http://evil.example", "null", f"http://evil.example:{port}"):
        status, _ = await get(api + "/metrics", Origin=origin, Authorization=bearer)
        assert status == 403, origin
        status, _ = await get(api + "/v1/status", Origin=origin, Authorization=bearer)
        assert status == 403, origin

    # Loopback names are fine; /metrics needs the token by default, /healthz never does.
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
        assert await get(api + "/healthz", Host=host) == (200, '{"status": "ok"}')
    status, body = await get(api + "/metrics")
    assert status == 401 and "canopy_up" not in body
    status, body = await get(api + "/metrics", Authorization=bearer)
    assert status == 200 and "canopy_up 1" in body
    status, _ = await get(api + "/metrics", Authorization=bearer, Origin=f"http://127.0.0.1:{port}")
    assert status == 200  # the node's own origin is not foreign


async def test_metrics_public_serves_metrics_without_token_and_api_host_is_accepted(
    net: Net,
) -> None:
    a = await net.node("A", CANOPY_API_METRICS_PUBLIC="true", CANOPY_API_HOST="canopy.internal")
    await a.start()
    api, _ = runtime(a)
    port = urlsplit(api).port
    status, body = await get(api + "/metrics")
    assert status == 200 and "canopy_up 1" in body
    status, _ = await get(api + "/v1/status")
    assert status == 401  # only /metrics became public
    for host in ("canopy.internal", f"canopy.internal:{port}"):
        status, body = await get(api + "/metrics", Host=host)
        assert status == 200 and "canopy_up 1" in body
    status, _ = await get(api + "/metrics", Host=f"evil.example:{port}")
    assert status == 421  # public metrics still refuse a rebinding name
    status, _ = await get(api + "/metrics", Origin="http://evil.example")
    assert status == 403


def test_api_hosts_are_loopback_names_the_listen_address_and_the_configured_host() -> None:
    from node.runtime import api_hosts

    assert api_hosts("127.0.0.1", 7421, "") == {
        "127.0.0.1:7421",
        "[::1]:7421",
        "localhost:7421",
    }
    assert "0.0.0.0:7421" in api_hosts("0.0.0.0", 7421, "")  # what api_url then names
    assert "[::1]:7421" in api_hosts("::1", 7421, "")
    configured = api_hosts("127.0.0.1", 7421, "Canopy.Internal")
    assert {"canopy.internal", "canopy.internal:7421"} <= configured
    assert "canopy.internal:9999" not in configured
    assert "[fd00::5]:7421" in api_hosts("127.0.0.1", 7421, "[fd00::5]")
    assert "evil.example:7421" not in configured
