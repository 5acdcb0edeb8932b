"""`python -m bench simulate --nodes N`: the deterministic simulator at scale (issue 12).

Runs node/sim's scenario at 100 nodes and at N (with 5 % hostile nodes, and at N once
more without them), and prints each figure at both sizes with how it grows. Time is
simulated; only `cpu_seconds` and the wall time are real.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import Result, ceiling
from node.sim.scenario import NETWORK_KEY, Config, Figures, run, sample_records

BASE_NODES = 100
# (key, label, unit, target, goal, format)
_FIGURES: list[tuple[str, str, str, float | None, str, str]] = [
    ("converge_s", "converged after the last publish", "sim s", None, "<=", "{:.2f}"),
    ("converge_hops", "... in link latencies (hops)", "hops", 10.0, "<=", "{:.1f}"),
    (
        "steady_converge_hops",
        "... not behind a redial after a reset (hops)",
        "hops",
        None,
        "<=",
        "{:.1f}",
    ),
    ("graph_hops", "... farthest reachable node (graph hops)", "hops", None, "<=", "{:.0f}"),
    ("delivery_p99_s", "record delivery p99 (reachable nodes)", "sim s", None, "<=", "{:.2f}"),
    ("bytes_ratio", "sync bytes per node per record / record", "x", 2.0, "<=", "{:.2f}"),
    ("record_copies_per_node", "record copies received per node", "x", None, "<=", "{:.2f}"),
    ("alert_p99_s", "alert to 99 % of reachable online nodes", "sim s", 2.0, "<=", "{:.2f}"),
    ("alert_p100_s", "alert to 100 % of reachable online nodes", "sim s", None, "<=", "{:.2f}"),
    ("alert_p99_online_s", "alert to 99 % of all online nodes", "sim s", 2.0, "<=", "{:.2f}"),
    ("alert_reached", "alert: share of online nodes reached", "", 0.99, ">=", "{:.3f}"),
    ("alert_reachable", "... share reachable at publish (its ceiling)", "", None, ">=", "{:.3f}"),
    ("cpu_per_sim_hour", "real CPU per simulated hour (busy run)", "s", None, "<=", "{:,.0f}"),
    ("idle_cpu_per_sim_hour", "... idle (rounds every 15 s only)", "s", None, "<=", "{:,.0f}"),
    ("cpu_seconds", "real CPU seconds for the run", "s", None, "<=", "{:.1f}"),
]


def _config(nodes: int, seed: int, hostile: float = 0.05) -> Config:
    # The same records at every size, so that each figure's growth is the network's.
    return Config(nodes=nodes, seed=seed, records=50 if nodes >= 50 else 5, hostile=hostile)


def _run(config: Config) -> tuple[Figures, float]:
    start = time.monotonic()
    print(f"[bench] simulate: {config.nodes} nodes, seed {config.seed}…", file=sys.stderr)
    figures = run(config)
    return figures, time.monotonic() - start


WALL_TARGET_S = 600.0  # the target: a 1,000-node bench run in under 10 minutes


async def simulate(nodes: int = 1000, seed: int = 1, baseline: bool = True) -> Result:
    res = Result("simulate")
    bench_start = time.monotonic()
    sizes = sorted({BASE_NODES, nodes}) if baseline and nodes > BASE_NODES else [nodes]
    runs: dict[int, Figures] = {}
    walls: dict[int, float] = {}
    for size in sizes:
        runs[size], walls[size] = await asyncio.to_thread(_run, _config(size, seed))
    calm, calm_wall = await asyncio.to_thread(_run, _config(nodes, seed, hostile=0.0))
    big = runs[nodes]
    converged = all(f.converged and f.components_converged for f in runs.values())
    res.add("nodes", "nodes", nodes, "", fmt="{:,.0f}")
    res.add("converged", "converged (every size, both phases)", float(converged), "", fmt="{:.0f}")
    for size in sizes:
        for key, label, unit, target, goal, fmt in _FIGURES:
            res.add(
                f"{key}_{size}",
                f"{size:>5} nodes: {label}",
                _value(runs[size], key),
                unit,
                target=target,
                goal=goal,
                fmt=fmt,
                missing="not reached",
            )
        res.add(f"wall_{size}", f"{size:>5} nodes: real wall time", walls[size], "s", fmt="{:.1f}")
    if len(sizes) == 2:
        for key, label, _, _, _, _ in _FIGURES:
            a, b = _value(runs[sizes[0]], key), _value(big, key)
            growth = b / a if a and b is not None else None
            res.add(f"growth_{key}", f"growth 100 -> {nodes}: {label}", growth, "x", fmt="{:.2f}")
    res.add(
        "hostile_cut_off",
        f"{nodes} nodes: flooders/replayers cut off by an honest peer",
        float(big.hostile_cut_off),
        f"of {big.hostile_to_cut}",
        fmt="{:.0f}",
    )
    res.add(
        "calm_converged",
        f"{nodes} nodes without hostile nodes: converged",
        float(calm.converged and calm.components_converged),
        "",
        fmt="{:.0f}",
    )
    for key, label, unit, target, goal, fmt in _FIGURES:
        shown = ("converge_s", "steady_converge_hops", "graph_hops", "alert_reachable")
        if target is None and key not in shown:
            continue
        res.add(
            f"calm_{key}",
            f"{nodes} nodes without hostile nodes: {label}",
            _value(calm, key),
            unit,
            target=target,
            goal=goal,
            fmt=fmt,
            missing="not reached",
        )
    # The libraries' ceiling on this machine, beside the records the simulated nodes
    # verified and stored per CPU second (everything else in the simulator included).
    datas = sample_records(50, seed)
    with tempfile.TemporaryDirectory() as tmp:
        ceil = await ceiling(datas * max(1, 2000 // max(1, len(datas))), NETWORK_KEY, Path(tmp))
    rate = big.stored / big.cpu_seconds if big.cpu_seconds else None
    res.add(
        "ceiling_records_per_s",
        "ceiling: the libraries alone",
        ceil["records_per_s"],
        "records/s",
        fmt="{:,.0f}",
    )
    res.add(
        "sim_records_per_cpu_s",
        "simulated ingest: records stored per CPU s",
        rate,
        "records/s",
        fmt="{:,.0f}",
    )
    res.add(
        "ratio_to_ceiling",
        "ratio simulated ingest/ceiling",
        rate / ceil["records_per_s"] if rate else None,
        "x",
        fmt="{:.2f}",
    )
    res.add(
        "ratio_bytes_to_record",
        f"{nodes} nodes: bytes per node per record / record",
        big.bytes_ratio,
        "x",
        target=2.0,
        fmt="{:.2f}",
    )
    res.add(
        "wall_seconds",
        f"real wall time of the runs (100 and {nodes} nodes, hostile and calm)",
        time.monotonic() - bench_start,
        "s",
        target=WALL_TARGET_S if nodes >= 1000 else None,
        fmt="{:.0f}",
    )
    res.notes.append(
        "simulated: one process, virtual clock; links 100 ms median lognormal (sigma 0.1),"
        " FIFO per link, loss as resets (0.05 %/message); 10 % of nodes offline with churn"
        " until the last publish; one partition that heals; then every node restarts"
    )
    res.notes.append(
        f"a few community servers ({max(2, nodes // 100)}, each peered with 5 % of nodes),"
        " average degree 4; 5 % hostile (flood junk, withhold, replay); records are real"
        " sealed, signed guides (20 % peers-scoped) and one alert"
    )
    res.notes.append(f"replay any run with its seed; digest {big.digest[:16]}…")
    res.details["runs"] = {str(k): v.as_dict() for k, v in runs.items()}
    res.details["calm"] = calm.as_dict()
    res.details["calm_wall_seconds"] = calm_wall
    res.details["top"] = {"converged": converged, "seed": seed, "nodes": nodes}
    return res


def _value(figures: Figures, key: str) -> float | None:
    value = getattr(figures, key)
    return float(value) if isinstance(value, int | float) else None
