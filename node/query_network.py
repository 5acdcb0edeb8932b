"""Network know-who queries of the running node: answering a peer's Query (only what each
contact's policy lets it pass on), forwarding on its own behalf (a fresh query id, no
asker: the next hop never learns who asked), gathering and checking the answers, and the
per-peer limits both ways.

Every Query gets exactly one Answer, and an asker stops waiting for a peer as soon as that
peer has answered or its connection has closed: nobody waits on silence.
docs/spec/70-contacts-and-queries.md. Logs never carry a contact's content.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from node.clock import now_ms
from node.connection import PeerConnection
from node.contact_index import ContactIndex
from node.contact_rows import hit_row, labels_of, result_rows
from node.local import Local, Peer, random
from node.peer_traffic import RateWindow, send_quietly
from protocol import limits
from protocol.answers import bounded_answer, check_answer_record, forward_timeout
from protocol.contact import Filter, trust_distances
from protocol.envelope import Body
from protocol.errors import LocalProtocolError, RateLimited, RemoteProtocolError
from protocol.identity import NodeId
from protocol.messages import AnswerStatus
from protocol.record import Record, Scope
from protocol.session import PeerQuery, record_id

log = logging.getLogger("canopy.knowwho")

_Reply = tuple[AnswerStatus, tuple[bytes, ...]] | None  # None: the connection closed first


class Network(Protocol):
    """What network queries need of the running node (`node.runtime.Node` has it)."""

    @property
    def connections(self) -> Mapping[NodeId, PeerConnection]: ...

    @property
    def peers(self) -> Mapping[NodeId, Peer]: ...

    @property
    def network_key(self) -> bytes: ...

    @property
    def network_keys(self) -> tuple[bytes, ...]: ...  # every network's, the first first

    async def penalise(
        self, peer_id: NodeId, error: RemoteProtocolError, *, reason: str, ban: bool = False
    ) -> None: ...


class Gathered:
    def __init__(self) -> None:
        self.records: list[bytes] = []  # accepted answer records, each once
        self.opened: list[tuple[Record, Body]] = []  # of those, the ones we did not hold
        self.asked = 0
        self.answered = 0
        self.refused = 0  # answered `refused` (its rate limit, or it could not answer)
        self.busy = 0  # not asked: our allowance with that peer is spent for now
        self.lost = 0  # the connection closed before the answer came
        self.timed_out = 0  # no answer within the timeout
        self.query_ids: list[str] = []


class NetworkQueries:
    def __init__(
        self,
        local: Local,
        network: Network,
        index: Callable[[], ContactIndex],
        ready: asyncio.Event,
    ) -> None:
        self.local = local
        self.network = network
        self.index = index  # the current index (a build replaces it)
        self.ready = ready  # set once the index is built
        self.query_rate = RateWindow(limits.MAX_QUERIES_PER_PEER_PER_MINUTE)
        # What we send each peer, held to its query_rate so that an honest forwarder is
        # never refused, penalised or cut off for the traffic of its neighbours.
        # The window is a little longer than the peer's minute: queries bunched up in
        # transit still land inside its allowance.
        self.query_allowance = RateWindow(
            limits.MAX_QUERIES_PER_PEER_PER_MINUTE, limits.QUERY_ALLOWANCE_WINDOW_MS / 1000
        )
        # Queries a peer makes us forward (depth > 1), and what we send each peer at depth
        # > 1, held to its forward limit: our own queries keep OWN_QUERY_RESERVE of both
        # allowances, so a peer's queries we forward can never leave ours "busy".
        self.forward_rate = RateWindow(limits.MAX_FORWARDED_QUERIES_PER_PEER_PER_MINUTE)
        self.forward_allowance = RateWindow(
            limits.MAX_FORWARDED_QUERIES_PER_PEER_PER_MINUTE,
            limits.QUERY_ALLOWANCE_WINDOW_MS / 1000,
        )
        self.received: deque[dict[str, object]] = deque(maxlen=limits.RECENT_QUERIES)
        # Our open queries: query id -> (the connection it went out on, its answer).
        self._waiters: dict[bytes, tuple[PeerConnection, asyncio.Future[_Reply]]] = {}
        self.answered = 0

    def stop(self) -> None:
        for _, future in self._waiters.values():
            if not future.done():
                future.cancel()

    def connection_closed(self, conn: PeerConnection) -> None:
        """Queries of ours open on `conn` will never be answered: stop waiting for them."""
        for owner, future in self._waiters.values():
            if owner is conn and not future.done():
                future.set_result(None)

    def on_answer(self, conn: PeerConnection, query_id: bytes, reply: _Reply) -> None:
        waiter = self._waiters.get(query_id)
        if waiter is not None and waiter[0] is conn and not waiter[1].done():
            waiter[1].set_result(reply)

    # -- answering -----------------------------------------------------------------------------

    async def on_query(self, conn: PeerConnection, query: PeerQuery) -> None:
        self.received.append(
            {
                "from": str(conn.peer_id),
                "query_id": query.query_id.hex(),
                "depth": query.depth,
                "filter": query.filter.to_value(),
                "at": now_ms(),
            }
        )

        def refuse() -> bytes:
            return conn.session.answer(query.query_id, (), AnswerStatus.REFUSED)

        if not self.ready.is_set():  # still building: say so now, don't leave it waiting
            send_quietly(conn, refuse)
            return
        peer = conn.peer_id
        if not self.query_rate.allow(peer.raw, time.monotonic()):
            send_quietly(conn, refuse)
            await self.network.penalise(
                peer, RateLimited("too many queries"), reason="query_rate_limited"
            )
            return
        if query.depth > 1 and not self.forward_rate.allow(peer.raw, time.monotonic()):
            send_quietly(conn, refuse)
            await self.network.penalise(
                peer, RateLimited("too many queries to forward"), reason="query_forward_rate"
            )
            return
        # Whatever happens below, the peer gets its one Answer now rather than waiting for
        # its timeout (and the query stops counting against its in-flight bound).
        status, out = AnswerStatus.REFUSED, []
        try:
            records = await self.answer_records(query.filter)
            if query.depth > 1:
                timeout = forward_timeout(query.depth)
                forwarded = await self.ask(
                    query.filter, query.depth - 1, exclude=peer, timeout=timeout
                )
                records += forwarded.records
            status, out = AnswerStatus.OK, bounded_answer(carried(conn, records))
            self.answered += 1
        except Exception:
            log.exception("answering a query failed; refusing it")
        finally:
            send_quietly(conn, lambda: conn.session.answer(query.query_id, out, status))

    async def answer_records(self, flt: Filter) -> list[bytes]:
        """What this node may reveal for `flt`: network contacts, teasers and their vouches."""
        index = self.index()
        distances = index.distances(n.raw for n in self.network.peers)
        limit = limits.MAX_ANSWER_RECORDS // 2
        hits = index.search(flt, now_ms(), distances, limit, answerable=True)
        keys = {h.entry.key for h in hits}
        people = {v for h in hits for v in h.vouchers}
        ids = [h.entry.rid for h in hits] + index.vouch_ids_for(keys, people)
        found = await self.local.store.get_records(ids)
        return [found[i] for i in ids if i in found]

    # -- asking --------------------------------------------------------------------------------

    async def ask(
        self, flt: Filter, depth: int, *, exclude: NodeId | None, timeout: float
    ) -> Gathered:
        """Ask every connected peer (but `exclude`) on our own behalf; check what comes back.

        Returns once every asked peer has answered (or its connection closed), at the latest
        after `timeout`. A peer whose allowance we have spent (its per-minute query limit,
        or MAX_QUERIES_IN_FLIGHT of ours still open with it) is not asked: counted `busy`."""
        started = time.monotonic()
        gathered = Gathered()
        asked = self._send_queries(flt, depth, exclude, started, gathered)
        gathered.query_ids = [q.hex() for q in asked]
        gathered.asked = len(asked)
        if asked:
            await asyncio.wait([self._waiters[q][1] for q in asked], timeout=timeout)
        await self._gather(asked, gathered)
        log.log(
            logging.INFO if gathered.timed_out or gathered.lost else logging.DEBUG,
            "query at depth %d: %d asked, %d answered, %d refused, %d busy, %d lost, "
            "%d timed out, in %.0f ms",
            depth,
            gathered.asked,
            gathered.answered,
            gathered.refused,
            gathered.busy,
            gathered.lost,
            gathered.timed_out,
            (time.monotonic() - started) * 1000,
        )
        return gathered

    def _send_queries(
        self, flt: Filter, depth: int, exclude: NodeId | None, started: float, gathered: Gathered
    ) -> dict[bytes, NodeId]:
        """Our Query to each peer we may ask now; query id -> the peer asked."""
        asked: dict[bytes, NodeId] = {}
        loop = asyncio.get_running_loop()
        # Forwarding for a peer (`exclude` is the asker) leaves OWN_QUERY_RESERVE of each
        # allowance to our own queries.
        reserve = limits.OWN_QUERY_RESERVE if exclude is not None else 0
        for peer_id, conn in list(self.network.connections.items()):
            if peer_id == exclude or conn.closing:
                continue
            if (
                not conn.session.query_capacity
                or not self.query_allowance.allow(peer_id.raw, started, reserve=reserve)
                or (
                    depth > 1
                    and not self.forward_allowance.allow(peer_id.raw, started, reserve=reserve)
                )
            ):
                gathered.busy += 1
                continue
            query_id = random(limits.QUERY_ID_BYTES)
            try:
                data = conn.session.query(query_id, depth, flt)
            except LocalProtocolError:
                continue
            self._waiters[query_id] = (conn, loop.create_future())
            asked[query_id] = peer_id
            conn.send(data)
        return asked

    async def _gather(self, asked: dict[bytes, NodeId], gathered: Gathered) -> None:
        """Count the replies to `asked`; keep the answer records that pass the check
        (each checked once), penalising the peers that sent one that does not."""
        now = now_ms()
        checked: dict[bytes, tuple[Record, Body] | RemoteProtocolError | None] = {}
        accepted: set[bytes] = set()
        for query_id, peer_id in asked.items():
            conn, future = self._waiters.pop(query_id)
            if not future.done():
                future.cancel()
                gathered.timed_out += 1
                continue
            reply = future.result()
            if reply is None:
                gathered.lost += 1
                continue
            status, records = reply
            if status is AnswerStatus.REFUSED:
                gathered.refused += 1
                continue
            gathered.answered += 1
            for data in carried(conn, records):  # another network's: not taken from this peer
                rid = record_id(data)
                if rid not in checked:  # the same bytes from another peer: checked once
                    checked[rid] = self._check(data, rid, now)
                outcome = checked[rid]
                if isinstance(outcome, RemoteProtocolError):
                    reason = f"answer_{type(outcome).__name__}"
                    await self.network.penalise(peer_id, outcome, reason=reason)
                elif rid not in accepted:
                    accepted.add(rid)
                    gathered.records.append(data)
                    if outcome is not None:
                        gathered.opened.append(outcome)

    def _check(
        self, data: bytes, rid: bytes, now: int
    ) -> tuple[Record, Body] | RemoteProtocolError | None:
        """check_answer_record's verdict on one answer record; None for a record we hold
        (verified when it was stored: same id, same bytes) and that may travel this way.

        Most answer records are held already, as network contacts spread by sync; opening
        each again (two signatures and a decryption) was most of a query's time."""
        index = self.index()
        entry = index.entries.get(rid)
        if entry is not None and entry.answerable() and entry.expires > now:
            return None
        vouch = index.vouches.get(rid)
        if vouch is not None and vouch.scope is Scope.NETWORK and vouch.expires > now:
            return None
        try:
            keys = self.network.network_keys or (self.network.network_key,)
            return check_answer_record(data, self.local.identity, keys, now)
        except RemoteProtocolError as exc:
            return exc

    # -- for the local API ---------------------------------------------------------------------

    async def network_query(self, flt: Filter, depth: int, limit: int) -> dict[str, object]:
        """Ask our peers (depth hops), merge with what we hold, rank."""
        started = time.monotonic()
        gathered = await self.ask(flt, depth, exclude=None, timeout=limits.QUERY_TIMEOUT_MS / 1000)
        now = now_ms()
        scratch = self.index().overlay(flt, now)
        local_ids = set(scratch.entries)
        for record, body in gathered.opened:  # what we hold is in the scratch index already
            scratch.add(record, body)
        peers = [n.raw for n in self.network.peers]
        distances = trust_distances(scratch.me, peers, scratch.peer_edges())
        hits = scratch.search(flt, now, distances, limit)
        labels = labels_of(self.network.peers)
        rows = []
        for hit in hits:
            row = hit_row(hit, scratch.me, labels, distances)
            row["via"] = "local" if hit.entry.rid in local_ids else "network"
            rows.append(row)
        return {
            "results": rows,
            "asked": gathered.asked,
            "answered": gathered.answered,
            "refused": gathered.refused,
            "busy": gathered.busy,
            "lost": gathered.lost,
            "timed_out": gathered.timed_out,
            "query_ids": gathered.query_ids,
            "answer_records": len(gathered.records),
            "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
        }

    def local_query(self, flt: Filter, limit: int) -> dict[str, object]:
        return {"results": result_rows(self.index(), flt, now_ms(), self.network.peers, limit)}


def carried(conn: PeerConnection, records: Sequence[bytes]) -> list[bytes]:
    """The answer records that may pass over `conn` as far as networks go: a node in two
    networks never answers a peer with the contacts of a network the peer is not in
    (docs/spec/45-networks.md), nor takes them from it."""
    view = conn.conversation.networks
    if view is None:
        return list(records)
    out = []
    for data in records:
        try:
            record = Record.from_bytes(data)  # a peer's bytes, some of them
        except RemoteProtocolError:
            out.append(data)  # malformed: the answer check refuses it and penalises its sender
            continue
        if view.carries(record):
            out.append(data)
    return out
