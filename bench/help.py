"""Issue 16's help request target: a new help request reaches every member of a 5-node
circle within 1 s on loopback (p50 and p95 over `requests` requests).

Five real `canopy run` processes on 127.0.0.1, trusted along a sparse random graph (so some
members are two hops away and the request goes through a relay that is also a member); A
owns the circle and the other four are in it. Each request is made with the CLI
(`canopy help request --to circle:NAME`), timed from just before the CLI starts, and from
the record's `created` (the moment it was sealed), to the moment the last member's node
holds it (its `/v1/status` counts). Two members are on call (`canopy circle oncall`):
"reaches every on-call member" is the time from `created` to the moment the last on-call
member's node raised the request's notice marked on call (its `received_at_ms`, read from
`/v1/alerts`). Beside it, the libraries' ceiling for the same records (msgpack + Ed25519 +
SecretBox + sqlite3 in one process).
"""

from __future__ import annotations

import asyncio
import json

from bench.data import create_dir, derive, link_all, network_key, progress
from bench.harness import (
    Node,
    Result,
    free_port,
    library_ceiling,
    random_graph,
    start_all,
    stop_all,
    wait_for,
    workspace,
)
from node import circles
from node.clock import now_ms
from node.local import Local
from protocol.record import Kind

SEED = 16
NAME = "Responders"


def _pctl(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def help_reach(nodes: int = 5, requests: int = 20, timeout: float = 60.0) -> Result:
    res = Result("help")
    async with workspace("help") as root:
        net = network_key(SEED)
        dirs = [await create_dir(root / "A", "A", free_port(), net, seed=derive(SEED, "a"))]
        for i in range(1, nodes):
            dirs.append(await create_dir(root / f"M{i}", f"M{i}", free_port(), net))
        edges = random_graph(nodes, 2.0, SEED)
        await link_all(dirs, edges)
        a = await Local.open(dirs[0].path, None)
        try:
            now = now_ms()
            await circles.create(a, NAME, "all", now)
            for d in dirs[1:]:
                await circles.add(a, NAME, d.node_id, now)
        finally:
            await a.close()
        cluster = [Node(d) for d in dirs]
        pub, members = cluster[0], cluster[1:]
        await start_all(cluster)

        async def count(node: Node, kind: Kind) -> int:
            return int((await node.status())["records"].get(str(kind), 0))

        async def circle_known() -> bool:
            got = await asyncio.gather(*(count(m, Kind.CIRCLE) for m in members))
            return all(n >= nodes for n in got)  # the creation and one addition each

        await wait_for("every member holds the circle", circle_known, timeout, 0.05)
        on_call = members[:2]
        for m in on_call:
            code, _, err = await pub.cli(
                "circle", "oncall", NAME, m.dir.node_id, "--from", "now", "--to", "12h"
            )
            if code != 0:
                raise RuntimeError(f"canopy circle oncall failed: {err.strip()}")

        async def rota_known() -> bool:
            got = await asyncio.gather(*(m.status() for m in on_call))
            return all(g["rapid_response"]["on_call_circles"] == 1 for g in got)

        await wait_for("the on-call members hold the rota", rota_known, timeout, 0.05)

        async def raised(node: Node, rid: str) -> int | None:
            for entry in (await node.get("/v1/alerts"))["alerts"]:
                if entry.get("request") == rid and entry.get("on_call"):
                    return int(entry["received_at_ms"])
            return None

        from_cli: list[float] = []
        from_created: list[float] = []
        to_on_call: list[float] = []
        for i in range(requests):
            start = now_ms()
            code, out, err = await pub.cli(
                "help", "request", "--need", "legal", "--region", "KE", "--to",
                f"circle:{NAME}", f"bench request {i}: detained at the border post",
            )  # fmt: skip
            if code != 0:
                raise RuntimeError(f"canopy help request failed: {err.strip()}")
            seen: dict[int, int] = {}

            async def arrived(seen: dict[int, int] = seen, want: int = i + 1) -> bool:
                pending = [j for j in range(len(members)) if j not in seen]
                got = await asyncio.gather(*(count(members[j], Kind.HELP) for j in pending))
                at = now_ms()
                for j, n in zip(pending, got, strict=True):
                    if n >= want:
                        seen[j] = at
                return len(seen) == len(members)

            await wait_for(f"request {i} at every member", arrived, timeout, 0.01)
            last = max(seen.values())
            _, shown, _ = await pub.cli("help", "show", out.split()[0], "--json")
            created = int(json.loads(shown)["created"])
            from_cli.append((last - start) / 1000)
            from_created.append((last - created) / 1000)
            marks: list[int | None] = []

            async def on_call_raised(
                rid: str = out.split()[0], got: list[int | None] = marks
            ) -> bool:
                got[:] = await asyncio.gather(*(raised(m, rid) for m in on_call))
                return all(at is not None for at in got)

            await wait_for(f"request {i} raised on call", on_call_raised, timeout, 0.01)
            to_on_call.append((max(at or 0 for at in marks) - created) / 1000)
            progress(f"help request {i + 1}/{requests}: {from_created[-1] * 1000:.0f} ms")
            await asyncio.sleep(0.2)  # let the rounds settle between requests
        await stop_all(cluster)
        a = await Local.open(dirs[0].path, None)
        try:
            datas = await a.store.records_of_kind(str(Kind.HELP))
        finally:
            await a.close()
        (root / "ceiling").mkdir()
        ceil = library_ceiling(datas, root / "ceiling")
    res.add("members", "circle members besides the requester", nodes - 1, "", fmt="{:,.0f}")
    res.add("requests", "requests made", requests, "", fmt="{:,.0f}")
    p50, p95 = _pctl(from_created, 0.5), _pctl(from_created, 0.95)
    res.add("reach_p50_s", "sealed to held by every member, p50", p50, "s", target=1.0)
    res.add("reach_p95_s", "sealed to held by every member, p95", p95, "s", target=1.0)
    res.add(
        "oncall_p95_s",
        "sealed to raised on every on-call member, p95",
        _pctl(to_on_call, 0.95),
        "s",
        target=1.0,
    )
    res.add("oncall_p50_s", "  same, p50", _pctl(to_on_call, 0.5), "s")
    res.add("cli_p50_s", "  same, from the CLI's start, p50", _pctl(from_cli, 0.5), "s")
    res.add("cli_p95_s", "  same, from the CLI's start, p95", _pctl(from_cli, 0.95), "s")
    rate = float(ceil["records_per_s"])
    res.add(
        "ceiling_records_per_s", "ceiling: the libraries alone", rate, "records/s", fmt="{:,.0f}"
    )
    ratio = (1 / rate) / p95 if rate and p95 else None
    res.add("ratio_ceiling_to_p95", "ratio one-record ceiling time / p95", ratio, "x", fmt="{:.4f}")
    res.details["edges"] = edges
    res.details["ceiling"] = ceil
    return res
