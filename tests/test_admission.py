"""Who gets in, and how: addresses as people type them, client addresses behind a proxy,
fair pending-handshake slots, pre-authentication message bounds and half-open HTTP
requests, against real `canopy run` processes over real loopback sockets."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from node.demo import NodeProcess, wait_until
from protocol.invite import Invite
from tests.conftest import Net

pytestmark = pytest.mark.timeout(180)


async def _connected(node: NodeProcess, count: int) -> bool:
    peers = (await node.api("/v1/peers"))["peers"]
    return sum(p["state"] == "connected" for p in peers) == count


async def _titles(node: NodeProcess) -> list[str]:
    return sorted(g["title"] for g in (await node.json("guides"))["guides"])


async def test_address_without_path_works_end_to_end(net: Net, tmp_path: Path) -> None:
    a = await net.node("A", "Alpha Legal")
    b = await net.node("B", "Beta Rights")
    await a.start()
    await b.start()
    bare = f"ws://127.0.0.1:{a.port}"  # what a newcomer types
    _, code, _ = await a.cli("invite", "--address", bare)
    _, out, _ = await b.cli("accept", code.strip())
    assert f"{bare}/canopy" in out  # the invite carries the dialable address
    await wait_until("connected", lambda: _connected(b, 1))
    await wait_until("connected", lambda: _connected(a, 1))
    guide = tmp_path / "g.md"
    guide.write_text("# Bare address\n\nIt works as typed.\n")
    await a.cli("publish", "guide", str(guide), "--to", "peers")
    await wait_until("delivery", lambda: _is(_titles(b), ["Bare address"]))
    # The peer endpoint also answers at "/", for addresses stored before the fix.
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{bare}/")
        await ws.close()
    # `trust --address` and `[node] advertise` normalise the same way.
    c = await net.node("C", "Gamma Shelter", CANOPY_NODE_ADVERTISE="wss://c.example.org")
    await c.cli("trust", a.node_id, "--address", bare)
    peers = (await c.json("peers"))["peers"]
    assert peers[0]["addresses"] == [f"{bare}/canopy"]
    _, code, _ = await c.cli("invite")
    assert Invite.from_code(code.strip()).addresses == ("wss://c.example.org/canopy",)


async def _is(value: object, expected: object) -> bool:
    return await value == expected  # type: ignore[misc, no-any-return]
