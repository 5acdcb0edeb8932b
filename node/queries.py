"""The running node's know-who engine: its live in-memory index (built in the background at
start, kept current as records are stored, withdrawn and expire, its openings cached for
the next start) and the wiring of network queries (node.query_network) and introductions
(node.introductions) to the peer events the node hands it.

Takes what it needs of the running node as a `Host` (node.runtime.Node is one); never
imports it. docs/spec/70-contacts-and-queries.md. Logs never carry a contact's content.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import deque
from collections.abc import Callable, Collection, Coroutine, Sequence
from dataclasses import dataclass
from typing import Protocol

from node.clock import now_ms
from node.connection import PeerConnection
from node.contact_index import ContactIndex
from node.entries import Entry, VouchEntry
from node.index_common import PendingRemovals, flush_openings
from node.introductions import IntroRouter, Peers
from node.local import Local
from node.opened_cache import MALFORMED, UNREADABLE, build_index, pack_opened
from node.query_network import Network, NetworkQueries
from protocol import limits
from protocol.contact import Filter
from protocol.envelope import open_record
from protocol.errors import NotForUs, RemoteProtocolError
from protocol.identity import NodeId
from protocol.record import Record
from protocol.session import PeerAnswer, PeerIntroReply, PeerIntroRequest, PeerQuery

log = logging.getLogger("canopy.knowwho")


class Host(Network, Peers, Protocol):
    """What know-who needs of the running node: its connections and trusted peers, the
    network key, the identities revoked, penalising a peer, and saying that it changed a
    sealed row itself."""

    @property
    def revoked(self) -> Collection[NodeId]: ...


@dataclass(frozen=True, slots=True)
class _Added:
    record: Record
    verify_body: bool


Keys = Callable[[], tuple[Sequence[bytes], Sequence[bytes]]]  # network keys, circle keys


class KnowWho(PendingRemovals[ContactIndex]):
    def __init__(self, local: Local, host: Host, keys: Keys | None = None) -> None:
        self.local = local
        self.host = host
        # What opens contacts and vouches now (every network's key, every circle epoch
        # key), as the running node holds them; without it, the first network's key.
        self.keys: Keys = keys or (lambda: ((self.host.network_key,), ()))
        self._seen: tuple[Sequence[bytes], Sequence[bytes]] | None = None  # of the last build
        self._again = False
        self.index = ContactIndex(local.node_id.raw)
        self.ready = asyncio.Event()  # set once the index is built (see start)
        self.queries = NetworkQueries(local, host, lambda: self.index, self.ready)
        self.intros = IntroRouter(local, host, lambda: self.index)
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: list[_Added | list[bytes]] | None = None  # changes during a build
        # What the index made of records stored since the last flush, for the next start
        # (with the size of each record, which bounds what is kept of it).
        self._opened: dict[bytes, tuple[Entry | VouchEntry | int, int]] = {}

    @property
    def received(self) -> deque[dict[str, object]]:
        return self.queries.received

    @property
    def answered(self) -> int:
        return self.queries.answered

    async def start(self) -> None:
        """Build the index in the background: with many contacts the build takes seconds,
        and the node's connections and API work meanwhile, if more slowly. Changes that
        arrive during the build are kept and applied to the new index; queries wait for it
        (peers' queries are refused at once rather than left waiting)."""
        self._pending = []
        self._seen = self.keys()
        self.spawn(self._build())

    def keys_changed(self) -> None:
        """The running node read its keys again: if those that open contacts changed (a
        circle joined or left, a peers circle that admitted us, a network), build the index
        again; the old one answers meanwhile, and contacts that stay unreadable are not
        opened again (what the cache holds of them is kept)."""
        keys = self.keys()
        if self._seen is None or keys == self._seen:
            return
        self._seen = keys
        self._opened.clear()  # opened under the old keys: the build opens them again
        if self._pending is not None:
            self._again = True  # a build is running: it starts over when it ends
            return
        self._pending = []
        self.spawn(self._build())

    async def _build(self) -> None:
        started = time.monotonic()
        while True:
            self._again = False
            index = await build_index(self.local, now_ms(), yield_every=limits.INDEX_BUILD_SLICE)
            if not self._again:
                break  # else the keys changed during the build: what it opened may be stale
        pending, self._pending = self._pending or [], None
        self.index = index
        for change in pending:
            if isinstance(change, _Added):
                self.add(change.record, verify_body=change.verify_body)
            else:
                self.remove(change)
        self.index.remove(self.index.expired(now_ms()))
        self.index.set_revoked(n.raw for n in self.host.revoked)
        # As the library does after its build: the index's millions of long-lived objects
        # are kept out of the collector's generations, whose full passes over them would
        # stall page views and queries (tens to hundreds of ms each).
        gc.collect()
        gc.freeze()
        self.ready.set()
        log.info(
            "know-who index: %d contacts, %d vouches in %.2f s",
            len(self.index.entries),
            len(self.index.vouches),
            time.monotonic() - started,
        )

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.queries.stop()

    def connection_closed(self, conn: PeerConnection) -> None:
        self.queries.connection_closed(conn)

    # -- keeping the index current -------------------------------------------------------------

    def add(self, record: Record, *, verify_body: bool) -> bool:
        """Index a stored contact or vouch; True if it opens but its content is malformed
        (False too while the index is being built: it is applied, and counted, after)."""
        if self._pending is not None:  # building: applied to the new index when it is done
            self._pending.append(_Added(record, verify_body))
            if not self._serving_during_build():
                return False
            # a rebuild (keys changed): the old index answers meanwhile, so it shows it too
        size = len(record.to_bytes())
        network_keys, circle_keys = self.keys()
        try:
            body = open_record(
                record,
                self.local.identity,
                network_keys,
                verify_body=verify_body,
                circle_keys=circle_keys,
            )
        except NotForUs:
            self._opened[record.id] = (UNREADABLE, size)
            return False
        except RemoteProtocolError:  # it opens, but breaks its kind's schema (or its body's)
            self.index.malformed += 1
            self._opened[record.id] = (MALFORMED, size)
            return True
        item = self.index.add(record, body)
        self._opened[record.id] = (item or MALFORMED, size)
        return item is None

    def _serving_during_build(self) -> bool:
        """A built index answers queries while another is built (after a key change)."""
        return self.ready.is_set()

    async def flush_opened(self) -> None:
        """Cache what the index made of the records added since the last flush (see
        `node.opened_cache.pack_opened`); a record without it is opened again at the next
        start. Items leave the queue only once written: a flush cancelled by the node
        stopping leaves them to the flush in `Node.stop`."""
        await flush_openings(self.local.store, self._opened, pack_opened)

    def network_key_changed(self) -> None:
        """The store dropped its cached openings (`Local.set_network_key`): values queued
        under the old key must not bring them back; those records are opened at the next
        start."""
        self._opened.clear()

    # -- events ------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def on_event(
        self,
        conn: PeerConnection,
        event: PeerQuery | PeerAnswer | PeerIntroRequest | PeerIntroReply,
    ) -> None:
        if isinstance(event, PeerQuery):
            self.spawn(self.queries.on_query(conn, event))
        elif isinstance(event, PeerAnswer):
            self.queries.on_answer(conn, event.query_id, (event.status, event.records))
        elif isinstance(event, PeerIntroRequest):
            if self.ready.is_set():
                await self.intros.on_request(conn, event, now_ms())
            else:  # answered from the index once it is built; reading goes on meanwhile
                self.spawn(self._when_ready(conn, event))
        else:
            await self.intros.on_reply(conn, event)

    async def _when_ready(self, conn: PeerConnection, event: PeerIntroRequest) -> None:
        await self.ready.wait()
        await self.intros.on_request(conn, event, now_ms())

    # -- for the node's loops and local API ----------------------------------------------------

    async def tick_introductions(self) -> None:
        await self.intros.tick()

    async def network_query(self, flt: Filter, depth: int, limit: int) -> dict[str, object]:
        return await self.queries.network_query(flt, depth, limit)

    def local_query(self, flt: Filter, limit: int) -> dict[str, object]:
        return self.queries.local_query(flt, limit)
