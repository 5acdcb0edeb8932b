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
import secrets
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import Callable, Sequence
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
    malformed_among,
)
from node.intake import Intake
from node.local import Local, Peer, random
from node.peer_book import PeerBook, PeerState
from node.queries import KnowWho
from node.revocation import apply_stored_revocations, revoked_ids
from node.sync import Sync
from node.trust import PendingInvite, pending_invites, redeem_invite
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
)
from protocol.handshake import ClientHandshake, HandshakeState, ServerHandshake
from protocol.identity import NodeId
from protocol.invite import PEER_PATH, check_address, normalise_address
from protocol.lifecycle import Withdrawal
from protocol.names import check_name, name_taken
from protocol.record import Kind, Record
from protocol.session import (
    PeerHello,
)

log = logging.getLogger("canopy.node")

PUBLIC_ROUTES = frozenset({"/healthz"})  # no token: it answers only "ok"


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
        self.revoked: dict[NodeId, int] = {}  # revoked identities -> when we learnt (ms)
        self._proxies = parse_proxies(config.trusted_proxies)
        self._pending = PendingSlots()  # inbound handshakes in progress
        self._inbound: Counter[str] = Counter()  # inbound connections of any state, per address
        self.received = 0
        self.alerts: deque[dict[str, object]] = deque(maxlen=limits.RECENT_ALERTS)
        self._watchers: set[asyncio.Queue[dict[str, object]]] = set()
        self._notified = 0  # `canopy` wrote to the store (POST /v1/notify): sets may differ
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
        self.book = PeerBook(
            count_rejection=local.store.count_rejection,
            min_score=config.min_score,
            reconnect_min=config.reconnect_min,
            reconnect_max=config.reconnect_max,
            disconnect=self._disconnect,
        )
        self.intake = Intake(
            local.store,
            self.book,
            us=self.node_id,
            max_source_records=config.max_source_records,
            trusted=lambda: self.peers,
        )
        self.knowwho = KnowWho(local, self)
        self.sync = Sync(
            local,
            self.book,
            self.knowwho,
            idle_timeout=config.idle_timeout,
            resync_interval=config.resync_interval,
            peers=lambda: self.peers,
            revoked=lambda node_id: node_id in self.revoked,
            hello=lambda: (self.name, self.advertise),
            items_version=self._items_version,
            check=self._check,
            accept=lambda records, conn: self.accept(records, source=conn),
            on_hello=self._on_hello,
            own_write=self.bump_own_epoch,
        )
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
            count=self.book.count,
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
        api_host, api_port = split_host_port(self.config.api_listen)
        api_guard = ConnectionGuard(
            "api_",
            total=limits.MAX_API_CONNECTIONS,
            per_address=limits.MAX_API_CONNECTIONS,
            header_timeout=limits.HTTP_HEADER_TIMEOUT_S,
            count=self.book.count,
        )
        api_bound = await self._serve(api_app, api_host, api_port, api_guard)
        self.api_url = f"http://{api_host or '127.0.0.1'}:{api_bound}"
        self._api_hosts = api_hosts(api_host, api_bound, self.config.api_host)
        self.local.write_runtime(self.api_url, self.api_token)
        self._tasks = [
            asyncio.create_task(self._dial_loop()),
            asyncio.create_task(self._poll_loop()),
            asyncio.create_task(self.sync.resync_loop()),
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
        await self.sync.close_all("node stopping")
        for queue in self._watchers:
            queue.put_nowait({})
        for server in self._servers:
            server.close()
        for runner in self._runners:
            await runner.cleanup()
        if self._client is not None:
            await self._client.close()
        await self.book.flush()
        await self.sync.flush_deliveries()
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
        self.book.trusted_now(self.peers)
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
                self.book.count("handshake_revoked")
                return False
            if self.book.banned(node_id):
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
        if keys.network_key_index > 0:
            invite = invites[keys.network_key_index - 1]
            await redeem_invite(self.local, invite, peer_id, now_ms())
            await self._reload_trust()
            log.info("invite redeemed by %s", peer_id.short)
        conn = self.sync.connection(
            ws, peer_id, keys, outbound=False, leftover=handshake.leftover()
        )
        await conn.run()
        return ws

    # -- outbound ----------------------------------------------------------------------------

    async def _dial_loop(self) -> None:
        while True:
            now = time.monotonic()
            for node_id, peer in list(self.peers.items()):
                state = self.book.of(node_id)
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
                    conn = self.sync.connection(
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

    # -- connection events ----

    def _items_version(self) -> tuple[int, ...]:
        """Changes whenever the set of records a peer may exchange with us may have: a
        record stored or deleted by this process, one written by `canopy`, trust changed."""
        return (self.local.store.generation, self._local_seq, self._epoch, self._notified)

    async def _check(
        self, conn: PeerConnection, datas: Sequence[bytes], ids: Sequence[bytes]
    ) -> tuple[list[Record], list[RemoteProtocolError]]:
        if conn.closing:  # cut off: its batch is not worth a look
            return [], []
        good, errors = await self.intake.check(conn.peer_id, datas, ids)
        kept = {r.id for r in good}
        self.sync.inflight.difference_update(rid for rid in ids if rid not in kept)
        return good, errors

    @property
    def connections(self) -> dict[NodeId, PeerConnection]:
        return self.sync.connections

    @property
    def inflight(self) -> set[bytes]:
        return self.sync.inflight

    @property
    def rejected(self) -> Counter[str]:
        return self.book.rejected

    async def penalise(
        self, peer_id: NodeId, error: RemoteProtocolError, *, reason: str, ban: bool = False
    ) -> None:
        await self.book.penalise(peer_id, error, reason=reason, ban=ban)

    async def _disconnect(self, peer_id: NodeId, reason: str) -> None:
        await self.sync.disconnect(peer_id, reason)

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
                self.book.count("hello_name_refused")
            elif name_taken(hello.name, [*others, self.name]):
                self.book.count("hello_name_taken")
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

    # -- ingest, store, purge, forward ---------------------------------------------------------

    async def accept(self, records: Sequence[Record], source: PeerConnection | None) -> Accepted:
        """Store checked records through `accept_records` (the one path, shared with bundle
        import), then act on them live: refuse what they revoke, announce alerts, update
        the know-who index, push the new ones on."""
        now = now_ms()
        arrived = [r.id for r in records]
        if source is not None:
            records = await self.intake.within_caps(records, source.peer_id)
        accepted = await accept_records(self.local, records, now, self.revoked.keys())
        if source is not None:  # a bundle's refusals are counted by `import_bundle`
            self.intake.stored_from(source.peer_id, accepted.fresh)
            for reason, n in accepted.refused.items():
                # Not the sender's fault: it may not have heard of a revocation or withdrawal.
                self.book.count(reason, n)
        self.sync.inflight.difference_update(arrived)
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
                    await self.book.penalise(record.author, malformed, reason="content_malformed")
            elif record.kind in (Kind.CONTACT, Kind.VOUCH) and self.knowwho.add(
                record, verify_body=True
            ):  # opened, but malformed: its author pays, as for alerts
                error = DecodeError("content breaks its kind's schema")
                await self.book.penalise(record.author, error, reason="content_malformed")
        guides = [r.id for r in fresh if r.kind is Kind.GUIDE and r.author != self.node_id]
        if guides:
            self._unchecked_guides.extend(guides)
            if not self._checking_guides:
                self._checking_guides = True
                self._tasks.append(asyncio.get_running_loop().create_task(self._check_guides()))
        if fresh:
            self.sync.push(fresh, exclude=source.peer_id if source else None)
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
                if self.sync.ingesting():
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
                    await self.book.penalise(record.author, error, reason="content_malformed")
        finally:
            self._checking_guides = False

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
        state = self.book.state.get(node_id)
        if state is not None:
            state.last_error = "key revoked (compromised)"
        conn = self.sync.connections.get(node_id)
        if conn is not None:
            task = asyncio.get_running_loop().create_task(conn.close("key revoked"))
            self._tasks.append(task)

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
        return None

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
                        self.book.count("content_malformed")
                elif record.kind in (Kind.CONTACT, Kind.VOUCH):
                    self.knowwho.add(record, verify_body=False)
                elif record.kind is Kind.TOMBSTONE:
                    self.knowwho.remove(Withdrawal.from_payload(record.payload).targets)
            self.sync.push(records)
        await self.book.flush()
        await self.sync.flush_deliveries()
        await self.knowwho.flush_opened()

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
        if request.path in PUBLIC_ROUTES or (
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
        self.sync.resync_soon()
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
            state = self.book.state.get(node_id, PeerState())
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
        return self.sync.traffic()

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
