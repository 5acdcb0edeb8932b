"""The rows `canopy peers` and `canopy status` print, built in one place.

The running node builds them from the store and what it knows live (`/v1/peers`, the
`peer_list` of `/v1/status`); the CLI, when no node runs, builds them here from the store
alone. Either way the CLI only prints them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

from node.local import Local, Peer
from node.peer_book import PeerState
from protocol.identity import NodeId

NOT_RUNNING = "node not running"


@dataclass(frozen=True)
class LivePeer:
    """What a running node knows of one peer beyond its stored record."""

    state: str  # connected | dialing | offline
    score: int
    banned_for_s: float
    last_error: str
    last_sync: int | None  # the node's own, newer than the store's (written now and then)
    direction: str | None = None  # in | out, when connected
    queued_bytes: int = 0


class _Live(Protocol):
    """What the running node holds of a connection (node/connection.py)."""

    @property
    def outbound(self) -> bool: ...
    @property
    def queued(self) -> int: ...


def live_peers(
    peers: Mapping[NodeId, Peer],
    states: Mapping[NodeId, PeerState],
    connections: Mapping[NodeId, _Live],
    monotonic: float,
) -> dict[NodeId, LivePeer]:
    """What the running node knows live of each trusted peer (scores, bans, connections)."""
    live: dict[NodeId, LivePeer] = {}
    for node_id, peer in peers.items():
        state = states.get(node_id, PeerState())
        conn = connections.get(node_id)
        live[node_id] = LivePeer(
            state="connected" if conn else ("dialing" if state.dialing else "offline"),
            score=state.score,
            banned_for_s=max(0.0, round(state.banned_until - monotonic, 1)),
            last_error=state.last_error,
            last_sync=peer.last_sync,
            direction=("out" if conn.outbound else "in") if conn else None,
            queued_bytes=conn.queued if conn else 0,
        )
    return live


def peer_rows(
    peers: Mapping[NodeId, Peer],
    revoked: Collection[NodeId],
    live: Mapping[NodeId, LivePeer] | None,
) -> list[dict[str, object]]:
    """One row per trusted peer, by label; `live` is None when no node runs."""
    rows: list[dict[str, object]] = []
    for node_id, peer in sorted(peers.items(), key=lambda kv: kv[1].label):
        now = live.get(node_id) if live is not None else None
        is_revoked = node_id in revoked
        if is_revoked:
            state = "revoked"
        elif now is not None:
            state = now.state
        else:
            state = NOT_RUNNING if live is None else "offline"
        rows.append(
            {
                "id": str(node_id),
                "name": peer.name,
                "safety_code": node_id.safety_code(),
                "addresses": peer.addresses,
                "state": state,
                "revoked": is_revoked,
                "banned_for_s": now.banned_for_s if now else 0.0,
                "last_sync": now.last_sync if now else peer.last_sync,
                "score": now.score if now else None,
                "last_error": (now.last_error if now else "")
                or ("key revoked (compromised)" if is_revoked else ""),
                "invite_pending": peer.invite_capability is not None,
                "direction": now.direction if now else None,
                "queued_bytes": now.queued_bytes if now else 0,
            }
        )
    return rows


def status_rows(
    rows: list[dict[str, object]], now_ms: int, *, running: bool
) -> list[dict[str, object]]:
    """The peer list of `canopy status`: each peer row with how long ago it last synced
    (and, when no node runs, that state for every peer, revoked or not)."""
    out: list[dict[str, object]] = []
    for row in rows:
        last_sync = row["last_sync"]
        assert last_sync is None or isinstance(last_sync, int)
        out.append(
            {
                "id": row["id"],
                "short": str(row["id"])[:10],
                "name": row["name"],
                "state": row["state"] if running else NOT_RUNNING,
                "last_sync": last_sync,
                "sync_age_s": round((now_ms - last_sync) / 1000, 1) if last_sync else None,
            }
        )
    return out


async def stored_peer_rows(local: Local) -> list[dict[str, object]]:
    """The rows when no node runs: the store alone."""
    from node.revocation import revoked_ids

    return peer_rows(await local.peers(), await revoked_ids(local), None)
