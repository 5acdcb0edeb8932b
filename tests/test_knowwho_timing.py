"""Network queries never wait on silence: real `canopy run` processes on 127.0.0.1.

Every Query gets exactly one Answer, a sender keeps to each peer's query allowance (so an
honest forwarder is never refused, penalised or cut off for its neighbours' traffic), and
an asker stops waiting for a peer whose connection closed. Before these rules, a hub that
forwarded for its neighbours went over a peer's per-minute limit, was cut off by it with
its `refused` answer still queued, and then waited the asker's full QUERY_TIMEOUT_MS.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from node.demo import NodeProcess, wait_until
from protocol import limits
from protocol.answers import forward_timeout
from tests.conftest import Net
from tests.test_knowwho import add, api_query, line
from tests.test_multinode import connected, link

pytestmark = pytest.mark.timeout(180)

# Far below QUERY_TIMEOUT_MS and QUERY_FORWARD_TIMEOUT_MS: a query that waited for either
# of them fails, while a loaded 2-core machine still has room.
PROMPT_MS = 1000


async def peer_row(node: NodeProcess, peer: NodeProcess) -> dict[str, Any]:
    rows = (await node.api("/v1/peers"))["peers"]
    row: dict[str, Any] = next(r for r in rows if r["id"] == peer.node_id)
    return row


def test_each_forwarder_waits_less_than_the_one_before_and_the_asker() -> None:
    waits = [forward_timeout(d) for d in range(2, limits.MAX_QUERY_DEPTH + 1)]
    assert waits == sorted(waits) and len(set(waits)) == len(waits)
    assert all(w >= limits.QUERY_FORWARD_TIMEOUT_MS / 1000 for w in waits)
    assert forward_timeout(limits.MAX_QUERY_DEPTH) < limits.QUERY_TIMEOUT_MS / 1000


async def test_rate_limited_hub_gets_prompt_answers_and_is_never_cut_off(net: Net) -> None:
    # A - B - C. C cuts a peer off at its first penalty (sync.min_score 96), so a single
    # query of B's over C's per-minute limit would end the B-C connection.
    a, b, c = await line(net, CANOPY_SYNC_MIN_SCORE="96")
    await add(c, "network")

    limit = limits.MAX_QUERIES_PER_PEER_PER_MINUTE
    forwarded = limit // 2  # A's depth-2 queries: B forwards each to C on its own behalf
    results = [await api_query(a, network=True, depth=2, kind="lawyer") for _ in range(forwarded)]
    # B's own queries to C: together with what it forwarded, over C's limit.
    results += [
        await api_query(b, network=True, depth=1, kind="lawyer")
        for _ in range(limit - forwarded + 3)
    ]
    # And A's once more: B's allowance with C is spent, so B answers from what it holds.
    results.append(await api_query(a, network=True, depth=2, kind="lawyer"))

    slow = [r["elapsed_ms"] for r in results if r["elapsed_ms"] >= PROMPT_MS]
    assert slow == [], f"queries waited for a timeout: {slow} ms"
    assert all(r["timed_out"] == 0 and r["lost"] == 0 for r in results)
    assert all(r["refused"] == 0 for r in results)  # nobody went over a peer's limit
    assert all(r["asked"] == 1 and r["answered"] == 1 for r in results[:forwarded])
    # B's last three own queries found C busy (and asked only A) instead of being refused.
    assert [(r["asked"], r["busy"]) for r in results[limit : limit + 3]] == [(1, 1)] * 3
    assert results[-1]["answered"] == 1
    # C never penalised B, and the two are still connected.
    row = await peer_row(c, b)
    assert row["state"] == "connected" and row["score"] == 100 and row["banned_for_s"] == 0
    assert (await c.api("/v1/queries"))["answered"] == limit


async def test_asker_stops_waiting_when_a_peer_connection_closes(net: Net) -> None:
    a = await net.node("A", "Alpha Legal")
    b = await net.node("B", "Beta Rights")
    for node in (a, b):
        await node.start()
    await link(a, b)
    await wait_until("link", lambda: connected(a, 1))
    # B stops answering (frozen), then dies while A's query is open: its connection closes
    # and nothing will come, so A returns then rather than after QUERY_TIMEOUT_MS.
    assert b.proc is not None
    b.proc.send_signal(signal.SIGSTOP)
    try:
        pending = asyncio.create_task(api_query(a, network=True, depth=2, kind="lawyer"))
        await asyncio.sleep(0.5)
        await b.kill9()
        result = await pending
    finally:
        if b.proc is not None:
            b.proc.send_signal(signal.SIGCONT)
    assert result["elapsed_ms"] < limits.QUERY_TIMEOUT_MS - PROMPT_MS
    assert result["asked"] == 1 and result["lost"] == 1 and result["timed_out"] == 0
