"""One authenticated peer connection: a thin driver around box-stream and the conversation.

Reads WebSocket binary messages, decrypts box-stream, feeds `Conversation.receive` and acts
on each event it returns: bytes to its send queues, local facts looked up through its
`ConnectionHost`, records to check and store, penalties. Every rule of sync lives in
protocol.conversation; this module only does the I/O. Writes go through one writer task
so frames leave in nonce order; urgent bytes (alerts) jump the queue. Sending never blocks
the read loop: that is what keeps two peers that both have a lot to say from waiting on
each other forever. It never imports node.runtime: the host is passed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Collection, Sequence
from typing import Protocol

from aiohttp import WSMsgType, web
from aiohttp.client import ClientWebSocketResponse

from protocol import conversation as cv
from protocol import limits
from protocol.boxstream import BoxStreamDecoder, BoxStreamEncoder
from protocol.errors import DecodeError, QuotaExceeded, RemoteProtocolError
from protocol.handshake import SessionKeys
from protocol.identity import NodeId
from protocol.quota import TokenBucket
from protocol.reconcile import Item
from protocol.record import Kind, Record
from protocol.session import Event, SyncSession

log = logging.getLogger("canopy.connection")

WebSocket = web.WebSocketResponse | ClientWebSocketResponse


class Closed(Exception):
    """The connection ended; carries a short reason for logs and `canopy peers`."""


class ConnectionHost(Protocol):
    """What a connection needs from the node: local facts, ingest, the peer book."""

    idle_timeout: float

    async def on_open(self, conn: PeerConnection) -> None: ...
    def on_closed(self, conn: PeerConnection) -> None: ...
    def items_version(self) -> tuple[int, ...]: ...
    async def items(self, conn: PeerConnection) -> list[Item]: ...
    async def to_fetch(
        self, conn: PeerConnection, ids: Sequence[bytes]
    ) -> tuple[list[bytes], list[bytes]]: ...
    async def look_up(
        self, conn: PeerConnection, ids: Sequence[bytes]
    ) -> tuple[dict[bytes, bytes], list[bytes]]: ...
    async def check(
        self, conn: PeerConnection, datas: Sequence[bytes], ids: Sequence[bytes]
    ) -> tuple[list[Record], list[RemoteProtocolError]]: ...
    async def store(self, conn: PeerConnection, records: Sequence[Record]) -> None: ...
    def delivered(self, conn: PeerConnection, ids: Sequence[bytes]) -> None: ...
    def release(self, conn: PeerConnection, ids: Sequence[bytes]) -> None: ...
    async def synced(self, conn: PeerConnection) -> None: ...
    async def on_event(self, conn: PeerConnection, event: Event) -> None: ...
    async def penalise(
        self, peer_id: NodeId, error: RemoteProtocolError, *, reason: str, ban: bool = False
    ) -> None: ...


class PeerConnection:
    def __init__(
        self,
        host: ConnectionHost,
        ws: WebSocket,
        conversation: cv.Conversation,
        keys: SessionKeys,
        *,
        leftover: bytes = b"",
    ) -> None:
        self.host = host
        self.ws = ws
        self.conversation = conversation
        self.peer_id = conversation.peer
        self.network: bytes | None = None  # tag of the network the handshake was under
        self.outbound = conversation.session.initiator  # the client initiates rounds
        self._encoder = BoxStreamEncoder(keys.encrypt_key, keys.encrypt_nonce)
        self._decoder = BoxStreamDecoder(keys.decrypt_key, keys.decrypt_nonce)
        self._decoder.receive_data(leftover)
        self._urgent: deque[bytes] = deque()
        self._normal: deque[bytes] = deque()
        self._queued = 0
        self._wake_writer = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self.ingest_queue: asyncio.Queue[cv.CheckRecords] = asyncio.Queue(limits.INGEST_QUEUE)
        self.unstored = 0  # CheckRecords taken and not yet stored
        self._lookups: deque[cv.LookUp] = deque()  # the conversation asks one at a time
        self._wake_server = asyncio.Event()
        self._items_version: tuple[int, ...] | None = None
        self._storing: asyncio.Task[None] | None = None
        self.last_sync_saved = 0.0  # when the peer row's last_sync was last written
        self.close_reason = ""
        self.closing = False
        self._goodbye = False
        self._tasks: list[asyncio.Task[None]] = []
        self.bytes_sent = 0  # on the wire (box-stream frames)
        self.bytes_received = 0
        self.throttled_s = 0.0
        # Bytes on the wire make us read more slowly (docs/SPEC.md, "Quotas"); messages,
        # queries and unasked records are the conversation's quotas.
        self._bytes_in = TokenBucket.full(
            limits.PEER_BYTES_PER_S, limits.PEER_BYTES_BURST, time.monotonic()
        )

    @property
    def session(self) -> SyncSession:
        """The message layer (know-who messages are framed through it directly)."""
        return self.conversation.session

    def traffic(self) -> dict[str, int]:
        """Bytes on the wire, record bytes, and Reconcile messages sent (`reconcile_rounds`,
        the metric's historical name)."""
        conv = self.conversation
        return {
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "record_bytes_sent": conv.record_bytes_sent,
            "record_bytes_received": conv.record_bytes_received,
            "reconcile_rounds": conv.reconcile_messages,
        }

    @property
    def ingesting(self) -> bool:
        """Records received and not yet stored."""
        return bool(self.unstored or not self.ingest_queue.empty())

    # -- sending -------------------------------------------------------------------------

    def send(self, data: bytes, *, urgent: bool = False) -> None:
        """Queue framed plaintext; never blocks. Urgent bytes go out before anything queued."""
        if not data or self.closing:
            return
        (self._urgent if urgent else self._normal).append(data)
        self._queued += len(data)
        self._drained.clear()
        self._wake_writer.set()

    def _send(self, event: cv.Send) -> None:
        self.send(event.data, urgent=event.urgent)
        if event.records:
            self.host.delivered(self, event.records)

    def push(self, records: Sequence[Record], lazy: Collection[bytes] = frozenset()) -> None:
        """Offer records just stored here to the peer (the conversation picks what it may
        receive and lacks; those in `lazy` are offered by id). Past PUSH_DROP_BACKLOG
        queued, only alerts go; the rest is dropped and the next round, due at once,
        repairs it."""
        if self.closing or not self.conversation.open:
            return
        if self._queued > limits.PUSH_DROP_BACKLOG:
            held = [r for r in records if r.kind is not Kind.ALERT]
            records = [r for r in records if r.kind is Kind.ALERT]
            us = self.conversation.us
            networks = self.conversation.networks
            if any(cv.may_receive(r, self.peer_id, us, networks) for r in held):
                self.conversation.push_dropped()
        for event in self.conversation.push(records, time.monotonic(), lazy):
            assert isinstance(event, cv.Send)
            self._send(event)

    def ask(self, ids: Sequence[bytes]) -> None:
        """Ask the peer for ids it announced and another peer failed to deliver."""
        if self.closing or not self.conversation.open:
            return
        for event in self.conversation.ask(ids):
            assert isinstance(event, cv.Send)
            self._send(event)

    async def drain(self, limit: int) -> None:
        """Wait until at most `limit` bytes are queued (backpressure for bulk senders)."""
        while self._queued > limit and not self.closing:
            self._drained.clear()
            await self._drained.wait()

    @property
    def queued(self) -> int:
        return self._queued

    async def _encode(self, data: bytes) -> bytes:
        """Box-stream frames for `data`; a bulk message (attachment chunks) is encrypted on
        a worker thread (libsodium releases the GIL), so the loop reads and stores meanwhile.
        Only the writer encodes, so frames still leave in nonce order."""
        if len(data) < limits.OFFLOAD_CRYPTO_BYTES:
            return self._encoder.encode(data)
        return await asyncio.get_running_loop().run_in_executor(None, self._encoder.encode, data)

    async def _write_loop(self) -> None:
        while True:
            await self._wake_writer.wait()
            self._wake_writer.clear()
            while self._urgent or self._normal:
                data = self._urgent.popleft() if self._urgent else self._normal.popleft()
                self._queued -= len(data)
                # A piece at a time: a bulk message never sits here twice over, in clear
                # and in frames (pieces are whole bodies, so the frames are the same).
                for at in range(0, len(data), limits.ENCODE_PIECE_BYTES):
                    frames = await self._encode(data[at : at + limits.ENCODE_PIECE_BYTES])
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

    # -- the conversation's events ---------------------------------------------------------

    def _items_may_have_changed(self) -> None:
        version = self.host.items_version()
        if version != self._items_version:
            self._items_version = version
            self.conversation.items_changed()

    async def _act(self, events: Sequence[cv.ConversationEvent]) -> None:
        """Act on each event, in order; answers the conversation asks for are fed back."""
        queue = deque(events)
        conv = self.conversation
        while queue and not self.closing and conv.open:
            event = queue.popleft()
            if isinstance(event, cv.Send):
                self._send(event)
            elif isinstance(event, cv.LoadItems):
                items = await self.host.items(self)
                if not self.closing and conv.open:
                    queue.extend(conv.set_items(items))
            elif isinstance(event, cv.FilterNeeds):
                fetch, deferred = await self.host.to_fetch(self, event.ids)
                if conv.open:
                    queue.extend(conv.want(fetch, deferred))
            elif isinstance(event, cv.LookUp):
                self._lookups.append(event)  # served by its own task: reading goes on
                self._wake_server.set()
            elif isinstance(event, cv.CheckRecords):
                if len(event.records) == 1 and not any(event.solicited):
                    # A push (an alert is always pushed alone): not queued behind a bulk
                    # transfer.
                    self.unstored += 1
                    await self._ingest([event])
                else:
                    self.unstored += 1
                    await self.ingest_queue.put(event)  # backpressure on the peer
            elif isinstance(event, cv.Denied):
                self.host.release(self, event.ids)
            elif isinstance(event, cv.Penalise):
                reason = f"record_{type(event.error).__name__}"
                await self.host.penalise(self.peer_id, event.error, reason=reason)
            elif isinstance(event, cv.Synced):
                await self.host.synced(self)
            elif isinstance(event, cv.Throttle):
                self.throttled_s = max(self.throttled_s, event.seconds)  # repaid when reading
            else:  # Hello and the know-who messages
                await self.host.on_event(self, event)

    async def start(self, name: str, addresses: Sequence[str]) -> None:
        """Say Hello; the side that dialled opens the first round at once."""
        await self._act(self.conversation.hello(name, addresses))
        if self.outbound:
            self._items_may_have_changed()
            await self._act(self.conversation.begin_round(time.monotonic()))

    async def tick(self, now: float) -> None:
        """Once a second: release wants the peer sits on, open a round that is due."""
        if self.closing or not self.conversation.open:
            return
        try:
            events = self.conversation.tick(now)
            if self.conversation.round_due(now):
                self._items_may_have_changed()
                events += self.conversation.begin_round(now)
            await self._act(events)
        except RemoteProtocolError as exc:
            await self._failed(exc)

    async def _failed(self, exc: RemoteProtocolError) -> None:
        self.close_reason = self.close_reason or f"protocol error: {exc}"
        await self.host.penalise(
            self.peer_id, exc, reason=type(exc).__name__, ban=isinstance(exc, QuotaExceeded)
        )
        await self.close(self.close_reason)

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
            await self.host.on_open(self)
            await self._read_loop()
        except Closed as exc:
            self.close_reason = self.close_reason or str(exc)
        except RemoteProtocolError as exc:
            self.close_reason = f"protocol error: {exc}"
            await self.host.penalise(
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
        idle = self.host.idle_timeout
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
        """Feed every complete frame to the conversation; False once the peer's goodbye
        arrived or we cut it off meanwhile (nothing more of its batch is processed)."""
        # Every complete frame at once (a bulk transfer is ~16 bodies a WebSocket message):
        # the conversation reassembles messages across them.
        decoder = self._decoder
        if decoder.buffered < limits.OFFLOAD_CRYPTO_BYTES:
            data, ended = decoder.next_bodies()
        else:  # on a worker thread, like `_encode`; only this loop touches the decoder
            data, ended = await asyncio.get_running_loop().run_in_executor(
                None, decoder.next_bodies
            )
        if data and not self.closing:
            self._items_may_have_changed()
            await self._act(self.conversation.receive(data, time.monotonic()))
        return not ended and not self.closing

    async def _throttle(self, wait: float) -> None:
        wait = max(wait, self.throttled_s)
        self.throttled_s = 0.0
        if wait > 0:
            await asyncio.sleep(min(wait, 5.0))

    # -- ingest and serving ------------------------------------------------------------------

    async def _ingest_loop(self) -> None:
        """Verify the next records while the previous ones are being stored (a pipeline of
        two stages), and coalesce what queued up meanwhile into one durable transaction."""
        try:
            while True:
                batch = [await self.ingest_queue.get()]
                count = len(batch[0].records)
                while not self.ingest_queue.empty() and count < limits.INGEST_COALESCE:
                    batch.append(self.ingest_queue.get_nowait())
                    count += len(batch[-1].records)
                datas = [d for e in batch for d in e.records]
                ids = [i for e in batch for i in e.ids]
                good, errors = await self.host.check(self, datas, ids)
                self._refund_asked(batch, good)
                if self._storing is not None:
                    await self._storing
                self._storing = asyncio.create_task(self._store(good, errors, len(batch)))
        finally:
            # What was verified is still stored, so a shutdown never loses a batch it took.
            storing = self._storing
            if storing is not None and not storing.done():
                with contextlib.suppress(Exception):
                    await asyncio.shield(storing)

    def _refund_asked(self, batch: Sequence[cv.CheckRecords], good: Sequence[Record]) -> None:
        """Bytes of records we asked for that passed their checks go back to the bytes-read
        bucket (docs/SPEC.md, "Quotas"): it bounds what a peer sends unasked or malformed;
        our own wants bound the rest, so a large attachment is not read at the bucket's
        rate."""
        asked = {rid for e in batch for rid, s in zip(e.ids, e.solicited, strict=True) if s}
        if asked:
            size = sum(len(r.to_bytes()) for r in good if r.id in asked)
            self._bytes_in.refund(size, time.monotonic())

    async def _ingest(self, batch: list[cv.CheckRecords]) -> None:
        """Check and store at once (a push), outside the pipeline."""
        datas = [d for e in batch for d in e.records]
        ids = [i for e in batch for i in e.ids]
        good, errors = await self.host.check(self, datas, ids)
        await self._store(good, errors, len(batch))

    async def _store(
        self, records: list[Record], errors: list[RemoteProtocolError], answers: int
    ) -> None:
        """Store what passed, then answer each CheckRecords taken (the errors with the first:
        each costs the peer its penalty)."""
        try:
            if records:
                await self.host.store(self, records)
        finally:
            self.unstored -= answers
        for i in range(answers):
            if self.closing or not self.conversation.open:
                return
            await self._act(self.conversation.records_done(errors if i == 0 else ()))

    async def _serve_loop(self) -> None:
        while True:
            await self._wake_server.wait()
            self._wake_server.clear()
            while self._lookups:
                lookup = self._lookups.popleft()
                found, later = await self.host.look_up(self, lookup.ids)
                if self.closing or not self.conversation.open:
                    return
                await self._act(self.conversation.serve(found, later))
                await self.drain(limits.SERVE_BACKLOG)

    # -- ending ----------------------------------------------------------------------------

    async def close(self, reason: str) -> None:
        """Say goodbye and close (used for distrust, duplicates, misbehaviour, shutdown)."""
        if not self.close_reason:
            self.close_reason = reason
        await self._shutdown()

    async def _shutdown(self) -> None:
        if self.closing:
            return
        self.closing = True
        self.conversation.close()
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
        # The ingest task waits for the store task to end: from inside that one, never wait
        # for it in turn.
        if current is not self._storing:
            for task in others:
                if task is not current:
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        await task
        with contextlib.suppress(Exception):
            await self.ws.close()
        self.host.on_closed(self)
