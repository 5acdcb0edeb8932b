"""`python -m bench.query_local [--json] [--contacts N]`: the know-who index at scale.

Seals N (default 100,000) network-scoped contacts from 50 organisations into a real data
directory, then measures the index build a node does at start (read what the index made of
each record, cached under the storage key, and index it), the first build that fills that
cache (read + unseal + check + index), and the latency of 1,000 local queries (the same code
path as `canopy query` on a running node).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random as stdrandom
import shutil
import sys
import tempfile
import time
from pathlib import Path

import msgpack

from bench.data import BATCH, create_dir, network_key, progress
from bench.harness import Result, free_port
from bench.query_data import LANGS, REGIONS, SPECIALTIES, contacts, pctl
from node.clock import now_ms
from node.contact_rows import hit_row
from node.content import row_of
from node.local import Local
from node.opened_cache import build_index
from protocol import limits
from protocol.contact import KINDS, Filter
from protocol.envelope import unseal
from protocol.record import Kind, Record

SEED = 70


def _filters(rng: stdrandom.Random, n: int) -> list[Filter]:
    kinds = list(KINDS)
    out = []
    for i in range(n):
        shape = i % 5
        if shape == 0:
            out.append(Filter.build(kind=rng.choice(kinds), region=rng.choice(REGIONS)))
        elif shape == 1:
            out.append(
                Filter.build(
                    kind=rng.choice(kinds), region=rng.choice(REGIONS), lang=rng.choice(LANGS)
                )
            )
        elif shape == 2:
            out.append(Filter.build(text=rng.choice(SPECIALTIES), region=rng.choice(REGIONS)))
        elif shape == 3:
            out.append(Filter.build(text="mombasa land", kind="lawyer", lang="sw"))
        else:
            out.append(Filter.build(kind=rng.choice(kinds)))  # broad: ~10% of everything
    return out


async def run(n_contacts: int = 100_000, queries: int = 1000) -> Result:
    res = Result("query-local")
    root = Path(tempfile.mkdtemp(prefix="canopy-bench-query-local-"))
    try:
        key = network_key(SEED)
        datas = contacts(n_contacts, SEED, 50, key)
        d = await create_dir(root / "A", "A", free_port(), key)
        local = await Local.open(d.path, None)
        try:
            now = now_ms()
            for start in range(0, len(datas), BATCH):
                rows = [
                    row_of(Record.from_bytes(x), local=False) for x in datas[start : start + BATCH]
                ]
                await local.store.put_records(rows, now)
            progress("stored; the raw ceiling: read and decrypt every contact, nothing else…")
            cold_ceilings = [await _open_ceiling(local, key) for _ in range(2)]
            progress("the first build: nothing cached, every record opened…")
            await local.store.forget_opened()
            t0 = time.perf_counter()
            index = await build_index(local, now)
            cold = time.perf_counter() - t0
            progress("building the index as a node does at start (cached)…")
            ceilings = [await _cached_ceiling(local) for _ in range(2)]
            builds = []
            for _ in range(2):
                del index  # not two indexes in memory at once
                t0 = time.perf_counter()
                index = await build_index(local, now)
                builds.append(time.perf_counter() - t0)
            assert len(index.entries) == n_contacts, len(index.entries)
            rng = stdrandom.Random(SEED)
            latencies = []
            hits = []
            for flt in _filters(rng, queries):
                t0 = time.perf_counter()
                distances = index.distances([])
                found = index.search(flt, now, distances, limits.DEFAULT_RESULTS)
                rows = [hit_row(h, index.me, {}, distances) for h in found]
                latencies.append((time.perf_counter() - t0) * 1000)
                hits.append(len(rows))
        finally:
            await local.close()
        res.add("contacts", "contacts indexed", n_contacts, "", fmt="{:,.0f}")
        res.add("build_s", "index build at start", min(builds), "s", target=3.0)
        res.add("ceiling_s", "raw ceiling: read + decrypt + unpack cache", min(ceilings), "s")
        res.add("ratio_build_ceiling", "ratio build/ceiling", min(builds) / min(ceilings), "x")
        res.add("cold_build_s", "first build (nothing cached yet)", cold, "s")
        res.add(
            "cold_ceiling_s", "raw ceiling: read + decrypt records only", min(cold_ceilings), "s"
        )
        res.add("ratio_cold_ceiling", "ratio first build/ceiling", cold / min(cold_ceilings), "x")
        res.add("query_p50_ms", "local query p50", pctl(latencies, 0.5), "ms")
        res.add("query_p95_ms", "local query p95", pctl(latencies, 0.95), "ms", target=20.0)
        res.add("query_max_ms", "local query max", max(latencies), "ms")
        res.details = {"builds_s": builds, "mean_hits": sum(hits) / len(hits)}
        res.notes.append(
            "build at start = read what the index made of every contact (cached, sealed under "
            "the storage key), open it, index it; first build = read every contact record, "
            "unseal it (network slot first), check every field, index it, cache the result; "
            "query = trust distances + search + result rows, top 20"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return res


async def _open_ceiling(local: Local, key: bytes) -> float:
    """What the build cannot go below with these libraries in one process: read every
    contact row (storage decryption included), open its envelope through the network slot
    and unpack its body. No validation, no index."""
    t0 = time.perf_counter()
    for data in await local.store.records_of_kind(str(Kind.CONTACT)):
        payload = msgpack.unpackb(data)[6]
        msgpack.unpackb(unseal(payload, local.identity, key, network_first=True))
    return time.perf_counter() - t0


async def _cached_ceiling(local: Local) -> float:
    """The same floor for a build from the cache: read and open every cached value and
    unpack it. No objects, no index."""
    t0 = time.perf_counter()
    async for rows in local.store.opened_of_kind(str(Kind.CONTACT)):
        for _, plain, _ in rows:
            assert plain is not None
            msgpack.unpackb(plain, use_list=False)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.query_local")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args()
    result = asyncio.run(run(args.contacts, args.queries))
    print(json.dumps(result.to_json(), indent=2) if args.json else result.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
