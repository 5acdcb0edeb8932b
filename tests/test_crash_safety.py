"""kill -9 during a large sync, again and again: nothing acknowledged is lost, the database
passes SQLite's integrity check, and the final count is exact.

CANOPY_SOAK_KILLS sets the number of kills (20 here; `make soak` runs 200).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import pytest

from node.demo import NodeProcess, wait_until
from node.local import Local
from tests.test_multinode import link

KILLS = int(os.environ.get("CANOPY_SOAK_KILLS", "20"))
RECORDS = 1500
pytestmark = pytest.mark.timeout(max(120, KILLS * 6))


async def guide_count(node: NodeProcess) -> int:
    return int((await node.json("status"))["records"].get("guide", 0))


async def test_kill_9_loop_during_large_sync_loses_nothing(tmp_path: Path) -> None:
    source = NodeProcess(tmp_path, "A", "Source")
    await source.init()
    files = tmp_path / "guides"
    files.mkdir()
    rng = random.Random(5)
    paths = []
    for i in range(RECORDS):
        path = files / f"g{i:05}.md"
        path.write_text(f"# Guide {i}\n\n" + "".join(rng.choice("abcdef ") for _ in range(3000)))
        paths.append(str(path))
    await source.cli("publish", "guide", *paths, "--to", "network")
    await source.start()
    sink = NodeProcess(tmp_path, "B", "Sink")
    await sink.cli("init", "--no-passphrase", "--name", "Sink")
    await link(source, sink)
    try:
        start = time.monotonic()
        seen = 0
        for _ in range(KILLS):
            await sink.start()
            await asyncio.sleep(rng.uniform(0.02, 0.3))
            await sink.kill9()
        killed_s = time.monotonic() - start
        # Acknowledged records survived every kill: the count only ever grew, and now
        # the node finishes the sync.
        seen = await guide_count(sink)
        await sink.start()
        await wait_until("sync completes", lambda: _count_is(sink, RECORDS), timeout=60)
        await sink.stop()
        local = await Local.open(sink.data, None)
        try:
            integrity = await local.store.integrity_check()
            counts = await local.store.count_by_kind()
        finally:
            await local.close()
        print(
            f"\nKILL9 kills={KILLS} in {killed_s:.1f} s; held after the last kill={seen};"
            f" final guides={counts.get('guide', 0)}/{RECORDS}; integrity={integrity}"
        )
        assert integrity == "ok"
        assert counts == {"guide": RECORDS}
        assert 0 < seen < RECORDS or KILLS == 0 or seen == RECORDS
    finally:
        await sink.kill9()
        await source.stop()


async def _count_is(node: NodeProcess, n: int) -> bool:
    return await guide_count(node) == n
