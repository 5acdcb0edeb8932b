"""`python -m bench guides`: the library at scale (issue 14, "A fast library").

1. `canopy guides` with 10,000 readable guides, end to end (a `canopy` process, no node
   running: the index read back from the sealed opened cache), beside a ceiling measured in
   the same run: a Python process that reads the same rows with sqlite3 and nothing else.
2. `--search` over 100,000 guides in a running node (`GET /v1/guides?search=`, the route
   `canopy guides --search` takes), p95 over a few hundred two-word searches, three ways:
   in the node (what the answer cost it, from its `Server-Timing` header: the match, the
   rows and the JSON), the local API round trip (that, and HTTP), beside the same round
   trip to the node's `/healthz` (what no answer can go below); and a `canopy guides
   --search` process end to end, beside `canopy --help` (Python and the CLI's imports).
Guides: network-scoped, 20 authors, 6 languages (a third are translations of an
original), 12 topics, ~50 words each from a 2,000-word vocabulary.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random as stdrandom
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import nacl.utils

from bench.data import BATCH, create_dir, derive, network_key, progress
from bench.harness import ROOT, Node, Result, free_port
from bench.query_data import pctl
from node.clock import now_ms
from node.content import row_of
from node.local import Local
from protocol import limits
from protocol.envelope import seal_record
from protocol.identity import Identity
from protocol.record import Kind, Record, Scope

SEED = 14
LANGS = ("en", "fr", "ar", "es", "fa", "ru")
TOPICS = ("digital", "legal", "physical", "wellbeing", "travel", "detention", "protest",
          "devices", "phones", "documents", "funding", "networks")  # fmt: skip
REGIONS = ("KE", "KE-30", "CO", "CO-ANT", "SY", "MM", "IR", "RU", "MX", "PH")
_SYLLABLES = ("ka", "lo", "mi", "ra", "te", "su", "no", "vi", "da", "pe", "zo", "bu")


def vocabulary(n: int = 2000) -> list[str]:
    rng = stdrandom.Random(SEED)
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def _chunk(job: tuple[int, int, int, bytes]) -> list[bytes]:
    start, count, base_ms, net_key = job
    rng = stdrandom.Random(SEED * 7919 + start)
    words = vocabulary()
    authors = [Identity(derive(SEED, f"org-{i}")) for i in range(20)]
    out = []
    originals: list[bytes] = []
    for i in range(start, start + count):
        created = base_ms + i
        content: dict[str, object] = {
            "title": " ".join(rng.sample(words, 4)).capitalize(),
            "text": " ".join(rng.choice(words) for _ in range(50)),
            "lang": LANGS[i % len(LANGS)],
            "region": rng.choice(REGIONS),
            "topics": rng.sample(TOPICS, 2),
            "format": "text/markdown",
        }
        if originals and i % 3 == 0:
            content["translation_of"] = rng.choice(originals[-50:])
        record = seal_record(
            authors[i % len(authors)],
            Kind.GUIDE,
            content,  # type: ignore[arg-type]
            created=created,
            expires=created + limits.DEFAULT_GUIDE_LIFETIME_MS,
            scope=Scope.NETWORK,
            recipients=(),
            network_key=net_key,
            random=nacl.utils.random,
        )
        if "translation_of" not in content:
            originals.append(record.id)
        out.append(record.to_bytes())
    return out


def guides(n: int, net_key: bytes) -> list[bytes]:
    base = now_ms() - 30 * 24 * 3600 * 1000
    step = 2500
    jobs = [(s, min(step, n - s), base, net_key) for s in range(0, n, step)]
    started = time.monotonic()
    progress(f"sealing {n:,} guide records on 2 cores…")
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(min(2, os.cpu_count() or 1), mp_context=ctx) as pool:
        out = [r for chunk in pool.map(_chunk, jobs) for r in chunk]
    progress(f"sealed in {time.monotonic() - started:.1f} s")
    return out


async def _filled(path: Path, label: str, datas: list[bytes], key: bytes) -> Path:
    d = await create_dir(path, label, free_port(), key)
    local = await Local.open(d.path, None)
    try:
        now = now_ms()
        for start in range(0, len(datas), BATCH):
            chunk = datas[start : start + BATCH]
            await local.store.put_records(
                [row_of(Record.from_bytes(x), local=False) for x in chunk], now
            )
    finally:
        await local.close()
    return d.path


_PYCACHE = Path(tempfile.gettempdir()) / "canopy-bench-pycache"


def _timed(argv: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANOPY_")}
    env["PYTHONPATH"] = str(ROOT)
    # Bytecode compiled once and kept, as an installed package has it (a test environment's
    # PYTHONDONTWRITEBYTECODE would make every run compile every module again).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(_PYCACHE)
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=300)
    took = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{argv[2:5]} failed: {done.stderr.decode()[-500:]}")
    return took


_CEILING = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
n = sum(1 for _ in conn.execute("SELECT id, opened FROM records WHERE kind = 'guide'"))
print(n)
"""


