"""The running node: peer endpoint, dialer, gossip (sync, push, relay) and the local API.

Owns the decisions the sans-IO session leaves to the node: what each peer may receive,
what to ask for, which records to store and forward, whom to penalise and back off.
Bad input from a peer costs that peer score and never stops the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import random as stdrandom
import secrets
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp import WSMsgType, web

from node.config import Config, split_host_port
from node.connection import PeerConnection
from node.content import row_of
from node.local import Local, Peer, random
from node.trust import PendingInvite, pending_invites, redeem_invite
from protocol import limits
from protocol.errors import HandshakeError, RecordRejected, RemoteProtocolError
from protocol.handshake import ClientHandshake, HandshakeState, ServerHandshake
from protocol.identity import NodeId
from protocol.record import Record, Scope
from protocol.session import (
    Event,
    PeerHave,
    PeerHaveDone,
    PeerHello,
    PeerWant,
    RecordsReceived,
    SyncComplete,
    record_id,
)

log = logging.getLogger("canopy.node")

PEER_PATH = "/canopy"
INITIAL_SCORE = 100
BAN_SECONDS = 300.0
VERIFY_IN_THREAD_OVER = 32  # batches larger than this are verified off the event loop


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class PeerState:
    """What the running node knows about a trusted peer beyond its stored record."""

    score: int = INITIAL_SCORE
    next_attempt: float = 0.0
    delay: float = 0.0
    dialing: bool = False
    banned_until: float = 0.0
    last_error: str = ""
    use_invite: bool = True


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
        self.state: dict[NodeId, PeerState] = {}
        self.connections: dict[NodeId, PeerConnection] = {}
        self.inflight: set[bytes] = set()
        self.rejected: Counter[str] = Counter()
        self._pending_rejections: Counter[str] = Counter()  # not yet written to the store
        self.received = 0
        self._epoch = -1
        self._local_seq = 0
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._runners: list[web.AppRunner] = []
        self._client: aiohttp.ClientSession | None = None
        self._stopping = False
        self.listen_url = ""
        self.advertise: tuple[str, ...] = ()
        self.api_url = ""
        self.api_token = secrets.token_urlsafe(32)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self.name = self.config.name or await self.local.name()
        await self._reload_trust()
        # Our own records published while we were stopped are offered in the first sync.
        self._local_seq = await self.local.store.max_seq()
        self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=10))
        peer_app = web.Application()
        peer_app.router.add_get(PEER_PATH, self._accept_ws)
        host, port = split_host_port(self.config.listen)
        self.listen_url = await self._serve(peer_app, host, port)
        bound = int(self.listen_url.rsplit(":", 1)[1])
        self.advertise = self.config.advertise or (
            f"ws://{host if host not in ('', '0.0.0.0', '::') else '127.0.0.1'}:{bound}{PEER_PATH}",
        )
        api_app = web.Application(middlewares=[self._auth_middleware])
        api_app.router.add_get("/v1/status", self._api_status)
        api_app.router.add_get("/v1/peers", self._api_peers)
        api_app.router.add_post("/v1/notify", self._api_notify)
        api_host, api_port = split_host_port(self.config.api_listen)
        self.api_url = await self._serve(api_app, api_host, api_port)
        self.local.write_runtime(self.api_url, self.api_token)
        self._tasks = [
            asyncio.create_task(self._dial_loop()),
            asyncio.create_task(self._poll_loop()),
        ]
        log.info("node %s listening on %s", self.node_id.short, self.listen_url)

    async def _serve(self, app: web.Application, host: str, port: int) -> str:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host or "127.0.0.1", port, reuse_address=True)
        await site.start()
        self._runners.append(runner)
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname()[1] if sockets else port
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown or '127.0.0.1'}:{bound}"

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for conn in list(self.connections.values()):
            await conn.close("node stopping")
        for runner in self._runners:
            await runner.cleanup()
        if self._client is not None:
            await self._client.close()
        self.local.clear_runtime()

    # -- trust ---------------------------------------------------------------------------------

    async def _reload_trust(self) -> None:
        self._epoch = await self.local.store.epoch()
        self.network_key = await self.local.network_key()
        self.peers = await self.local.peers()
        self.invites = await pending_invites(self.local, now_ms())
        for node_id in list(self.state):
            if node_id not in self.peers:
                del self.state[node_id]
        for node_id in self.peers:
            self.state.setdefault(node_id, PeerState())
        for node_id, conn in list(self.connections.items()):
            if node_id not in self.peers:
                log.info("trust withdrawn from %s: disconnecting", node_id.short)
                await conn.close("trust withdrawn")

    def _authorize(self, invites: Sequence[PendingInvite]) -> object:
        def authorize(public_key: bytes, index: int) -> bool:
            if len(public_key) != 32 or public_key == self.node_id.raw:
                return False
            node_id = NodeId(public_key)
            state = self.state.get(node_id)
            if state is not None and state.banned_until > time.monotonic():
                return False
            if index == 0:
                return node_id in self.peers
            return 0 < index <= len(invites) and invites[index - 1].expires > now_ms()

        return authorize

    # -- inbound -----------------------------------------------------------------------------

    async def _accept_ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            heartbeat=self.config.heartbeat, compress=False, max_msg_size=4 * 1024 * 1024
        )
        await ws.prepare(request)
        invites = list(self.invites)
        handshake = ServerHandshake(
            [self.network_key, *(i.capability for i in invites)],
            self.local.identity.secret_key,
            random(32),
            self._authorize(invites),  # type: ignore[arg-type]
        )
        try:
            async with asyncio.timeout(self.config.handshake_timeout):
                while handshake.state is not HandshakeState.DONE:
                    msg = await ws.receive()
                    if msg.type != WSMsgType.BINARY:
                        raise HandshakeError("connection closed during the handshake")
                    reply = handshake.receive_data(msg.data)
                    if reply:
                        await ws.send_bytes(reply)
        except (RemoteProtocolError, TimeoutError) as exc:
            self._count(
                "handshake_refused" if isinstance(exc, RemoteProtocolError) else "handshake_timeout"
            )
            await ws.close()
            return ws
        keys = handshake.keys
        peer_id = NodeId(keys.remote_public_key)
        if keys.network_key_index > 0:
            invite = invites[keys.network_key_index - 1]
            peer = await redeem_invite(self.local, invite, peer_id, now_ms())
            await self._reload_trust()
            log.info("invite redeemed by %s", peer.node_id.short)
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
        assert self._client is not None
        use_invite = peer.invite_capability is not None and state.use_invite
        network_key = (
            peer.invite_capability if use_invite and peer.invite_capability else self.network_key
        )
        connected = False
        try:
            for address in peer.addresses:
                try:
                    ws = await self._client.ws_connect(
                        address,
                        heartbeat=self.config.heartbeat,
                        compress=0,
                        max_msg_size=4 * 1024 * 1024,
                        timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                    )
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    state.last_error = f"cannot reach {address}: {type(exc).__name__}"
                    log.debug("dial %s: %s", peer.node_id.short, state.last_error)
                    continue
                handshake = ClientHandshake(
                    network_key, self.local.identity.secret_key, peer.node_id.raw, random(32)
                )
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
                except (RemoteProtocolError, TimeoutError, aiohttp.ClientError) as exc:
                    state.last_error = f"handshake with {address} failed: {type(exc).__name__}"
                    log.info("dial %s: %s", peer.node_id.short, state.last_error)
                    if use_invite:
                        state.use_invite = False  # the invite may be spent; try the network key
                    await ws.close()
                    continue
                if use_invite:
                    peer.invite_capability = None
                    await self.local.save_peer(peer)
                state.delay = 0.0
                state.last_error = ""
                connected = True
                conn = PeerConnection(
                    self,
                    ws,
                    peer.node_id,
                    handshake.keys,
                    outbound=True,
                    leftover=handshake.leftover(),
                )
                state.dialing = False
                await conn.run()
                break
        finally:
            state.dialing = False
            if not connected:
                state.use_invite = not state.use_invite if peer.invite_capability else False
            self._backoff(state)

    # -- connection events ---------------------------------------------------------------------

    async def on_open(self, conn: PeerConnection) -> None:
        if conn.peer_id not in self.peers:
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
        state = self.state.setdefault(conn.peer_id, PeerState())
        state.delay = 0.0
        log.info("connected to %s (%s)", conn.peer_id.short, "out" if conn.outbound else "in")
        await conn.send(conn.session.hello(self.name, self.advertise))
        ids = await self.local.store.offerable_ids()
        if ids:
            await conn.send(conn.session.have(ids))
        await conn.send(conn.session.have_done())

    def on_closed(self, conn: PeerConnection) -> None:
        if self.connections.get(conn.peer_id) is conn:
            del self.connections[conn.peer_id]
            log.info("disconnected from %s: %s", conn.peer_id.short, conn.close_reason)
            state = self.state.get(conn.peer_id)
            if state is not None:
                state.last_error = conn.close_reason
                state.next_attempt = max(
                    state.next_attempt, time.monotonic() + self.config.reconnect_min
                )
        for rid in conn.pending_wants:
            self.inflight.discard(rid)

    async def on_event(self, conn: PeerConnection, event: Event) -> None:
        if isinstance(event, PeerHello):
            await self._on_hello(conn, event)
        elif isinstance(event, PeerHave):
            await self._on_have(conn, event.ids)
        elif isinstance(event, PeerWant):
            await self._on_want(conn, event.ids)
        elif isinstance(event, RecordsReceived):
            await self.ingest(event.records, conn)
            await self._top_up_wants(conn)
        elif isinstance(event, PeerHaveDone):
            pass
        elif isinstance(event, SyncComplete):
            peer = self.peers.get(conn.peer_id)
            if peer is not None:
                peer.last_sync = now_ms()
                await self.local.save_peer(peer)
                self._epoch += 1  # our own write; no need to reload trust for it

    async def _on_hello(self, conn: PeerConnection, hello: PeerHello) -> None:
        peer = self.peers.get(conn.peer_id)
        if peer is None:
            return
        changed = False
        if hello.name and not peer.name:
            peer.name, changed = hello.name[: limits.MAX_NAME_LEN], True
        usable = [a for a in hello.addresses if a.startswith(("ws://", "wss://"))]
        if usable and not peer.addresses:
            peer.addresses, changed = usable, True
        if changed:
            await self.local.save_peer(peer)
            self._epoch += 1

    async def _on_have(self, conn: PeerConnection, ids: Sequence[bytes]) -> None:
        held = await self.local.store.has(ids)
        for rid in ids:
            if rid not in held and rid not in self.inflight:
                conn.pending_wants.append(rid)
                self.inflight.add(rid)
        await self._top_up_wants(conn)

    async def _top_up_wants(self, conn: PeerConnection) -> None:
        room = conn.want_capacity
        batch: list[bytes] = []
        while conn.pending_wants and len(batch) < room:
            batch.append(conn.pending_wants.popleft())
        if batch:
            await conn.send(conn.session.want(batch))

    def may_receive(self, record: Record, peer_id: NodeId) -> bool:
        """Network-scoped records go to everyone; peers-scoped ones only from their author."""
        if record.author == peer_id:
            return False
        return record.scope is Scope.NETWORK or record.author == self.node_id

    async def _on_want(self, conn: PeerConnection, ids: Sequence[bytes]) -> None:
        found = await self.local.store.get_records(ids)
        out: list[bytes] = []
        for rid in ids:
            data = found.get(rid)
            if data is None:
                continue
            record = Record.from_bytes(data)
            if self.may_receive(record, conn.peer_id) and record.expires > now_ms():
                out.append(data)
        if out:
            await conn.send(conn.session.records(out))

    # -- ingest, store, forward ---------------------------------------------------------------

    async def ingest(self, datas: Sequence[bytes], conn: PeerConnection) -> None:
        """Validate records from `conn`, store the good ones durably, forward the new ones."""
        now = now_ms()
        if len(datas) > VERIFY_IN_THREAD_OVER:
            checked = await asyncio.get_running_loop().run_in_executor(
                None, _check_records, datas, now, conn.peer_id
            )
        else:
            checked = _check_records(datas, now, conn.peer_id)
        good: list[Record] = []
        for data, outcome in zip(datas, checked, strict=True):
            if isinstance(outcome, RemoteProtocolError):
                await self.penalise(
                    conn.peer_id, outcome, reason=f"record_{type(outcome).__name__}"
                )
                self.inflight.discard(record_id(data))
            else:
                good.append(outcome)
        if not good:
            return
        flags = await self.local.store.put_records([row_of(r, local=False) for r in good], now)
        fresh = [r for r, new in zip(good, flags, strict=True) if new]
        for record in good:
            self.inflight.discard(record.id)
        self.received += len(fresh)
        if fresh:
            await self.push(fresh, exclude=conn.peer_id)

    async def push(self, records: Sequence[Record], exclude: NodeId | None = None) -> None:
        """Send records at once to every connected peer that may have them and lacks them."""
        for peer_id, conn in list(self.connections.items()):
            if peer_id == exclude:
                continue
            out = [
                r.to_bytes()
                for r in records
                if self.may_receive(r, peer_id) and not conn.session.peer_knows(r.id)
            ]
            if out:
                await conn.send(conn.session.records(out))

    async def penalise(self, peer_id: NodeId, error: RemoteProtocolError, *, reason: str) -> None:
        self._count(reason)
        state = self.state.get(peer_id)
        if state is None:
            return
        state.score -= error.penalty
        state.last_error = f"{reason}: {error}"
        log.warning("peer %s sent bad input (%s); score %d", peer_id.short, reason, state.score)
        if state.score < self.config.min_score:
            state.banned_until = time.monotonic() + BAN_SECONDS
            state.next_attempt = state.banned_until
            state.score = INITIAL_SCORE // 2
            conn = self.connections.get(peer_id)
            if conn is not None:
                await conn.close(f"cut off for misbehaving ({reason})")

    def _count(self, reason: str) -> None:
        self.rejected[reason] += 1
        self._pending_rejections[reason] += 1

    # -- picking up changes made by the CLI ----------------------------------------------------

    async def _poll_loop(self) -> None:
        last_purge = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.poll_interval)
            self._wake.clear()
            if await self.local.store.epoch() != self._epoch:
                await self._reload_trust()
            while True:
                batch = await self.local.store.local_records_after(self._local_seq, 500)
                if not batch:
                    break
                self._local_seq = batch[-1][0].seq
                await self.push([Record.from_bytes(data) for _, data in batch])
            if self._pending_rejections:
                for reason, n in self._pending_rejections.items():
                    await self.local.store.count_rejection(reason, n)
                self._pending_rejections.clear()
            if time.monotonic() - last_purge > 60:
                last_purge = time.monotonic()
                await self.local.store.delete_expired(now_ms())

    # -- local API -------------------------------------------------------------------------------

    @web.middleware
    async def _auth_middleware(
        self,
        request: web.Request,
        handler: web.RequestHandler,  # type: ignore[type-arg]
    ) -> web.StreamResponse:
        supplied = request.headers.get("Authorization", "")
        if not hmac.compare_digest(supplied.encode(), f"Bearer {self.api_token}".encode()):
            return web.json_response({"error": "unauthorised"}, status=401)
        return await handler(request)

    async def _api_notify(self, request: web.Request) -> web.Response:
        self._wake.set()
        return web.json_response({"ok": True})

    def peer_rows(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        for node_id, peer in sorted(self.peers.items(), key=lambda kv: kv[1].label):
            state = self.state.get(node_id, PeerState())
            conn = self.connections.get(node_id)
            rows.append(
                {
                    "id": str(node_id),
                    "name": peer.name,
                    "addresses": peer.addresses,
                    "state": "connected" if conn else ("dialing" if state.dialing else "offline"),
                    "direction": ("out" if conn.outbound else "in") if conn else None,
                    "last_sync": peer.last_sync,
                    "score": state.score,
                    "last_error": state.last_error,
                }
            )
        return rows

    async def _api_peers(self, request: web.Request) -> web.Response:
        return web.json_response({"peers": self.peer_rows()})

    async def _api_status(self, request: web.Request) -> web.Response:
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
            }
        )


def _check_records(
    datas: Sequence[bytes], now: int, sender: NodeId
) -> list[Record | RemoteProtocolError]:
    """Decode, verify and time-check each record (pure; may run in a worker thread)."""
    out: list[Record | RemoteProtocolError] = []
    for data in datas:
        try:
            record = Record.from_bytes(data)
            record.verify()
            record.check_time(now)
            if record.scope is Scope.PEERS and record.author != sender:
                raise RecordRejected("a peers-scoped record may only come from its author")
            out.append(record)
        except RemoteProtocolError as exc:
            out.append(exc)
    return out
