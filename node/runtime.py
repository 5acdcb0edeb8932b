"""The running node: peer endpoint, dialer, gossip (reconcile, push, relay) and local API.

Owns the decisions the sans-IO session leaves to the node: what each peer may receive,
what to ask for, which records to store, purge and forward, whom to penalise and back
off. Bad input from a peer costs that peer score and never stops the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import random as stdrandom
import secrets
import time
import urllib.parse
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import WSMsgType, web

from node.admission import (
    ConnectionGuard,
    GuardedProtocol,
    PendingSlots,
    client_address,
    fd_budget,
    install_accept_error_filter,
    is_trusted,
    parse_proxies,
)
from node.clock import now_ms
from node.config import Config, parse_socks5, split_host_port
from node.connection import PeerConnection
from node.ingest import (
    Accepted,
    accept_records,
    check_parallel,
    malformed_among,
)
from node.local import Local, Peer, random
from node.queries import KnowWho
from node.revocation import apply_stored_revocations, revoked_ids
from node.trust import PendingInvite, pending_invites, redeem_invite
from node.web import UI_PREFIX
from protocol import limits
from protocol.contact import Filter
from protocol.content import Alert
from protocol.envelope import open_record
from protocol.errors import (
    CanopyError,
    ContactError,
    DecodeError,
    HandshakeError,
    NotForUs,
    RemoteProtocolError,
    UnexpectedMessage,
    VerificationError,
)
from protocol.handshake import ClientHandshake, HandshakeState, ServerHandshake
from protocol.identity import NodeId
from protocol.invite import PEER_PATH, check_address, normalise_address
from protocol.lifecycle import Withdrawal
from protocol.names import check_name, name_taken
from protocol.reconcile import Reconciler
from protocol.record import Kind, Record, Scope
from protocol.rounds import RoundLedger, check_round_gap
from protocol.session import (
    Event,
    PeerAnswer,
    PeerHello,
    PeerIntroReply,
    PeerIntroRequest,
    PeerMissing,
    PeerQuery,
    PeerReconcile,
    PeerSyncDone,
    PeerWant,
)

log = logging.getLogger("canopy.node")

PUBLIC_ROUTES = frozenset({"/healthz"})  # no token: it answers only "ok"
# The web app (/ui/) signs its people in with sessions of its own: no bearer token there.


def api_hosts(listen_host: str, port: int, configured: str) -> frozenset[str]:
    """The Host values (lowercase) the local API answers to: loopback names with its port,
    the address it listens on, and `[api] host` (as given, and with the port if it has
    none). Anything else is a name someone else chose (DNS rebinding)."""
    hosts = {f"127.0.0.1:{port}", f"[::1]:{port}", f"localhost:{port}"}
    if listen_host:  # an address literal (even 0.0.0.0, which api_url then names)
        hosts.add(f"[{listen_host}]:{port}" if ":" in listen_host else f"{listen_host}:{port}")
    if configured:
        hosts.add(configured.lower())
        if configured.endswith("]") or ":" not in configured:  # no port given
            hosts.add(f"{configured.lower()}:{port}")
    return frozenset(hosts)


DialErrors = tuple[type[BaseException], ...]


def _proxy_connector(url: str) -> tuple[aiohttp.BaseConnector, DialErrors]:
    """Every outbound peer connection through SOCKS5; names resolved by the proxy (rdns), so
    .onion addresses work and no DNS query leaves this machine. Imported only when
    configured: most nodes never need it, and every node pays for imports at start."""
    from aiohttp_socks import ProxyConnector, ProxyError, ProxyType

    host, port = parse_socks5(url)
    connector = ProxyConnector(proxy_type=ProxyType.SOCKS5, host=host, port=port, rdns=True)
    return connector, (ProxyError,)


@dataclass(slots=True)
class PeerState:
    """What the running node knows about a trusted peer beyond its stored record."""

    score: int = limits.INITIAL_SCORE
    next_attempt: float = 0.0
    delay: float = 0.0
    dialing: bool = False
    banned_until: float = 0.0
    last_error: str = ""


class Node:
    def __init__(self, local: Local, config: Config) -> None:
        self.local = local
        self.config = config
        self.node_id = local.node_id
        self.started = time.time()
        self.name = ""
        self.network_key = b""
        self.peers: dict[NodeId, Peer] = {}
        self.invites: list[PendingInvite] = []
        self._claimed_invites: set[bytes] = set()
        self.state: dict[NodeId, PeerState] = {}
        self.connections: dict[NodeId, PeerConnection] = {}
        self.inflight: set[bytes] = set()  # ids asked of some peer and not yet answered
        self.revoked: dict[NodeId, int] = {}  # revoked identities -> when we learnt (ms)
        self._bad: OrderedDict[bytes, str] = OrderedDict()  # negative cache: id -> error name
        self._proxies = parse_proxies(config.trusted_proxies)
        self._pending = PendingSlots()  # inbound handshakes in progress
        self._inbound: Counter[str] = Counter()  # inbound connections of any state, per address
        self._deliveries: list[tuple[bytes, bytes]] = []  # (peer, record id) not yet stored
        self.rejected: Counter[str] = Counter()
        self._pending_rejections: Counter[str] = Counter()  # not yet written to the store
        self.received = 0
        self.totals: Counter[str] = Counter()  # traffic of closed connections
        self.alerts: deque[dict[str, object]] = deque(maxlen=limits.RECENT_ALERTS)
        self._watchers: set[asyncio.Queue[dict[str, object]]] = set()
        self._next_round: dict[NodeId, float] = {}
        self._round_opened: dict[NodeId, float] = {}  # when each peer last opened a round
        self._round_sent: dict[NodeId, float] = {}  # when we last started one with each
        self._notified = 0  # `canopy` wrote to the store (POST /v1/notify): sets may differ
        self._source_usage: dict[NodeId, list[int]] = {}  # records, bytes stored from a peer
        self._warned: dict[NodeId, tuple[float, int]] = {}  # last warning, suppressed since
        self._epoch = -1
        self._local_seq = 0
        self._dial_errors: DialErrors = (aiohttp.ClientError, OSError, TimeoutError)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._runners: list[web.AppRunner] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._client: aiohttp.ClientSession | None = None
        self.listen_url = ""
        self.advertise: tuple[str, ...] = ()
        self.api_url = ""
        self.api_token = secrets.token_urlsafe(32)
        self._api_hosts: frozenset[str] = frozenset()  # set once the API is bound
        self.knowwho = KnowWho(self)
        self._unchecked_guides: deque[bytes] = deque()  # stored, not yet opened once
        self._checking_guides = False

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self.name = self.config.name or await self.local.name()
        # Revocations a store holds but never applied (written before every path applied
        # them) take effect before the first handshake.
        await apply_stored_revocations(self.local, now_ms())
        await self._reload_trust()
        await self.knowwho.start()
        # Our records published while we were stopped reach peers by reconciliation.
        self._local_seq = await self.local.store.max_seq()
        connector: aiohttp.BaseConnector | None = None
        if self.config.socks5:
            connector, proxy_errors = _proxy_connector(self.config.socks5)
            self._dial_errors += proxy_errors
        self._client = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, connect=30 if self.config.socks5 else 10),
        )
        peer_app = web.Application()
        peer_app.router.add_get(PEER_PATH, self._accept_ws)
        peer_app.router.add_get("/", self._accept_ws)  # `ws://host:port` works as typed
        host, port = split_host_port(self.config.listen)
        install_accept_error_filter()
        reserve = limits.FD_RESERVE + limits.MAX_API_CONNECTIONS  # descriptors kept free
        peer_guard = ConnectionGuard(
            "",
            total=fd_budget(limits.MAX_TCP_CONNECTIONS, reserve),
            per_address=limits.MAX_TCP_PER_ADDRESS,
            header_timeout=limits.HTTP_HEADER_TIMEOUT_S,
            preauth=True,  # until the handshake is done (_admit)
            exempt=lambda address: is_trusted(address, self._proxies),
            count=self._count,
        )
        bound = await self._serve(peer_app, host, port, peer_guard)
        shown = host if host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        shown = f"[{shown}]" if ":" in shown else shown
        self.listen_url = f"ws://{shown}:{bound}{PEER_PATH}"
        self.advertise = self.config.advertise or (self.listen_url,)
        api_app = web.Application(middlewares=[self._auth_middleware])
        api_app.router.add_get("/v1/status", self._api_status)
        api_app.router.add_get("/v1/peers", self._api_peers)
        api_app.router.add_get("/v1/alerts", self._api_alerts)
        api_app.router.add_get("/v1/watch", self._api_watch)
        api_app.router.add_post("/v1/notify", self._api_notify)
        api_app.router.add_post("/v1/import", self._api_import)
        api_app.router.add_post("/v1/wipe", self._api_wipe)
        api_app.router.add_get("/healthz", self._api_healthz)
        api_app.router.add_get("/metrics", self._api_metrics)
        api_app.router.add_post("/v1/query", self._api_query)
        api_app.router.add_get("/v1/queries", self._api_queries)
        from node.web.app import mount  # node/web/: the web app, `canopy ui`'s link route

        mount(api_app, self)
        api_host, api_port = split_host_port(self.config.api_listen)
        api_guard = ConnectionGuard(
            "api_",
            total=limits.MAX_API_CONNECTIONS,
            per_address=limits.MAX_API_CONNECTIONS,
            header_timeout=limits.HTTP_HEADER_TIMEOUT_S,
            count=self._count,
        )
        api_bound = await self._serve(api_app, api_host, api_port, api_guard)
        self.api_url = f"http://{api_host or '127.0.0.1'}:{api_bound}"
        self._api_hosts = api_hosts(api_host, api_bound, self.config.api_host)
        self.local.write_runtime(self.api_url, self.api_token)
        self._tasks = [
            asyncio.create_task(self._dial_loop()),
            asyncio.create_task(self._poll_loop()),
            asyncio.create_task(self._resync_loop()),
        ]
        log.info("node %s listening on %s", self.node_id.short, self.listen_url)

    async def _serve(
        self, app: web.Application, host: str, port: int, guard: ConnectionGuard
    ) -> int:
        """Listen with aiohttp's protocol behind `guard`, which caps connections before
        any HTTP parsing (a TCPSite would hand every connection straight to aiohttp).
        After the first request, aiohttp's keep-alive timeout bounds a slow next one."""
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=limits.HTTP_HEADER_TIMEOUT_S,
        )
        await runner.setup()
        assert runner.server is not None
        server = await asyncio.get_running_loop().create_server(
            guard.factory(runner.server), host or "127.0.0.1", port, reuse_address=True
        )
        self._runners.append(runner)
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1]) if server.sockets else port

    async def stop(self) -> None:
        self.knowwho.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for conn in list(self.connections.values()):
            await conn.close("node stopping")
        for queue in self._watchers:
            queue.put_nowait({})
        for server in self._servers:
            server.close()
        for runner in self._runners:
            await runner.cleanup()
        if self._client is not None:
            await self._client.close()
        await self._flush_rejections()
        await self._flush_deliveries()
        await self.knowwho.flush_opened()
        self.local.clear_runtime()

    # -- trust -------------------------------------------------------------------------------

    async def _reload_trust(self) -> None:
        self._epoch = await self.local.store.epoch()
        key = await self.local.network_key()
        if self.network_key and key != self.network_key:
            self.knowwho.network_key_changed()
        self.network_key = key
        known = self.peers
        self.peers = await self.local.peers()
        for node_id, peer in self.peers.items():  # last_sync is written only now and then
            if node_id in known and (known[node_id].last_sync or 0) > (peer.last_sync or 0):
                peer.last_sync = known[node_id].last_sync
        self.invites = await pending_invites(self.local, now_ms())
        for node_id in (await revoked_ids(self.local)).keys() - self.revoked.keys():
            self._revoked_now(node_id)
        for node_id in list(self.state):
            if node_id not in self.peers:
                del self.state[node_id]
        for node_id in self.peers:
            self.state.setdefault(node_id, PeerState())
        for node_id, conn in list(self.connections.items()):
            if node_id not in self.peers:
                log.info("trust withdrawn from %s: disconnecting", node_id.short)
                await conn.close("trust withdrawn")

    def _authorize(self, invites: Sequence[PendingInvite]) -> Callable[[bytes, int], bool]:
        def authorize(public_key: bytes, index: int) -> bool:
            if len(public_key) != 32 or public_key == self.node_id.raw:
                return False
            node_id = NodeId(public_key)
            if node_id in self.revoked:
                self._count("handshake_revoked")
                return False
            state = self.state.get(node_id)
            if state is not None and state.banned_until > time.monotonic():
                return False
            if index == 0:
                return node_id in self.peers
            if not 0 < index <= len(invites):
                return False
            invite = invites[index - 1]
            if invite.expires <= now_ms() or invite.secret in self._claimed_invites:
                return False
            self._claimed_invites.add(invite.secret)  # one-time, even for racing handshakes
            return True

        return authorize

    # -- inbound -----------------------------------------------------------------------------

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
            self._count("connection_cap")
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
        invites = list(self.invites)
        handshake = ServerHandshake(
            [self.network_key, *(i.capability for i in invites)],
            self.local.identity.secret_key,
            random(32),
            self._authorize(invites),
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
                        self._count("preauth_oversize")
                        raise DecodeError("message larger than any handshake message")
                    reply = handshake.receive_data(msg.data)
                    if reply:
                        await ws.send_bytes(reply)
        except (RemoteProtocolError, TimeoutError) as exc:
            refused = isinstance(exc, RemoteProtocolError)
            self._count(
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
        if keys.network_key_index > 0:
            invite = invites[keys.network_key_index - 1]
            await redeem_invite(self.local, invite, peer_id, now_ms())
            await self._reload_trust()
            log.info("invite redeemed by %s", peer_id.short)
        conn = PeerConnection(
            self, ws, peer_id, keys, outbound=False, leftover=handshake.leftover()
        )
        await conn.run()
        return ws

    # -- outbound ----------------------------------------------------------------------------

    async def _dial_loop(self) -> None:
        while True:
            now = time.monotonic()
            for node_id, peer in list(self.peers.items()):
                state = self.state.setdefault(node_id, PeerState())
                if (
                    node_id in self.connections
                    or node_id in self.revoked
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

    def _backoff(self, state: PeerState) -> None:
        state.delay = min(
            self.config.reconnect_max, max(self.config.reconnect_min, state.delay * 2)
        )
        state.next_attempt = time.monotonic() + state.delay * (0.75 + 0.5 * stdrandom.random())

    async def _dial(self, peer: Peer, state: PeerState) -> None:
        """Try each address; with a pending invite, its one-time key first, then ours."""
        try:
            keys = [k for k in (peer.invite_capability, self.network_key) if k]
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
                    if network_key == peer.invite_capability:
                        peer.invite_capability = None
                        await self.local.save_peer(peer)
                    state.delay = 0.0
                    state.last_error = ""
                    state.dialing = False
                    conn = PeerConnection(
                        self,
                        ws,
                        peer.node_id,
                        handshake.keys,
                        outbound=True,
                        leftover=handshake.leftover(),
                    )
                    await conn.run()
                    return
        finally:
            state.dialing = False
            self._backoff(state)

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

    # -- connection events ---------------------------------------------------------------------

    async def on_open(self, conn: PeerConnection) -> None:
        if conn.peer_id not in self.peers or conn.peer_id in self.revoked:
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
        self.state.setdefault(conn.peer_id, PeerState()).delay = 0.0
        log.info("connected to %s (%s)", conn.peer_id.short, "out" if conn.outbound else "in")
        conn.send(conn.session.hello(self.name, self.advertise))
        if conn.outbound:
            await self.start_round(conn)
        await self.knowwho.tick_introductions()

    def on_closed(self, conn: PeerConnection) -> None:
        self.knowwho.connection_closed(conn)
        for key in ("bytes_sent", "bytes_received", "record_bytes_sent", "record_bytes_received"):
            self.totals[key] += getattr(conn, key)
        self.totals["reconcile_rounds"] += conn.reconcile_rounds
        self.inflight.difference_update(conn.pending_wants)
        self.inflight.difference_update(conn.session.outstanding_wants)
        if self.connections.get(conn.peer_id) is conn:
            del self.connections[conn.peer_id]
            log.info("disconnected from %s: %s", conn.peer_id.short, conn.close_reason)
            state = self.state.get(conn.peer_id)
            if state is not None:
                state.last_error = conn.close_reason
                state.next_attempt = max(
                    state.next_attempt, time.monotonic() + self.config.reconnect_min
                )

    async def start_round(self, conn: PeerConnection) -> None:
        """Initiator: reconcile the records this pair may exchange (docs/SPEC.md, "Sync")."""
        conn.reconciler = await self._reconciler_for(conn)
        conn.reconcile_seen = (0, 0)
        conn.round_unasked = conn.round_unasked_bytes = 0
        conn.round_capped = False
        self._round_sent[conn.peer_id] = time.monotonic()
        conn.send(conn.session.reconcile(conn.reconciler.initiate()))
        conn.reconcile_rounds += 1

    def _items_version(self) -> tuple[int, ...]:
        """Changes whenever the set of records a peer may exchange with us may have: a
        record stored or deleted by this process, one written by `canopy`, trust changed."""
        return (self.local.store.generation, self._local_seq, self._epoch, self._notified)

    async def _reconciler_for(self, conn: PeerConnection) -> Reconciler:
        """A fresh reconciler over what this pair may exchange, re-read from the store only
        when that set may have changed since the last round (docs/SPEC.md, "Rounds")."""
        version = self._items_version()
        cached = conn.items_cache
        if cached is None or cached[0] != version:
            items = await self.local.store.exchangeable_items(conn.peer_id.raw, now_ms())
            cached = (version, Reconciler(items, presorted=True))
            conn.items_cache = cached
        return cached[1].fresh()

    async def on_event(self, conn: PeerConnection, event: Event) -> None:
        if isinstance(event, PeerHello):
            await self._on_hello(conn, event)
        elif isinstance(event, PeerReconcile):
            await self._on_reconcile(conn, event.payload)
        elif isinstance(event, PeerSyncDone):
            conn.reconciler = None
            conn.round = None
            await self._synced(conn)
        elif isinstance(event, PeerWant):
            conn.request([(i, True) for i in event.ids], by_peer=True)
        elif isinstance(event, PeerMissing):
            self.inflight.difference_update(event.ids)
            await self.after_records(conn)
        elif isinstance(event, PeerQuery | PeerAnswer | PeerIntroRequest | PeerIntroReply):
            await self.knowwho.on_event(conn, event)

    def bump_own_epoch(self) -> None:
        """We changed a sealed row ourselves: no need to reload for it."""
        self._epoch += 1

    async def _on_hello(self, conn: PeerConnection, hello: PeerHello) -> None:
        peer = self.peers.get(conn.peer_id)
        if peer is None:
            return
        changed = False
        if hello.name and not peer.name:
            # The name rule of invites, and no name another peer (or this node) already
            # goes by: a peer may not pass itself off as another. Refused names are counted.
            others = [p.name for n, p in self.peers.items() if n != conn.peer_id]
            if check_name(hello.name) is not None:
                self._count("hello_name_refused")
            elif name_taken(hello.name, [*others, self.name]):
                self._count("hello_name_taken")
            else:
                peer.name, changed = hello.name, True
        # The address rule of invites, normalised as everywhere an address is taken.
        usable = [normalise_address(a) for a in hello.addresses if check_address(a) is None]
        usable = list(dict.fromkeys(usable))[: limits.MAX_INVITE_ADDRESSES]
        if usable and not peer.addresses:
            peer.addresses, changed = usable, True
        if changed:
            await self.local.save_peer(peer)
            self._epoch += 1  # our own write: no need to reload trust for it

    async def _on_reconcile(self, conn: PeerConnection, payload: bytes) -> None:
        if not conn.outbound:  # responder: answer every step of the peer's round
            if conn.reconciler is None:  # the peer opens a round
                now = time.monotonic()
                check_round_gap(self._round_opened.get(conn.peer_id), now)  # RateLimited
                self._round_opened[conn.peer_id] = now
                conn.reconciler = await self._reconciler_for(conn)
                conn.round = RoundLedger(now)
            if conn.reconciler.rounds >= limits.MAX_RECONCILE_ROUNDS:
                raise UnexpectedMessage("reconciliation round does not converge")
            reply = conn.reconciler.reconcile(payload)
            if conn.round is not None:
                conn.round.announce(*conn.reconciler.take_announced())
            conn.send(conn.session.reconcile(reply or b""))
            conn.reconcile_rounds += 1
            return
        reconciler = conn.reconciler
        if reconciler is None:  # pragma: no cover - the session refuses unasked replies
            return
        following = reconciler.reconcile(payload)
        have_seen, need_seen = conn.reconcile_seen
        have, need = reconciler.have, reconciler.need
        conn.reconcile_seen = (len(have), len(need))
        if len(have) > have_seen:
            # What we send unasked in one round is bounded (the peer cuts us off past it);
            # the rest is found again by the next round, which then comes soon.
            room = limits.MAX_ROUND_RECORDS - conn.round_unasked
            fresh_have = have[have_seen:]
            if len(fresh_have) > room:
                fresh_have, conn.round_capped = fresh_have[: max(0, room)], True
            conn.round_unasked += len(fresh_have)
            conn.request([(i, False) for i in fresh_have], by_peer=False)
        if len(need) > need_seen:
            await self._queue_wants(conn, need[need_seen:])
        if following is not None:
            if reconciler.rounds > limits.MAX_RECONCILE_ROUNDS:
                raise UnexpectedMessage("reconciliation does not converge")
            conn.send(conn.session.reconcile(following))
            conn.reconcile_rounds += 1
        else:
            await self.after_records(conn)

    async def _queue_wants(self, conn: PeerConnection, ids: Sequence[bytes]) -> None:
        held = await self.local.store.has(ids)
        for rid in ids:
            if rid not in held and rid not in self.inflight:
                conn.pending_wants.append(rid)
                self.inflight.add(rid)
        self._top_up_wants(conn)

    def _top_up_wants(self, conn: PeerConnection) -> None:
        room = conn.want_capacity
        batch: list[bytes] = []
        while conn.pending_wants and len(batch) < room:
            batch.append(conn.pending_wants.popleft())
        if batch:
            conn.send(conn.session.want(batch))

    async def after_records(self, conn: PeerConnection) -> None:
        """More wants if there is room; SyncDone once the initiator's round is complete."""
        self._top_up_wants(conn)
        reconciler = conn.reconciler
        if (
            conn.outbound
            and reconciler is not None
            and reconciler.done
            and not conn.pending_wants
            and not conn.session.outstanding_wants
            and not conn.serve_queue
            and not conn.serving
            and not conn.unstored
            and not conn.closing
        ):
            conn.reconciler = None
            conn.send(conn.session.sync_done())
            await self._synced(conn)

    async def _synced(self, conn: PeerConnection) -> None:
        conn.synced_once = True
        now = time.monotonic()
        interval = limits.MIN_ROUND_INTERVAL_S if conn.round_capped else self.config.resync_interval
        self._next_round[conn.peer_id] = now + interval
        peer = self.peers.get(conn.peer_id)
        if peer is not None:
            peer.last_sync = now_ms()
            # Kept in memory at once; written at most every SYNC_WRITE_INTERVAL_S, so that
            # rounds cost no durable write each (the row is written again on the next one).
            since = now - conn.last_sync_saved
            if not conn.last_sync_saved or since >= limits.SYNC_WRITE_INTERVAL_S:
                conn.last_sync_saved = now
                await self.local.save_peer(peer)
                self._epoch += 1

    async def _resync_loop(self) -> None:
        """Re-run reconciliation now and then: repairs dropped pushes and missed relays."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for peer_id, conn in list(self.connections.items()):
                due = self._next_round.get(peer_id, 0.0) <= now or conn.pushes_dropped
                soon = now - self._round_sent.get(peer_id, -1e9) < limits.MIN_ROUND_INTERVAL_S
                if conn.outbound and conn.synced_once and conn.reconciler is None and due:
                    if soon:
                        continue
                    conn.pushes_dropped = 0
                    with contextlib.suppress(Exception):
                        await self.start_round(conn)

    def may_receive(self, record: Record, peer_id: NodeId) -> bool:
        """Network-scoped records go to everyone; peers-scoped ones only from their author."""
        if record.author == peer_id or record.scope is Scope.PRIVATE:
            return False
        return record.scope is Scope.NETWORK or record.author == self.node_id

    async def serve(self, conn: PeerConnection, batch: list[tuple[bytes, bool]]) -> None:
        """Send what the peer asked for (or lacks); say Missing for what it asked and won't get."""
        found = await self.local.store.records_for_peer(
            [i for i, _ in batch], conn.peer_id.raw, now_ms()
        )
        out: list[bytes] = []
        for rid, asked in batch:
            data = found.get(rid)
            if data is None:
                continue
            if not asked:  # unasked, in our round: within the round's byte bound
                if conn.round_unasked_bytes + len(data) > limits.MAX_ROUND_BYTES:
                    conn.round_capped = True
                    del found[rid]
                    continue
                conn.round_unasked_bytes += len(data)
            out.append(data)
        missing = [rid for rid, asked in batch if asked and rid not in found]
        if out:
            conn.note_records_sent(sum(len(d) for d in out))
            conn.send(conn.session.records(out))
            self._deliveries.extend((conn.peer_id.raw, rid) for rid, _ in batch if rid in found)
        if missing:
            conn.send(conn.session.missing(missing))

    # -- ingest, store, purge, forward ---------------------------------------------------------

    async def ingest(
        self, datas: Sequence[bytes], conn: PeerConnection, ids: Sequence[bytes]
    ) -> None:
        """Validate records from `conn`, store the good ones durably, forward the new ones."""
        good = await self.check_incoming(datas, conn, ids)
        if good:
            await self.accept(good, source=conn)

    async def check_incoming(
        self, datas: Sequence[bytes], conn: PeerConnection, ids: Sequence[bytes]
    ) -> list[Record]:
        """Decode and verify records from `conn` (on worker threads for a large batch);
        the bad ones are remembered, their sender penalised; returns the good ones.
        `ids`: record_id of each, as the session computed them."""
        now = now_ms()
        # Negative cache: a record that failed decoding or verification once is refused
        # again by id, without a second signature check; the sender pays the same penalty.
        # A copy repeated within the batch (messages are coalesced) is checked once, and
        # then treated like a later arrival: refused as known bad, or dropped as a duplicate.
        fresh: dict[bytes, bytes] = {}
        repeats: list[bytes] = []
        for data, rid in zip(datas, ids, strict=True):
            if conn.closing:  # cut off: the rest of its batch is not worth a look
                return []
            if rid in fresh:
                repeats.append(rid)
            elif rid in self._bad:
                await self._refuse_known_bad(rid, conn)
            else:
                fresh[rid] = data
        fresh_ids = list(fresh)
        checked = await check_parallel(list(fresh.values()), fresh_ids, now, conn.peer_id)
        good: list[Record] = []
        for rid, outcome in zip(fresh_ids, checked, strict=True):
            if isinstance(outcome, RemoteProtocolError):
                if isinstance(outcome, DecodeError | VerificationError):
                    self._remember_bad(rid, type(outcome).__name__)
                if conn.closing:
                    self.inflight.discard(rid)
                    continue
                # Only the sender is held to account: until the signature verified, the
                # author named inside is just a claim, so an honest author is never blamed.
                await self.penalise(
                    conn.peer_id, outcome, reason=f"record_{type(outcome).__name__}"
                )
                self.inflight.discard(rid)
            else:
                good.append(outcome)
        for rid in repeats:
            if rid in self._bad and not conn.closing:
                await self._refuse_known_bad(rid, conn)
        return good

    async def _refuse_known_bad(self, rid: bytes, conn: PeerConnection) -> None:
        known_bad = self._bad[rid]
        self._bad.move_to_end(rid)
        self._count("record_known_bad")
        self.inflight.discard(rid)
        error = DecodeError if known_bad == "DecodeError" else VerificationError
        await self.penalise(conn.peer_id, error("known bad record"), reason=f"record_{known_bad}")

    def _remember_bad(self, rid: bytes, error: str) -> None:
        self._bad[rid] = "DecodeError" if error == "DecodeError" else "VerificationError"
        self._bad.move_to_end(rid)
        while len(self._bad) > limits.NEGATIVE_CACHE_SIZE:
            self._bad.popitem(last=False)

    async def accept(self, records: Sequence[Record], source: PeerConnection | None) -> Accepted:
        """Store checked records through `accept_records` (the one path, shared with bundle
        import), then act on them live: refuse what they revoke, announce alerts, update
        the know-who index, push the new ones on."""
        now = now_ms()
        if source is not None:
            records = await self._within_storage_caps(records, source)
        accepted = await accept_records(self.local, records, now, self.revoked.keys())
        if source is not None:  # a bundle's refusals are counted by `import_bundle`
            usage = self._source_usage.setdefault(source.peer_id, [0, 0])
            usage[0] += len(accepted.fresh)
            usage[1] += sum(len(r.to_bytes()) for r in accepted.fresh)
            for reason, n in accepted.refused.items():
                # Not the sender's fault: it may not have heard of a revocation or withdrawal.
                self._count(reason, n)
        self.inflight.difference_update(r.id for r in records)
        for node_id in accepted.revoked:
            self._epoch += 1  # our own write: no need to reload trust for it
            self._revoked_now(node_id)
        fresh = accepted.fresh
        if accepted.purged:
            self.knowwho.remove(accepted.purged)
        self.received += len(fresh) if source is not None else 0
        for record in fresh:
            if record.kind is Kind.ALERT:
                malformed = self._announce_alert(record, now)
                if malformed is not None:
                    # Its author signed it (record and body): blame the author, never a relay
                    # that may not have been able to read it.
                    await self.penalise(record.author, malformed, reason="content_malformed")
            elif record.kind in (Kind.CONTACT, Kind.VOUCH) and self.knowwho.add(
                record, verify_body=True
            ):  # opened, but malformed: its author pays, as for alerts
                error = DecodeError("content breaks its kind's schema")
                await self.penalise(record.author, error, reason="content_malformed")
        guides = [r.id for r in fresh if r.kind is Kind.GUIDE and r.author != self.node_id]
        if guides:
            self._unchecked_guides.extend(guides)
            if not self._checking_guides:
                self._checking_guides = True
                self._tasks.append(asyncio.get_running_loop().create_task(self._check_guides()))
        if fresh:
            self.push(fresh, exclude=source.peer_id if source else None)
        return accepted

    async def _check_guides(self) -> None:
        """Open the guides this node can read once, after they are stored: one that breaks the
        guide schema is never shown by any reader (open_record refuses it); here it is
        counted and its author, who signed it, pays for it. Never urgent, so it waits while
        records are being ingested rather than take the cores from them; it keeps ids, not
        records, so a large sync does not hold them in memory meanwhile."""
        loop = asyncio.get_running_loop()
        try:
            while self._unchecked_guides:
                if self._ingesting():
                    await asyncio.sleep(limits.GUIDE_CHECK_IDLE_S)
                    continue
                n = min(len(self._unchecked_guides), limits.GUIDE_CHECK_CHUNK)
                ids = [self._unchecked_guides.popleft() for _ in range(n)]
                datas = list((await self.local.store.get_records(ids)).values())
                identity, network_key = self.local.identity, self.network_key
                bad = await loop.run_in_executor(
                    None, malformed_among, datas, identity, network_key
                )
                for record, error in bad:
                    await self.penalise(record.author, error, reason="content_malformed")
        finally:
            self._checking_guides = False

    def _ingesting(self) -> bool:
        """Whether some connection has records received and not yet stored."""
        return any(c.unstored or not c.ingest_queue.empty() for c in self.connections.values())

    async def _within_storage_caps(
        self, records: Sequence[Record], source: PeerConnection
    ) -> list[Record]:
        """The records we still have room for from `source`: at most max_source_records
        (and MAX_SOURCE_BYTES) stored from one peer, and at most MAX_UNKNOWN_AUTHOR_RECORDS
        (and _BYTES) held of an author that is neither us nor a trusted peer. Revocations
        always have room. The rest is refused, counted, and found again by a later round."""
        usage = self._source_usage.get(source.peer_id, [0, 0])
        n, size = usage[0], usage[1]
        unknown = {
            r.author.raw for r in records if r.author != self.node_id and r.author not in self.peers
        }
        held = await self.local.store.author_usage(sorted(unknown)) if unknown else {}
        authors = {a: list(held.get(a, (0, 0))) for a in unknown}
        keep: list[Record] = []
        over_source = over_author = 0
        for record in records:
            length = len(record.to_bytes())
            if record.kind is Kind.REVOCATION:
                keep.append(record)
                continue
            if n + 1 > self.config.max_source_records or size + length > limits.MAX_SOURCE_BYTES:
                over_source += 1
                self.inflight.discard(record.id)
                continue
            author = authors.get(record.author.raw)
            if author is not None:
                if (
                    author[0] + 1 > limits.MAX_UNKNOWN_AUTHOR_RECORDS
                    or author[1] + length > limits.MAX_UNKNOWN_AUTHOR_BYTES
                ):
                    over_author += 1
                    self.inflight.discard(record.id)
                    continue
                author[0] += 1
                author[1] += length
            n += 1
            size += length
            keep.append(record)
        if over_source:
            self._count("quota_source_storage", over_source)
            self.warn_peer(
                source.peer_id,
                "reached its storage cap (sync.max_source_records): %d record(s) refused",
                over_source,
            )
        if over_author:
            self._count("quota_author_storage", over_author)
            self.warn_peer(
                source.peer_id,
                "relayed records of an unknown author over its storage cap: %d refused",
                over_author,
            )
        return keep

    def _revoked_now(self, node_id: NodeId) -> None:
        """Refuse the identity at once: its handshakes, its records, its live connection;
        its guides, contacts and vouches become unverified."""
        self.revoked[node_id] = now_ms()
        self.knowwho.index.set_revoked(n.raw for n in self.revoked)
        if node_id == self.node_id:
            log.error(
                "THIS NODE'S KEY IS REVOKED: peers now refuse it; create a new identity"
                " (canopy init in a new data directory) and ask peers to trust it"
            )
            return
        peer = self.peers.get(node_id)
        log.warning(
            "KEY REVOKED: %s declared its key compromised; its records are refused and"
            " its guides marked unverified (canopy exposure %s shows who received them)",
            peer.label if peer else node_id.short,
            node_id,
        )
        state = self.state.get(node_id)
        if state is not None:
            state.last_error = "key revoked (compromised)"
        conn = self.connections.get(node_id)
        if conn is not None:
            task = asyncio.get_running_loop().create_task(conn.close("key revoked"))
            self._tasks.append(task)

    def push(self, records: Sequence[Record], exclude: NodeId | None = None) -> None:
        """Send records at once to every connected peer that may have them and lacks them."""
        urgent = [r for r in records if r.kind is Kind.ALERT]
        normal = [r for r in records if r.kind is not Kind.ALERT]
        for peer_id, conn in list(self.connections.items()):
            if peer_id == exclude or conn.closing:
                continue
            for group, is_urgent in ((urgent, True), (normal, False)):
                chosen = [
                    r
                    for r in group
                    if self.may_receive(r, peer_id) and not conn.session.peer_knows(r.id)
                ]
                out = [r.to_bytes() for r in chosen]
                if out and conn.push(conn.session.records(out), urgent=is_urgent, count=len(out)):
                    conn.note_records_sent(sum(len(d) for d in out))
                    self._deliveries.extend((peer_id.raw, r.id) for r in chosen)

    def _announce_alert(self, record: Record, now: int) -> RemoteProtocolError | None:
        """Buffer an alert for /v1/alerts and `watch`. One that opens but breaks the alert
        schema is never buffered nor shown: the error is returned for the caller to count."""
        entry: dict[str, object] = {
            "id": record.id.hex(),
            "author": str(record.author),
            "created": record.created,
            "received_at_ms": now,
        }
        try:
            body = open_record(record, self.local.identity, self.network_key)
            alert = Alert.from_content(body.content)  # open_record checked it; typed here
            entry["text"] = alert.text
            entry["urgency"] = alert.urgency
            peer = self.peers.get(record.author)
            entry["from"] = (
                "you"
                if record.author == self.node_id
                else (peer.label if peer else record.author.short)
            )
            entry["readable"] = True
        except NotForUs:
            entry["readable"] = False
        except RemoteProtocolError as exc:
            return exc
        self.alerts.append(entry)
        for queue in list(self._watchers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(entry)

    async def penalise(
        self, peer_id: NodeId, error: RemoteProtocolError, *, reason: str, ban: bool = False
    ) -> None:
        self._count(reason)
        state = self.state.get(peer_id)
        if state is None or state.banned_until > time.monotonic():
            return  # unknown, or already cut off: counted, not charged or logged again
        state.score -= error.penalty
        state.last_error = f"{reason}: {error}"
        self.warn_peer(peer_id, "sent bad input (%s); score %d", reason, state.score)
        if ban or state.score < self.config.min_score:
            state.banned_until = time.monotonic() + limits.BAN_SECONDS
            state.next_attempt = state.banned_until
            state.score = limits.INITIAL_SCORE // 2
            conn = self.connections.get(peer_id)
            if conn is not None:
                await conn.close(f"cut off for misbehaving ({reason})")

    def warn_peer(self, peer_id: NodeId, message: str, *args: object) -> None:
        """A warning about a peer, at most one line per WARNING_INTERVAL_S per peer; the
        next line that gets out says how many were suppressed meanwhile."""
        now = time.monotonic()
        last, suppressed = self._warned.get(peer_id, (-limits.WARNING_INTERVAL_S, 0))
        if now - last < limits.WARNING_INTERVAL_S:
            self._warned[peer_id] = (last, suppressed + 1)
            return
        self._warned[peer_id] = (now, 0)
        tail = f" ({suppressed} similar warning(s) suppressed)" if suppressed else ""
        log.warning("peer %s " + message + tail, peer_id.short, *args)

    def _count(self, reason: str, n: int = 1) -> None:
        self.rejected[reason] += n
        self._pending_rejections[reason] += n

    async def _flush_rejections(self) -> None:
        for reason, n in self._pending_rejections.items():
            await self.local.store.count_rejection(reason, n)
        self._pending_rejections.clear()

    # -- picking up changes made by the CLI ----------------------------------------------------

    async def _poll_loop(self) -> None:
        last_purge = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.poll_interval)
            self._wake.clear()
            try:
                await self._poll_once()
                if time.monotonic() - last_purge > limits.PURGE_EVERY_S:
                    last_purge = time.monotonic()
                    purged = await self.local.store.delete_expired(now_ms())
                    self.knowwho.expire(now_ms())
                    if purged:
                        log.info("purged %d expired record(s)", purged)
            except Exception:  # never let one bad poll stop the node
                log.exception("poll failed")

    async def _poll_once(self) -> None:
        if await self.local.store.epoch() != self._epoch:
            await self._reload_trust()
            await self.knowwho.tick_introductions()
        while True:
            seq, batch = await self.local.store.local_records_after(self._local_seq, 500)
            if seq == self._local_seq:
                break
            self._local_seq = seq
            if not batch:
                continue  # rows received from peers, already pushed on ingest
            records = [Record.from_bytes(data) for _, data in batch]
            now = now_ms()
            for record in records:
                if record.kind is Kind.ALERT:
                    if self._announce_alert(record, now) is not None:
                        self._count("content_malformed")
                elif record.kind in (Kind.CONTACT, Kind.VOUCH):
                    self.knowwho.add(record, verify_body=False)
                elif record.kind is Kind.TOMBSTONE:
                    self.knowwho.remove(Withdrawal.from_payload(record.payload).targets)
            self.push(records)
        await self._flush_rejections()
        await self._flush_deliveries()
        await self.knowwho.flush_opened()

    async def _flush_deliveries(self) -> None:
        if self._deliveries:
            batch, self._deliveries = self._deliveries, []
            await self.local.store.record_deliveries(batch, now_ms())

    # -- local API -------------------------------------------------------------------------------

    @web.middleware
    async def _auth_middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], object],
    ) -> web.StreamResponse:
        # DNS rebinding: a page in the operator's browser may reach this port under a name
        # of its own; only the names this API is reached by locally, and no foreign page.
        if request.headers.get("Host", "").lower() not in self._api_hosts:
            return web.json_response({"error": "unknown host"}, status=421)
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower().removeprefix("http://") not in self._api_hosts:
            return web.json_response({"error": "foreign origin"}, status=403)
        if request.path in PUBLIC_ROUTES or request.path.startswith(UI_PREFIX) or (
            request.path == "/metrics" and self.config.metrics_public
        ):
            return await handler(request)  # type: ignore[misc, no-any-return]
        supplied = request.headers.get("Authorization", "")
        if not hmac.compare_digest(supplied.encode(), f"Bearer {self.api_token}".encode()):
            return web.json_response({"error": "unauthorised"}, status=401)
        return await handler(request)  # type: ignore[misc, no-any-return]

    async def _api_wipe(self, request: web.Request) -> web.Response:
        """`canopy wipe`: the key file is already destroyed; leave memory at once, unclean on
        purpose (no flush, no goodbye): the process and the keys it holds end now."""
        log.warning("wipe requested: exiting now")
        self.local.clear_runtime()
        asyncio.get_running_loop().call_later(0.05, os._exit, 75)
        return web.json_response({"ok": True, "exiting": True})

    async def _api_import(self, request: web.Request) -> web.Response:
        """`canopy import` while the node runs: the bundle's records take this node's own
        accept path, so revocations, alerts, the know-who index and pushes act at once."""
        from node.bundles import import_bundle  # bundles imports this module

        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        file = body.get("file") if isinstance(body, dict) else None
        if not isinstance(file, str) or not os.path.isabs(file):
            return web.json_response({"error": 'expected {"file": absolute path}'}, status=400)
        try:
            done = await import_bundle(
                self.local,
                Path(file),
                now_ms(),
                accept=lambda records: self.accept(records, source=None),
            )
        except CanopyError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(
            {
                "sender": str(done.sender),
                "sender_label": done.sender_label,
                "records": done.records,
                "new": done.new,
                "rejected": dict(done.rejected),
            }
        )

    async def _api_notify(self, request: web.Request) -> web.Response:
        self._wake.set()
        self._notified += 1
        # Records may have arrived by other paths (`canopy import`): reconcile again soon.
        for peer_id in self._next_round:
            self._next_round[peer_id] = 0.0
        return web.json_response({"ok": True})

    async def _api_healthz(self, request: web.Request) -> web.Response:
        """Liveness for supervisors and proxies: no token, and nothing but "ok"."""
        return web.json_response({"status": "ok"})

    def sync_lag_s(self) -> float:
        """Seconds since the least recently synced connected peer last finished a round."""
        now = now_ms()
        ages = [
            max(0.0, (now - peer.last_sync) / 1000)
            for node_id, peer in self.peers.items()
            if node_id in self.connections and peer.last_sync
        ]
        return round(max(ages), 1) if ages else 0.0

    async def _api_metrics(self, request: web.Request) -> web.Response:
        """Prometheus text format: counts only (no ids, names or content); the token is needed
        unless `[api] metrics_public`."""
        records = await self.local.store.count_by_kind()
        traffic = self.traffic()
        lines: list[str] = []

        def metric(name: str, kind: str, help: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {help}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{name}{labels} {value:g}" for labels, value in samples)

        metric("canopy_up", "gauge", "1 while the node runs.", [("", 1)])
        metric(
            "canopy_uptime_seconds",
            "gauge",
            "Seconds since the node started.",
            [("", round(time.time() - self.started, 3))],
        )
        metric(
            "canopy_records",
            "gauge",
            "Records held, by kind.",
            [(f'{{kind="{k}"}}', n) for k, n in sorted(records.items())],
        )
        metric("canopy_peers_trusted", "gauge", "Trusted peers.", [("", len(self.peers))])
        metric(
            "canopy_peers_connected", "gauge", "Peers connected now.", [("", len(self.connections))]
        )
        metric(
            "canopy_records_received_total",
            "counter",
            "New records received from peers since start.",
            [("", self.received)],
        )
        for key in ("bytes_sent", "bytes_received", "record_bytes_sent", "record_bytes_received"):
            metric(
                f"canopy_{key}_total",
                "counter",
                f"{key.replace('_', ' ').capitalize()} on peer connections since start.",
                [("", traffic[key])],
            )
        metric(
            "canopy_reconcile_rounds_total",
            "counter",
            "Reconciliation messages sent since start.",
            [("", traffic["reconcile_rounds"])],
        )
        metric(
            "canopy_rejected_total",
            "counter",
            "Inputs rejected since start, by reason.",
            [(f'{{reason="{r}"}}', n) for r, n in sorted(self.rejected.items())],
        )
        metric(
            "canopy_sync_lag_seconds",
            "gauge",
            "Seconds since the least recently synced connected peer finished a round.",
            [("", self.sync_lag_s())],
        )
        metric(
            "canopy_sync_inflight_records",
            "gauge",
            "Records asked of peers and not yet received (the backlog being fetched).",
            [("", len(self.inflight))],
        )
        return web.Response(
            text="\n".join(lines) + "\n",
            content_type="text/plain",
            charset="utf-8",
            headers={"Cache-Control": "no-store"},
        )

    async def peer_rows(self) -> list[dict[str, object]]:
        """The rows `canopy peers` prints: every stored peer (also one trusted since the last
        poll), with what this node knows of it live."""
        from node.peer_rows import LivePeer, peer_rows

        live: dict[NodeId, LivePeer] = {}
        for node_id, peer in self.peers.items():
            state = self.state.get(node_id, PeerState())
            conn = self.connections.get(node_id)
            live[node_id] = LivePeer(
                state="connected" if conn else ("dialing" if state.dialing else "offline"),
                score=state.score,
                banned_for_s=max(0.0, round(state.banned_until - time.monotonic(), 1)),
                last_error=state.last_error,
                last_sync=peer.last_sync,
                direction=("out" if conn.outbound else "in") if conn else None,
                queued_bytes=conn.queued if conn else 0,
            )
        revoked = set(self.revoked) | set(await revoked_ids(self.local))
        return peer_rows(await self.local.peers(), revoked, live)

    def traffic(self) -> dict[str, int]:
        out = Counter(self.totals)
        for conn in self.connections.values():
            for key in (
                "bytes_sent",
                "bytes_received",
                "record_bytes_sent",
                "record_bytes_received",
            ):
                out[key] += getattr(conn, key)
            out["reconcile_rounds"] += conn.reconcile_rounds
        return {
            key: out[key]
            for key in (
                "bytes_sent",
                "bytes_received",
                "record_bytes_sent",
                "record_bytes_received",
                "reconcile_rounds",
            )
        }

    async def _api_query(self, request: web.Request) -> web.Response:
        """A know-who query from the CLI: local (the in-memory index) or across peers."""
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError
            flt = Filter.build(
                str(body.get("text", "")),
                str(body.get("kind", "")),
                str(body.get("region", "")),
                str(body.get("lang", "")),
            )
            limit = int(body.get("limit", limits.DEFAULT_RESULTS))
            depth = int(body.get("depth", limits.DEFAULT_QUERY_DEPTH))
            if not 1 <= limit <= limits.MAX_LOCAL_RESULTS:
                raise ContactError(f"--limit must be between 1 and {limits.MAX_LOCAL_RESULTS}")
            if not 1 <= depth <= limits.MAX_QUERY_DEPTH:
                raise ContactError(f"--depth must be between 1 and {limits.MAX_QUERY_DEPTH}")
        except ContactError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except (ValueError, TypeError):
            return web.json_response({"error": "malformed query"}, status=400)
        await self.knowwho.ready.wait()  # the index is built in the background at start
        if body.get("network"):
            result = await self.knowwho.network_query(flt, depth, limit)
        else:
            result = self.knowwho.local_query(flt, limit)
        return web.json_response(result)

    async def _api_queries(self, request: web.Request) -> web.Response:
        """Queries peers sent us (what a peer can learn about who asks: only the peer)."""
        return web.json_response(
            {"received": list(self.knowwho.received), "answered": self.knowwho.answered}
        )

    async def _api_peers(self, request: web.Request) -> web.Response:
        return web.json_response({"peers": await self.peer_rows()})

    async def _api_alerts(self, request: web.Request) -> web.Response:
        return web.json_response({"alerts": list(self.alerts)})

    async def _api_watch(self, request: web.Request) -> web.StreamResponse:
        """Alerts as they arrive, one JSON document per line (for `canopy watch`)."""
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        queue: asyncio.Queue[dict[str, object]] = asyncio.Queue(256)
        self._watchers.add(queue)
        try:
            while True:
                try:
                    entry = await asyncio.wait_for(queue.get(), 15.0)
                except TimeoutError:
                    await response.write(b"\n")  # keep-alive; also notices a gone client
                    continue
                if not entry:
                    break
                await response.write(json.dumps(entry).encode() + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._watchers.discard(queue)
        return response

    async def _api_status(self, request: web.Request) -> web.Response:
        from node.peer_rows import status_rows

        return web.json_response(
            {
                "id": str(self.node_id),
                "name": self.name,
                "uptime_s": round(time.time() - self.started, 1),
                "listen": self.listen_url,
                "advertise": list(self.advertise),
                "peers": len(self.peers),
                "connected": len(self.connections),
                "records": await self.local.store.count_by_kind(),
                "received": self.received,
                "rejected": dict(self.rejected),
                "traffic": self.traffic(),
                "inflight": len(self.inflight),
                "revoked": sorted(str(n) for n in self.revoked),
                "sync_lag_s": self.sync_lag_s(),
                "peer_list": status_rows(await self.peer_rows(), now_ms(), running=True),
                "knowwho": {
                    "ready": self.knowwho.ready.is_set(),
                    "contacts": len(self.knowwho.index.entries),
                },
            }
        )
