"""What `canopy networks` shows: each network this node belongs to, its members (the
trusted peers admitted, invited or handshaken under it) and counts.

Reads an unlocked data directory (node running or not); the rules of which records a
network covers are protocol/networks.py, the rows themselves node/local.py.
"""

from __future__ import annotations

from typing import Any

from node.local import Local, Network
from protocol.identity import NodeId


async def network_rows(local: Local) -> list[dict[str, Any]]:
    """One row per network, the first (primary) one first; no key material in them."""
    networks = await local.networks()
    peers = sorted((await local.peers()).values(), key=lambda p: (p.name, p.node_id.raw))
    counts = await local.store.count_by_network([n.tag for n in networks])
    rows: list[dict[str, Any]] = []
    for index, network in enumerate(networks):
        tag = network.tag
        members = [p for p in peers if tag in p.networks]
        records = counts.get(tag, 0) + (counts.get(None, 0) if index == 0 else 0)
        rows.append(
            {
                "name": network.name,
                "tag": tag.hex(),
                "primary": index == 0,
                "joined": network.joined or None,
                "members": [str(p.node_id) for p in members],
                "member_names": [p.label for p in members],
                "member_count": len(members),
                "records": records,
            }
        )
    return rows


async def networks_of(local: Local, readers: list[NodeId]) -> tuple[Network, ...]:
    """The networks a record for `readers` (recipients, circle members) travels in: the
    first one every reader we trust is a member of; else every network one of them is in
    (one record each: a circle that spans two networks reaches both); else our first
    network (docs/spec/45-networks.md "Which network a record is tagged for")."""
    networks = await local.networks()
    peers = await local.peers()
    known = [peers[r] for r in readers if r in peers]
    for network in networks:
        if known and all(network.tag in p.networks for p in known):
            return (network,)
    needed = tuple(n for n in networks if any(n.tag in p.networks for p in known))
    return needed or (networks[0],)
