"""One authenticated peer connection: a thin driver around box-stream and SyncSession.

Reads WebSocket binary messages, feeds the box-stream decoder and the sync session, and
hands each event to the node. Writes go through one writer task so frames leave in nonce
order; urgent bytes (alerts) jump the queue. Sending never blocks the read loop: that is
what keeps two peers that both have a lot to say from waiting on each other forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web
from aiohttp.client import ClientWebSocketResponse

from protocol import limits
from protocol.boxstream import BoxStreamDecoder, BoxStreamEncoder, StreamEnd
from protocol.errors import DecodeError, QuotaExceeded, RemoteProtocolError, UnexpectedMessage
from protocol.handshake import SessionKeys
from protocol.identity import NodeId
from protocol.quota import TokenBucket
from protocol.reconcile import Reconciler
from protocol.record import created_of
from protocol.rounds import RoundLedger
from protocol.session import PeerReconcile, PeerWant, RecordsReceived, SyncSession

if TYPE_CHECKING:
    from node.runtime import Node
    from protocol.record import Record

log = logging.getLogger("canopy.connection")

WebSocket = web.WebSocketResponse | ClientWebSocketResponse


class Closed(Exception):
    """The connection ended; carries a short reason for logs and `canopy peers`."""


class PeerConnection:
    def __init__(
        self,
        node: Node,
        ws: WebSocket,
        peer_id: NodeId,
        keys: SessionKeys,
        *,
        outbound: bool,
        leftover: bytes = b"",
    ) -> None:
        self.node = node
        self.ws = ws
        self.peer_id = peer_id
        self.outbound = outbound
        # The client initiates reconciliation; the server answers.
        self.session = SyncSession(initiator=outbound)
        self._encoder = BoxStreamEncoder(keys.encrypt_key, keys.encrypt_nonce)
        self._decoder = BoxStreamDecoder(keys.decrypt_key, keys.decrypt_nonce)
        self._decoder.receive_data(leftover)
        self._urgent: deque[bytes] = deque()
        self._normal: deque[bytes] = deque()
        self._queued = 0
        self._wake_writer = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self.ingest_queue: asyncio.Queue[RecordsReceived] = asyncio.Queue(limits.INGEST_QUEUE)
        self.unstored = 0  # Records messages received and not yet stored
        self.serve_queue: deque[tuple[bytes, bool]] = deque()  # (id, asked by the peer)
        self.requested = 0  # of serve_queue, how many the peer asked for
        self._wake_server = asyncio.Event()
        self.pending_wants: deque[bytes] = deque()
        self.reconciler: Reconciler | None = None
        # Responder: the round the peer has open with us, and what it may send unasked.
        self.round: RoundLedger | None = None
        # Our reconciliation set for this peer, kept between rounds while the store's
        # exchangeable set has not changed (node.runtime decides when it has).
        self.items_cache: tuple[tuple[int, ...], Reconciler] | None = None
        self.round_unasked = 0  # initiator: records queued unasked in our current round
        self.round_unasked_bytes = 0
        self.round_capped = False  # initiator: the round hit its bound; the rest goes next
        self.last_sync_saved = 0.0  # when the peer row's last_sync was last written
        self.reconcile_seen = (0, 0)  # how much of reconciler.have/need was acted on
        self.synced_once = False
        self.close_reason = ""
        self.closing = False
        self._goodbye = False
        self._tasks: list[asyncio.Task[None]] = []
        self.bytes_sent = 0
        self.bytes_received = 0
        self.record_bytes_sent = 0
        self.record_bytes_received = 0
        self.reconcile_rounds = 0
        self.pushes_dropped = 0
        self.serving = False
        self.throttled_s = 0.0
        # Quotas (docs/SPEC.md, "Quotas"): bytes and messages make us read more slowly;
        # queries and records nobody asked for beyond the allowance cut the peer off.
        now = time.monotonic()
        self._bytes_in = TokenBucket.full(limits.PEER_BYTES_PER_S, limits.PEER_BYTES_BURST, now)
        self._messages_in = TokenBucket.full(
            limits.PEER_MESSAGES_PER_S, limits.PEER_MESSAGES_BURST, now
        )
        self._queries_in = TokenBucket.full(
            limits.PEER_QUERIES_PER_S, limits.PEER_QUERIES_BURST, now
        )
        self._pushes_in = TokenBucket.full(
            limits.PEER_PUSH_RECORDS_PER_S, limits.PEER_PUSH_RECORDS_BURST, now
        )
        # We hold ourselves to the peer's push allowance: past it, pushes wait for a resync.
        self._pushes_out = TokenBucket.full(
            limits.PEER_PUSH_RECORDS_PER_S, limits.PEER_PUSH_RECORDS_BURST, now
        )

    # -- sending -------------------------------------------------------------------------

    def send(self, data: bytes, *, urgent: bool = False) -> None:
        """Queue framed plaintext; never blocks. Urgent bytes go out before anything queued."""
        if not data or self.closing:
            return
        (self._urgent if urgent else self._normal).append(data)
        self._queued += len(data)
        self._drained.clear()
        self._wake_writer.set()

    def push(self, data: bytes, *, urgent: bool = False, count: int = 0) -> bool:
        """Queue a push of `count` records unless the peer is far behind or the push
        allowance is spent; False if dropped (the next resync repairs it)."""
        if (self._queued > limits.PUSH_DROP_BACKLOG and not urgent) or (
            count and not self._pushes_out.take(count, time.monotonic())
        ):
            self.pushes_dropped += 1
            return False
        self.send(data, urgent=urgent)
        return True

    async def drain(self, limit: int) -> None:
        """Wait until at most `limit` bytes are queued (backpressure for bulk senders)."""
        while self._queued > limit and not self.closing:
            self._drained.clear()
            await self._drained.wait()

    @property
    def queued(self) -> int:
        return self._queued

    async def _write_loop(self) -> None:
        while True:
            await self._wake_writer.wait()
            self._wake_writer.clear()
            while self._urgent or self._normal:
                data = self._urgent.popleft() if self._urgent else self._normal.popleft()
                self._queued -= len(data)
                frames = self._encoder.encode(data)
                for start in range(0, len(frames), limits.WS_CHUNK):
                    chunk = frames[start : start + limits.WS_CHUNK]
                    await self.ws.send_bytes(chunk)
                    self.bytes_sent += len(chunk)
                if self._queued <= limits.SERVE_BACKLOG:
                    self._drained.set()
            self._drained.set()
            if self._goodbye:
                # Only here, between whole messages, is a goodbye in nonce order.
                await self.ws.send_bytes(self._encoder.goodbye())
                return

    # -- running -------------------------------------------------------------------------

    async def run(self) -> None:
        """Drive the connection until it ends; never raises for the peer's faults."""
        self._tasks = [
            asyncio.create_task(self._write_loop()),
            asyncio.create_task(self._ingest_loop()),
            asyncio.create_task(self._serve_loop()),
        ]
        for task in self._tasks:
            task.add_done_callback(self._task_done)
        try:
            await self.node.on_open(self)
            await self._read_loop()
        except Closed as exc:
            self.close_reason = self.close_reason or str(exc)
        except RemoteProtocolError as exc:
            self.close_reason = f"protocol error: {exc}"
            await self.node.penalise(
                self.peer_id, exc, reason=type(exc).__name__, ban=isinstance(exc, QuotaExceeded)
            )
        except (ConnectionError, asyncio.CancelledError) as exc:
            self.close_reason = self.close_reason or f"connection lost: {type(exc).__name__}"
            if isinstance(exc, asyncio.CancelledError):
                await self._shutdown()
                raise
        finally:
            await self._shutdown()

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self.closing:
            return
        exc = task.exception()
        if exc is not None:
            if not isinstance(exc, ConnectionError):
                log.error("connection task failed", exc_info=exc)
            self.close_reason = self.close_reason or f"connection lost: {type(exc).__name__}"
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().create_task(self.ws.close())

    async def _read_loop(self) -> None:
        idle = self.node.config.idle_timeout
        while True:
            try:
                msg = await self.ws.receive(timeout=idle)
            except TimeoutError:
                raise Closed("idle timeout") from None
            if msg.type == WSMsgType.BINARY:
                self.bytes_received += len(msg.data)
                await self._throttle(self._bytes_in.charge(len(msg.data), time.monotonic()))
                self._decoder.receive_data(msg.data)
                if not await self._drain_decoder():
                    raise Closed("peer said goodbye")
            elif msg.type in (
                WSMsgType.CLOSE,
                WSMsgType.CLOSING,
                WSMsgType.CLOSED,
                WSMsgType.ERROR,
            ):
                try:
                    self._decoder.close_unclean()
                except RemoteProtocolError:
                    raise Closed("connection dropped") from None
                raise Closed("connection closed")
            else:
                raise DecodeError("non-binary WebSocket message")

    async def _drain_decoder(self) -> bool:
        """Process every complete frame; False once the peer's goodbye arrived."""
        while True:
            event = self._decoder.next_event()
            if event is None:
                return True
            if isinstance(event, StreamEnd):
                return False
            for session_event in self.session.receive_data(event):
                if self.closing:  # cut off meanwhile: nothing more of its batch is processed
                    return False
                self._check_quota(session_event)
                if isinstance(session_event, RecordsReceived):
                    self.record_bytes_received += sum(len(r) for r in session_event.records)
                    if len(session_event.records) == 1 and not any(session_event.solicited):
                        # A push (an alert is always pushed alone): don't queue it behind
                        # a bulk transfer.
                        await self.node.ingest(session_event.records, self, session_event.ids)
                    else:
                        self.unstored += 1
                        await self.ingest_queue.put(session_event)  # backpressure on the peer
                else:
                    await self.node.on_event(self, session_event)

    def _check_quota(self, event: object) -> None:
        now = time.monotonic()
        self.throttled_s += self._messages_in.charge(1, now)  # repaid in _throttle, below
        if isinstance(event, PeerWant | PeerReconcile) and not self._queries_in.take(1, now):
            raise QuotaExceeded("query rate over quota")
        if isinstance(event, RecordsReceived):
            # The initiator of a round sends what we lack without being asked: allowed for
            # what reconciliation announced, within the round's bounds (protocol.rounds).
            # Anything else unasked is a push, on an allowance.
            ledger = self.round if not self.outbound and self.session.round_open else None
            if ledger is not None and ledger.expired(now):
                ledger = None
            pushes = count = size = 0
            for data, rid, asked in zip(event.records, event.ids, event.solicited, strict=True):
                if asked:
                    continue
                if ledger is not None and ledger.announced(rid, created_of(data)):
                    count += 1
                    size += len(data)
                else:
                    pushes += 1
            if count and ledger is not None:
                ledger.charge(count, size)
            if pushes and not self._pushes_in.take(pushes, now):
                raise QuotaExceeded("sent far more records than asked for")

    async def _throttle(self, wait: float) -> None:
        wait = max(wait, self.throttled_s)
        self.throttled_s = 0.0
        if wait > 0:
            await asyncio.sleep(min(wait, 5.0))

    async def _ingest_loop(self) -> None:
        """Verify the next records while the previous ones are being stored (a pipeline of
        two stages), and coalesce what queued up meanwhile into one durable transaction."""
        storing: asyncio.Task[None] | None = None
        try:
            while True:
                first = await self.ingest_queue.get()
                datas, ids, taken = list(first.records), list(first.ids), 1
                while not self.ingest_queue.empty() and len(datas) < limits.INGEST_COALESCE:
                    more = self.ingest_queue.get_nowait()
                    datas += more.records
                    ids += more.ids
                    taken += 1
                good = await self.node.check_incoming(datas, self, ids)
                if storing is not None:
                    await storing
                storing = asyncio.create_task(self._store(good, taken))
        finally:
            # What was verified is still stored, so a shutdown never loses a batch it took.
            if storing is not None and not storing.done():
                with contextlib.suppress(Exception):
                    await asyncio.shield(storing)

    async def _store(self, records: list[Record], messages: int) -> None:
        try:
            if records:
                await self.node.accept(records, source=self)
        finally:
            self.unstored -= messages
        await self.node.after_records(self)

    def request(self, ids: list[tuple[bytes, bool]], *, by_peer: bool) -> None:
        """Queue ids to send; a peer may not have more than MAX_SERVE_REQUESTED unanswered."""
        if by_peer:
            self.requested += len(ids)
            if self.requested > limits.MAX_SERVE_REQUESTED:
                raise UnexpectedMessage("asked for more records than the protocol allows")
        self.serve_queue.extend(ids)
        self._wake_server.set()

    async def _serve_loop(self) -> None:
        while True:
            await self._wake_server.wait()
            self._wake_server.clear()
            while self.serve_queue:
                batch = [
                    self.serve_queue.popleft()
                    for _ in range(min(len(self.serve_queue), limits.SERVE_CHUNK_IDS))
                ]
                self.requested = max(0, self.requested - len(batch))
                self.serving = True
                try:
                    await self.node.serve(self, batch)
                finally:
                    self.serving = False
                await self.drain(limits.SERVE_BACKLOG)
            if self.outbound:  # what we sent unasked went first: the round may now end
                await self.node.after_records(self)

    def note_records_sent(self, size: int) -> None:
        self.record_bytes_sent += size

    async def close(self, reason: str) -> None:
        """Say goodbye and close (used for distrust, duplicates, misbehaviour, shutdown)."""
        if not self.close_reason:
            self.close_reason = reason
        await self._shutdown()

    async def _shutdown(self) -> None:
        if self.closing:
            return
        self.closing = True
        self.session.close()
        # Whatever is still queued is dropped: the next reconciliation repairs it.
        self._urgent.clear()
        self._normal.clear()
        self._queued = 0
        self._drained.set()
        self._goodbye = True
        self._wake_writer.set()
        current = asyncio.current_task()
        writer = self._tasks[0] if self._tasks else None
        others = self._tasks[1:]
        for task in others:
            if task is not current:
                task.cancel()
        if writer is not None and writer is not current:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(writer, 2.0)
        for task in others:
            if task is not current:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await task
        with contextlib.suppress(Exception):
            await self.ws.close()
        self.node.on_closed(self)

    @property
    def want_capacity(self) -> int:
        return self.session.want_capacity()
