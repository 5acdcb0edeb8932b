"""The dialer: outbound connections to trusted peers, with backoff, then sync.

Dials every trusted peer with an address that is neither connected, revoked, banned nor
waiting out its backoff; each address with a pending invite's one-time key first, then
the keys of the networks the peer is a member of, then the other networks' keys; the SHS1
client handshake; then a connection from `Sync.connection`.
Optional SOCKS5 (Tor): names resolved by the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse

import aiohttp
from aiohttp import WSMsgType

from node.config import Config, parse_socks5
from node.local import Local, Peer, random
from node.peer_book import PeerBook, PeerState
from node.sync import Sync
from node.trust import note_shared_network
from protocol.errors import HandshakeError, RemoteProtocolError
from protocol.handshake import ClientHandshake, HandshakeState
from protocol.invite import normalise_address

log = logging.getLogger("canopy.node")

DialErrors = tuple[type[BaseException], ...]


def _proxy_connector(url: str) -> tuple[aiohttp.BaseConnector, DialErrors]:
    """Every outbound peer connection through SOCKS5; names resolved by the proxy (rdns), so
    .onion addresses work and no DNS query leaves this machine. Imported only when
    configured: most nodes never need it, and every node pays for imports at start."""
    from aiohttp_socks import ProxyConnector, ProxyError, ProxyType

    host, port = parse_socks5(url)
    connector = ProxyConnector(proxy_type=ProxyType.SOCKS5, host=host, port=port, rdns=True)
    return connector, (ProxyError,)


class Dialer:
    def __init__(self, local: Local, config: Config, book: PeerBook, sync: Sync) -> None:
        self.local = local
        self.config = config
        self.book = book
        self.sync = sync
        self._dial_errors: DialErrors = (aiohttp.ClientError, OSError, TimeoutError)
        self._client: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        connector: aiohttp.BaseConnector | None = None
        if self.config.socks5:
            connector, proxy_errors = _proxy_connector(self.config.socks5)
            self._dial_errors += proxy_errors
        self._client = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, connect=30 if self.config.socks5 else 10),
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._client is not None:
            await self._client.close()

    async def loop(self) -> None:
        while True:
            now = time.monotonic()
            for node_id, peer in list(self.book.peers.items()):
                state = self.book.of(node_id)
                if (
                    node_id in self.sync.connections
                    or node_id in self.book.revoked
                    or state.dialing
                    or not peer.addresses
                    or now < state.next_attempt
                    or now < state.banned_until
                ):
                    continue
                state.dialing = True
                self._tasks.append(asyncio.create_task(self._dial(peer, state)))
            self._tasks = [t for t in self._tasks if not t.done()]
            await asyncio.sleep(0.2)

    async def _dial(self, peer: Peer, state: PeerState) -> None:
        """Try each address; with a pending invite, its one-time key first, then ours."""
        try:
            networks = list(self.book.networks)
            member = [n.key for n in networks if n.tag in peer.networks]
            others = [n.key for n in networks if n.tag not in peer.networks]
            if not networks:
                others = [self.book.network_key]
            keys = list(dict.fromkeys(k for k in (peer.invite_capability, *member, *others) if k))
            # Normalised again here for peers stored before addresses were normalised.
            for address in dict.fromkeys(normalise_address(a) for a in peer.addresses):
                for network_key in keys:
                    ws = await self._open_ws(address, state)
                    if ws is None:
                        break  # unreachable: try the next address
                    handshake = ClientHandshake(
                        network_key, self.local.identity.secret_key, peer.node_id.raw, random(32)
                    )
                    if not await self._client_handshake(ws, handshake, address, state):
                        continue
                    tag: bytes | None = None
                    if network_key == peer.invite_capability:
                        peer.invite_capability = None
                        await self.local.save_peer(peer)
                    else:
                        for network in networks:
                            if network.key == network_key:
                                tag = network.tag
                                await note_shared_network(self.local, peer.node_id, network)
                    state.delay = 0.0
                    state.last_error = ""
                    state.dialing = False
                    conn = self.sync.connection(
                        ws,
                        peer.node_id,
                        handshake.keys,
                        outbound=True,
                        leftover=handshake.leftover(),
                        network=tag,
                    )
                    await conn.run()
                    return
        finally:
            state.dialing = False
            self.book.backoff(state)

    async def _open_ws(
        self, address: str, state: PeerState
    ) -> aiohttp.ClientWebSocketResponse | None:
        assert self._client is not None
        host = (urllib.parse.urlsplit(address).hostname or "").lower()
        if host.endswith(".onion") and not self.config.socks5:
            state.last_error = f"cannot reach {address}: a .onion address needs network.socks5"
            return None
        try:
            return await self._client.ws_connect(
                address,
                heartbeat=self.config.heartbeat,
                compress=0,
                max_msg_size=4 * 1024 * 1024,
                timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
            )
        except self._dial_errors as exc:
            state.last_error = f"cannot reach {address}: {type(exc).__name__}"
            log.debug("dial: %s", state.last_error)
            return None

    async def _client_handshake(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        handshake: ClientHandshake,
        address: str,
        state: PeerState,
    ) -> bool:
        try:
            async with asyncio.timeout(self.config.handshake_timeout):
                await ws.send_bytes(handshake.start())
                while handshake.state is not HandshakeState.DONE:
                    msg = await ws.receive()
                    if msg.type != WSMsgType.BINARY:
                        raise HandshakeError("refused by the peer")
                    reply = handshake.receive_data(msg.data)
                    if reply:
                        await ws.send_bytes(reply)
            return True
        except (RemoteProtocolError, TimeoutError, aiohttp.ClientError) as exc:
            state.last_error = f"handshake with {address} refused ({type(exc).__name__})"
            log.info("dial: %s", state.last_error)
            await ws.close()
            return False
