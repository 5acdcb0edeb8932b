"""Introductions on a data directory and on the wire: asking for the details behind an
on-request teaser, deciding on a request, and routing requests and replies between peers.

The states and their moves are `protocol/introductions.py`'s table; this module stores the
rows (sealed, in the `introductions` table) and sends the messages. An introducer that
approves seals the author-signed details to the asker alone; sync delivers them.
docs/spec/70-contacts-and-queries.md, "Introductions". Logs never carry a contact's content.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Protocol

from node.connection import PeerConnection
from node.contact_index import ContactIndex
from node.content import row_of
from node.directory import open_quietly, own_contacts, readable_contact
from node.local import Local, random
from node.peer_traffic import RateWindow, send_quietly
from protocol import limits
from protocol.contact import Contact
from protocol.encoding import Value
from protocol.envelope import open_record, seal
from protocol.errors import CanopyError, LocalProtocolError, RateLimited, RemoteProtocolError
from protocol.identity import NodeId
from protocol.introductions import (
    AWAITING_REPLY,
    Direction,
    IntroInput,
    direction_of,
    moved,
    new_row,
    reply_due,
    reply_input,
    request_of,
    state_of,
)
from protocol.messages import IntroRequest, IntroStatus
from protocol.record import Kind, Record, Scope
from protocol.session import PeerIntroReply, PeerIntroRequest

INTRODUCTIONS = "introductions"
_ME = b""  # intro route: the request is ours

log = logging.getLogger("canopy.knowwho")


# -- on a data directory (the CLI) -------------------------------------------------------------


async def request_introduction(local: Local, ref: str, note: str, now_ms: int) -> dict[str, Value]:
    """Queue a signed request for the details behind a teaser; the running node sends it."""
    if len(note.encode("utf-8")) > limits.MAX_INTRO_NOTE_BYTES:
        raise CanopyError(f"--note is limited to {limits.MAX_INTRO_NOTE_BYTES} bytes")
    record, _, contact = await readable_contact(local, ref)
    if not contact.teaser:
        raise CanopyError(f"{ref} is not an on-request contact: its details are already here")
    if contact.introducer == local.node_id.raw:
        raise CanopyError("that contact is yours")
    for held in (await local.store.rows(INTRODUCTIONS)).values():
        if (
            direction_of(held) is Direction.OUT
            and held.get("teaser") == record.id
            and state_of(held) in AWAITING_REPLY
        ):
            raise CanopyError("an introduction to that contact is already requested")
    request = IntroRequest.create(
        local.identity, random(limits.QUERY_ID_BYTES), record.id, contact.introducer, note
    )
    row = new_row(Direction.OUT, request, now_ms, contact.kind, contact.region)
    await local.store.put_row(INTRODUCTIONS, request.request_id, row)
    return {"request_id": request.request_id, **row}


async def introductions(local: Local) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for rid, row in (await local.store.rows(INTRODUCTIONS)).items():
        request = request_of(rid, row, 0)
        rows.append(
            {
                "id": rid.hex(),
                "direction": "incoming" if row.get("dir") == "in" else "outgoing",
                "contact": request.teaser_id.hex(),
                "asker": str(NodeId(request.asker)),
                "introducer": str(NodeId(request.introducer)),
                "note": row.get("note", ""),
                "status": row.get("status", ""),
                "created": row.get("created", 0),
                "kind": row.get("kind", ""),
                "region": row.get("region", ""),
            }
        )
    return sorted(rows, key=lambda r: -int(str(r["created"])))


async def decide(local: Local, ref: str, approve: bool, now_ms: int) -> dict[str, Value]:
    """Approve (seal the details to the asker, which gossip delivers) or decline a request."""
    ref = ref.strip().lower()
    rows = await local.store.rows(INTRODUCTIONS)
    matches = [k for k, r in rows.items() if k.hex().startswith(ref) and r.get("dir") == "in"]
    if len(ref) < 6 or not matches:
        raise CanopyError(f"no incoming introduction request {ref!r}")
    if len(matches) > 1:
        raise CanopyError(f"{ref} matches several requests; give more of the id")
    rid = matches[0]
    row = moved(rows[rid], IntroInput.APPROVE if approve else IntroInput.DECLINE)
    if row is None:
        raise CanopyError(f"that request is already {rows[rid].get('status')!s}")
    if approve:
        await _seal_details_to_asker(local, request_of(rid, row, 0), now_ms)
    row["decided"] = now_ms
    await local.store.put_row(INTRODUCTIONS, rid, row)
    return {"request_id": rid, **row}


async def _seal_details_to_asker(local: Local, request: IntroRequest, now_ms: int) -> None:
    found = (await local.store.get_records([request.teaser_id])).get(request.teaser_id)
    if found is None:
        raise CanopyError("that contact was withdrawn; decline the request instead")
    opened = open_quietly(local, await local.network_key(), found)
    if opened is None:
        raise CanopyError("that contact cannot be read here")
    uid = Contact.from_content(opened[1].content).uid
    details = [r for r in await own_contacts(local, uid) if r.scope is Scope.PRIVATE]
    if not details:
        raise CanopyError("the details of that contact are no longer here")
    original = details[0]
    body = open_record(original, local.identity, None)
    # The same author-signed Body, sealed to the asker alone: it proves who vouched.
    asker = NodeId(request.asker)
    copy = Record.create(
        local.identity,
        Kind.CONTACT,
        created=original.created,
        expires=original.expires,
        scope=Scope.NETWORK,
        payload=seal(body.to_bytes(), [asker, local.node_id], None, random),
    )
    await local.store.put_records([row_of(copy, local=True)], now_ms)


# -- on the wire (the running node) ------------------------------------------------------------


class Peers(Protocol):
    """What routing introductions needs of the running node (`node.runtime.Node` has it)."""

    @property
    def connections(self) -> Mapping[NodeId, PeerConnection]: ...

    async def penalise(
        self, peer_id: NodeId, error: RemoteProtocolError, *, reason: str, ban: bool = False
    ) -> None: ...

    def bump_own_epoch(self) -> None: ...


class IntroRouter:
    """Requests and replies between peers: answers a request to us from the index, forwards
    one to a connected introducer, relays a reply back the way its request came, sends our
    queued requests and our decisions. Routes live in memory only."""

    def __init__(self, local: Local, peers: Peers, index: Callable[[], ContactIndex]) -> None:
        self.local = local
        self.peers = peers
        self.index = index  # the current index (a build replaces it)
        self.rate = RateWindow(limits.MAX_INTROS_PER_PEER_PER_MINUTE)
        self.routes: dict[bytes, bytes] = {}  # request id -> peer it came from (or _ME)
        self._seen: deque[bytes] = deque(maxlen=4096)

    async def on_request(self, conn: PeerConnection, event: PeerIntroRequest, now_ms: int) -> None:
        request = event.request
        if not self.rate.allow(conn.peer_id.raw, time.monotonic()):
            await self.peers.penalise(
                conn.peer_id, RateLimited("too many introduction requests"), reason="intro_rate"
            )
            return
        request.verify()  # VerificationError: the connection penalises and closes
        if request.request_id in self._seen:
            return
        self._seen.append(request.request_id)
        if request.introducer == self.local.node_id.raw:
            await self._to_us(conn, request, now_ms)
            return
        target = self.peers.connections.get(NodeId(request.introducer))
        if request.hops > 0 and target is not None and not target.closing:
            self.routes[request.request_id] = conn.peer_id.raw
            forwarded = replace(request, hops=request.hops - 1)
            send_quietly(target, lambda: target.session.intro_request(forwarded))
            return
        self._unknown(conn, request)

    async def _to_us(self, conn: PeerConnection, request: IntroRequest, now_ms: int) -> None:
        entry = self.index().entries.get(request.teaser_id)
        me = self.local.node_id.raw
        if entry is None or entry.author != me or not entry.contact.teaser:
            self._unknown(conn, request)
            return
        self.routes[request.request_id] = conn.peer_id.raw
        store = self.local.store
        if request.request_id not in await store.rows(INTRODUCTIONS):
            row = new_row(Direction.IN, request, now_ms, entry.contact.kind, entry.contact.region)
            await store.put_row(INTRODUCTIONS, request.request_id, row)
            self.peers.bump_own_epoch()
        log.info("introduction requested by %s", NodeId(request.asker).short)

    @staticmethod
    def _unknown(conn: PeerConnection, request: IntroRequest) -> None:
        send_quietly(
            conn, lambda: conn.session.intro_reply(request.request_id, IntroStatus.UNKNOWN)
        )

    async def on_reply(self, conn: PeerConnection, event: PeerIntroReply) -> None:
        origin = self.routes.pop(event.request_id, None)
        if origin is None:
            return
        if origin == _ME:
            row = (await self.local.store.rows(INTRODUCTIONS)).get(event.request_id)
            answered = None if row is None else moved(row, reply_input(event.status))
            if answered is not None:
                await self.local.store.put_row(INTRODUCTIONS, event.request_id, answered)
                self.peers.bump_own_epoch()
            return
        back = self.peers.connections.get(NodeId(origin))
        if back is not None and back.session.can_reply_intro(event.request_id):
            send_quietly(back, lambda: back.session.intro_reply(event.request_id, event.status))

    async def tick(self) -> None:
        """Send queued requests of ours; send decisions taken on requests to us."""
        changed = False
        for request_id, row in (await self.local.store.rows(INTRODUCTIONS)).items():
            if direction_of(row) is Direction.OUT:
                changed |= await self._send_queued(request_id, row)
            else:
                changed |= await self._reply_decided(request_id, row)
        if changed:
            self.peers.bump_own_epoch()

    async def _send_queued(self, request_id: bytes, row: dict[str, Value]) -> bool:
        sent = moved(row, IntroInput.SEND)
        if sent is None or not self.peers.connections or not self._send_ours(request_id, row):
            return False
        self.routes[request_id] = _ME
        await self.local.store.put_row(INTRODUCTIONS, request_id, sent)
        return True

    async def _reply_decided(self, request_id: bytes, row: dict[str, Value]) -> bool:
        reply = reply_due(row)
        origin = self.routes.get(request_id)
        back = self.peers.connections.get(NodeId(origin)) if origin else None
        if reply is None or back is None or not back.session.can_reply_intro(request_id):
            return False
        send_quietly(back, lambda: back.session.intro_reply(request_id, reply))
        self.routes.pop(request_id, None)
        await self.local.store.put_row(INTRODUCTIONS, request_id, {**row, "replied": True})
        return True

    def _send_ours(self, request_id: bytes, row: dict[str, Value]) -> bool:
        """Our queued request, to its introducer if connected, else to every peer (which
        may forward it); True if it went out on any connection."""
        connections = self.peers.connections
        introducer = connections.get(NodeId(request_of(request_id, row, 0).introducer))
        sent = False
        for conn in [introducer] if introducer else list(connections.values()):
            hops = 0 if conn is introducer else limits.MAX_INTRO_HOPS - 1
            try:
                conn.send(conn.session.intro_request(request_of(request_id, row, hops)))
                sent = True
            except LocalProtocolError:
                continue
        return sent
