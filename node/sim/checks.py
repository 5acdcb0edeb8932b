"""What a simulated run asserts about the records the honest nodes hold.

`expected` is the rule of docs/SPEC.md "Who may receive what" for the run's records,
`converged` the final phase's check, `components_agree` the first phase's (within each
component of online honest nodes). Reads the world; changes nothing.
"""

from __future__ import annotations

from node.sim.world import World
from protocol.record import Scope


def expected(world: World, index: int) -> set[bytes]:
    """What an honest node may and must hold: every published network-scoped record, and
    the peers-scoped ones of its own and of its direct peers."""
    out: set[bytes] = set()
    for _, author, record in world.pool:
        if record.scope is Scope.NETWORK or author == index or author in world.adjacent[index]:
            out.add(record.id)
    return out


def converged(world: World) -> bool:
    return all(
        world.nodes[i].holdings() == expected(world, i)
        for i in range(world.config.nodes)
        if world.honest(i)
    )


def components_agree(world: World) -> bool:
    """Phase one: within each component of online honest nodes, every node holds every
    network-scoped record any of them holds, and the peers-scoped ones of its online
    direct peers in the component; none holds what it may not."""
    n = world.config.nodes
    online = [i for i in range(n) if world.honest(i) and world.nodes[i].online]
    up = set(online)
    seen: set[int] = set()
    by_id = {r.id: (author, r) for _, author, r in world.pool}
    for start in online:
        if start in seen:
            continue
        comp, stack = [], [start]
        seen.add(start)
        while stack:
            x = stack.pop()
            comp.append(x)
            for y in sorted(world.adjacent[x]):
                if y in up and y not in seen and world.side[y] == world.side[x]:
                    seen.add(y)
                    stack.append(y)
        holdings = {i: world.nodes[i].holdings() for i in comp}
        network = {
            rid
            for held in holdings.values()
            for rid in held
            if by_id[rid][1].scope is Scope.NETWORK
        }
        for i in comp:
            held = holdings[i]
            if not held <= expected(world, i) or not network <= held:
                return False
            for j in world.adjacent[i]:
                if j in holdings:
                    own = {rid for rid in holdings[j] if by_id[rid][0] == j}
                    if not own <= held:
                        return False
    return True
