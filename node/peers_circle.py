"""The author's implicit circle of its peers: what `--to peers` seals to.

An audience of "my peers" is not frozen at the moment of publishing: the circle's members
follow this node's trust. A peer trusted later is added, and with the circle's history
`all` reads everything shared with peers before; a peer distrusted (or revoked) is removed,
and a new epoch starts that it never receives, so it reads nothing published after. Giving
a new peer access costs one membership record, never a new seal per record.

The circle is made the first time something is published `--to peers`, and from then on
follows trust whenever the running node reloads it (`follow`). `--to peers-now` keeps the
old meaning: sealed to each peer trusted at that moment, and nobody else ever. Every
member is a direct peer, so the membership records are peers-scoped: they never travel
past the author's peers.
"""

from __future__ import annotations

from node import circles
from node.circles import PEERS_CIRCLE
from node.local import Local, random
from node.revocation import revoked_ids
from protocol import circle, limits
from protocol.circle import Circle, History
from protocol.errors import CanopyError
from protocol.identity import NodeId
from protocol.record import Scope


async def mine(local: Local) -> Circle | None:
    """This node's own peers circle, if it has made one."""
    own = [
        c
        for c in (await circles.circles(local)).values()
        if c.owner == local.node_id and c.name == PEERS_CIRCLE
    ]
    return min(own, key=lambda c: c.id) if own else None


async def _peers_now(local: Local) -> set[bytes]:
    revoked = {n.raw for n in await revoked_ids(local)}
    return {n.raw for n in await local.peers()} - revoked - {local.node_id.raw}


async def _follow(local: Local, state: Circle, now_ms: int) -> tuple[Circle, bool]:
    wanted = await _peers_now(local)
    members = state.members - {local.node_id.raw}
    changed = False
    if gone := members - wanted:
        change = circle.remove(state, local.node_id, [NodeId(m) for m in gone], random)
        await circles.store_change(local, change, now_ms, Scope.PEERS)
        state, changed = await circles.find(local, state.id.hex()), True
    if new := wanted - members:
        if len(wanted) + 1 > limits.MAX_CIRCLE_MEMBERS:
            raise CanopyError(
                f"more than {limits.MAX_CIRCLE_MEMBERS - 1} peers: --to peers cannot follow"
                " them all; use --to peers-now"
            )
        change = circle.add(state, local.node_id, [NodeId(m) for m in new], random)
        await circles.store_change(local, change, now_ms, Scope.PEERS)
        state, changed = await circles.find(local, state.id.hex()), True
    return state, changed


async def ensure(local: Local, now_ms: int) -> Circle:
    """The peers circle as it must be at sealing time: made if missing, its members this
    node's peers now."""
    state = await mine(local)
    if state is None:
        change = circle.create(local.node_id, PEERS_CIRCLE, History.ALL, random)
        await circles.store_change(local, change, now_ms, Scope.PEERS)
        state = await circles.find(local, change.circle.hex())
    state, _ = await _follow(local, state, now_ms)
    return state


async def follow(local: Local, now_ms: int) -> bool:
    """Trust changed: bring the peers circle (if this node has one) up to date; whether a
    membership record was made."""
    state = await mine(local)
    if state is None:
        return False
    try:
        return (await _follow(local, state, now_ms))[1]
    except CanopyError:
        return False  # too many peers to follow: said when publishing --to peers
