"""The benchmarks of issues 3 and 4. Each is `async def NAME(**sizes) -> Result`; sizes default to
the issue's full configuration, and the smoke test passes tiny ones."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack

from bench import data
from bench.data import NodeDir, create_dir, derive, insert, link_all, network_key, progress
from bench.harness import (
    ROOT,
    Node,
    Result,
    ceiling,
    degrees,
    free_port,
    load_average,
    now_ms,
    random_graph,
    start_all,
    stop_all,
    wait_for,
    workspace,
)

SEED = 1  # record stream; its author is the publishing node in every benchmark
GRAPH_SEED = 4242
NO_TRAFFIC = "n/a (node does not report traffic yet)"
TRAFFIC_KEYS = (
    "bytes_sent",
    "bytes_received",
    "record_bytes_sent",
    "record_bytes_received",
    "reconcile_rounds",
)


async def _publisher_dir(root: Path, label: str = "A") -> NodeDir:
    return await create_dir(
        root / label, label, free_port(), network_key(SEED), seed=derive(SEED, "author")
    )


async def _plain_dir(root: Path, label: str) -> NodeDir:
    return await create_dir(root / label, label, free_port(), network_key(SEED))


def _add_ceiling(
    res: Result,
    ceil: dict[str, Any],
    node_rate: float | None,
    what: str,
    node_cpu: tuple[float, int] | None = None,
) -> None:
    """The node's rate beside the libraries' ceiling and our own one-process floor; with
    `node_cpu` (CPU seconds of every node process over the span measured, records), also
    CPU per record beside the ceiling's: a figure the load of a shared machine moves far
    less than a rate (a starved process is slow, not busier)."""
    res.add(
        "ceiling_records_per_s",
        "ceiling: the libraries alone (1 process)",
        ceil["records_per_s"],
        "records/s",
        fmt="{:,.0f}",
    )
    res.add(
        "floor_records_per_s",
        "floor: our own ingest path (1 process)",
        ceil["floor"]["records_per_s"],
        "records/s",
        fmt="{:,.0f}",
    )
    res.add(f"{what}_records_per_s", f"node {what} rate", node_rate, "records/s", fmt="{:,.0f}")
    ratio = node_rate / ceil["records_per_s"] if node_rate else None
    res.add("ratio_to_ceiling", "ratio node/ceiling", ratio, "x", fmt="{:.2f}")
    floor = node_rate / ceil["floor"]["records_per_s"] if node_rate else None
    res.add("ratio_to_floor", "ratio node/floor", floor, "x", fmt="{:.2f}")
    if node_cpu is not None:
        cpu_s, records = node_cpu
        node_us = cpu_s / records * 1e6
        res.add(
            "ceiling_cpu_us",
            "ceiling: the libraries' CPU per record",
            ceil["cpu_us_per_record"],
            "µs",
            fmt="{:,.0f}",
        )
        res.add(
            "node_cpu_us",
            f"node {what}: CPU per record (all processes)",
            node_us,
            "µs",
            fmt="{:,.0f}",
        )
        res.add(
            "ratio_cpu_to_ceiling",
            "ratio ceiling CPU/node CPU, per record",
            ceil["cpu_us_per_record"] / node_us,
            "x",
            fmt="{:.2f}",
        )
    res.add("load_at_ceiling", "load average when the ceiling was measured", ceil["load"], "")
    res.add("load_at_end", "load average at the end of the run", load_average(), "")
    res.details["ceiling"] = ceil


def _traffic(status: dict[str, Any]) -> dict[str, int] | None:
    traffic = status.get("traffic")
    if not isinstance(traffic, dict) or not all(k in traffic for k in TRAFFIC_KEYS):
        return None
    return {k: int(traffic[k]) for k in TRAFFIC_KEYS}


async def _sync_pair(
    res: Result, n: int, datas: list[bytes], root: Path, timeout: float
) -> tuple[Node, Node, float]:
    """A holds `datas`, B is empty and trusts A; start both; returns (A, B, seconds)."""
    a = await _publisher_dir(root, "A")
    b = await _plain_dir(root, "B")
    progress(f"inserting {n:,} records into A…")
    await insert(a.path, datas, local=True)
    await link_all([a, b], [(0, 1)])
    progress("measuring the ceiling and the floor on the same records…")
    ceil = await ceiling(datas, network_key(SEED), root)
    # A published its records while it ran, so it holds their opened copies (as C does in
    # catch-up); B is new.
    progress(f"A runs once alone, opening the {n:,} records it holds…")
    first = await _ran_before(a, timeout)
    na, nb = Node(a), Node(b)
    progress("starting A and B; waiting until B holds every record…")
    t0 = time.monotonic()
    await asyncio.gather(na.start(), nb.start())
    running = max(na.running_at, nb.running_at)

    async def full() -> bool:
        return await nb.total() >= n

    done = await wait_for(f"B to hold {n:,} records", full, timeout, 0.1)
    elapsed = done - t0
    cpu_a, cpu_b = na.cpu_s(), nb.cpu_s()  # start-up included, like the time
    res.add("records", "records synced", n, "", fmt="{:,.0f}")
    res.add("seconds", "time from start to all held", elapsed, "s")
    res.add("seconds_after_running", "  of which after both were running", done - running, "s")
    res.add("cpu_a", "CPU used by A, start-up included", cpu_a, "s")
    res.add("cpu_b", "CPU used by B, start-up included", cpu_b, "s")
    res.add("first_start", "A's first start, before (its library built)", first, "s")
    _add_ceiling(res, ceil, n / elapsed, "sync", (cpu_a + cpu_b, n))
    return na, nb, elapsed


# -- sync ----------------------------------------------------------------------------------------


async def sync(records: int = 100_000, timeout: float = 900.0) -> Result:
    res = Result("sync")
    datas = data.records(records, SEED)
    async with workspace("sync") as root:
        _, nb, _ = await _sync_pair(res, records, datas, root, timeout)
        figures = {f["key"]: f for f in res.figures}
        ratio = figures["ratio_to_ceiling"]["value"]
        res.add(
            "goal_both_cores",
            "goal: the libraries' ceiling, using both cores",
            ratio,
            "x",
            target=1.0,
            goal=">=",
            fmt="{:.2f}",
        )
        res.add("rss_b_mb", "B resident memory after sync", nb.rss_kb() / 1024, "MB", fmt="{:.1f}")
        res.add("hwm_b_mb", "B peak resident memory", nb.rss_kb("VmHWM") / 1024, "MB", fmt="{:.1f}")
    return res


# -- reconcile -----------------------------------------------------------------------------------


async def _reconcile_once(
    root: Path,
    base_a: NodeDir,
    base_b: NodeDir,
    extra_b: list[bytes],
    n: int,
    d: int,
    timeout: float,
) -> dict[str, Any]:
    """Copies of the prepared dirs; B gets the records that make the difference exactly d."""
    work = root / f"run-n{n}-d{d}"
    dirs = []
    for base in (base_a, base_b):
        target = work / base.label
        shutil.copytree(base.path, target)
        dirs.append(NodeDir(base.label, target, base.port, base.node_id))
    a_dir, b_dir = dirs
    if extra_b:
        await insert(b_dir.path, extra_b, local=False)
    na, nb = Node(a_dir), Node(b_dir)
    try:
        t0 = time.monotonic()
        await asyncio.gather(na.start(), nb.start())

        async def synced() -> bool:
            if await nb.total() < n:
                return False
            peers = [(await x.get("/v1/peers"))["peers"] for x in (na, nb)]
            return all(p and p[0].get("last_sync") for p in peers)

        done = await wait_for(f"n={n} d={d} to reconcile", synced, timeout, 0.1)
        # Let the counters settle: unchanged over one second.
        last: list[Any] = []
        while True:
            now = [_traffic(await x.status()) for x in (na, nb)]
            if now == last:
                break
            last = now
            await asyncio.sleep(1.0)
        out: dict[str, Any] = {"n": n, "d": d, "seconds": done - t0, "traffic": None}
        ta, tb = last
        if ta is not None and tb is not None:
            wire = ta["bytes_sent"] + tb["bytes_sent"]
            records_bytes = ta["record_bytes_sent"] + tb["record_bytes_sent"]
            out["traffic"] = {"A": ta, "B": tb}
            out["overhead_bytes"] = wire - records_bytes
            out["rounds"] = max(ta["reconcile_rounds"], tb["reconcile_rounds"])
        return out
    finally:
        await stop_all([na, nb])
        shutil.rmtree(work, ignore_errors=True)


async def reconcile(
    records: int = 100_000,
    diffs: tuple[int, ...] = (0, 10, 1000),
    scale: bool = True,
    timeout: float = 600.0,
) -> Result:
    res = Result("reconcile")
    sizes = [records, 2 * records] if scale else [records]
    datas = data.records(max(sizes), SEED)
    runs: list[dict[str, Any]] = []
    async with workspace("reconcile") as root:
        ceil: dict[str, Any] | None = None
        for n in sizes:
            ds = list(diffs) if n == records else [d for d in diffs if d == 10] or [diffs[-1]]
            top = max(ds)
            progress(f"preparing A with {n:,} records and B with {n - top:,}…")
            prep = root / f"prep-{n}"
            a = await _publisher_dir(prep, "A")
            b = await _plain_dir(prep, "B")
            await insert(a.path, datas[:n], local=True)
            await insert(b.path, datas[: n - top], local=False)
            await link_all([a, b], [(0, 1)])
            if ceil is None:
                missing = datas[n - top : n]
                ceil = await ceiling(missing, network_key(SEED), root)
            for d in ds:
                progress(f"reconciling n={n:,} d={d:,}…")
                run = await _reconcile_once(root, a, b, datas[n - top : n - d], n, d, timeout)
                runs.append(run)
            shutil.rmtree(prep, ignore_errors=True)
    res.details["runs"] = runs
    reported = all(r["traffic"] is not None for r in runs)
    for r in runs:
        tag = f"n={r['n']:,} d={r['d']:,}"
        key = f"n{r['n']}_d{r['d']}"
        over_target = rounds_target = None
        if r["n"] == records and r["d"] == 0:
            over_target, rounds_target = 1024.0, 1.0
        elif r["n"] == records and r["d"] == 10:
            over_target, rounds_target = 8192.0, 6.0
        res.add(f"{key}_seconds", f"{tag}: time to reconcile", r["seconds"], "s")
        res.add(
            f"{key}_overhead_bytes",
            f"{tag}: bytes besides records",
            r.get("overhead_bytes"),
            "B",
            target=over_target,
            fmt="{:,.0f}",
            missing=NO_TRAFFIC,
        )
        res.add(
            f"{key}_rounds",
            f"{tag}: round trips",
            r.get("rounds"),
            "",
            target=rounds_target,
            fmt="{:,.0f}",
            missing=NO_TRAFFIC,
        )
    by = {(r["n"], r["d"]): r for r in runs}
    small, big = by.get((records, 10)), by.get((2 * records, 10))
    growth = None
    if reported and small and big and small.get("overhead_bytes"):
        growth = 100.0 * (big["overhead_bytes"] / small["overhead_bytes"] - 1)
    if small and big:
        res.add(
            "growth_pct",
            "d=10 overhead growth when n doubles",
            growth,
            "%",
            target=25.0,
            fmt="{:.1f}",
            missing=NO_TRAFFIC,
        )
    if not reported:
        res.notes.append("GET /v1/status has no `traffic` field yet: bytes and rounds are n/a")
    assert ceil is not None
    top_run = by.get((records, max(diffs)))
    rate = top_run["d"] / top_run["seconds"] if top_run and top_run["d"] else None
    _add_ceiling(res, ceil, rate, f"d={max(diffs)} transfer")
    res.notes.append("node rate = d / (start of both nodes -> B holds n), start-up included")
    return res


# -- propagate -----------------------------------------------------------------------------------


async def _cluster(
    root: Path, n: int, degree: float, seed: int, env: dict[str, str] | None = None
) -> tuple[list[Node], list[tuple[int, int]]]:
    edges = random_graph(n, degree, seed)
    dirs = [await _publisher_dir(root, "N00")]
    for i in range(1, n):
        dirs.append(await _plain_dir(root, f"N{i:02d}"))
    await link_all(dirs, edges)
    nodes = [Node(d, env) for d in dirs]
    return nodes, edges


async def _wait_connected(nodes: list[Node], edges: list[tuple[int, int]], timeout: float) -> None:
    want = degrees(len(nodes), edges)

    async def linked() -> bool:
        got = await asyncio.gather(*(x.status() for x in nodes))
        return all(s["connected"] >= w for s, w in zip(got, want, strict=True))

    await wait_for("every trust edge to connect", linked, timeout, 0.2)


async def _fanout(root: Path, n_nodes: int, guides: list[bytes], timeout: float) -> dict[str, Any]:
    """`guides` published on node 0 of an n-node graph: seconds until every node holds all."""
    nodes, edges = await _cluster(root, n_nodes, 4.0, GRAPH_SEED + n_nodes)
    try:
        progress(f"starting {n_nodes} nodes…")
        await start_all(nodes)
        await _wait_connected(nodes, edges, 60)
        base = await asyncio.gather(*(x.total() for x in nodes))
        await asyncio.sleep(0.5)
        progress(f"publishing {len(guides):,} guides on one node…")
        t0 = time.monotonic()
        cpu0 = sum(x.cpu_s() for x in nodes)
        # What `canopy publish` does after sealing: one transaction, then wake the node.
        await insert(nodes[0].dir.path, guides, local=True)
        await nodes[0].notify()

        async def everyone() -> bool:
            got = await asyncio.gather(*(x.total() for x in nodes))
            return all(g >= b + len(guides) for g, b in zip(got, base, strict=True))

        done = await wait_for("every node to hold every guide", everyone, timeout, 0.05)
        cpu = sum(x.cpu_s() for x in nodes) - cpu0
        return {
            "seconds": done - t0,
            "nodes": n_nodes,
            "edges": edges,
            "guides": len(guides),
            "cpu_s": cpu,  # of every node, publishing included
        }
    finally:
        await stop_all(nodes)


async def _alerts_supported(node: Node) -> tuple[bool, str]:
    code, _, _ = await node.cli("alert", "--help")
    if code != 0:
        return False, "`canopy alert` does not exist yet"
    try:
        got = await node.get("/v1/alerts")
    except Exception as exc:  # the route may not exist yet
        return False, f"GET /v1/alerts failed ({exc})"
    if not isinstance(got.get("alerts"), list):
        return False, "GET /v1/alerts has no `alerts` list"
    return True, ""


async def _alert_latencies(
    nodes: list[Node], count: int, timeout: float, from_created: list[float]
) -> list[float]:
    pub, others = nodes[0], nodes[1:]
    latencies: list[float] = []
    for i in range(count):
        seen = await asyncio.gather(*(x.get("/v1/alerts") for x in others))
        before = [{a["id"] for a in s["alerts"]} for s in seen]
        code, out, err = await pub.cli(
            "alert",
            f"bench alert {i}: office raided, move to plan B",
            "--to",
            "network",
            "--urgency",
            "high",
        )
        published = now_ms()
        if code != 0:
            raise RuntimeError(f"canopy alert failed: {err.strip()}")
        match = re.search(r"\b[0-9a-f]{64}\b", out)
        alert_id = match.group(0) if match else None
        received: dict[int, int] = {}
        created: list[int] = []

        async def arrived(
            received: dict[int, int] = received,
            created: list[int] = created,
            alert_id: str | None = alert_id,
            before: list[set[str]] = before,
        ) -> bool:
            pending = [j for j in range(len(others)) if j not in received]
            got = await asyncio.gather(*(others[j].get("/v1/alerts") for j in pending))
            for j, s in zip(pending, got, strict=True):
                for a in s["alerts"]:
                    if (a["id"] == alert_id) if alert_id else (a["id"] not in before[j]):
                        received[j] = int(a["received_at_ms"])
                        created.append(int(a.get("created", 0)))
            return len(received) == len(others)

        await wait_for(f"alert {i} to reach every node", arrived, timeout, 0.05)
        last = max(received.values())
        latencies.append((last - published) / 1000)
        if created:
            from_created.append((last - max(created)) / 1000)
        progress(f"alert {i + 1}/{count}: {latencies[-1] * 1000:.0f} ms to the last node")
        await asyncio.sleep(0.3)
    return latencies


async def _guide_latencies(
    nodes: list[Node], count: int, root: Path, timeout: float
) -> list[float]:
    """Fallback without alerts: a network-scoped guide via the CLI, seen by record counts."""
    pub, others = nodes[0], nodes[1:]
    latencies: list[float] = []
    for i in range(count):
        base = await asyncio.gather(*(x.total() for x in others))
        path = root / f"urgent-{i}.md"
        path.write_text(f"# Urgent {i}\n\nThe office was raided; move to plan B.\n")
        code, _, err = await pub.cli("publish", "guide", str(path), "--to", "network")
        published = time.monotonic()
        if code != 0:
            raise RuntimeError(f"canopy publish failed: {err.strip()}")

        async def arrived(base: list[int] = base) -> bool:
            got = await asyncio.gather(*(x.total() for x in others))
            return all(g > b for g, b in zip(got, base, strict=True))

        done = await wait_for(f"guide {i} to reach every node", arrived, timeout, 0.02)
        latencies.append(done - published)
        progress(f"urgent guide {i + 1}/{count}: {latencies[-1] * 1000:.0f} ms to the last node")
        await asyncio.sleep(0.3)
    return latencies


def _pctl(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def propagate(
    nodes: int = 50,
    alerts: int = 20,
    guides: int = 1000,
    guide_nodes: int = 10,
    timeout: float = 300.0,
) -> Result:
    res = Result("propagate")
    guide_datas = data.records(guides, SEED)
    async with workspace("propagate") as root:
        ceil = await ceiling(guide_datas, network_key(SEED), root)
        cluster, edges = await _cluster(
            root / "alerts", nodes, 4.0, GRAPH_SEED, {"CANOPY_SYNC_POLL_INTERVAL": "0.5"}
        )
        res.details["graph"] = {
            "nodes": nodes,
            "edges": len(edges),
            "average_degree": 2 * len(edges) / nodes,
        }
        try:
            progress(f"starting {nodes} nodes…")
            await start_all(cluster)
            await _wait_connected(cluster, edges, 120)
            ok, why = await _alerts_supported(cluster[0])
            from_created: list[float] = []
            if ok:
                lat = await _alert_latencies(cluster, alerts, timeout, from_created)
                what = "alert"
            else:
                res.notes.append(
                    f"{why}: measured with a network-scoped guide published by `canopy publish`"
                    " and each node's record count instead (polled, ~20-100 ms resolution)"
                )
                lat = await _guide_latencies(cluster, alerts, root, timeout)
                what = "urgent guide"
        finally:
            await stop_all(cluster)
        res.details[f"{what}_latencies_s"] = lat
        res.add(
            "alert_p50_s",
            f"{what} to all {nodes} nodes, p50 of {len(lat)}",
            _pctl(lat, 0.5),
            "s",
            fmt="{:.3f}",
        )
        res.add(
            "alert_max_s",
            f"{what} to all {nodes} nodes, max of {len(lat)}",
            max(lat),
            "s",
            target=1.0,
            fmt="{:.3f}",
        )
        if from_created:
            res.details["alert_from_created_s"] = from_created
            res.add(
                "alert_created_max_s",
                "  same, from the alert's `created` (CLI start), max",
                max(from_created),
                "s",
                fmt="{:.3f}",
            )
            res.notes.append(
                "alert latency = last node's received_at_ms - wall clock when `canopy alert` "
                "exited; negative when every node had it before the CLI process finished exiting"
            )
        fan = await _fanout(root / "guides", guide_nodes, guide_datas, timeout)
        res.details["fanout"] = fan
        res.add(
            "guides_seconds",
            f"{guides:,} guides to all {guide_nodes} nodes",
            fan["seconds"],
            "s",
            fmt="{:.2f}",
        )
        stored = guides * (guide_nodes - 1)  # copies stored: one on each other node
        _add_ceiling(res, ceil, guides / fan["seconds"], "fan-out", (fan["cpu_s"], stored))
        ratio = {f["key"]: f for f in res.figures}["ratio_to_ceiling"]["value"]
        res.add(
            "goal_fan_out",
            "goal: fan-out at half the libraries' ceiling",
            ratio,
            "x",
            target=0.5,
            goal=">=",
            fmt="{:.2f}",
        )
    return res


# -- versus-gossipsub ------------------------------------------------------------------------------


async def _gossipsub(
    n: int, edges: list[tuple[int, int]], payloads: list[bytes], timeout: float, tmp: Path
) -> dict[str, Any]:
    try:
        import libp2p  # noqa: F401
    except Exception as exc:
        return {
            "ok": False,
            "error": f"py-libp2p is not importable here ({type(exc).__name__}: "
            f"{exc}); install it with: .venv/bin/pip install -e '.[bench]'",
        }
    path = tmp / "gossipsub-messages.msgpack"
    path.write_bytes(msgpack.packb(payloads))
    config = {"nodes": n, "edges": edges, "messages": str(path), "timeout": timeout}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.gossipsub_run",
        cwd=str(ROOT),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(json.dumps(config).encode()), timeout + 60
        )
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return {"ok": False, "error": f"the gossipsub run did not finish in {timeout + 60:.0f} s"}
    try:
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        return {"ok": False, "error": "the gossipsub run printed no result: " + " | ".join(tail)}
    return result


async def versus_gossipsub(nodes: int = 10, messages: int = 1000, timeout: float = 300.0) -> Result:
    res = Result("versus-gossipsub")
    payloads = data.records(messages, SEED)
    async with workspace("versus") as root:
        ceil = await ceiling(payloads, network_key(SEED), root)
        fan = await _fanout(root / "canopy", nodes, payloads, timeout)
        progress(f"gossipsub: {nodes} py-libp2p hosts, {messages:,} messages…")
        gs = await _gossipsub(nodes, fan["edges"], payloads, timeout, root)
    res.details["canopy"] = fan
    res.details["gossipsub"] = gs
    res.add(
        "canopy_seconds",
        f"Canopy: {messages:,} records to all {nodes} nodes",
        fan["seconds"],
        "s",
        fmt="{:.2f}",
    )
    gs_seconds = gs.get("seconds") if gs.get("ok") else None
    res.add(
        "gossipsub_seconds",
        f"gossipsub: {messages:,} messages to all {nodes} hosts",
        gs_seconds,
        "s",
        fmt="{:.2f}",
        missing=f"n/a ({gs.get('error')})",
    )
    speedup = gs_seconds / fan["seconds"] if gs_seconds else None
    res.add(
        "speedup",
        "Canopy speed-up (gossipsub time / Canopy time)",
        speedup,
        "x",
        target=10.0,
        goal=">=",
        fmt="{:.2f}",
        missing="n/a (no gossipsub figure)",
    )
    _add_ceiling(res, ceil, messages / fan["seconds"], "fan-out")
    res.notes.append(
        "same graph and the same record bytes as payloads; Canopy verifies, decrypts nothing, "
        "encrypts on the wire (box-stream) and stores durably; gossipsub signs and verifies "
        "(strict signing) and stores nothing; gossipsub hosts share one trio process, Canopy "
        "nodes are separate processes; py-libp2p spam protection off and publisher paced on "
        "its outbound queues so nothing is dropped"
    )
    return res


# -- catch-up --------------------------------------------------------------------------------------


async def _ran_before(d: NodeDir, timeout: float) -> float:
    """Run the node of `d` once alone until its library is built, then stop it: a node that
    ran before comes back with the opened copies of the records it holds, where one that
    never ran (records inserted straight into its store) opens them all at its first start.
    Returns how long that first start took."""
    node = Node(d)
    start = time.monotonic()
    await node.start()

    async def ready() -> bool:
        library: dict[str, Any] = (await node.status()).get("library", {})
        return bool(library.get("ready"))

    try:
        await wait_for(f"{d.label}'s library", ready, timeout, 0.05)
        return time.monotonic() - start
    finally:
        await node.stop()


async def catch_up(
    records: int = 10_000, history: int | None = None, timeout: float = 300.0
) -> Result:
    res = Result("catch-up")
    history = records if history is None else history
    datas = data.records(history + records, SEED)
    old, new = datas[:history], datas[history:]
    async with workspace("catch-up") as root:
        a = await _publisher_dir(root, "A")
        c = await _plain_dir(root, "C")
        progress(f"A and C share {history:,} records; C is offline…")
        await insert(a.path, old, local=True)
        await insert(c.path, old, local=False)
        await link_all([a, c], [(0, 1)])
        ceil = await ceiling(new, network_key(SEED), root)
        na, nc = Node(a), Node(c)
        # C ran before it went offline: its library opened the records it held then and
        # kept what it opened.
        progress(f"C runs once alone, opening the {history:,} records it holds…")
        first = await _ran_before(c, timeout)
        await na.start()
        progress(f"A publishes {records:,} records while C is offline…")
        await insert(a.path, new, local=True)
        await na.notify()
        await asyncio.sleep(1.0)
        progress("C comes back…")
        t0 = time.monotonic()
        a_cpu = na.cpu_s()
        await nc.start()
        total = history + records

        async def caught_up() -> bool:
            return await nc.total() >= total

        done = await wait_for("C to catch up", caught_up, timeout, 0.05)
        elapsed = done - t0
        c_cpu, a_cpu = nc.cpu_s(), na.cpu_s() - a_cpu
        res.add("records", "records missed while offline", records, "", fmt="{:,.0f}")
        res.add("seconds", "time from C's start to holding all", elapsed, "s", target=2.0)
        res.add(
            "seconds_after_running", "  of which after C was running", done - nc.running_at, "s"
        )
        res.add("cpu_c", "CPU used by C, start-up included", c_cpu, "s")
        res.add("first_start", "C's first start, before (its library built)", first, "s")
        res.add("cpu_a", "CPU used by A meanwhile", a_cpu, "s")
        _add_ceiling(res, ceil, records / elapsed, "catch-up", (c_cpu + a_cpu, records))
        await stop_all([na, nc])
    return res


# -- footprint -------------------------------------------------------------------------------------


async def footprint(records: int = 100_000, settle: float = 3.0, timeout: float = 900.0) -> Result:
    res = Result("footprint")
    datas = data.records(records, SEED)
    async with workspace("footprint") as root:
        idle_dir = await _plain_dir(root, "idle")
        idle = Node(idle_dir)
        await idle.start()
        await asyncio.sleep(settle)
        res.add(
            "idle_rss_mb",
            "RSS of an idle node (no records, no peers)",
            idle.rss_kb() / 1024,
            "MB",
            target=60.0,
            fmt="{:.1f}",
        )
        await idle.stop()

        x_dir = await _publisher_dir(root, "X")
        y_dir = await _plain_dir(root, "Y")
        progress(f"inserting {records:,} records into X…")
        await insert(x_dir.path, datas, local=True)
        await link_all([x_dir, y_dir], [(0, 1)])
        ceil = await ceiling(datas, network_key(SEED), root)
        x = Node(x_dir)
        await x.start()
        res.add(
            "startup_s",
            f"start-up with {records:,} records (spawn to 'running')",
            x.running_at - x.spawned_at,
            "s",
            target=2.0,
        )
        await asyncio.sleep(settle)
        res.add(
            "held_rss_mb",
            f"RSS holding {records:,} records, idle",
            x.rss_kb() / 1024,
            "MB",
            target=150.0,
            fmt="{:.1f}",
        )
        progress(f"an empty peer Y pulls all {records:,} records from X…")
        y = Node(y_dir)
        t0 = time.monotonic()
        await y.start()

        async def full() -> bool:
            return await y.total() >= records

        done = await wait_for(f"Y to hold {records:,}", full, timeout, 0.1)
        await asyncio.sleep(settle)
        res.add(
            "served_rss_mb",
            f"RSS of X after serving {records:,} records",
            x.rss_kb() / 1024,
            "MB",
            target=150.0,
            fmt="{:.1f}",
        )
        res.add(
            "received_rss_mb",
            f"RSS of Y after receiving {records:,} records",
            y.rss_kb() / 1024,
            "MB",
            target=150.0,
            fmt="{:.1f}",
        )
        res.add(
            "peak_rss_mb",
            "peak RSS (VmHWM) of X / Y",
            max(x.rss_kb("VmHWM"), y.rss_kb("VmHWM")) / 1024,
            "MB",
            fmt="{:.1f}",
        )
        _add_ceiling(res, ceil, records / (done - t0), "sync")
        await stop_all([x, y])
    return res


# -- know-who (issue 4) ----------------------------------------------------------------------------


async def query_local(contacts: int = 100_000, queries: int = 1000) -> Result:
    from bench.query_local import run

    return await run(contacts, queries)


async def query_network(nodes: int = 30, per_node: int = 20, queries: int = 100) -> Result:
    from bench.query_network import run

    return await run(nodes, per_node, queries)


async def guides(
    listed: int = 10_000, searched: int = 100_000, searches: int = 300, cli_searches: int = 15
) -> Result:
    from bench.guides import run

    return await run(listed, searched, searches, cli_searches)


async def library(lessons: int = 4000, images: int = 600, timeout: float = 900.0) -> Result:
    from bench.library import run

    return await run(lessons, images, timeout)


# -- several networks per node (issue 15) --------------------------------------------------------


async def networks(handshakes: int = 500, rounds: int = 7) -> Result:
    from bench.networks import run

    return await run(handshakes, rounds)


# -- the simulator (issue 12) ------------------------------------------------------------------


async def attach(megabytes: float = 100.0, timeout: float = 600.0) -> Result:
    from bench.attach import run

    return await run(megabytes, timeout)


async def simulate(nodes: int = 1000, seed: int = 1, baseline: bool = True) -> Result:
    from bench.simulate import simulate as run

    return await run(nodes, seed, baseline)


async def circle_join(
    records: int = 10_000, epochs: int = 5, timeout: float = 300.0, library: int = 0
) -> Result:
    from bench.circles import circle_join as run

    return await run(records=records, epochs=epochs, timeout=timeout, library=library)


async def circle_join_library(library: int = 10_000, **kwargs: Any) -> Result:
    return await circle_join(library=library, **kwargs)  # D holds guides of its own already


# -- the web app (issue 13) ------------------------------------------------------------------------


async def ui(
    guides: int = 10_000, contacts: int = 100_000, requests: int = 200, loads: int = 10
) -> Result:
    from bench.ui import run

    return await run(guides, contacts, requests, loads)


async def checkins(
    plans: int = 1000,
    late: int = 20,
    window: float = 30.0,
    timeout: float = 120.0,
) -> Result:
    from bench.checkins import checkins as run

    return await run(plans, late, window, timeout)


async def help_reach(nodes: int = 5, requests: int = 20, timeout: float = 60.0) -> Result:
    from bench.help import help_reach as run

    return await run(nodes=nodes, requests=requests, timeout=timeout)


BENCHMARKS: dict[str, tuple[Callable[..., Awaitable[Result]], str]] = {
    "sync": (sync, "100,000 records from A to an empty B; records/s and ratio to the ceiling"),
    "reconcile": (reconcile, "n = 100,000 shared, d in {0, 10, 1000}: overhead bytes, rounds"),
    "propagate": (propagate, "alerts on 50 nodes (p50, max of 20); 1,000 guides on 10 nodes"),
    "versus-gossipsub": (versus_gossipsub, "10 nodes, 1,000 messages: Canopy vs py-libp2p"),
    "catch-up": (catch_up, "a node offline while 10,000 records were published comes back"),
    "footprint": (footprint, "RSS idle and with 100,000 records; start-up time"),
    "query-local": (query_local, "know-who over 100,000 contacts: index build, query p50/p95"),
    "query-network": (query_network, "know-who queries at depth 2 on 30 nodes: p50/p95"),
    "simulate": (simulate, "1,000 simulated nodes (and 100): convergence, bytes, alert, CPU"),
    "circle-join": (circle_join, "a member added to a circle with 10,000 records: read time"),
    "circle-join-library": (circle_join_library, "circle-join, D holding 10,000 guides already"),
    "guides": (guides, "canopy guides with 10,000 guides; --search over 100,000 in a node"),
    "ui": (ui, "web app, 10,000 guides + 100,000 contacts: page p95, dashboard in Chromium"),
    "networks": (networks, "SHS1 handshake cost with 5 networks vs 1 (target within 10 %)"),
    "attach": (attach, "a 100 MB attachment A to B: MB/s, ratio to box-stream+SecretBox, RSS"),
    "checkins": (checkins, "a node watching 1,000 check-in plans: idle CPU, missed lateness"),
    "help": (
        help_reach,
        "a new help request reaches every member of a 5-node circle, and is raised on call"
        " on both on-call members: p50/p95",
    ),
    "library": (library, "publish library: 4,000 lessons, 7 languages, 600 images; peer holds it"),
}

QUICK: dict[str, dict[str, Any]] = {
    "sync": {"records": 300, "timeout": 60},
    "reconcile": {"records": 300, "diffs": (0, 10), "scale": False, "timeout": 60},
    "propagate": {"nodes": 4, "alerts": 2, "guides": 30, "guide_nodes": 4, "timeout": 60},
    "versus-gossipsub": {"nodes": 3, "messages": 30, "timeout": 60},
    "catch-up": {"records": 100, "history": 50, "timeout": 60},
    "footprint": {"records": 300, "settle": 0.5, "timeout": 60},
    "query-local": {"contacts": 300, "queries": 20},
    "query-network": {"nodes": 4, "per_node": 3, "queries": 6},
    "simulate": {"nodes": 20, "baseline": False},
    "circle-join": {"records": 60, "epochs": 3, "timeout": 60},
    "circle-join-library": {"records": 60, "epochs": 3, "timeout": 60, "library": 30},
    "guides": {"listed": 200, "searched": 300, "searches": 20, "cli_searches": 2},
    "ui": {"guides": 30, "contacts": 300, "requests": 10, "loads": 2},
    "networks": {"handshakes": 50, "rounds": 2},
    "attach": {"megabytes": 2.0, "timeout": 60},
    "checkins": {"plans": 30, "late": 4, "window": 3.0, "timeout": 60},
    "help": {"nodes": 3, "requests": 2, "timeout": 60},
    "library": {"lessons": 21, "images": 3, "timeout": 60},
}
