"""One authenticated peer connection: a thin driver around box-stream and SyncSession.

Reads WebSocket binary messages, feeds the box-stream decoder and the sync session, and
hands each event to the node. Writes go through one queue and one writer task so frames
leave in nonce order. Protocol rules live in protocol/; this module only moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web
from aiohttp.client import ClientWebSocketResponse

from protocol import limits
from protocol.boxstream import BoxStreamDecoder, BoxStreamEncoder, StreamEnd
from protocol.errors import DecodeError, RemoteProtocolError
from protocol.handshake import SessionKeys
from protocol.identity import NodeId
from protocol.session import SyncSession

if TYPE_CHECKING:
    from node.runtime import Node

log = logging.getLogger("canopy.connection")

WebSocket = web.WebSocketResponse | ClientWebSocketResponse
# Plaintext bytes queued for a peer before we stop reading from it (backpressure).
SEND_QUEUE_LIMIT = 64


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
        self.session = SyncSession()
        self._encoder = BoxStreamEncoder(keys.encrypt_key, keys.encrypt_nonce)
        self._decoder = BoxStreamDecoder(keys.decrypt_key, keys.decrypt_nonce)
        self._decoder.receive_data(leftover)
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(SEND_QUEUE_LIMIT)
        self.pending_wants: deque[bytes] = deque()
        self.close_reason = ""
        self._closing = False
        self._writer: asyncio.Task[None] | None = None

    # -- sending ---------------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        """Queue plaintext stream bytes (already framed by the session)."""
        if data and not self._closing:
            await self._queue.put(data)

    async def _write_loop(self) -> None:
        while True:
            data = await self._queue.get()
            if data is None:
                with contextlib.suppress(Exception):
                    await self.ws.send_bytes(self._encoder.goodbye())
                return
            frames = self._encoder.encode(data)
            # One WebSocket message per ~64 KiB keeps messages well under proxy limits.
            for start in range(0, len(frames), 65536):
                await self.ws.send_bytes(frames[start : start + 65536])

    # -- running -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Drive the connection until it ends; never raises for the peer's faults."""
        self._writer = asyncio.create_task(self._write_loop())
        try:
            await self.node.on_open(self)
            await self._read_loop()
        except Closed as exc:
            self.close_reason = str(exc)
        except RemoteProtocolError as exc:
            self.close_reason = f"protocol error: {exc}"
            await self.node.penalise(self.peer_id, exc, reason=type(exc).__name__)
        except (ConnectionError, asyncio.CancelledError) as exc:
            self.close_reason = f"connection lost: {type(exc).__name__}"
            if isinstance(exc, asyncio.CancelledError):
                await self._shutdown()
                raise
        finally:
            await self._shutdown()

    async def _read_loop(self) -> None:
        idle = self.node.config.idle_timeout
        while True:
            try:
                msg = await self.ws.receive(timeout=idle)
            except TimeoutError:
                raise Closed("idle timeout") from None
            if msg.type == WSMsgType.BINARY:
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
                await self.node.on_event(self, session_event)

    async def close(self, reason: str) -> None:
        """Say goodbye and close (used for distrust, duplicates, shutdown)."""
        if not self.close_reason:
            self.close_reason = reason
        await self._shutdown()

    async def _shutdown(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.session.close()
        if self._writer is not None and not self._writer.done():
            try:
                self._queue.put_nowait(None)
            except asyncio.QueueFull:
                self._writer.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._writer, 2.0)
        with contextlib.suppress(Exception):
            await self.ws.close()
        self.node.on_closed(self)

    @property
    def want_capacity(self) -> int:
        return min(self.session.want_capacity(), limits.MAX_WANT_OUTSTANDING)
