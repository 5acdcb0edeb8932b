"""Sync that scales, with real `canopy run` processes: multi-hop relay, no echo, resume,
alerts ahead of a backlog, and purge of expired, withdrawn and superseded records."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import Any

import nacl.utils
import pytest

from node.content import row_of
from node.demo import PASSPHRASE, NodeProcess, wait_until
from node.local import Local
from protocol.envelope import seal_record
from protocol.record import Kind, Record, Scope
from tests.conftest import Net

pytestmark = pytest.mark.timeout(240)
HOUR = 3600 * 1000


async def status(node: NodeProcess) -> Any:
    return await node.api("/v1/status")


async def link(inviter: NodeProcess, invitee: NodeProcess) -> None:
    _, code, _ = await inviter.cli("invite", "--address", inviter.address)
    await invitee.cli("accept", code.strip())


async def total(node: NodeProcess) -> int:
    return sum((await status(node))["records"].values())


async def bulk(node: NodeProcess, count: int, size: int, *, lifetime: int = HOUR) -> list[Record]:
    """Seal `count` network guides of about `size` bytes into a stopped node's store."""
    local = await Local.open(node.data, PASSPHRASE.encode())
    try:
        now = int(time.time() * 1000)
        key = await local.network_key()
        records = [
            seal_record(
                local.identity,
                Kind.GUIDE,
                {"title": f"bulk {i}", "text": "x" * size},
                created=now - i,
                expires=now + lifetime,
                scope=Scope.NETWORK,
                recipients=[],
                network_key=key,
                random=nacl.utils.random,
            )
            for i in range(count)
        ]
        await local.store.put_records([row_of(r, local=True) for r in records], now)
        return records
    finally:
        await local.close()


async def line(net: Net, count: int) -> list[NodeProcess]:
    nodes = [await net.node(chr(ord("A") + i)) for i in range(count)]
    for left, right in itertools.pairwise(nodes):
        await link(left, right)
    return nodes


async def test_multi_hop_line_of_five_no_echo_no_duplicates(net: Net, tmp_path: Path) -> None:
    nodes = await line(net, 5)
    for node in nodes:
        await node.start()

    async def linked() -> bool:
        counts = [(await status(n))["connected"] for n in nodes]
        return counts == [1, 2, 2, 2, 1]

    await wait_until("the line to connect", linked)
    source = tmp_path / "far.md"
    source.write_text("# Far away\n\nreaches the end of the line\n")
    await nodes[0].cli("publish", "guide", str(source), "--to", "network")
    took = await wait_until("the far end to read it", lambda: _reads(nodes[-1], "Far away"))
    assert took < 10
    await asyncio.sleep(1.0)  # let any echo or duplicate arrive, if one were sent
    traffic = [(await status(n))["traffic"] for n in nodes]
    size = traffic[0]["record_bytes_sent"]
    assert size > 0
    # Each hop forwards the record exactly once, and never back where it came from.
    assert [t["record_bytes_sent"] for t in traffic] == [size, size, size, size, 0]
    assert [t["record_bytes_received"] for t in traffic] == [0, size, size, size, size]


async def _reads(node: NodeProcess, title: str) -> bool:
    return title in [g["title"] for g in (await node.json("guides"))["guides"]]


async def test_interrupted_transfer_resumes_without_resending(net: Net) -> None:
    a, b = await net.node("A"), await net.node("B")
    await link(a, b)
    backlog = 12_000  # seconds of transfer, so that the kill lands mid-sync even when sync is fast
    await bulk(a, backlog, 2000)
    await a.start()
    await b.start()
    await wait_until("part of the backlog", lambda: _at_least(b, 300), timeout=60)
    await b.kill9()
    held = await _stored(b)
    assert 0 < held < backlog
    sent_before = (await status(a))["traffic"]["record_bytes_sent"]
    await b.start()
    await wait_until("the rest", lambda: _at_least(b, backlog), timeout=180)
    resent = (await status(a))["traffic"]["record_bytes_sent"] - sent_before
    per_record = sent_before / max(1, held)
    # What B had stored before the kill is not sent again (allow for records in flight).
    assert resent <= (backlog - held + 200) * per_record


async def _at_least(node: NodeProcess, n: int) -> bool:
    return await total(node) >= n


