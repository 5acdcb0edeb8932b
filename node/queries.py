"""The running node's know-who engine: the in-memory index, network queries, introductions.

Owns what a node answers to a peer's Query (only what each contact's policy lets it pass
on), forwarding on its own behalf (a fresh query id, no asker: the next hop never learns
who asked), per-peer rate limits, and routing introduction requests and replies.
Every Query gets exactly one Answer, and an asker stops waiting for a peer as soon as that
peer has answered or its connection has closed: nobody waits on silence.
docs/spec/70-contacts-and-queries.md. Logs never carry a contact's content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from node.clock import now_ms
from node.directory import (
    INTRODUCTIONS,
    MALFORMED,
    UNREADABLE,
    ContactIndex,
    Entry,
    VouchEntry,
    build_index,
    hit_row,
    pack_opened,
    request_of,
)
from node.local import random
from protocol import limits
from protocol.contact import Contact, Filter, Share, Vouch, trust_distances
from protocol.encoding import Value
from protocol.envelope import Body, open_record
from protocol.errors import (
    LocalProtocolError,
    NotForUs,
    RateLimited,
    RecordRejected,
    RemoteProtocolError,
)
from protocol.identity import NodeId
from protocol.messages import AnswerStatus, IntroStatus
from protocol.record import Kind, Record, Scope
from protocol.session import (
    PeerAnswer,
    PeerIntroReply,
    PeerIntroRequest,
    PeerQuery,
    record_id,
)

if TYPE_CHECKING:
    from node.connection import PeerConnection
    from node.runtime import Node

log = logging.getLogger("canopy.knowwho")

_ME = b""  # intro route: the request is ours

_Reply = tuple[AnswerStatus, tuple[bytes, ...]] | None  # None: the connection closed first


class RateWindow:
    """At most `limit` events per key in any `window` seconds (sliding)."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._events: dict[bytes, deque[float]] = {}

    def allow(self, key: bytes, now: float, *, reserve: int = 0) -> bool:
        """Count one event unless `limit - reserve` are already in the window (`reserve`:
        what is kept for callers that pass none)."""
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - self.window:
            events.popleft()
        if len(events) >= self.limit - reserve:
            return False
        events.append(now)
        return True


def check_answer_record(data: bytes, node: Node, now_ms: int) -> tuple[Record, Body]:
    """A record from an Answer: signed, current, readable with the network key, and one the
    contact's policy lets travel this way. RemoteProtocolError otherwise."""
    record = Record.from_bytes(data)
    record.verify()
    record.check_time(now_ms)
    if record.scope is not Scope.NETWORK or record.kind not in (Kind.CONTACT, Kind.VOUCH):
        raise RecordRejected("an answer carries only network-scoped contacts and vouches")
    try:
        body = open_record(record, node.local.identity, node.network_key)
    except NotForUs:
        raise RecordRejected("an answer record the network cannot read") from None
    if record.kind is Kind.CONTACT:
        contact = Contact.from_content(body.content)
        if not (contact.share is Share.NETWORK or contact.teaser):
            raise RecordRejected("a contact whose policy forbids passing it on")
    else:
        Vouch.from_content(body.content)
    return record, body


@dataclass(frozen=True, slots=True)
class _Added:
    record: Record
    verify_body: bool


