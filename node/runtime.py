"""The running node: wiring and lifecycle.

Builds the rooms and hands each its collaborators: the peer book (trust, scores, bans),
sync (one conversation per connection, push and relay), the peer server and the dialer,
intake and ingest (the one path into the store), alerts, the check-in watch, the
know-who engine and the local API; starts and stops them; reloads trust when the store's
epoch moves; picks up records the CLI wrote; applies revocations live and pushes new
records on, handing what else stored records mean to the features (alerts, check-ins,
help requests, the indexes, circles) to node/record_hooks.py. Bad input from a peer
costs that peer score and never stops the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import Collection, Coroutine, Mapping, Sequence

from aiohttp import web

from node.admission import ConnectionGuard, install_accept_error_filter
from node.alerts import Alerts
from node.api import LocalApi, api_hosts
from node.checkin_watch import CheckinWatch
from node.clock import now_ms
from node.config import Config, split_host_port
from node.connection import PeerConnection
from node.dialer import Dialer
from node.ingest import Accepted, accept_records
from node.intake import Intake
from node.library import Library
from node.local import Local, Peer
from node.metrics import Figures, prometheus, sync_lag_s
from node.notices import Notices, response_counts
from node.peer_book import PeerBook
from node.peer_server import PeerServer
from node.queries import KnowWho
from node.record_hooks import RecordHooks
from node.revocation import apply_stored_revocations, revoked_ids
from node.sync import Sync
from node.trust import PendingInvite, pending_invites
from node.web.app import mount
from protocol import limits
from protocol.errors import RemoteProtocolError
from protocol.identity import NodeId
from protocol.invite import PEER_PATH
from protocol.record import Kind, Record

__all__ = ["Node", "api_hosts"]

log = logging.getLogger("canopy.node")


class Node:
    def __init__(self, local: Local, config: Config) -> None:
        self.local = local
        self.config = config
        self.node_id = local.node_id
        self.started = time.time()
        self.name = ""
        self.received = 0
        self._notified = 0  # `canopy` wrote to the store (POST /v1/notify): sets may differ
        self._epoch = -1
        self._local_seq = 0
        self._wake = asyncio.Event()
        self._polling = asyncio.Lock()  # one poll at a time: this loop's, or the web app's
        self._tasks: list[asyncio.Task[None]] = []
        self._runners: list[web.AppRunner] = []
        self._servers: list[asyncio.AbstractServer] = []
        self.listen_url = ""
        self.advertise: tuple[str, ...] = ()
        self.api_url = ""
        self.api_token = secrets.token_urlsafe(32)
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
            trusted=lambda: self.book.peers,
        )
        self.alerts = Alerts(local.identity, self.book)
        # Notices: kept across restarts, as loud as the rota says.
        self.notices = Notices(local, self.alerts, self.book, own_write=self.bump_own_epoch)
        self.checkins = CheckinWatch(local, self.alerts, self.book, self.notices)
        self.network_keys: tuple[bytes, ...] = ()  # every network's, the first first
        self.knowwho = KnowWho(
            local,
            self,
            keys=lambda: (self.network_keys or (self.network_key,), self.book.circle_keys),
        )
        self.library = Library(
            local,
            keys=lambda: (self.network_keys, self.book.circle_keys),
            people=lambda: (self.book.peers, self.book.revoked.keys()),
        )
        self.hooks = RecordHooks(
            local,
            self.book,
            alerts=self.alerts,
            checkins=self.checkins,
            knowwho=self.knowwho,
            library=self.library,
            notices=self.notices,
            network_keys=lambda: self.network_keys,
            ingesting=lambda: self.sync.ingesting(),
            notify=self._notify,
            spawn=self._spawn,
        )
        self.sync = Sync(
            local,
            self.book,
            self.knowwho,
            idle_timeout=config.idle_timeout,
            resync_interval=config.resync_interval,
            hello=lambda: (self.name, self.advertise),
            items_version=self._items_version,
            check=self._check,
            accept=lambda records, conn: self.accept(records, source=conn),
            own_write=self.bump_own_epoch,
        )
        self.peer_server = PeerServer(
            local, config, self.book, self.sync, reload_trust=self._reload_trust
        )
        self.dialer = Dialer(local, config, self.book, self.sync)
        self.api = LocalApi(
            local,
            config,
            self.alerts,
            self.knowwho,
            self.library,
            token=self.api_token,
            accept=lambda records: self.accept(records, source=None),
            notify=self.read_changes,
            status=self.status,
            peer_rows=self.peer_rows,
            metrics=self.metrics,
        )

    # -- what the rest of the node reads (the know-who engine, tests) --------------------

    @property
    def peers(self) -> dict[NodeId, Peer]:
        return self.book.peers

    @property
    def revoked(self) -> dict[NodeId, int]:
        return self.book.revoked

    @property
    def network_key(self) -> bytes:
        return self.book.network_key

    @network_key.setter
    def network_key(self, key: bytes) -> None:
        self.book.network_key = key

    @property
    def invites(self) -> list[PendingInvite]:
        return self.book.invites

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

    def bump_own_epoch(self) -> None:
        """We changed a sealed row ourselves: no need to reload for it."""
        self._epoch += 1

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self.name = self.config.name or await self.local.name()
        # Revocations a store holds but never applied (written before every path applied
        # them) take effect before the first handshake.
        await apply_stored_revocations(self.local, now_ms())
        await self._reload_trust()
        await self.knowwho.start()
        await self.library.start()
        await self.notices.load()
        await self.checkins.start()
        # Our records published while we were stopped reach peers by reconciliation.
        self._local_seq = await self.local.store.max_seq()
        self.dialer.start()
        host, port = split_host_port(self.config.listen)
        install_accept_error_filter()
        bound = await self._serve(self.peer_server.app(), host, port, self.peer_server.guard())
        shown = host if host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        shown = f"[{shown}]" if ":" in shown else shown
        self.listen_url = f"ws://{shown}:{bound}{PEER_PATH}"
        self.advertise = self.config.advertise or (self.listen_url,)
        api_host, api_port = split_host_port(self.config.api_listen)
        api_guard = ConnectionGuard(
            "api_",
            total=limits.MAX_API_CONNECTIONS,
            per_address=limits.MAX_API_CONNECTIONS,
            header_timeout=limits.HTTP_HEADER_TIMEOUT_S,
            count=self.book.count,
        )
        api_app = self.api.app()
        mount(api_app, self)  # the web app under /ui/, and `canopy ui`'s link route
        api_bound = await self._serve(api_app, api_host, api_port, api_guard)
        self.api_url = f"http://{api_host or '127.0.0.1'}:{api_bound}"
        self.api.hosts = api_hosts(api_host, api_bound, self.config.api_host)
        self.local.write_runtime(self.api_url, self.api_token)
        self._tasks += [
            asyncio.create_task(self.dialer.loop()),
            asyncio.create_task(self._poll_loop()),
            asyncio.create_task(self.sync.resync_loop()),
            asyncio.create_task(self.checkins.loop()),
            asyncio.create_task(self.notices.loop()),
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
        self.library.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.dialer.stop()
        await self.sync.close_all("node stopping")
        self.alerts.stop()
        for server in self._servers:
            server.close()
        for runner in self._runners:
            await runner.cleanup()
        await self.book.flush()
        await self.sync.flush_deliveries()
        await self.hooks.flush()
        self.local.clear_runtime()

    def _spawn(self, work: Coroutine[object, object, None]) -> None:
        """Run `work` beside the node; `stop` cancels it."""
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(asyncio.get_running_loop().create_task(work))

    # -- trust -------------------------------------------------------------------------------

    async def _reload_trust(self) -> None:
        self._epoch = await self.local.store.epoch()
        key = await self.local.network_key()
        if self.network_key and key != self.network_key:
            self.knowwho.network_key_changed()
        self.network_key = key
        self.network_keys = tuple(await self.local.network_keys())
        self.book.networks = await self.local.networks()
        await self.hooks.read_circle_keys()
        known = self.peers
        self.book.peers = await self.local.peers()
        for node_id, peer in self.peers.items():  # last_sync is written only now and then
            if node_id in known and (known[node_id].last_sync or 0) > (peer.last_sync or 0):
                peer.last_sync = known[node_id].last_sync
        self.book.invites = await pending_invites(self.local, now_ms())
        newly = (await revoked_ids(self.local)).keys() - self.revoked.keys()
        for node_id in newly:
            self._revoked_now(node_id)
        if newly:
            await self.hooks.circles_changed(now_ms())
        await self.hooks.trust_changed(now_ms())  # `--to peers` follows trust
        self.book.trusted_now(self.peers)
        for node_id, conn in list(self.connections.items()):
            if node_id not in self.peers:
                log.info("trust withdrawn from %s: disconnecting", node_id.short)
                await conn.close("trust withdrawn")

    # -- what sync asks of the node ------------------------------------------------------

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

    async def _disconnect(self, peer_id: NodeId, reason: str) -> None:
        await self.sync.disconnect(peer_id, reason)

    # -- records stored: what they mean live --------------------------------------------

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
        if accepted.revoked or any(r.kind is Kind.CIRCLE for r in fresh):
            await self.hooks.circles_changed(now)
        elif any(r.kind is Kind.DUTY for r in fresh):
            await self.hooks.duty_changed()
        self.received += len(fresh) if source is not None else 0
        await self.hooks.stored(fresh, accepted.purged, now, from_peer=source is not None)
        if fresh:
            self.sync.push(fresh, exclude=source.peer_id if source else None)
        return accepted

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
            self._spawn(conn.close("key revoked"))

    # -- picking up changes made by the CLI ----------------------------------------------------

    async def _poll_loop(self) -> None:
        last_purge = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.poll_interval)
            self._wake.clear()
            try:
                async with self._polling:  # the web app polls after its own writes
                    await self._poll_once()
                if time.monotonic() - last_purge > limits.PURGE_EVERY_S:
                    last_purge = time.monotonic()
                    purged = await self.local.store.delete_expired(now_ms())
                    self.knowwho.expire(now_ms())
                    self.library.expire(now_ms())
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
            await self.hooks.written(records, now_ms())
            self.sync.push(records)
        await self.book.flush()
        await self.sync.flush_deliveries()
        await self.hooks.flush()

    # -- what the local API reads ------------------------------------------------------------

    def _notify(self, *, wake: bool = True) -> None:
        """Poll now, and reconcile again soon (records may come by `canopy import` too)."""
        if wake:
            self._wake.set()
        self._notified += 1
        self.sync.resync_soon()

    async def read_changes(self) -> None:
        """`canopy` or the web app wrote: read it (one poll at a time) before it answers;
        this poll is the one the loop would make, so the loop is not woken for another."""
        self._notify(wake=False)
        async with self._polling:
            await self._poll_once()

    def traffic(self) -> dict[str, int]:
        return self.sync.traffic()

    async def metrics(self) -> str:
        return prometheus(
            Figures(
                uptime_s=time.time() - self.started,
                records=await self.local.store.count_by_kind(),
                peers_trusted=len(self.peers),
                peers_connected=len(self.connections),
                received=self.received,
                traffic=self.traffic(),
                rejected=self.rejected,
                sync_lag_s=sync_lag_s(self.peers, self.connections, now_ms()),
                inflight=len(self.inflight),
                rapid_response=await response_counts(
                    self.local, self.checkins.counts(others_only=True), now_ms()
                ),
            )
        )

    async def peer_rows(
        self, stored: tuple[Mapping[NodeId, Peer], Collection[NodeId]] | None = None
    ) -> list[dict[str, object]]:
        """The rows `canopy peers` prints: every stored peer (also one trusted since the last
        poll), with what this node knows of it live. `stored`: the stored peers and revoked
        keys when the caller has just read them (node/web/kept.py)."""
        from node.peer_rows import live_peers, peer_rows

        live = live_peers(self.peers, self.book.state, self.connections, time.monotonic())
        if stored is None:
            stored = (await self.local.peers(), await revoked_ids(self.local))
        return peer_rows(stored[0], set(self.revoked) | set(stored[1]), live)

    async def status(self) -> dict[str, object]:
        """What `/v1/status` returns (and `canopy status` prints)."""
        from node.peer_rows import status_rows

        return {
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
            "sync_lag_s": sync_lag_s(self.peers, self.connections, now_ms()),
            "peer_list": status_rows(await self.peer_rows(), now_ms(), running=True),
            "checkins": self.checkins.counts(),  # plans held here, by state: counts only
            "rapid_response": await response_counts(  # counts only: never text or names
                self.local, self.checkins.counts(others_only=True), now_ms()
            ),
            "knowwho": {
                "ready": self.knowwho.ready.is_set(),
                "contacts": len(self.knowwho.index.entries),
            },
            "library": {
                "ready": self.library.ready.is_set(),
                "guides": len(self.library.index.entries),
            },
        }
