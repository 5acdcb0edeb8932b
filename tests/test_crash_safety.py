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
from tests.test_sync_lifecycle import bulk

KILLS = int(os.environ.get("CANOPY_SOAK_KILLS", "20"))
RECORDS = 25_000  # enough that every one of 20 kills lands mid-sync
# Sealing 25,000 records and 20 kills: on two test workers sharing two cores, minutes.
pytestmark = pytest.mark.timeout(max(300, KILLS * 6))


async def guide_count(node: NodeProcess) -> int:
    return int((await node.json("status"))["records"].get("guide", 0))


async def test_kill_9_loop_during_large_sync_loses_nothing(tmp_path: Path) -> None:
    source = NodeProcess(tmp_path, "A", "Source")
    await source.init()
    rng = random.Random(5)
    await bulk(source, RECORDS, 200)  # sealed network guides, straight into A's store
    await source.start()
    sink = NodeProcess(tmp_path, "B", "Sink")
    await sink.cli("init", "--no-passphrase", "--name", "Sink")
    await link(source, sink)
    try:
        start = time.monotonic()
        history: list[int] = []
        for _ in range(KILLS):
            await sink.start()
            before = history[-1] if history else 0
            # Kill while records are arriving: once the running node holds more than it
            # did, give it a random moment more.
            await wait_until("records to arrive", lambda n=before: _live_count_above(sink, n), 30)
            await asyncio.sleep(rng.uniform(0.0, 0.1))
            await sink.kill9()
            # After every kill: the database opens, passes its integrity check, and holds
            # at least what it held before (acknowledged records are never lost).
            local = await Local.open(sink.data, None)
            try:
                assert await local.store.integrity_check() == "ok"
                held = (await local.store.count_by_kind()).get("guide", 0)
            finally:
                await local.close()
            assert held >= (history[-1] if history else 0)
            history.append(held)
            if held == RECORDS:  # sync is done before the kills are: none can land mid-sync
                break
        killed_s = time.monotonic() - start
        mid_sync = sum(1 for h in history if h < RECORDS)
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
            f"\nKILL9 kills={KILLS} in {killed_s:.1f} s, {mid_sync} of them mid-sync;"
            f" held after each kill={history}; final guides={counts.get('guide', 0)}/{RECORDS};"
            f" integrity={integrity}"
        )
        assert integrity == "ok"
        assert counts == {"guide": RECORDS}
        if KILLS >= 20:  # every kill but the last (which may find the sync done) mid-sync
            assert mid_sync >= len(history) - 1 >= 2, "kills must land while records arrive"
    finally:
        await sink.kill9()
        await source.stop()


async def _live_count_above(node: NodeProcess, n: int) -> bool:
    """From the running node's local API (quicker than a CLI process per poll)."""
    try:
        return int((await node.api("/v1/status"))["records"].get("guide", 0)) > n
    except (OSError, ValueError):
        return False


async def _count_is(node: NodeProcess, n: int) -> bool:
    return await guide_count(node) == n
