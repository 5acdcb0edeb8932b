"""The peer book: whom the running node trusts now, and what it knows of each peer.

The trusted peers, revoked identities, the networks' keys and pending invites as last read
from the store (`Node` reloads them); per peer, scores and penalties, bans, dial backoff
and the last error `canopy peers` shows; counted rejections (flushed to the store now and
then) and warnings rate-limited per peer. It never opens a connection: cutting one off
goes through the `disconnect` it is given.
"""

from __future__ import annotations

import logging
import random as stdrandom
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from node.local import Network, Peer
from node.trust import PendingInvite
from protocol import limits
from protocol.errors import RemoteProtocolError
from protocol.identity import NodeId
from protocol.networks import shared_networks

log = logging.getLogger("canopy.node")


@dataclass(slots=True)
class PeerState:
    """What the running node knows about a trusted peer beyond its stored record."""

    score: int = limits.INITIAL_SCORE
    next_attempt: float = 0.0
    delay: float = 0.0
    dialing: bool = False
    banned_until: float = 0.0
    last_error: str = ""


class PeerBook:
    def __init__(
        self,
        *,
        count_rejection: Callable[[str, int], Awaitable[None]],
        min_score: int,
        reconnect_min: float,
        reconnect_max: float,
        disconnect: Callable[[NodeId, str], Awaitable[None]],
    ) -> None:
        self._write_rejection = count_rejection  # the store's counter of rejections
        self.min_score = min_score
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self._disconnect = disconnect
        self.peers: dict[NodeId, Peer] = {}  # trusted now (replaced on every reload)
        self.revoked: dict[NodeId, int] = {}  # revoked identities -> when we learnt (ms)
        self.network_key = b""  # the first network's (what callers needing one use)
        self.networks: list[Network] = []  # every network, the first one first
        self.circle_keys: tuple[bytes, ...] = ()  # every epoch key of our circles
        self.invites: list[PendingInvite] = []
        self.state: dict[NodeId, PeerState] = {}
        self.rejected: Counter[str] = Counter()
        self._pending_rejections: Counter[str] = Counter()  # not yet written to the store
        self._warned: dict[NodeId, tuple[float, int]] = {}  # last warning, suppressed since

    def shared_networks(self, peer_id: NodeId) -> frozenset[bytes]:
        """Tags of the networks this node and `peer_id` are both members of, now."""
        peer = self.peers.get(peer_id)
        if peer is None:
            return frozenset()
        return shared_networks((n.tag for n in self.networks), peer.networks)

    def trusted_now(self, peers: Iterable[NodeId]) -> None:
        """Keep a state for exactly the peers trusted now."""
        trusted = set(peers)
        for node_id in list(self.state):
            if node_id not in trusted:
                del self.state[node_id]
        for node_id in trusted:
            self.state.setdefault(node_id, PeerState())

    def of(self, peer_id: NodeId) -> PeerState:
        return self.state.setdefault(peer_id, PeerState())

    def banned(self, peer_id: NodeId) -> bool:
        state = self.state.get(peer_id)
        return state is not None and state.banned_until > time.monotonic()

    def backoff(self, state: PeerState) -> None:
        """The next dial waits twice as long as the last (within the configured bounds)."""
        state.delay = min(self.reconnect_max, max(self.reconnect_min, state.delay * 2))
        state.next_attempt = time.monotonic() + state.delay * (0.75 + 0.5 * stdrandom.random())

    def disconnected(self, peer_id: NodeId, reason: str) -> None:
        state = self.state.get(peer_id)
        if state is not None:
            state.last_error = reason
            state.next_attempt = max(state.next_attempt, time.monotonic() + self.reconnect_min)

    async def penalise(
        self, peer_id: NodeId, error: RemoteProtocolError, *, reason: str, ban: bool = False
    ) -> None:
        self.count(reason)
        state = self.state.get(peer_id)
        if state is None or state.banned_until > time.monotonic():
            return  # unknown, or already cut off: counted, not charged or logged again
        state.score -= error.penalty
        state.last_error = f"{reason}: {error}"
        self.warn(peer_id, "sent bad input (%s); score %d", reason, state.score)
        if ban or state.score < self.min_score:
            state.banned_until = time.monotonic() + limits.BAN_SECONDS
            state.next_attempt = state.banned_until
            state.score = limits.INITIAL_SCORE // 2
            await self._disconnect(peer_id, f"cut off for misbehaving ({reason})")

    def warn(self, peer_id: NodeId, message: str, *args: object) -> None:
        """A warning about a peer, at most one line per WARNING_INTERVAL_S per peer; the
        next line that gets out says how many were suppressed meanwhile."""
        now = time.monotonic()
        last, suppressed = self._warned.get(peer_id, (-limits.WARNING_INTERVAL_S, 0))
        if now - last < limits.WARNING_INTERVAL_S:
            self._warned[peer_id] = (last, suppressed + 1)
            return
        self._warned[peer_id] = (now, 0)
        tail = f" ({suppressed} similar warning(s) suppressed)" if suppressed else ""
        log.warning("peer %s " + message + tail, peer_id.short, *args)

    def count(self, reason: str, n: int = 1) -> None:
        self.rejected[reason] += n
        self._pending_rejections[reason] += n

    async def flush(self) -> None:
        """Write the rejections counted since the last flush."""
        for reason, n in self._pending_rejections.items():
            await self._write_rejection(reason, n)
        self._pending_rejections.clear()