async def _stored(node: NodeProcess) -> int:
    return sum((await node.json("status"))["records"].values())


async def test_alert_overtakes_a_large_backlog(net: Net, tmp_path: Path) -> None:
    a, b = await net.node("A"), await net.node("B")
    await link(a, b)
    backlog = 30_000  # several seconds of verification and storage for B
    await bulk(a, backlog, 200)
    await a.start()
    await b.start()
    await wait_until("the backlog to start", lambda: _at_least(b, 1), timeout=60)
    await a.cli("alert", "Office raided: do not come in today", "--urgency", "high")
    await wait_until("the alert", lambda: _has_alert(b), timeout=30)
    backlog_held = await total(b)
    assert backlog_held < backlog, "the alert must not wait behind the whole backlog"
    alert = (await b.api("/v1/alerts"))["alerts"][0]
    assert alert["text"] == "Office raided: do not come in today"
    assert alert["urgency"] == "high"


async def _has_alert(node: NodeProcess) -> bool:
    return bool((await node.api("/v1/alerts"))["alerts"])


async def test_watch_prints_alerts_as_they_arrive(net: Net) -> None:
    a, b = await net.node("A"), await net.node("B")
    await link(a, b)
    await a.start()
    await b.start()
    await wait_until("link", lambda: _connected(a, 1))
    watcher = await asyncio.create_subprocess_exec(
        *_cli(b),
        "watch",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=b.env,
    )
    try:
        assert watcher.stderr is not None and watcher.stdout is not None
        await asyncio.wait_for(watcher.stderr.readline(), 10)  # "watching for alerts"
        await a.cli("alert", "Checkpoint on the coast road")
        line = await asyncio.wait_for(watcher.stdout.readline(), 10)
        entry = json.loads(line)
        assert entry["text"] == "Checkpoint on the coast road"
        assert entry["from"].startswith("Org A")
    finally:
        watcher.terminate()
        await watcher.wait()


def _cli(node: NodeProcess) -> list[str]:
    import sys

    return [sys.executable, "-m", "cli", "--data", str(node.data)]


async def _connected(node: NodeProcess, n: int) -> bool:
    return (await status(node))["connected"] == n


async def test_purge_of_expired_withdrawn_and_superseded(net: Net, tmp_path: Path) -> None:
    a, b, c = await line(net, 3)
    short = await bulk(a, 1, 100, lifetime=8000)  # expires in 8 s
    for node in (a, b, c):
        await node.start()
    await wait_until("links", lambda: _connected(b, 2))
    v1 = tmp_path / "v1.md"
    v1.write_text("# Safe houses v1\n\nold advice\n")
    _, out, _ = await a.cli("publish", "guide", str(v1), "--to", "network")
    old_id = out.split()[0]
    doomed = tmp_path / "doomed.md"
    doomed.write_text("# To withdraw\n\nwrong number inside\n")
    _, out, _ = await a.cli("publish", "guide", str(doomed), "--to", "network")
    doomed_id = out.split()[0]
    await wait_until("C to hold everything", lambda: _at_least(c, 3))

    v2 = tmp_path / "v2.md"
    v2.write_text("# Safe houses v2\n\nnew advice\n")
    await a.cli("publish", "guide", str(v2), "--to", "network", "--replaces", old_id)
    await a.cli("withdraw", doomed_id)

    async def purged() -> bool:
        titles = sorted(g["title"] for g in (await c.json("guides"))["guides"])
        return titles == ["Safe houses v2"]

    took = await wait_until("C to drop superseded, withdrawn and expired", purged, timeout=30)
    assert took < 30
    for node in (a, b, c):
        code, _, err = await node.cli("show", old_id, check=False)
        assert code == 1 and "withdrawn" in err
        code, _, err = await node.cli("show", doomed_id, check=False)
        assert code == 1 and "withdrawn" in err
        code, _, _ = await node.cli("show", short[0].id.hex(), check=False)
        assert code == 1
    # B, the relay, purged too: it holds v2 and the two tombstones only.
    await wait_until("B's purge", lambda: _holds(b, {"guide": 1, "tombstone": 2}), timeout=15)


async def _holds(node: NodeProcess, counts: dict[str, int]) -> bool:
    return bool((await status(node))["records"] == counts)
