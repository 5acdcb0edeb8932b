"""Sync with connected peers: one `Conversation` per connection, and what they ask of us.

Opens and closes conversations (one connection per peer, the duplicate rule), answers
their questions from the store (exchangeable items, what to fetch, what a peer may be
sent), hands received records to ingest, pushes and relays what was stored, keeps the ids
in flight across connections and re-runs rounds when due. The rules are the
conversation's (protocol.conversation); this module is the `ConnectionHost` of
node.connection. It never imports node.runtime: collaborators are passed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from node.clock import now_ms
from node.connection import PeerConnection, WebSocket
from node.local import Local
from node.peer_book import PeerBook
from protocol import limits
from protocol.conversation import Conversation, Role, hand_over, push_plan
from protocol.errors import RecordRejected, RemoteProtocolError
from protocol.handshake import SessionKeys
from protocol.identity import NodeId
from protocol.invite import check_address, normalise_address
from protocol.names import check_name, name_taken
from protocol.networks import NetworkView
from protocol.reconcile import Item
from protocol.record import Record
from protocol.session import (
    Event,
    PeerAnswer,
    PeerHello,
    PeerIntroReply,
    PeerIntroRequest,
    PeerQuery,
)

log = logging.getLogger("canopy.node")

TRAFFIC = (
    "bytes_sent",
    "bytes_received",
    "record_bytes_sent",
    "record_bytes_received",
    "reconcile_rounds",
)

KnowWhoEvent = PeerQuery | PeerAnswer | PeerIntroRequest | PeerIntroReply


class KnowWhoHooks(Protocol):
    """What sync tells the know-who engine (node.queries.KnowWho)."""

    async def on_event(self, conn: PeerConnection, event: KnowWhoEvent) -> None: ...
    def connection_closed(self, conn: PeerConnection) -> None: ...
    async def tick_introductions(self) -> None: ...


Check = Callable[
    [PeerConnection, Sequence[bytes], Sequence[bytes]],
    Awaitable[tuple[list[Record], list[RemoteProtocolError]]],
]


class Sync:
    def __init__(
        self,
        local: Local,
        book: PeerBook,
        knowwho: KnowWhoHooks,
        *,
        idle_timeout: float,
        resync_interval: float,
        hello: Callable[[], tuple[str, Sequence[str]]],
        items_version: Callable[[], tuple[int, ...]],
        check: Check,
        accept: Callable[[Sequence[Record], PeerConnection], Awaitable[object]],
        own_write: Callable[[], None],
    ) -> None:
        self.local = local
        self.node_id = local.node_id
        self.book = book
        self.knowwho = knowwho
        self.idle_timeout = idle_timeout
        self.resync_interval = resync_interval
        self._hello = hello
        self._items_version = items_version
        self._check = check
        self._accept = accept
        self._own_write = own_write  # we wrote a peer row: no need to reload trust for it
        self.connections: dict[NodeId, PeerConnection] = {}
        self.inflight: set[bytes] = set()  # ids asked of some peer and not yet answered
        self.totals: Counter[str] = Counter()  # traffic of closed connections
        self._deliveries: list[tuple[bytes, bytes]] = []  # (peer, record id) not yet stored
        self._last_round: dict[NodeId, float] = {}  # carried from one connection to the next

    def connection(
        self,
        ws: WebSocket,
        peer_id: NodeId,
        keys: SessionKeys,
        *,
        outbound: bool,
        leftover: bytes,
        network: bytes | None = None,
    ) -> PeerConnection:
        """A connection and its conversation; the client of the connection initiates.
        `network`: the tag of the network whose key the handshake was made under."""
        conversation = Conversation(
            us=self.node_id,
            peer=peer_id,
            role=Role.INITIATOR if outbound else Role.RESPONDER,
            now=time.monotonic(),
            resync_interval=self.resync_interval,
            last_round=self._last_round.get(peer_id),
        )
        conn = PeerConnection(self, ws, conversation, keys, leftover=leftover)
        conn.network = network
        self.network_view(conn)
        return conn

    def network_view(self, conn: PeerConnection) -> NetworkView | None:
        """The networks `conn` carries (kept on its conversation for pushes): those its peer
        is a member of with us, and the one its handshake proved it holds the key of."""
        if not self.book.networks:
            return None
        shared = self.book.shared_networks(conn.peer_id)
        if conn.network is not None:
            shared |= {conn.network}
        view = NetworkView(shared, self.book.networks[0].tag)
        conn.conversation.networks = view
        return view

    # -- opening and closing -----------------------------------------------------------

    async def on_open(self, conn: PeerConnection) -> None:
        if conn.peer_id not in self.book.peers or conn.peer_id in self.book.revoked:
            await conn.close("not trusted")
            return
        existing = self.connections.get(conn.peer_id)
        if existing is not None:
            # Both sides dialled at once: keep the connection whose client has the lower id,
            # a rule both ends compute alike; same direction means the old one is stale.
            preferred_outbound = self.node_id.raw < conn.peer_id.raw
            if existing.outbound != conn.outbound and existing.outbound == preferred_outbound:
                await conn.close("duplicate connection")
                return
            self.connections[conn.peer_id] = conn
            await existing.close("duplicate connection")
        self.connections[conn.peer_id] = conn
        self.book.of(conn.peer_id).delay = 0.0
        log.info("connected to %s (%s)", conn.peer_id.short, "out" if conn.outbound else "in")
        await conn.start(*self._hello())
        await self.knowwho.tick_introductions()

    def on_closed(self, conn: PeerConnection) -> None:
        self.knowwho.connection_closed(conn)
        self.totals.update(conn.traffic())
        conversation = conn.conversation
        if conversation.last_round is not None:
            self._last_round[conn.peer_id] = conversation.last_round
        wanted = conversation.wanted | conversation.session.outstanding_wants
        if self.connections.get(conn.peer_id) is conn:
            del self.connections[conn.peer_id]
            log.info("disconnected from %s: %s", conn.peer_id.short, conn.close_reason)
            self.book.disconnected(conn.peer_id, conn.close_reason)
        self.release(conn, sorted(wanted))

    async def disconnect(self, peer_id: NodeId, reason: str) -> None:
        conn = self.connections.get(peer_id)
        if conn is not None:
            await conn.close(reason)

    async def close_all(self, reason: str) -> None:
        for conn in list(self.connections.values()):
            await conn.close(reason)

    # -- what a conversation asks of us ------------------------------------------------------

    def items_version(self) -> tuple[int, ...]:
        """Changes whenever the set of records a peer may exchange with us may have."""
        return self._items_version()

    async def items(self, conn: PeerConnection) -> list[Item]:
        view = self.network_view(conn)
        return await self.local.store.exchangeable_items(conn.peer_id.raw, now_ms(), view)

    async def to_fetch(
        self, conn: PeerConnection, ids: Sequence[bytes]
    ) -> tuple[list[bytes], list[bytes]]:
        """(ids to ask this peer for, ids it has that another peer is being asked for)."""
        held = await self.local.store.has(ids)
        fetch = [i for i in ids if i not in held and i not in self.inflight]
        deferred = [i for i in ids if i not in held and i in self.inflight]
        self.inflight.update(fetch)
        return fetch, deferred

    async def look_up(
        self, conn: PeerConnection, ids: Sequence[bytes]
    ) -> tuple[dict[bytes, bytes], list[bytes]]:
        """Of `ids`, the records this peer may receive from us (unexpired, of the networks
        it shares), by id, read up to `SERVE_LOOKUP_BYTES`; and the ids left for the next."""
        view = self.network_view(conn)
        return await self.local.store.records_for_peer_within(
            ids, conn.peer_id.raw, now_ms(), limits.SERVE_LOOKUP_BYTES, view
        )

    async def check(
        self, conn: PeerConnection, datas: Sequence[bytes], ids: Sequence[bytes]
    ) -> tuple[list[Record], list[RemoteProtocolError]]:
        good, errors = await self._check(conn, datas, ids)
        view = self.network_view(conn)
        if view is not None:
            # A record of a network this peer is not in with us: it had no business sending
            # it (nor we in taking it). Refused, and the peer pays for it.
            foreign = [r for r in good if not view.carries(r)]
            if foreign:
                self.book.count("record_other_network", len(foreign))
                errors = [
                    *errors,
                    *(RecordRejected("record of a network not shared") for _ in foreign),
                ]
                good = [r for r in good if view.carries(r)]
                self.inflight.difference_update(r.id for r in foreign)
        return good, errors

    async def store(self, conn: PeerConnection, records: Sequence[Record]) -> None:
        await self._accept(records, conn)

    def delivered(self, conn: PeerConnection, ids: Sequence[bytes]) -> None:
        self._deliveries.extend((conn.peer_id.raw, rid) for rid in ids)

    def release(self, conn: PeerConnection, ids: Sequence[bytes]) -> None:
        """Ids `conn` denied, sat on or took with it: ask another peer that announced them."""
        self.inflight.difference_update(ids)
        others = {c.conversation: c for c in self.connections.values() if c is not conn}
        for conversation, taken in hand_over(ids, [c for c, o in others.items() if not o.closing]):
            self.inflight.update(taken)
            others[conversation].ask(taken)

    def hedge(self, conn: PeerConnection, ids: Sequence[bytes]) -> None:
        """Ids `conn`'s peer sits on (no want answered for WANT_HEDGE_S): ask one other
        peer that announced them too; they stay outstanding at `conn` until either answers
        or WANT_TIMEOUT_S releases them (docs/spec/30-sync.md, on wants)."""
        if not ids:
            return
        others = {
            c.conversation: c
            for c in self.connections.values()
            if c is not conn and not c.closing and c.conversation.open
        }
        asked: list[bytes] = []
        for conversation, taken in hand_over(ids, list(others)):
            self.inflight.update(taken)
            others[conversation].ask(taken)
            asked += taken
        conn.conversation.hedged(asked)

    async def synced(self, conn: PeerConnection) -> None:
        now = time.monotonic()
        peer = self.book.peers.get(conn.peer_id)
        if peer is not None:
            peer.last_sync = now_ms()
            # Kept in memory at once; written at most every SYNC_WRITE_INTERVAL_S, so that
            # rounds cost no durable write each (the row is written again on the next one).
            since = now - conn.last_sync_saved
            if not conn.last_sync_saved or since >= limits.SYNC_WRITE_INTERVAL_S:
                conn.last_sync_saved = now
                await self.local.save_peer(peer)
                self._own_write()

    async def on_event(self, conn: PeerConnection, event: Event) -> None:
        if isinstance(event, PeerHello):
            await self._on_hello(conn, event)
        elif isinstance(event, PeerQuery | PeerAnswer | PeerIntroRequest | PeerIntroReply):
            await self.knowwho.on_event(conn, event)

    async def penalise(
        self, peer_id: NodeId, error: RemoteProtocolError, *, reason: str, ban: bool = False
    ) -> None:
        await self.book.penalise(peer_id, error, reason=reason, ban=ban)

    async def _on_hello(self, conn: PeerConnection, hello: PeerHello) -> None:
        peer = self.book.peers.get(conn.peer_id)
        if peer is None:
            return
        changed = False
        if hello.name and not peer.name:
            # The name rule of invites, and no name another peer (or this node) already
            # goes by: a peer may not pass itself off as another. Refused names are counted.
            others = [p.name for n, p in self.book.peers.items() if n != conn.peer_id]
            if check_name(hello.name) is not None:
                self.book.count("hello_name_refused")
            elif name_taken(hello.name, [*others, self._hello()[0]]):
                self.book.count("hello_name_taken")
            else:
                peer.name, changed = hello.name, True
        # The address rule of invites, normalised as everywhere an address is taken.
        usable = [normalise_address(a) for a in hello.addresses if check_address(a) is None]
        usable = list(dict.fromkeys(usable))[: limits.MAX_INVITE_ADDRESSES]
        if usable and not peer.addresses:
            peer.addresses, changed = usable, True
        if changed:
            await self.local.save_peer(peer)
            self._own_write()

    # -- push, rounds, figures ---------------------------------------------------------------

    def push(self, records: Sequence[Record], exclude: NodeId | None = None) -> None:
        """Offer records just stored to every connected peer (never back to `exclude`):
        whole or by id as `push_plan` says for each (each conversation keeps whether its
        link is pruned)."""
        targets = {
            p: c.conversation.pruned for p, c in self.connections.items() if p != exclude
        }
        plan = push_plan(records, targets, now_ms())
        for peer_id, lazy in plan.items():
            conn = self.connections.get(peer_id)
            if conn is not None:
                conn.push(records, lazy)

    def resync_soon(self) -> None:
        """Records may have arrived by other paths (`canopy import`): reconcile again soon."""
        for conn in self.connections.values():
            if conn.conversation.open:
                conn.conversation.resync_soon()

    async def resync_loop(self) -> None:
        """Once a second: wants a peer sits on are hedged, then released; rounds that are
        due begin (they repair dropped pushes and missed relays)."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for conn in list(self.connections.values()):
                with contextlib.suppress(Exception):
                    await conn.tick(now)
                    if not conn.closing and conn.conversation.open:
                        self.hedge(conn, conn.conversation.overdue(now))

    async def flush_deliveries(self) -> None:
        if self._deliveries:
            batch, self._deliveries = self._deliveries, []
            await self.local.store.record_deliveries(batch, now_ms())

    def ingesting(self) -> bool:
        """Whether some connection has records received and not yet stored."""
        return any(c.ingesting for c in self.connections.values())

    def traffic(self) -> dict[str, int]:
        out = Counter(self.totals)
        for conn in self.connections.values():
            out.update(conn.traffic())
        return {key: out[key] for key in TRAFFIC}