async def _searched(
    http: aiohttp.ClientSession, node: Node, query: str
) -> tuple[dict[str, Any], tuple[float, float]]:
    """A listing from the node's local API, and what it cost the node (ms: time, CPU)."""
    async with http.get(f"{node.api}/v1/guides?{query}") as response:
        if response.status != 200:
            raise RuntimeError(f"/v1/guides?{query}: HTTP {response.status}")
        timing = dict(
            (name.strip(), float(dur)) for name, _, dur in
            (part.partition(";dur=") for part in response.headers["Server-Timing"].split(","))
        )  # fmt: skip
        data: dict[str, Any] = await response.json()
        return data, (timing["index"], timing["cpu"])


async def run(
    listed: int = 10_000, searched: int = 100_000, searches: int = 300, cli_searches: int = 15
) -> Result:
    res = Result("guides")
    root = Path(tempfile.mkdtemp(prefix="canopy-bench-guides-"))
    try:
        key = network_key(SEED)
        datas = guides(max(listed, searched), key)
        # 1. canopy guides, end to end, no node running
        small = await _filled(root / "L", "L", datas[:listed], key)
        cli = [sys.executable, "-m", "cli", "--data", str(small), "guides"]
        progress("the first `canopy guides` opens every guide and caches what it made…")
        first = _timed(cli)
        progress("`canopy guides` from the sealed cache, and the sqlite3 ceiling…")
        runs = [_timed(cli) for _ in range(5)]
        ceilings = [_timed([sys.executable, "-c", _CEILING, str(small / "canopy.db")])]
        ceilings += [_timed([sys.executable, "-c", _CEILING, str(small / "canopy.db")])]
        listing_s, ceiling_s = statistics.median(runs), min(ceilings)
        res.add("guides_listed", "guides listed", listed, "", fmt="{:,.0f}")
        res.add("list_s", "canopy guides, end to end (median of 5)", listing_s, "s", target=0.5)
        res.add("list_first_s", "the first run (nothing cached yet)", first, "s")
        res.add("ceiling_list_s", "ceiling: python + sqlite3 reading the rows", ceiling_s, "s")
        res.add("ratio_list_ceiling", "ratio canopy guides/ceiling", listing_s / ceiling_s, "x")

        # 2. --search in a running node
        big = await _filled(root / "S", "S", datas[:searched], key)
        del datas
        from bench.data import NodeDir

        node = Node(NodeDir("S", big, free_port(), ""))
        progress(f"starting a node with {searched:,} guides (its first build opens them)…")
        await node.start()
        try:
            t0 = time.monotonic()
            stalls = 0  # status requests that waited over 30 s (the build held the loop)
            while True:
                try:
                    if (await node.status())["library"]["ready"]:
                        break
                except TimeoutError:
                    stalls += 1
                if time.monotonic() - t0 > 900:
                    raise RuntimeError("the library was not built in 15 minutes")
                await asyncio.sleep(0.2)
            build_s = time.monotonic() - t0
            rss_mb = node.rss_kb() / 1024
            peak_mb = node.rss_kb("VmHWM") / 1024
            rng = stdrandom.Random(SEED)
            words = vocabulary()
            latencies, floor, inside, cpu, hits, counts = [], [], [], [], [], []
            auth = {"Authorization": f"Bearer {node.token}"}  # one session, as node.get has
            http = aiohttp.ClientSession(headers=auth, timeout=aiohttp.ClientTimeout(30))
            for _ in range(searches):
                query = f"{rng.choice(words)}%20{rng.choice(words)[:3]}"
                t0 = time.perf_counter()
                answer, took = await _searched(http, node, f"search={query}&prefer=en&limit=50")
                latencies.append((time.perf_counter() - t0) * 1000)
                inside.append(took[0])
                cpu.append(took[1])
                hits.append(len(answer["guides"]))
                counts.append(int(answer["lessons"]))
                t0 = time.perf_counter()
                await node.get("/healthz")
                floor.append((time.perf_counter() - t0) * 1000)
            await http.close()
            progress("`canopy guides --search` processes against the running node…")
            cli_runs, help_runs = [], []
            for _ in range(cli_searches):
                query = f"{rng.choice(words)} {rng.choice(words)[:3]}"
                argv = [sys.executable, "-m", "cli", "--data", str(big), "guides"]
                cli_runs.append(_timed([*argv, "--search", query, "--limit", "50"]) * 1000)
                help_runs.append(_timed([sys.executable, "-m", "cli", "--help"]) * 1000)
        finally:
            await node.stop()
        p95, floor95 = pctl(latencies, 0.95), pctl(floor, 0.95)
        inside95 = pctl(inside, 0.95)
        res.add("guides_searched", "guides in the running node", searched, "", fmt="{:,.0f}")
        res.add("library_build_s", "node start: library built (first, opens all)", build_s, "s")
        res.add("library_rss_mb", "node RSS once built", rss_mb, "MB", fmt="{:,.0f}")
        res.add("library_peak_mb", "node peak RSS (VmHWM)", peak_mb, "MB", fmt="{:,.0f}")
        res.add("build_stalls", "status requests unanswered 30 s in the build", stalls, "",
                fmt="{:,.0f}")  # fmt: skip
        res.add("search_node_p50_ms", "--search in the node p50", pctl(inside, 0.5), "ms")
        res.add("search_node_p95_ms", "--search in the node p95", inside95, "ms", target=20.0)
        res.add("search_cpu_p95_ms", "--search in the node, its CPU p95", pctl(cpu, 0.95), "ms")
        res.add("search_p50_ms", "--search p50 (local API round trip)", pctl(latencies, 0.5), "ms")
        res.add("search_p95_ms", "--search p95 (local API round trip)", p95, "ms", target=20.0)
        res.add("ceiling_p95_ms", "ceiling: /healthz round trip p95", floor95, "ms")
        res.add("ratio_search_ceiling", "ratio search/ceiling (p95)", p95 / floor95, "x")
        res.add("search_cli_p50_ms", "canopy guides --search, end to end p50",
                pctl(cli_runs, 0.5), "ms")  # fmt: skip
        res.add("ceiling_cli_p50_ms", "ceiling: canopy --help, end to end p50",
                pctl(help_runs, 0.5), "ms")  # fmt: skip
        res.add("ratio_cli_ceiling", "ratio search process/--help (p50)",
                pctl(cli_runs, 0.5) / pctl(help_runs, 0.5), "x")  # fmt: skip
        res.details = {
            "list_runs_s": runs,
            "mean_hits": sum(hits) / len(hits),
            "mean_lessons_matched": sum(counts) / len(counts),
            "cli_search_ms": cli_runs,
        }
        res.notes.append(
            "listing = a `canopy guides` process: unlock, read the sealed cached entry of "
            "every guide, group into lessons, print the table; search = two words (the "
            "second a prefix) over title and text, the newest 50 lessons and the count of all"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return res
