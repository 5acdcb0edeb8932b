"""The peer endpoint: inbound connections admitted, handshaken and handed to sync.

Caps per address and in total before any cryptography (with node.admission's guard and
pending-handshake slots), the SHS1 server handshake with every network's key and every
pending invite's one-time key (one HMAC each on the first message), the invite redeemed or
the network the client proved it holds recorded as shared, then a connection from
`Sync.connection`. Only keys the peer book trusts complete a handshake.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import WSMsgType, web

from node.admission import (
    ConnectionGuard,
    GuardedProtocol,
    PendingSlots,
    client_address,
    fd_budget,
    is_trusted,
    parse_proxies,
)
from node.clock import now_ms
from node.config import Config
from node.local import Local, Network, random
from node.peer_book import PeerBook
from node.sync import Sync
from node.trust import PendingInvite, note_shared_network, redeem_invite
from protocol import limits
from protocol.errors import DecodeError, HandshakeError, RemoteProtocolError
from protocol.handshake import HandshakeState, ServerHandshake
from protocol.identity import NodeId
from protocol.invite import PEER_PATH

log = logging.getLogger("canopy.node")


class PeerServer:
    def __init__(
        self,
        local: Local,
        config: Config,
        book: PeerBook,
        sync: Sync,
        *,
        reload_trust: Callable[[], Awaitable[None]],
    ) -> None:
        self.local = local
        self.config = config
        self.node_id = local.node_id
        self.book = book
        self.sync = sync
        self._reload_trust = reload_trust  # after an invite is redeemed
        self._proxies = parse_proxies(config.trusted_proxies)
        self._pending = PendingSlots()  # inbound handshakes in progress
        self._inbound: Counter[str] = Counter()  # inbound connections of any state, per address
        self._claimed_invites: set[bytes] = set()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(PEER_PATH, self._accept_ws)
        app.router.add_get("/", self._accept_ws)  # `ws://host:port` works as typed
        return app

    def guard(self) -> ConnectionGuard:
        """The caps before any HTTP parsing: descriptors kept free for the local API."""
        reserve = limits.FD_RESERVE + limits.MAX_API_CONNECTIONS
        return ConnectionGuard(
            "",
            total=fd_budget(limits.MAX_TCP_CONNECTIONS, reserve),
            per_address=limits.MAX_TCP_PER_ADDRESS,
            header_timeout=limits.HTTP_HEADER_TIMEOUT_S,
            preauth=True,  # until the handshake is done (_admit)
            exempt=lambda address: is_trusted(address, self._proxies),
            count=self.book.count,
        )

    def _authorize(
        self, networks: int, invites: Sequence[PendingInvite]
    ) -> Callable[[bytes, int], bool]:
        """Keys 0..networks-1 are the networks' (trusted peers only), then the invites'."""

        def authorize(public_key: bytes, index: int) -> bool:
            if len(public_key) != 32 or public_key == self.node_id.raw:
                return False
            node_id = NodeId(public_key)
            if node_id in self.book.revoked:
                self.book.count("handshake_revoked")
                return False
            if self.book.banned(node_id):
                return False
            if index < networks:
                return node_id in self.book.peers
            if not networks <= index < networks + len(invites):
                return False
            invite = invites[index - networks]
            if invite.expires <= now_ms() or invite.secret in self._claimed_invites:
                return False
            self._claimed_invites.add(invite.secret)  # one-time, even for racing handshakes
            return True

        return authorize

    async def _accept_ws(self, request: web.Request) -> web.StreamResponse:
        """Admit within the connection caps, then handshake; the caps hold before any
        cryptography is done, so a flood of half-open connections costs us little.

        Behind a trusted proxy the caps count the client the proxy names, not the proxy."""
        address = client_address(
            request.remote or "?", request.headers.getall("X-Forwarded-For", []), self._proxies
        )
        if (
            self._inbound.total() >= limits.MAX_INBOUND_CONNECTIONS
            or self._inbound[address] >= limits.MAX_INBOUND_PER_ADDRESS
        ):
            self.book.count("connection_cap")
            return web.Response(status=503, text="busy")
        self._inbound[address] += 1
        try:
            return await self._admit(request, address)
        finally:
            self._inbound[address] -= 1
            if self._inbound[address] <= 0:
                del self._inbound[address]

    async def _admit(self, request: web.Request, address: str) -> web.StreamResponse:
        """The handshake holds a pending slot for at most the handshake timeout from the
        upgrade, whatever it sends; a newcomer may end it early (`PendingSlots`). Until it
        is done, a message longer than any SHS1 message is refused, and the connection may
        send only `PREAUTH_BYTES` after its headers (`ConnectionGuard`), so a frame announcing
        megabytes buffers nothing."""
        ws = web.WebSocketResponse(
            heartbeat=self.config.heartbeat, compress=False, max_msg_size=4 * 1024 * 1024
        )
        await ws.prepare(request)
        invites = list(self.book.invites)
        networks = list(self.book.networks) or [Network("", self.book.network_key)]
        handshake = ServerHandshake(
            [*(n.key for n in networks), *(i.capability for i in invites)],
            self.local.identity.secret_key,
            random(32),
            self._authorize(len(networks), invites),
        )
        slot, _ = self._pending.admit(address, time.monotonic())
        try:
            async with asyncio.timeout(self.config.handshake_timeout) as deadline:
                slot.deadline = deadline
                while handshake.state is not HandshakeState.DONE:
                    msg = await ws.receive()
                    if msg.type != WSMsgType.BINARY:
                        raise HandshakeError("connection closed during the handshake")
                    if len(msg.data) > limits.MAX_HANDSHAKE_MESSAGE_BYTES:
                        self.book.count("preauth_oversize")
                        raise DecodeError("message larger than any handshake message")
                    reply = handshake.receive_data(msg.data)
                    if reply:
                        await ws.send_bytes(reply)
        except (RemoteProtocolError, TimeoutError) as exc:
            refused = isinstance(exc, RemoteProtocolError)
            self.book.count(
                "handshake_refused"
                if refused
                else ("handshake_evicted" if slot.evicted else "handshake_timeout")
            )
            if refused or request.transport is None:
                await ws.close()
            else:
                request.transport.abort()  # an idle client would hold a closing handshake 10 s
            return ws
        finally:
            self._pending.release(slot)
        guard = request.transport.get_protocol() if request.transport is not None else None
        if isinstance(guard, GuardedProtocol):
            guard.lift_preauth()
        keys = handshake.keys
        peer_id = NodeId(keys.remote_public_key)
        if keys.network_key_index >= len(networks):
            invite = invites[keys.network_key_index - len(networks)]
            await redeem_invite(self.local, invite, peer_id, now_ms())
            await self._reload_trust()
            log.info("invite redeemed by %s", peer_id.short)
        elif await note_shared_network(self.local, peer_id, networks[keys.network_key_index]):
            await self._reload_trust()
        index = keys.network_key_index
        if index < len(networks):
            network = networks[index].tag if networks[index].name else None
        else:
            network = invites[index - len(networks)].network or networks[0].tag
        conn = self.sync.connection(
            ws, peer_id, keys, outbound=False, leftover=handshake.leftover(), network=network
        )
        await conn.run()
        return ws
