"""Several networks per node, end to end: real `canopy run` processes on 127.0.0.1, where
A is in N1 with B and accepts C's invite into N2 without leaving N1, and each network's
records travel only between its members (docs/spec/45-networks.md)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from node.demo import NodeProcess, wait_until
from tests.conftest import Net
from tests.test_multinode import connected, link

pytestmark = pytest.mark.timeout(180)


async def _all(*checks: Any) -> bool:
    return all(await asyncio.gather(*checks))


async def networks(node: NodeProcess) -> dict[str, list[str]]:
    """{network name: member ids} as `canopy networks --json` lists them."""
    return {r["name"]: r["members"] for r in (await node.json("networks"))["networks"]}


async def two_networks(net: Net) -> tuple[NodeProcess, NodeProcess, NodeProcess]:
    """A and B in N1 (A's network, "default" on both); C's own network, which A joins as
    N2 by accepting C's invite. B and C share nothing."""
    a = await net.node("A", "Alpha Legal")
    b = await net.node("B", "Beta Rights")
    c = await net.node("C", "Gamma Shelter")
    for node in (a, b, c):
        await node.start()
    await link(a, b)
    _, code, _ = await c.cli("invite", "--address", c.address)
    _, out, _ = await a.cli("accept", code.strip(), "--network-name", "N2")
    assert "this invite adds network 'N2'" in out and "beside 'default'" in out
    await wait_until("links", lambda: _all(connected(a, 2), connected(b, 1), connected(c, 1)))
    return a, b, c


async def test_accepting_another_networks_invite_adds_it_beside_the_first(net: Net) -> None:
    a, b, c = await two_networks(net)
    assert await networks(a) == {"default": [b.node_id], "N2": [c.node_id]}
    assert await networks(b) == {"default": [a.node_id]}
    assert await networks(c) == {"default": [a.node_id]}  # C's own name for N2
    (row_a_n2,) = [r for r in (await a.json("networks"))["networks"] if r["name"] == "N2"]
    (row_c,) = (await c.json("networks"))["networks"]
    assert row_a_n2["tag"] == row_c["tag"]  # the same network, whatever each calls it
    _, text, _ = await a.cli("networks")
    assert "N2" in text and "default (first)" in text


async def test_leaving_a_network_keeps_the_others_and_the_last_cannot_be_left(
    net: Net,
) -> None:
    a, b, _ = await two_networks(net)
    code, _, err = await b.cli("networks", "leave", "default", check=False)
    assert code == 1 and "only network" in err and "Traceback" not in err
    code, _, err = await a.cli("networks", "leave", "N3", check=False)
    assert code == 1 and "no network called 'N3'" in err
    _, out, _ = await a.cli("networks", "leave", "N2")
    assert "left network 'N2'" in out
    assert await networks(a) == {"default": [b.node_id]}
    # Without N2's key, A's handshakes with C fail: the two no longer connect.
    await a.stop()
    await a.start()
    await wait_until("A back with B", lambda: connected(a, 1))
    peers = {p["id"]: p for p in (await a.json("peers"))["peers"]}
    assert peers[b.node_id]["state"] == "connected"
