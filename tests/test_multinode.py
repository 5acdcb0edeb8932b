"""Real `canopy run` processes on 127.0.0.1: the story of issue 2, end to end.

A invites B, B invites C. A publishes to its peers, to C only (through B, which cannot
read it) and to the network. Restart catch-up, kill -9 durability, offline accept,
distrust at once, and a scan of every data file for plaintext.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from node.demo import MARKER, NodeProcess, scan_for, wait_until
from tests.conftest import Net

pytestmark = pytest.mark.timeout(180)


async def link(inviter: NodeProcess, invitee: NodeProcess) -> None:
    await inviter.invite(invitee)  # as the demos link their nodes


async def titles(node: NodeProcess) -> list[str]:
    data = await node.json("guides")
    return sorted(g["title"] for g in data["guides"])


async def publish(node: NodeProcess, root: Path, title: str, to: str) -> str:
    path = root / f"{title.replace(' ', '-')}.md"
    path.write_text(f"# {title}\n\nSecret method {MARKER}: meet at the second gate.\n")
    _, out, _ = await node.cli("publish", "guide", str(path), "--to", to)
    path.unlink()  # the source is the user's file, not the node's: keep the scan honest
    return out.split()[0]


async def connected(node: NodeProcess, count: int) -> bool:
    peers = (await node.json("peers"))["peers"]
    return sum(p["state"] == "connected" for p in peers) == count


async def three_nodes(net: Net) -> tuple[NodeProcess, NodeProcess, NodeProcess]:
    a = await net.node("A", "Alpha Legal")
    b = await net.node("B", "Beta Rights")
    c = await net.node("C", "Gamma Shelter")
    for node in (a, b, c):
        await node.start()
    await link(a, b)
    await link(b, c)
    await wait_until("links", lambda: _all(connected(a, 1), connected(b, 2), connected(c, 1)))
    return a, b, c


async def _all(*checks: object) -> bool:
    results = await asyncio.gather(*checks)  # type: ignore[call-overload]
    return all(results)


async def test_story_peers_direct_network_and_relay_blindness(net: Net, tmp_path: Path) -> None:
    a, b, c = await three_nodes(net)
    for_peers = await publish(a, tmp_path, "For peers", "peers")
    for_c = await publish(a, tmp_path, "For C only", c.node_id)
    await publish(a, tmp_path, "For the network", "network")

    async def delivered() -> bool:
        return await titles(b) == ["For peers", "For the network"] and await titles(c) == [
            "For C only",
            "For the network",
        ]

    await wait_until("delivery", delivered)
    assert await titles(a) == ["For C only", "For peers", "For the network"]

    # B stored and forwarded the record for C but cannot read it.
    b_guides = await b.json("guides")
    assert b_guides["held_unreadable"] == 1
    code, _, err = await b.cli("show", for_c, check=False)
    assert code == 1 and "cannot read" in err
    # C never received A's peers-only record: peers scope is not forwarded.
    code, _, err = await c.cli("show", for_peers, check=False)
    assert code == 1 and "no record" in err
    c_status = await c.json("status")
    assert sum(c_status["records"].values()) == 2

    # Nothing readable of any guide in any file of any data directory.
    for node in (a, b, c):
        scanned, hits = scan_for(node.data, [MARKER.encode(), b"second gate", b"For C only"])
        assert scanned >= 2
        assert hits == []


async def test_restart_catch_up_and_kill_9_durability(net: Net, tmp_path: Path) -> None:
    a, b, c = await three_nodes(net)
    await c.stop()
    await b.stop()
    published = [await publish(a, tmp_path, f"While away {i}", "network") for i in range(5)]
    await b.start()
    await c.start()
    want = sorted(f"While away {i}" for i in range(5))

    async def caught_up() -> bool:
        return await titles(c) == want

    took = await wait_until("C to catch up through B", caught_up)
    assert took < 30
    # kill -9 B: everything it acknowledged is still there, and the database is sound.
    before = (await b.json("status"))["records"]
    await b.kill9()
    after = (await b.json("status"))["records"]
    assert before == after == {"guide": 5}
    await b.start()
    await wait_until("B to reconnect", lambda: connected(b, 2))
    await publish(a, tmp_path, "After the crash", "network")
    await wait_until("C to get news through restarted B", lambda: _contains(c, "After the crash"))
    code, out, _ = await c.cli("show", published[0])
    assert code == 0 and MARKER in out


async def _contains(node: NodeProcess, title: str) -> bool:
    return title in await titles(node)


async def test_accept_offline_then_connect(net: Net, tmp_path: Path) -> None:
    a = await net.node("A", "Alpha")
    b = await net.node("B", "Beta")
    await link(a, b)  # both stopped: codes swapped in person
    await publish(a, tmp_path, "Written offline", "network")
    await a.start()
    await b.start()
    await wait_until("B reads A's offline guide", lambda: _contains(b, "Written offline"))
    peers = (await a.json("peers"))["peers"]
    assert [p["name"] for p in peers] == ["Beta"]  # learnt from B's hello


async def test_distrust_disconnects_at_once_and_stops_delivery(net: Net, tmp_path: Path) -> None:
    a = await net.node("A", "Alpha")
    b = await net.node("B", "Beta")
    await a.start()
    await b.start()
    await link(a, b)
    await wait_until("link", lambda: connected(a, 1))
    await a.cli("distrust", "Beta")
    await wait_until("A to drop B", lambda: _no_peers(a), timeout=5)
    await wait_until("B to see A gone", lambda: connected(b, 0), timeout=5)
    await publish(a, tmp_path, "After distrust", "network")
    await asyncio.sleep(2.0)  # B keeps redialling; A must refuse every handshake
    assert await titles(b) == []
    assert (await a.json("status"))["rejected"].get("handshake_refused", 0) >= 1


async def _no_peers(node: NodeProcess) -> bool:
    return (await node.json("peers"))["peers"] == []
