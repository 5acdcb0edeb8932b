"""A node with many contacts starts syncing at once and builds its know-who index behind.

Real `canopy run` processes on 127.0.0.1. The index build at start takes seconds with tens of
thousands of contacts; the node must not be deaf meanwhile, a query made during the build
must wait for it and see everything, and a contact written during the build must not be
lost when the built index replaces the empty one.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.query_data import contacts
from node.content import row_of
from node.demo import PASSPHRASE, NodeProcess, wait_until
from node.local import Local
from protocol import limits
from protocol.record import Record
from tests.conftest import Net
from tests.test_knowwho import api_query
from tests.test_multinode import connected, link

pytestmark = pytest.mark.timeout(240)

CONTACTS = 100_000  # seconds of index build even on a fast machine: a window to query in


async def seed_contacts(node: NodeProcess) -> None:
    """CONTACTS network contacts from 20 other organisations, straight into the store."""
    local = await Local.open(node.data, PASSPHRASE.encode())
    try:
        datas = contacts(CONTACTS, 5, 20, await local.network_key())
        now = int(time.time() * 1000)
        for start in range(0, len(datas), 2000):
            rows = [row_of(Record.from_bytes(d), local=False) for d in datas[start : start + 2000]]
            await local.store.put_records(rows, now)
    finally:
        await local.close()


async def test_index_builds_behind_a_running_node_and_keeps_what_arrived_meanwhile(
    tmp_path: Path,
) -> None:
    node = NodeProcess(tmp_path, "A", "Amani Legal Aid")
    await node.init()
    await seed_contacts(node)
    try:
        await node.start()
        status = await node.api("/v1/status")
        # Running (listening, dialling, answering its API) before the index is complete.
        assert status["knowwho"]["ready"] is False, status["knowwho"]

        # Written while an index builds (the first one, or the rebuild that the peers circle
        # made for `--share peers` starts): kept aside and applied to the built index, and
        # shown at once by an index already built that answers meanwhile.
        await node.cli(
            "contact", "add", "--kind", "lawyer", "--name", "Wakili Zawadi Kiptoo",
            "--region", "KE-30", "--lang", "sw", "--channel", "phone:+254700999111",
            "--share", "peers",
        )  # fmt: skip
        during = await api_query(node, text="zawadi kiptoo")  # waits for the first build
        assert [r["name"] for r in during["results"]] == ["Wakili Zawadi Kiptoo"]
        status = await node.api("/v1/status")
        assert status["knowwho"] == {"ready": True, "contacts": CONTACTS + 1}
        broad = await api_query(node, kind="lawyer", limit=200)
        assert len(broad["results"]) == 200  # ~10 % of 20,000 are lawyers
    finally:
        await node.stop()

    # What the index made of every record is cached for the next start: the seeded ones by
    # the build, the one written while it ran by the running node.
    local = await Local.open(node.data, PASSPHRASE.encode())
    try:
        cached = [
            (rid, p) async for rows in local.store.opened_of_kind("contact") for rid, p, _ in rows
        ]
        assert len(cached) == CONTACTS + 1 and all(p is not None for _, p in cached)
    finally:
        await local.close()
    try:
        await node.start()
        again = await api_query(node, text="zawadi kiptoo")
        assert [r["name"] for r in again["results"]] == ["Wakili Zawadi Kiptoo"]
        assert (await node.api("/v1/status"))["knowwho"]["contacts"] == CONTACTS + 1
    finally:
        await node.stop()


async def test_a_peer_query_during_the_build_is_refused_at_once_not_left_waiting(
    net: Net,
) -> None:
    """B asks A across the network while A still builds its index: A answers `refused`
    at once (B does not wait for a timeout), then answers in full once it is ready."""
    a = await net.node("A", "Amani Legal Aid")
    b = await net.node("B", "Pwani Rights")
    await link(a, b)
    for node in (a, b):  # once connected, both trust each other: no redeem at the restart
        await node.start()
    await wait_until("linked", lambda: connected(b, 1))
    for node in (a, b):
        await node.stop()
    await seed_contacts(a)  # uncached: A opens every one at its next start (seconds)

    await a.start()
    await b.start()
    await wait_until("reconnected", lambda: connected(b, 1))
    assert (await a.api("/v1/status"))["knowwho"]["ready"] is False, "A built too fast"
    started = time.monotonic()
    during = await api_query(b, kind="lawyer", network=True, depth=1)
    waited = time.monotonic() - started
    # Refused, not answered once the build was over (nor timed out). (B may already list
    # some of A's contacts: they reach it by sync, which A serves while it builds.)
    assert during["refused"] == 1 and during["timed_out"] == 0, during
    assert waited < limits.QUERY_TIMEOUT_MS / 1000 / 2, waited

    await wait_until("A ready", lambda: _ready(a), timeout=60)
    after = await api_query(b, kind="lawyer", network=True, depth=1)
    assert after["refused"] == 0 and len(after["results"]) == limits.DEFAULT_RESULTS, after


async def _ready(node: NodeProcess) -> bool:
    return bool((await node.api("/v1/status"))["knowwho"]["ready"])
