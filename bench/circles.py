"""Issue 15's circle target: a member added to a circle with 10,000 records in its history
reads them all within 2 s of connecting, and the author does O(epochs) key wraps, never
work per record.

A (the owner) holds `records` guides sealed to its circle, spread over `epochs` epochs (a
member added and removed between them). D is trusted, then added: the one membership
record carries D one key per epoch. Both nodes start; from the moment they are connected,
we time D holding every record, then D opening every one with the keys it now has (the
same `readable` every reader uses). Beside it, the libraries' ceiling for the same records
(msgpack + Ed25519 + SecretBox + sqlite3 in one process), and A's own count of records it
wrote for D: one.
"""

from __future__ import annotations

import time

from bench.data import create_dir, derive, link_all, network_key, progress
from bench.harness import Node, Result, free_port, library_ceiling, wait_for, workspace
from node import circles
from node.clock import now_ms
from node.content import publish_guide_texts, readable
from node.local import Local, random
from node.trust import parse_node_id
from protocol import circle
from protocol.circle import Change
from protocol.envelope import open_record
from protocol.identity import Identity, NodeId
from protocol.record import Kind

SEED = 15
NAME = "Bench circle"


async def _fill(a: Local, d: NodeId, records: int, epochs: int) -> dict[str, int]:
    """A's circle and its history; then D added. What A wrote for D, counted."""
    now = now_ms()
    await circles.create(a, NAME, "all", now)
    stand_in = Identity(random(32)).node_id  # added and removed: one epoch per removal
    per_epoch = max(1, records // epochs)
    done = 0
    for epoch in range(epochs):
        count = records - done if epoch == epochs - 1 else per_epoch
        texts = [(f"g{done + i}.md", f"# Guide {done + i}\n\nEpoch {epoch}.") for i in range(count)]
        for start in range(0, len(texts), 1000):
            await publish_guide_texts(
                a,
                texts[start : start + 1000],
                title=None,
                lang="en",
                topics=[],
                region="",
                to=f"circle:{NAME}",
                now_ms=now,
            )
        done += count
        if epoch < epochs - 1:
            state = await circles.find(a, NAME)
            await circles.store_change(a, circle.add(state, a.node_id, [stand_in], random), now)
            state = await circles.find(a, NAME)
            await circles.store_change(a, circle.remove(state, a.node_id, [stand_in], random), now)
        progress(f"circle: {done:,}/{records:,} records sealed")
    before = len(await a.store.records_of_kind(str(Kind.GUIDE)))
    total_before = sum((await a.store.count_by_kind()).values())
    state = await circles.find(a, NAME)
    record = await circles.store_change(a, circle.add(state, a.node_id, [d], random), now)
    change = Change.from_content(open_record(record, a.identity, None).content)
    return {
        "epochs": (await circles.find(a, NAME)).epoch + 1,
        "key_wraps": len(change.keys),  # epoch keys D receives, each sealed once to D
        "records_written": sum((await a.store.count_by_kind()).values()) - total_before,
        "guides_resealed": len(await a.store.records_of_kind(str(Kind.GUIDE))) - before,
    }


async def circle_join(records: int = 10_000, epochs: int = 5, timeout: float = 300.0) -> Result:
    res = Result("circle-join")
    async with workspace("circle-join") as root:
        net = network_key(SEED)
        a_dir = await create_dir(root / "A", "A", free_port(), net, seed=derive(SEED, "owner"))
        d_dir = await create_dir(root / "D", "D", free_port(), net)
        await link_all([a_dir, d_dir], [(0, 1)])
        a = await Local.open(a_dir.path, None)
        try:
            counts = await _fill(a, parse_node_id(d_dir.node_id), records, epochs)
            datas = await a.store.records_of_kind(str(Kind.GUIDE))
        finally:
            await a.close()
        progress("circle: the libraries' ceiling")
        (root / "ceiling").mkdir()
        ceil = library_ceiling(datas, root / "ceiling")
        na, nd = Node(a_dir), Node(d_dir)
        try:
            await na.start()
            await nd.start()

            async def connected() -> bool:
                peers = (await nd.get("/v1/peers"))["peers"]
                return bool(peers) and peers[0].get("state") == "connected"

            await wait_for("D connected to A", connected, timeout, 0.01)
            t0 = time.monotonic()
            want = records + counts["records_written"]

            async def holds_all() -> bool:
                return (await nd.status())["records"].get("guide", 0) >= records

            await wait_for("D holds every record", holds_all, timeout, 0.02)
            held_s = time.monotonic() - t0
        finally:
            await nd.stop()
            await na.stop()
        d = await Local.open(d_dir.path, None)
        try:
            t1 = time.monotonic()
            seen, unreadable = await readable(d, Kind.GUIDE, now_ms())
            open_s = time.monotonic() - t1
        finally:
            await d.close()
    res.add("records", "records in the circle's history", records, "", fmt="{:,.0f}")
    res.add("epochs", "epochs of the circle", counts["epochs"], "", fmt="{:,.0f}")
    res.add(
        "key_wraps",
        "key wraps by the author for D (one per epoch)",
        counts["key_wraps"],
        "",
        target=counts["epochs"],
        fmt="{:,.0f}",
    )
    res.add(
        "records_written",
        "records the author wrote for D",
        counts["records_written"],
        "",
        target=1,
        fmt="{:,.0f}",
    )
    res.add(
        "resealed",
        "bodies re-encrypted for D",
        counts["guides_resealed"],
        "",
        target=0,
        fmt="{:,.0f}",
    )
    res.add("held_s", "D holds every record, from connecting", held_s, "s", fmt="{:.2f}")
    res.add("open_s", "D opens every record with its keys", open_s, "s", fmt="{:.2f}")
    res.add(
        "read_s",
        "D reads all of them, from connecting",
        held_s + open_s,
        "s",
        target=2.0,
        fmt="{:.2f}",
    )
    res.add("readable", "records D reads", len(seen), "", target=records, goal=">=", fmt="{:,.0f}")
    res.add(
        "unreadable", "records D holds but cannot read", unreadable, "", target=0, fmt="{:,.0f}"
    )
    ceiling_s = records / ceil["records_per_s"]
    res.add("ceiling_s", "ceiling: the libraries alone (1 process)", ceiling_s, "s", fmt="{:.2f}")
    res.add("ratio", "ratio ceiling/read time", ceiling_s / (held_s + open_s), "x", fmt="{:.2f}")
    res.details["ceiling"] = ceil
    res.details["want"] = want
    return res
