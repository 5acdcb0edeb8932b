"""The local API: the routes the CLI (and the web app) call on a running node.

Bearer-token auth on every route but `/healthz` (and `/metrics` when public), refusal of
Host names and Origins the API is not reached by locally (DNS rebinding), and one handler
per route; each gathers what it returns through the collaborators it is given. `app()` is
the one place the `web.Application` is built. No rule of Canopy lives in a handler.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from aiohttp import web

from node.alerts import Alerts
from node.bundles import import_bundle
from node.clock import now_ms
from node.config import Config
from node.ingest import Accepted
from node.library import Library, listing, wanted_of
from node.local import Local
from node.queries import KnowWho
from node.web import UI_PREFIX
from node.wipe import leave_now
from protocol import limits
from protocol.contact import Filter
from protocol.errors import CanopyError, ContactError
from protocol.record import Record

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


_ROUTES: list[tuple[str, str, str]] = []  # (method, path, LocalApi handler), as marked below
H = TypeVar("H", bound=Callable[..., Awaitable[web.StreamResponse]])


def _route(method: str, path: str) -> Callable[[H], H]:
    """Mark a LocalApi handler as the one for `method path` (`LocalApi.app` adds each)."""

    def mark(handler: H) -> H:
        _ROUTES.append((method, path, handler.__name__))
        return handler

    return mark


class LocalApi:
    def __init__(
        self,
        local: Local,
        config: Config,
        alerts: Alerts,
        knowwho: KnowWho,
        library: Library,
        *,
        token: str,
        accept: Callable[[Sequence[Record]], Awaitable[Accepted]],
        notify: Callable[[], Awaitable[None]],
        status: Callable[[], Awaitable[dict[str, object]]],
        peer_rows: Callable[[], Awaitable[list[dict[str, object]]]],
        metrics: Callable[[], Awaitable[str]],
    ) -> None:
        self.local = local
        self.config = config
        self.alerts = alerts
        self.knowwho = knowwho
        self.library = library
        self.token = token
        self._accept = accept
        self._notify = notify
        self._status = status
        self._peer_rows = peer_rows
        self._metrics = metrics
        self.hosts: frozenset[str] = frozenset()  # set once the API is bound (api_hosts)

    def app(self) -> web.Application:
        """The local API's application: every route, behind the auth middleware."""
        app = web.Application(middlewares=[self._auth_middleware])
        for method, path, name in _ROUTES:  # add_get answers HEAD too
            add = app.router.add_get if method == "GET" else app.router.add_post
            add(path, getattr(self, name))
        return app

    @web.middleware
    async def _auth_middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], object],
    ) -> web.StreamResponse:
        # DNS rebinding: a page in the operator's browser may reach this port under a name
        # of its own; only the names this API is reached by locally, and no foreign page.
        # With [ui] remote, the reverse proxy's public origin too, for the web app alone.
        public = self.config.ui_public_url.rstrip("/").lower() if self.config.ui_remote else ""
        proxied = bool(public) and request.path.startswith(UI_PREFIX)
        host = request.headers.get("Host", "").lower()
        if host not in self.hosts and not (proxied and host == urlsplit(public).netloc):
            return web.json_response({"error": "unknown host"}, status=421)
        origin = request.headers.get("Origin")
        if (
            origin is not None
            and origin.lower().removeprefix("http://") not in self.hosts
            and not (proxied and origin.lower() == public)
        ):
            return web.json_response({"error": "foreign origin"}, status=403)
        if (
            request.path in PUBLIC_ROUTES
            or request.path.startswith(UI_PREFIX)  # the web app signs people in itself
            or (request.path == "/metrics" and self.config.metrics_public)
        ):
            return await handler(request)  # type: ignore[misc, no-any-return]
        supplied = request.headers.get("Authorization", "")
        if not hmac.compare_digest(supplied.encode(), f"Bearer {self.token}".encode()):
            return web.json_response({"error": "unauthorised"}, status=401)
        return await handler(request)  # type: ignore[misc, no-any-return]

    @_route("POST", "/v1/wipe")
    async def _api_wipe(self, request: web.Request) -> web.Response:
        """`canopy wipe`: the key file is already destroyed; leave memory at once, unclean on
        purpose (no flush, no goodbye): the process and the keys it holds end now."""
        log.warning("wipe requested: exiting now")
        leave_now(self.local)
        return web.json_response({"ok": True, "exiting": True})

    @_route("POST", "/v1/import")
    async def _api_import(self, request: web.Request) -> web.Response:
        """`canopy import` while the node runs: the bundle's records take this node's own
        accept path, so revocations, alerts, the know-who index and pushes act at once."""
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
                accept=self._accept,
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
                "other_network": done.other_network,
            }
        )

    @_route("POST", "/v1/notify")
    async def _api_notify(self, request: web.Request) -> web.Response:
        # The node reads what was written before it answers, so the command after this one
        # sees it (`canopy publish` then `canopy guides`); records may also have come by
        # other paths (`canopy import`).
        await self._notify()
        return web.json_response({"ok": True})

    @_route("GET", "/healthz")
    async def _api_healthz(self, request: web.Request) -> web.Response:
        """Liveness for supervisors and proxies: no token, and nothing but "ok"."""
        return web.json_response({"status": "ok"})

    @_route("GET", "/metrics")
    async def _api_metrics(self, request: web.Request) -> web.Response:
        """Prometheus text format: counts only (no ids, names or content); the token is needed
        unless `[api] metrics_public`."""
        return web.Response(
            text=await self._metrics(),
            content_type="text/plain",
            charset="utf-8",
            headers={"Cache-Control": "no-store"},
        )

    @_route("POST", "/v1/query")
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

    @_route("GET", "/v1/guides")
    async def _api_guides(self, request: web.Request) -> web.Response:
        """`canopy guides` while the node runs: one row per lesson, from the live index
        (query: lang, topic, region, from, search, limit, prefer: languages, comma-separated)."""
        q = request.query
        await self.library.ready.wait()  # built in the background at start
        started, cpu = time.perf_counter(), time.thread_time()
        peers, revoked = self.library.people()
        try:
            wanted = wanted_of(self.library.index, peers, q)
        except CanopyError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        prefer = [lang for lang in q.get("prefer", "").split(",") if lang]
        index, me = self.library.index, self.local.node_id
        body = json.dumps(listing(index, wanted, now_ms(), prefer, peers, me, revoked))
        # What the answer cost in the node (the match, the rows, the JSON), apart from HTTP,
        # in time and in CPU: what `python -m bench guides` reports as the search in the node.
        took = (time.perf_counter() - started) * 1000, (time.thread_time() - cpu) * 1000
        timing = f"index;dur={took[0]:.3f}, cpu;dur={took[1]:.3f}"
        return web.json_response(text=body, headers={"Server-Timing": timing})

    @_route("GET", "/v1/queries")
    async def _api_queries(self, request: web.Request) -> web.Response:
        """Queries peers sent us (what a peer can learn about who asks: only the peer)."""
        return web.json_response(
            {"received": list(self.knowwho.received), "answered": self.knowwho.answered}
        )

    @_route("GET", "/v1/peers")
    async def _api_peers(self, request: web.Request) -> web.Response:
        return web.json_response({"peers": await self._peer_rows()})

    @_route("GET", "/v1/alerts")
    async def _api_alerts(self, request: web.Request) -> web.Response:
        return web.json_response({"alerts": list(self.alerts.recent)})

    @_route("GET", "/v1/watch")
    async def _api_watch(self, request: web.Request) -> web.StreamResponse:
        """Alerts as they arrive, one JSON document per line (for `canopy watch`)."""
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        queue = self.alerts.watch()
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
            self.alerts.unwatch(queue)
        return response

    @_route("GET", "/v1/status")
    async def _api_status(self, request: web.Request) -> web.Response:
        return web.json_response(await self._status())