class KnowWho:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.index = ContactIndex(node.node_id.raw)
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
        self.intro_rate = RateWindow(limits.MAX_INTROS_PER_PEER_PER_MINUTE)
        self.received: deque[dict[str, object]] = deque(maxlen=limits.RECENT_QUERIES)
        # Our open queries: query id -> (the connection it went out on, its answer).
        self._waiters: dict[bytes, tuple[PeerConnection, asyncio.Future[_Reply]]] = {}
        self.routes: dict[bytes, bytes] = {}  # intro request id -> peer it came from (or _ME)
        self._seen_intros: deque[bytes] = deque(maxlen=4096)
        self._tasks: set[asyncio.Task[None]] = set()
        self.answered = 0
        self.ready = asyncio.Event()  # set once the index is built (see start)
        self._pending: list[_Added | list[bytes]] | None = None  # changes during a build
        # What the index made of records stored since the last flush, for the next start
        # (with the size of each record, which bounds what is kept of it).
        self._opened: dict[bytes, tuple[Entry | VouchEntry | int, int]] = {}

    async def start(self) -> None:
        """Build the index in the background: with many contacts the build takes seconds,
        and the node's connections and API work meanwhile, if more slowly. Changes that
        arrive during the build are kept and applied to the new index; queries wait for it
        (peers' queries are refused at once rather than left waiting)."""
        self._pending = []
        self.spawn(self._build())

    async def _build(self) -> None:
        started = time.monotonic()
        index = await build_index(self.node.local, now_ms(), yield_every=limits.INDEX_BUILD_SLICE)
        pending, self._pending = self._pending or [], None
        self.index = index
        for change in pending:
            if isinstance(change, _Added):
                self.add(change.record, verify_body=change.verify_body)
            else:
                self.remove(change)
        self.index.remove(self.index.expired(now_ms()))
        self.index.set_revoked(n.raw for n in self.node.revoked)
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
        for _, future in self._waiters.values():
            if not future.done():
                future.cancel()

    def connection_closed(self, conn: PeerConnection) -> None:
        """Queries of ours open on `conn` will never be answered: stop waiting for them."""
        for owner, future in self._waiters.values():
            if owner is conn and not future.done():
                future.set_result(None)

    # -- keeping the index current -------------------------------------------------------------

    def add(self, record: Record, *, verify_body: bool) -> bool:
        """Index a stored contact or vouch; True if it opens but its content is malformed
        (False too while the index is being built: it is applied, and counted, after)."""
        if self._pending is not None:  # building: applied to the new index when it is done
            self._pending.append(_Added(record, verify_body))
            return False
        try:
            body = open_record(
                record, self.node.local.identity, self.node.network_key, verify_body=verify_body
            )
        except NotForUs:
            self._opened[record.id] = (UNREADABLE, len(record.to_bytes()))
            return False
        except RemoteProtocolError:  # it opens, but breaks its kind's schema (or its body's)
            self.index.malformed += 1
            self._opened[record.id] = (MALFORMED, len(record.to_bytes()))
            return True
        item = self.index.add(record, body)
        self._opened[record.id] = (item or MALFORMED, len(record.to_bytes()))
        return item is None

    async def flush_opened(self) -> None:
        """Cache what the index made of the records added since the last flush (see
        `node.directory.pack_opened`); a record without it is opened again at the next start.
        Items leave the queue only once written: a flush cancelled by the node stopping
        leaves them to the flush in `Node.stop`."""
        if not self._opened:
            return
        batch = list(self._opened.items())
        store = self.node.local.store
        await store.put_opened(
            [(rid, pack_opened(it, store.opened_room(n)), n) for rid, (it, n) in batch]
        )
        for rid, queued in batch:
            if self._opened.get(rid) is queued:
                del self._opened[rid]

    def network_key_changed(self) -> None:
        """The store dropped its cached openings (`Local.set_network_key`): values queued
        under the old key must not bring them back; those records are opened at the next
        start."""
        self._opened.clear()

    def remove(self, ids: Sequence[bytes]) -> None:
        if self._pending is not None:
            self._pending.append(list(ids))
            return
        self.index.remove(ids)

    def expire(self, now_ms: int) -> None:
        if self._pending is None:  # (a build drops what expired when it ends)
            self.index.remove(self.index.expired(now_ms))

    # -- events ------------------------------------------------------------------------------

    def spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def on_event(
        self,
        conn: PeerConnection,
        event: PeerQuery | PeerAnswer | PeerIntroRequest | PeerIntroReply,
    ) -> None:
        if isinstance(event, PeerQuery):
            self.spawn(self._on_query(conn, event))
        elif isinstance(event, PeerAnswer):
            waiter = self._waiters.get(event.query_id)
            if waiter is not None and waiter[0] is conn and not waiter[1].done():
                waiter[1].set_result((event.status, event.records))
        elif isinstance(event, PeerIntroRequest):
            if self.ready.is_set():
                await self._on_intro_request(conn, event)
            else:  # answered from the index once it is built; reading goes on meanwhile
                self.spawn(self._when_ready(self._on_intro_request(conn, event)))
        else:
            await self._on_intro_reply(conn, event)

    async def _when_ready(self, work: Awaitable[None]) -> None:
        await self.ready.wait()
        await work

    # -- queries: answering --------------------------------------------------------------------

    async def _on_query(self, conn: PeerConnection, query: PeerQuery) -> None:
        self.received.append(
            {
                "from": str(conn.peer_id),
                "query_id": query.query_id.hex(),
                "depth": query.depth,
                "filter": query.filter.to_value(),
                "at": now_ms(),
            }
        )
        if not self.ready.is_set():  # still building: say so now, don't leave it waiting
            self._send(conn, lambda: conn.session.answer(query.query_id, (), AnswerStatus.REFUSED))
            return
        if not self.query_rate.allow(conn.peer_id.raw, time.monotonic()):
            self._send(conn, lambda: conn.session.answer(query.query_id, (), AnswerStatus.REFUSED))
            await self.node.penalise(
                conn.peer_id, RateLimited("too many queries"), reason="query_rate_limited"
            )
            return
        if query.depth > 1 and not self.forward_rate.allow(conn.peer_id.raw, time.monotonic()):
            self._send(conn, lambda: conn.session.answer(query.query_id, (), AnswerStatus.REFUSED))
            await self.node.penalise(
                conn.peer_id,
                RateLimited("too many queries to forward"),
                reason="query_forward_rate",
            )
            return
        # Whatever happens below, the peer gets its one Answer now rather than waiting for
        # its timeout (and the query stops counting against its in-flight bound).
        status, out = AnswerStatus.REFUSED, []
        try:
            records = await self.answer_records(query.filter)
            if query.depth > 1:
                forwarded = await self.ask(
                    query.filter,
                    query.depth - 1,
                    exclude=conn.peer_id,
                    timeout=forward_timeout(query.depth),
                )
                records += forwarded.records
            status, out = AnswerStatus.OK, _bounded(records)
            self.answered += 1
        except Exception:
            log.exception("answering a query failed; refusing it")
        finally:
            self._send(conn, lambda: conn.session.answer(query.query_id, out, status))

    def _send(self, conn: PeerConnection, make: object) -> None:
        with contextlib.suppress(LocalProtocolError):  # the connection closed meanwhile
            conn.send(make())  # type: ignore[operator]

    async def answer_records(self, flt: Filter) -> list[bytes]:
        """What this node may reveal for `flt`: network contacts, teasers and their vouches."""
        now = now_ms()
        distances = self.index.distances(n.raw for n in self.node.peers)
        hits = self.index.search(
            flt, now, distances, limits.MAX_ANSWER_RECORDS // 2, answerable=True
        )
        keys = {h.entry.key for h in hits}
        people = {v for h in hits for v in h.vouchers}
        ids = [h.entry.rid for h in hits] + self.index.vouch_ids_for(keys, people)
        found = await self.node.local.store.get_records(ids)
        return [found[i] for i in ids if i in found]

    # -- queries: asking -----------------------------------------------------------------------

    async def ask(
        self, flt: Filter, depth: int, *, exclude: NodeId | None, timeout: float
    ) -> Gathered:
        """Ask every connected peer (but `exclude`) on our own behalf; check what comes back.

        Returns once every asked peer has answered (or its connection closed), at the latest
        after `timeout`. A peer whose allowance we have spent (its per-minute query limit,
        or MAX_QUERIES_IN_FLIGHT of ours still open with it) is not asked: counted `busy`."""
        started = time.monotonic()
        gathered = Gathered()
        asked: dict[bytes, NodeId] = {}
        loop = asyncio.get_running_loop()
        # Forwarding for a peer (`exclude` is the asker) leaves OWN_QUERY_RESERVE of each
        # allowance to our own queries.
        reserve = limits.OWN_QUERY_RESERVE if exclude is not None else 0
        for peer_id, conn in list(self.node.connections.items()):
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
        gathered.query_ids = [q.hex() for q in asked]
        gathered.asked = len(asked)
        if asked:
            await asyncio.wait([self._waiters[q][1] for q in asked], timeout=timeout)
        now = now_ms()
        checked: dict[bytes, tuple[Record, Body] | RemoteProtocolError | None] = {}
        accepted: set[bytes] = set()
        for query_id, peer_id in asked.items():
            _, future = self._waiters.pop(query_id)
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
            for data in records:
                rid = record_id(data)
                if rid not in checked:  # the same bytes from another peer: checked once
                    checked[rid] = self._check(data, rid, now)
                outcome = checked[rid]
                if isinstance(outcome, RemoteProtocolError):
                    await self.node.penalise(
                        peer_id, outcome, reason=f"answer_{type(outcome).__name__}"
                    )
                elif rid not in accepted:
                    accepted.add(rid)
                    gathered.records.append(data)
                    if outcome is not None:
                        gathered.opened.append(outcome)
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

    def _check(
        self, data: bytes, rid: bytes, now: int
    ) -> tuple[Record, Body] | RemoteProtocolError | None:
        """check_answer_record's verdict on one answer record; None for a record we hold
        (verified when it was stored: same id, same bytes) and that may travel this way.

        Most answer records are held already, as network contacts spread by sync; opening
        each again (two signatures and a decryption) was most of a query's time."""
        entry = self.index.entries.get(rid)
        if entry is not None and entry.answerable() and entry.expires > now:
            return None
        vouch = self.index.vouches.get(rid)
        if vouch is not None and vouch.scope is Scope.NETWORK and vouch.expires > now:
            return None
        try:
            return check_answer_record(data, self.node, now)
        except RemoteProtocolError as exc:
            return exc

    async def network_query(self, flt: Filter, depth: int, limit: int) -> dict[str, object]:
        """For the local API: ask our peers (depth hops), merge with what we hold, rank."""
        started = time.monotonic()
        gathered = await self.ask(flt, depth, exclude=None, timeout=limits.QUERY_TIMEOUT_MS / 1000)
        now = now_ms()
        scratch = self.index.overlay(flt, now)
        local_ids = set(scratch.entries)
        for record, body in gathered.opened:  # what we hold is in the scratch index already
            scratch.add(record, body)
        peers = [n.raw for n in self.node.peers]
        distances = trust_distances(scratch.me, peers, scratch.peer_edges())
        hits = scratch.search(flt, now, distances, limit)
        labels = {n.raw: p.label for n, p in self.node.peers.items()}
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
        now = now_ms()
        distances = self.index.distances(n.raw for n in self.node.peers)
        labels = {n.raw: p.label for n, p in self.node.peers.items()}
        hits = self.index.search(flt, now, distances, limit)
        return {"results": [hit_row(h, self.index.me, labels, distances) for h in hits]}

    # -- introductions -------------------------------------------------------------------------

    async def _on_intro_request(self, conn: PeerConnection, event: PeerIntroRequest) -> None:
        request = event.request
        if not self.intro_rate.allow(conn.peer_id.raw, time.monotonic()):
            await self.node.penalise(
                conn.peer_id, RateLimited("too many introduction requests"), reason="intro_rate"
            )
            return
        request.verify()  # VerificationError: the connection penalises and closes
        if request.request_id in self._seen_intros:
            return
        self._seen_intros.append(request.request_id)
        me = self.node.node_id.raw
        if request.introducer == me:
            entry = self.index.entries.get(request.teaser_id)
            if entry is None or entry.author != me or not entry.contact.teaser:
                self._send(
                    conn,
                    lambda: conn.session.intro_reply(request.request_id, IntroStatus.UNKNOWN),
                )
                return
            self.routes[request.request_id] = conn.peer_id.raw
            rows = await self.node.local.store.rows(INTRODUCTIONS)
            if request.request_id not in rows:
                row: dict[str, Value] = {
                    "dir": "in",
                    "teaser": request.teaser_id,
                    "introducer": request.introducer,
                    "asker": request.asker,
                    "note": request.note,
                    "signature": request.signature,
                    "status": "pending",
                    "created": now_ms(),
                    "kind": entry.contact.kind,
                    "region": entry.contact.region,
                }
                await self.node.local.store.put_row(INTRODUCTIONS, request.request_id, row)
                self.node.bump_own_epoch()
            log.info("introduction requested by %s", NodeId(request.asker).short)
            return
        target = self.node.connections.get(NodeId(request.introducer))
        if request.hops > 0 and target is not None and not target.closing:
            self.routes[request.request_id] = conn.peer_id.raw
            forwarded = replace(request, hops=request.hops - 1)
            self._send(target, lambda: target.session.intro_request(forwarded))
            return
        self._send(conn, lambda: conn.session.intro_reply(request.request_id, IntroStatus.UNKNOWN))

    async def _on_intro_reply(self, conn: PeerConnection, event: PeerIntroReply) -> None:
        origin = self.routes.pop(event.request_id, None)
        if origin is None:
            return
        if origin == _ME:
            rows = await self.node.local.store.rows(INTRODUCTIONS)
            row = rows.get(event.request_id)
            if row is not None and row.get("status") in ("queued", "sent"):
                status = {
                    IntroStatus.APPROVED: "approved",
                    IntroStatus.DECLINED: "declined",
                    IntroStatus.UNKNOWN: "unknown",
                }[event.status]
                await self.node.local.store.put_row(
                    INTRODUCTIONS, event.request_id, {**row, "status": status}
                )
                self.node.bump_own_epoch()
            return
        back = self.node.connections.get(NodeId(origin))
        if back is not None and back.session.can_reply_intro(event.request_id):
            self._send(back, lambda: back.session.intro_reply(event.request_id, event.status))

    async def tick_introductions(self) -> None:
        """Send queued requests of ours; send decisions taken on requests to us."""
        rows = await self.node.local.store.rows(INTRODUCTIONS)
        changed = False
        for request_id, row in rows.items():
            status = row.get("status")
            if row.get("dir") == "out" and status == "queued" and self.node.connections:
                introducer = self.node.connections.get(NodeId(_bytes(row["introducer"])))
                targets = [introducer] if introducer else list(self.node.connections.values())
                sent = False
                for conn in targets:
                    hops = 0 if conn is introducer else limits.MAX_INTRO_HOPS - 1
                    request = request_of(request_id, row, hops)
                    try:
                        conn.send(conn.session.intro_request(request))
                        sent = True
                    except LocalProtocolError:
                        continue
                if sent:
                    self.routes[request_id] = _ME
                    await self.node.local.store.put_row(
                        INTRODUCTIONS, request_id, {**row, "status": "sent"}
                    )
                    changed = True
            elif row.get("dir") == "in" and status in ("approved", "declined"):
                if row.get("replied"):
                    continue
                origin = self.routes.get(request_id)
                back = self.node.connections.get(NodeId(origin)) if origin else None
                if back is None or not back.session.can_reply_intro(request_id):
                    continue
                reply = IntroStatus.APPROVED if status == "approved" else IntroStatus.DECLINED
                self._send(back, lambda b=back, r=request_id, s=reply: b.session.intro_reply(r, s))
                self.routes.pop(request_id, None)
                await self.node.local.store.put_row(
                    INTRODUCTIONS, request_id, {**row, "replied": True}
                )
                changed = True
        if changed:
            self.node.bump_own_epoch()


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


def forward_timeout(depth: int) -> float:
    """Seconds a node that received a query of `depth` waits for the peers it forwards to.

    Grows with the hops still to go, so that every node along the way waits longer than
    the next one does: QUERY_FORWARD_TIMEOUT_MS per hop below it. The asker's
    QUERY_TIMEOUT_MS exceeds the longest of these (tests/test_knowwho_timing.py)."""
    return limits.QUERY_FORWARD_TIMEOUT_MS * (depth - 1) / 1000


def _bounded(records: list[bytes]) -> list[bytes]:
    """Deduplicated by id, at most MAX_ANSWER_RECORDS and MAX_ANSWER_BYTES."""
    out: list[bytes] = []
    seen: set[bytes] = set()
    size = 0
    for data in records:
        rid = record_id(data)
        if rid in seen:
            continue
        if len(out) >= limits.MAX_ANSWER_RECORDS or size + len(data) > limits.MAX_ANSWER_BYTES:
            break
        seen.add(rid)
        out.append(data)
        size += len(data)
    return out


def _bytes(value: Value) -> bytes:
    assert isinstance(value, bytes)
    return value
