"""The running node: wiring and lifecycle.

Builds the rooms and hands each its collaborators: the peer book (trust, scores, bans),
sync (one conversation per connection, push and relay), the peer server and the dialer,
intake and ingest (the one path into the store), alerts, the check-in watch, the
know-who engine and the local API; starts and stops them; reloads trust when the store's
epoch moves; picks up records the CLI wrote; and acts on what a batch of stored records
means live (revocations, alerts, check-ins, the index, pushes). Bad input from a peer
costs that peer score and never stops the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter, deque
from collections.abc import Collection, Coroutine, Mapping, Sequence

from aiohttp import web

from node import circles, peers_circle
from node.admission import ConnectionGuard, install_accept_error_filter
from node.alerts import Alerts
from node.api import LocalApi, api_hosts
from node.checkin_watch import CheckinWatch
from node.clock import now_ms
from node.config import Config, split_host_port
from node.connection import PeerConnection
from node.dialer import Dialer
from node.help_requests import malformed as help_malformed
from node.ingest import Accepted, accept_records, malformed_among
from node.intake import Intake
from node.library import Library
from node.local import Local, Peer
from node.metrics import Figures, prometheus, sync_lag_s
from node.notices import Notices, response_counts
from node.oncall import malformed as duty_malformed
from node.peer_book import PeerBook, PeerState
from node.peer_server import PeerServer
from node.queries import KnowWho
from node.revocation import apply_stored_revocations, revoked_ids
from node.sync import Sync
from node.trust import PendingInvite, pending_invites
from node.web.app import mount
from protocol import limits
from protocol.errors import DecodeError, RemoteProtocolError
from protocol.identity import NodeId
from protocol.invite import PEER_PATH
from protocol.lifecycle import Withdrawal
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
        self._tasks: list[asyncio.Task[None]] = []
        self._runners: list[web.AppRunner] = []
        self._servers: list[asyncio.AbstractServer] = []
        self.listen_url = ""
        self.advertise: tuple[str, ...] = ()
        self.api_url = ""
        self.api_token = secrets.token_urlsafe(32)
        self._unchecked_guides: deque[bytes] = deque()  # stored, not yet opened once
        self._checking_guides = False
        self._help_lock = asyncio.Lock()  # one pass over accepted referrals at a time
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
            notify=self._notify,
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
        await self.knowwho.flush_opened()
        await self.library.flush_opened()
        await self.notices.flush()
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
        self.book.circle_keys = await circles.read_keys(self.local)
        self.library.keys_changed()
        self.knowwho.keys_changed()
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
            await self._circles_changed(now_ms())
        if await peers_circle.follow(self.local, now_ms()):  # `--to peers` follows trust
            self._notify()
            self.book.circle_keys = await circles.read_keys(self.local)
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
            await self._circles_changed(now)
        elif any(r.kind is Kind.DUTY for r in fresh):
            await self._duty_changed()
        if accepted.purged:
            self.knowwho.remove(accepted.purged)
            self.library.remove(accepted.purged)
        self.received += len(fresh) if source is not None else 0
        for record, error in self.checkins.saw(fresh):  # malformed: its author pays
            await self.book.penalise(record.author, error, reason="content_malformed")
        self.notices.help_arrived(fresh, now)  # new help requests: on call first and loudest
        for record in fresh:
            if record.kind is Kind.ALERT:
                malformed = self.alerts.announce(record, now)
                if malformed is not None:
                    # Its author signed it (record and body): blame the author, never a relay
                    # that may not have been able to read it.
                    await self.book.penalise(record.author, malformed, reason="content_malformed")
            elif record.kind is Kind.DUTY and source is not None:
                bad = duty_malformed(
                    record, self.local.identity, self.book.network_key, self.book.circle_keys
                )
                if bad is not None:
                    await self.book.penalise(record.author, bad, reason="content_malformed")
            elif record.kind in (Kind.HELP, Kind.ACK) and source is not None:
                bad = help_malformed(
                    record, self.local.identity, self.book.network_key, self.book.circle_keys
                )
                if bad is not None:
                    await self.book.penalise(record.author, bad, reason="content_malformed")
            elif record.kind in (Kind.CONTACT, Kind.VOUCH) and self.knowwho.add(
                record, verify_body=True
            ):  # opened, but malformed: its author pays, as for alerts
                error = DecodeError("content breaks its kind's schema")
                await self.book.penalise(record.author, error, reason="content_malformed")
        for record in fresh:
            if record.kind is Kind.GUIDE:
                self.library.add(record)
        guides = [
            r.id
            for r in fresh
            if r.kind in (Kind.GUIDE, Kind.CHECKLIST) and r.author != self.node_id
        ]
        if guides:
            self._unchecked_guides.extend(guides)
            if not self._checking_guides:
                self._checking_guides = True
                self._spawn(self._check_guides())
        if any(r.kind is Kind.HELP for r in fresh):  # an accepted referral of ours: send it
            self._spawn(self._help_arrived())
        if fresh:
            self.sync.push(fresh, exclude=source.peer_id if source else None)
        return accepted

    async def _help_arrived(self) -> None:
        from node.help_requests import send_accepted_referrals

        async with self._help_lock:
            if await send_accepted_referrals(self.local, now_ms()):
                self._notify()  # our new contact copies: push them on

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
                identity, network_keys = self.local.identity, self.network_keys
                bad = await loop.run_in_executor(
                    None, malformed_among, datas, identity, network_keys, self.book.circle_keys
                )
                for record, error in bad:
                    await self.book.penalise(record.author, error, reason="content_malformed")
        finally:
            self._checking_guides = False

    async def _circles_changed(self, now: int) -> None:
        """A membership record or a revocation arrived: cut revoked keys out of our circles
        (a new epoch, pushed at once) and read with the keys we hold now."""
        if await circles.cut_off_revoked(self.local, now):
            self._notify()
        self.book.circle_keys = await circles.read_keys(self.local)
        self.library.keys_changed()
        await self.notices.reload_duties()
        self.knowwho.keys_changed()
        await self.checkins.start()  # check-ins held before their circle's key came

    async def _duty_changed(self) -> None:
        """A duty record (on call, off duty, a target): fold duties and plans again."""
        await self.notices.reload_duties()
        self.checkins.duty_changed()

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
            now = now_ms()
            if any(r.kind is Kind.CIRCLE for r in records):  # ours: read with its new key
                self.book.circle_keys = await circles.read_keys(self.local)
                self.library.keys_changed()
                self.knowwho.keys_changed()
            for record in records:
                if record.kind is Kind.ALERT:
                    if self.alerts.announce(record, now) is not None:
                        self.book.count("content_malformed")
                elif record.kind in (Kind.CONTACT, Kind.VOUCH):
                    self.knowwho.add(record, verify_body=False)
                elif record.kind is Kind.GUIDE:
                    self.library.add(record)
                elif record.kind is Kind.TOMBSTONE:
                    self.knowwho.remove(Withdrawal.from_payload(record.payload).targets)
                    self.library.remove(Withdrawal.from_payload(record.payload).targets)
            if any(r.kind is Kind.CIRCLE for r in records):
                await self.notices.reload_duties()
                await self.checkins.start()  # a circle we changed: whose plans we watch
            elif any(r.kind is Kind.DUTY for r in records):
                await self._duty_changed()
            self.checkins.saw(records)
            self.sync.push(records)
        await self.book.flush()
        await self.sync.flush_deliveries()
        await self.knowwho.flush_opened()
        await self.library.flush_opened()

    # -- what the local API reads ------------------------------------------------------------

    def _notify(self) -> None:
        """`canopy` wrote to the store: poll now, and reconcile again soon (records may
        have arrived by other paths, `canopy import`)."""
        self._wake.set()
        self._notified += 1
        self.sync.resync_soon()

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
