"""The simulator's trust graph: who trusts whom among `n` nodes (node/sim/world.py).

A few community servers (the lowest indices) with many peers each, then random links
between the other nodes up to the average degree, then one link from each stray honest
component to the largest, so that honest nodes can reach each other without a hostile
relay. Deterministic for a given `random.Random`; it reads nothing else.
"""

from __future__ import annotations

import random


def trust_graph(
    n: int, servers: int, server_share: float, degree: float, rnd: random.Random
) -> list[tuple[int, int]]:
    """Sorted (u, v), u < v: each of `servers` linked to about `server_share` of all
    nodes, then random links between the others up to `degree` on average."""
    edges: set[tuple[int, int]] = set()
    per_server = max(3, round(n * server_share))
    for s in range(servers):
        for peer in rnd.sample(range(n), min(n - 1, per_server + 1)):
            if peer != s:
                edges.add((min(s, peer), max(s, peer)))
    target = round(n * degree / 2)
    while len(edges) < target:
        u, v = rnd.randrange(servers, n), rnd.randrange(servers, n)
        if u != v:
            edges.add((min(u, v), max(u, v)))
    return sorted(edges)


def connect_honest(
    edges: list[tuple[int, int]],
    adjacent: list[set[int]],
    n: int,
    hostile: dict[int, str],
    rnd: random.Random,
) -> None:
    """Join each smaller component of honest nodes to the largest with one edge: a trust
    graph in which honest nodes reach each other without a hostile relay (else
    "converged" is moot). Joined to the largest, not one to the next: a chain of the
    stray nodes (dozens at 1,000 nodes) would stretch the graph to 30-45 hops across, a
    shape no network of community servers and small nodes has."""
    honest = [i for i in range(n) if i not in hostile]
    seen: set[int] = set()
    components: list[list[int]] = []
    for start in honest:
        if start in seen:
            continue
        stack, comp = [start], []
        seen.add(start)
        while stack:
            x = stack.pop()
            comp.append(x)
            for y in sorted(adjacent[x]):
                if y not in seen and y not in hostile:
                    seen.add(y)
                    stack.append(y)
        components.append(sorted(comp))
    largest = max(components, key=len)  # the first of that size: deterministic
    for stray in components:
        if stray is largest:
            continue
        u, v = rnd.choice(stray), rnd.choice(largest)
        edges.append((min(u, v), max(u, v)))
        adjacent[u].add(v)
        adjacent[v].add(u)
    edges.sort()
