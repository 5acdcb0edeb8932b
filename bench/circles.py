"""Issue 15's circle target: a member added to a circle with 10,000 records in its history
reads them all within 2 s of connecting, and the author does O(epochs) key wraps, never
work per record.

A (the owner) holds `records` guides sealed to its circle, spread over `epochs` epochs (a
member added and removed between them). D is trusted, then added: the one membership
record carries D one key per epoch. Both nodes start; from the moment they are connected,
we time D holding every record, and D's running node listing every guide (its guide index
opens each record once, as it is stored: what `canopy guides` and the web app show). Then,
the nodes stopped, a reader without the node opening every record with D's keys (the
`readable` every other reader uses). Beside it, the libraries' ceiling for the same records
(msgpack + Ed25519 + SecretBox + sqlite3 in one process), our own floor (our path for the
same records, one process, D's keys), and A's own count of records it wrote for D: one.
"""

from __future__ import annotations

import time
from pathlib import Path

import nacl.utils

from bench.data import create_dir, derive, link_all, network_key, progress
from bench.harness import BATCH, Node, Result, free_port, library_ceiling, wait_for, workspace
from node import circles
from node.clock import now_ms
from node.content import publish_guide_texts, readable
from node.local import Local, random
from node.store import Store, row_of
from node.trust import parse_node_id
from protocol import circle
from protocol.circle import Change
from protocol.envelope import open_record
from protocol.identity import Identity, NodeId
from protocol.record import Kind, Record

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


async def _floor(d: Local, datas: list[bytes], tmp: Path) -> dict[str, float]:
    """Our own code path for the same records in one process, as D: decode + verify + open
    with D's keys (every network's, every epoch key of its circles) + sealed batched insert."""
    keys = await circles.read_keys(d)
    networks = await d.network_keys()
    path = tmp / "floor.db"
    store = await Store.open(path, nacl.utils.random(32))
    try:
        start = time.perf_counter()
        for at in range(0, len(datas), BATCH):
            rows = []
            for data in datas[at : at + BATCH]:
                record = Record.from_bytes(data)
                record.verify()
                open_record(record, d.identity, networks, circle_keys=keys)
                rows.append(row_of(record, local=False))
            await store.put_records(rows, now_ms())
        elapsed = time.perf_counter() - start
    finally:
        await store.close()
    return {"records": len(datas), "seconds": elapsed, "records_per_s": len(datas) / elapsed}


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

            async def lists_all() -> bool:  # what `canopy guides` and the web app show
                listed = await nd.get("/v1/guides?limit=1")
                return int(listed["lessons"]) >= records

            await wait_for("D's running node lists every guide", lists_all, timeout, 0.02)
            listed_s = time.monotonic() - t0
            listed = await nd.get("/v1/guides?limit=1")
        finally:
            await nd.stop()
            await na.stop()
        d = await Local.open(d_dir.path, None)
        try:
            t1 = time.monotonic()
            seen, unreadable = await readable(d, Kind.GUIDE, now_ms())
            open_s = time.monotonic() - t1
            progress("circle: our own floor")
            floor = await _floor(d, datas, root / "ceiling")
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
    res.add(
        "read_s",
        "D's node lists every one (opened as it came), from connecting",
        listed_s,
        "s",
        target=2.0,
        fmt="{:.2f}",
    )
    res.add(
        "listed",
        "guides D's node lists",
        listed["lessons"],
        "",
        target=records,
        goal=">=",
        fmt="{:,.0f}",
    )
    res.add(
        "open_s",
        "a reader without the node opens every one (readable)",
        open_s,
        "s",
        fmt="{:.2f}",
    )
    res.add("readable", "records D reads", len(seen), "", target=records, goal=">=", fmt="{:,.0f}")
    res.add(
        "unreadable", "records D holds but cannot read", unreadable, "", target=0, fmt="{:,.0f}"
    )
    ceiling_s = records / ceil["records_per_s"]
    res.add("ceiling_s", "ceiling: the libraries alone (1 process)", ceiling_s, "s", fmt="{:.2f}")
    res.add("ratio", "ratio ceiling/read time", ceiling_s / listed_s, "x", fmt="{:.2f}")
    res.add(
        "ratio_open",
        "ratio ceiling/(held + reader's open)",
        ceiling_s / (held_s + open_s),
        "x",
        fmt="{:.2f}",
    )
    floor_s = records / floor["records_per_s"]
    res.add("floor_s", "floor: our own path (1 process, D's keys)", floor_s, "s", fmt="{:.2f}")
    res.add("ratio_floor", "ratio floor/read time", floor_s / listed_s, "x", fmt="{:.2f}")
    res.details["ceiling"] = ceil
    res.details["floor"] = floor
    res.details["want"] = want
    return res
