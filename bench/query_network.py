"""`python -m bench.query_network [--json] [--nodes N]`: network know-who queries.

N (default 30) real `canopy run` processes on 127.0.0.1 in a random trust graph (mean
degree 3), each holding its own network-scoped contacts (written into its store before it
starts). Every node's peers vouch for it, so the web of trust is populated. Then 100
`canopy query --network` equivalents (POST /v1/query, depth 2) from random nodes: the time
until the asker has every answer (or its timeout), p50 and p95. The asker returns as soon as
every asked peer has answered (or its connection closed), so a query slower than that is
one that waited for QUERY_TIMEOUT_MS: those are counted, with the peers that did not
answer, refused, or were skipped as busy (our allowance with them spent).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random as stdrandom
import sys
import time

import nacl.utils

from bench.data import create_dir, link_all, network_key, progress
from bench.harness import (
    Node,
    Result,
    free_port,
    random_graph,
    start_all,
    stop_all,
    wait_for,
    workspace,
)
from bench.query_data import REGIONS, contacts, pctl
from node.clock import now_ms
from node.content import row_of
from node.directory import open_quietly
from node.local import Local
from protocol.contact import KINDS, Vouch, VouchAbout
from protocol.envelope import seal_record
from protocol.identity import NodeId
from protocol.limits import DEFAULT_CONTACT_LIFETIME_MS
from protocol.record import Kind, Scope

SEED = 71
GRAPH_SEED = 4243


async def run(n_nodes: int = 30, per_node: int = 20, queries: int = 100) -> Result:
    res = Result("query-network")
    key = network_key(SEED)
    edges = random_graph(n_nodes, 3.0, GRAPH_SEED)
    async with workspace("query-network") as root:
        dirs = [await create_dir(root / f"n{i}", f"n{i}", free_port(), key) for i in range(n_nodes)]
        await link_all(dirs, edges)
        datas = contacts(n_nodes * per_node, SEED, 1, key)
        now = now_ms()
        for i, d in enumerate(dirs):
            local = await Local.open(d.path, None)
            try:
                # Re-author this node's share of the contacts as its own records.
                own = []
                for data in datas[i * per_node : (i + 1) * per_node]:
                    opened = open_quietly(local, key, data)
                    assert opened is not None
                    own.append(
                        seal_record(
                            local.identity,
                            Kind.CONTACT,
                            opened[1].content,
                            created=now,
                            expires=now + DEFAULT_CONTACT_LIFETIME_MS,
                            scope=Scope.NETWORK,
                            recipients=(),
                            network_key=key,
                            random=nacl.utils.random,
                        )
                    )
                for u, v in edges:  # vouch for every peer: the web of trust
                    if i in (u, v):
                        other = NodeId.from_text(dirs[v if i == u else u].node_id)
                        own.append(
                            seal_record(
                                local.identity,
                                Kind.VOUCH,
                                Vouch(VouchAbout.PEER, other.raw).to_content(),
                                created=now,
                                expires=now + DEFAULT_CONTACT_LIFETIME_MS,
                                scope=Scope.NETWORK,
                                recipients=(),
                                network_key=key,
                                random=nacl.utils.random,
                            )
                        )
                await local.store.put_records([row_of(r, local=True) for r in own], now)
            finally:
                await local.close()
        nodes = [Node(d) for d in dirs]
        progress(f"starting {n_nodes} nodes…")
        await start_all(nodes)
        total = n_nodes * per_node

        counts: list[int] = []

        async def settled() -> bool:
            counts[:] = [(await n.status())["records"].get("contact", 0) for n in nodes]
            return all(c >= total for c in counts)

        try:
            await wait_for("contacts to spread", settled, timeout=90, interval=0.5)
        except TimeoutError:  # measure anyway: queries work on whatever has spread
            res.notes.append(f"not fully spread after 90 s: min {min(counts)}/{total} contacts")
        rng = stdrandom.Random(SEED)
        latencies: list[float] = []
        local_latencies: list[float] = []
        totals = dict.fromkeys(("asked", "answered", "refused", "busy", "lost", "timed_out"), 0)
        waited = 0  # queries in which some peer never answered (the asker hit its timeout)
        kinds = list(KINDS)
        for q in range(queries):
            node = rng.choice(nodes)
            body = {"kind": rng.choice(kinds), "region": rng.choice(REGIONS), "network": True}
            if q % 3 == 0:
                body.pop("region")
            assert node._http is not None
            t0 = time.perf_counter()
            async with node._http.post(node.api + "/v1/query", json=body) as response:
                result = await response.json()
            latencies.append((time.perf_counter() - t0) * 1000)
            # The floor in the same run: the same query on the same node, its replica only.
            t0 = time.perf_counter()
            async with node._http.post(
                node.api + "/v1/query", json={**body, "network": False}
            ) as response:
                await response.read()
            local_latencies.append((time.perf_counter() - t0) * 1000)
            for key in totals:
                totals[key] += int(result[key])
            waited += int(result["timed_out"]) > 0
            await asyncio.sleep(0.05)
        await stop_all(nodes)
    res.add("nodes", "nodes", n_nodes, "", fmt="{:,.0f}")
    res.add("edges", "trust edges", len(edges), "", fmt="{:,.0f}")
    res.add("p50_ms", "network query p50 (depth 2)", pctl(latencies, 0.5), "ms")
    res.add("p95_ms", "network query p95 (depth 2)", pctl(latencies, 0.95), "ms", target=500.0)
    local_p50 = pctl(local_latencies, 0.5)
    res.add("local_p50_ms", "same query, own replica only, p50", local_p50, "ms")
    res.add(
        "ratio_network_local",
        "ratio network/own-replica p50",
        pctl(latencies, 0.5) / local_p50 if local_p50 else None,
        "x",
    )
    res.add("timeouts", "queries that waited for the timeout", waited, "", fmt="{:,.0f}")
    res.add("asked", "peers asked (all queries)", totals["asked"], "", fmt="{:,.0f}")
    res.add("unanswered", "peers that did not answer in time", totals["timed_out"], "",
            fmt="{:,.0f}")  # fmt: skip
    res.add("lost", "peers whose connection closed first", totals["lost"], "", fmt="{:,.0f}")
    res.add("refused", "peers that refused (rate limit)", totals["refused"], "", fmt="{:,.0f}")
    res.add("busy", "peers skipped (allowance spent)", totals["busy"], "", fmt="{:,.0f}")
    res.notes.append("latency = POST /v1/query until the asker ranked every answer")
    return res


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.query_network")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    result = asyncio.run(run(args.nodes, queries=args.queries))
    print(json.dumps(result.to_json(), indent=2) if args.json else result.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
