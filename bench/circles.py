"""Issue 15's circle target: a member added to a circle with 10,000 records in its history
reads them all within 2 s of connecting, and the author does O(epochs) key wraps, never
work per record.

A (the owner) holds `records` guides sealed to its circle, spread over `epochs` epochs (a
member added and removed between them). D is trusted, then added: the one membership
record carries D one key per epoch. Both nodes start; from the moment they are connected,
we time D holding every record, D's running node having every guide in its guide index
(each opened once, as it is stored; polled through the cheap status count, so that the
polling does not slow D down), and then one listing of them all from D's node (what
`canopy guides` and the web app show) returning every one: that is the read time. Then,
the nodes stopped, a reader without the node opening every record with D's keys (the
`readable` every other reader uses). Beside it, from the harness (`bench.harness.ceiling`):
the libraries' ceiling for the same records (msgpack + Ed25519 + SecretBox + sqlite3 in one
process) and our own floor (our path for the same records, one process, D's keys); and A's
own count of records it wrote for D: one.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from bench.data import create_dir, derive, link_all, network_key, progress
from bench.harness import Node, Result, ceiling, free_port, wait_for, workspace
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
_MINUTE = 60_000


async def _fill(a: Local, d: NodeId, records: int, epochs: int) -> dict[str, int]:
    """A's circle and its history, an epoch a minute (as a history is written: over time,
    so the history comes before D's membership record in created order, which a sync
    follows); then D added, now. What A wrote for D, counted."""
    end = now_ms()
    now = end - (epochs + 1) * _MINUTE
    await circles.create(a, NAME, "all", now)
    stand_in = Identity(random(32)).node_id  # added and removed: one epoch per removal
    per_epoch = max(1, records // epochs)
    done = 0
    for epoch in range(epochs):
        count = records - done if epoch == epochs - 1 else per_epoch
        texts = [(f"g{done + i}.md", f"# Guide {done + i}\n\nEpoch {epoch}.") for i in range(count)]
        now += _MINUTE
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
            change = circle.add(state, a.node_id, [stand_in], random)
            await circles.store_change(a, change, now + 1)
            state = await circles.find(a, NAME)
            change = circle.remove(state, a.node_id, [stand_in], random)
            await circles.store_change(a, change, now + 2)
        progress(f"circle: {done:,}/{records:,} records sealed")
    before = len(await a.store.records_of_kind(str(Kind.GUIDE)))
    total_before = sum((await a.store.count_by_kind()).values())
    state = await circles.find(a, NAME)
    record = await circles.store_change(a, circle.add(state, a.node_id, [d], random), end)
    change = Change.from_content(open_record(record, a.identity, None).content)
    return {
        "epochs": (await circles.find(a, NAME)).epoch + 1,
        "key_wraps": len(change.keys),  # epoch keys D receives, each sealed once to D
        "records_written": sum((await a.store.count_by_kind()).values()) - total_before,
        "guides_resealed": len(await a.store.records_of_kind(str(Kind.GUIDE))) - before,
    }


def _reopened(log: Path) -> int:
    """Guides D's running node opened again when the circle's keys came (its log says)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    found = re.findall(r"library: (\d+) guides opened with the keys that came", text)
    return sum(int(n) for n in found)


async def circle_join(
    records: int = 10_000, epochs: int = 5, timeout: float = 300.0, library: int = 0
) -> Result:
    """`library`: guides of its own D holds and reads before it joins (its cached index
    must not be opened again when the circle's keys come)."""
    res = Result("circle-join-library" if library else "circle-join")
    async with workspace("circle-join") as root:
        net = network_key(SEED)
        a_dir = await create_dir(root / "A", "A", free_port(), net, seed=derive(SEED, "owner"))
        d_dir = await create_dir(root / "D", "D", free_port(), net)
        await link_all([a_dir, d_dir], [(0, 1)])
        if library:
            d = await Local.open(d_dir.path, None)
            try:
                texts = [(f"own{i}.md", f"# Own {i}\n\nD's own.") for i in range(library)]
                for start in range(0, library, 1000):
                    await publish_guide_texts(
                        d, texts[start : start + 1000], title=None, lang="en", topics=[],
                        region="", to="network", now_ms=now_ms(),
                    )  # fmt: skip
            finally:
                await d.close()
        a = await Local.open(a_dir.path, None)
        try:
            counts = await _fill(a, parse_node_id(d_dir.node_id), records, epochs)
            datas = await a.store.records_of_kind(str(Kind.GUIDE))
        finally:
            await a.close()
        na, nd = Node(a_dir), Node(d_dir)
        try:
            await na.start()
            await nd.start()

            async def connected() -> bool:
                peers = (await nd.get("/v1/peers"))["peers"]
                return bool(peers) and peers[0].get("state") == "connected"

            await wait_for("D connected to A", connected, timeout, 0.01)
            t0, cpu0 = time.monotonic(), nd.cpu_s()
            want = records + counts["records_written"]

            async def holds_all() -> bool:
                return (await nd.status())["records"].get("guide", 0) >= records + library

            await wait_for("D holds every record", holds_all, timeout, 0.02)
            held_s = time.monotonic() - t0

            async def indexed_all() -> bool:  # a count, not a listing: cheap to poll
                return int((await nd.status())["library"]["guides"]) >= records + library

            await wait_for("D's running node indexes every guide", indexed_all, timeout, 0.02)
            indexed_s = time.monotonic() - t0
            listed = await nd.get("/v1/guides?limit=1")  # what `canopy guides` shows
            listed_s = time.monotonic() - t0
            cpu_s = nd.cpu_s() - cpu0  # all of D's threads: steadier than wall time under load
        finally:
            await nd.stop()
            await na.stop()
        reopened = _reopened(root / "D.log")
        d = await Local.open(d_dir.path, None)
        try:
            t1 = time.monotonic()
            seen, unreadable = await readable(d, Kind.GUIDE, now_ms())
            open_s = time.monotonic() - t1
            progress("circle: the libraries' ceiling and our own floor")
            (root / "ceiling").mkdir()
            keys = await circles.read_keys(d)
            ceil = await ceiling(
                datas, await d.network_keys(), root / "ceiling", reader=d.identity, circle_keys=keys
            )
            floor = ceil.pop("floor")
        finally:
            await d.close()
    res.add("records", "records in the circle's history", records, "", fmt="{:,.0f}")
    if library:
        res.add("library", "guides of its own D held before", library, "", fmt="{:,.0f}")
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
        "indexed_s",
        "D's node has every one in its guide index, from connecting",
        indexed_s,
        "s",
        fmt="{:.2f}",
    )
    res.add(
        "read_s",
        "D's node lists every one (one listing after that), from connecting",
        listed_s,
        "s",
        target=2.0,
        fmt="{:.2f}",
    )
    res.add(
        "cpu_s",
        "CPU D's node used for it (every thread)",
        cpu_s,
        "s",
        fmt="{:.2f}",
    )
    res.add(
        "listed",
        "guides D's node lists",
        listed["lessons"],
        "",
        target=records + library,
        goal=">=",
        fmt="{:,.0f}",
    )
    res.add(
        "reopened",
        "guides D opened again when the circle's keys came",
        reopened,
        "",
        fmt="{:,.0f}",
    )
    res.add(
        "open_s",
        "a reader without the node opens every one (readable)",
        open_s,
        "s",
        fmt="{:.2f}",
    )
    res.add(
        "readable",
        "records D reads",
        len(seen),
        "",
        target=records + library,
        goal=">=",
        fmt="{:,.0f}",
    )
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
