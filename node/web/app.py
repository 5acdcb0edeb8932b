"""The web app, mounted by the running node on its local API listener under /ui/.

Owns what every page shares: sign-in from a `canopy ui` link, the session cookie, the CSRF
check of every POST, the language of the page, and the security headers (a strict CSP with
no inline script or style, no framing, nothing from another host). The local API's own
middleware has already refused a foreign Host or Origin (DNS rebinding) before any of this
runs. Pages live in routes_*.py and act only through actions.py.
"""

from __future__ import annotations

import logging
import secrets
import time
from urllib.parse import urlsplit

from aiohttp import web

from node.web import UI_PREFIX, actions, i18n, response, roles, routes_staff
from node.web.kept import StoreReads
from node.web.listings import GuideLists
from node.web.pages import (
    COOKIE_KEY,
    ENVIRONMENTS_KEY,
    GUIDE_LISTS_KEY,
    HEADERS,
    HERE,
    NODE_KEY,
    PENDING_KEY,
    SESSIONS_KEY,
    STATIC_CACHE,
    STORE_READS_KEY,
    UI_APP_KEY,
    Handler,
    node_of,
    page,
    refused,
    session_of,
    versioned,
)
from node.web.sessions import Session, Sessions

PUBLIC = ("/ui/signin", "/ui/enrol", "/ui/static/")  # reachable without a session
# POSTs made before there is a session (and so a CSRF token): the sign-in form and the
# enrolment form, which carries its own unguessable token. The local API has refused a
# foreign Origin already, and the cookie is SameSite=Strict.
NO_SESSION_POSTS = ("/ui/signin", "/ui/enrol")
audit = logging.getLogger("canopy.web.audit")  # who did which action: never content


def _lang(request: web.Request, session: Session | None) -> str:
    if session is not None and session.lang:
        return session.lang
    default: str = node_of(request).config.ui_lang
    return i18n.negotiate(request.headers.get("Accept-Language", ""), default)


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    from protocol import limits

    sessions = request.app[SESSIONS_KEY]
    sid = request.cookies.get(request.app[COOKIE_KEY], "")
    session = sessions.get(sid, time.monotonic()) if sid else None
    if session is not None and not session.user and _through_proxy(request):
        session = None  # the operator's link session is for loopback, not the proxy
    request["session"] = session
    request["lang"] = _lang(request, session)
    try:
        if session is None and not request.path.startswith(PUBLIC):
            response: web.StreamResponse = page(request, "signed_out.html", {}, status=401)
        elif request.method == "POST" and (request.content_length or 0) > limits.UI_MAX_FORM_BYTES:
            response = refused(request, 413, "too large")
        elif request.method == "POST" and session is None and request.path in NO_SESSION_POSTS:
            response = await handler(request)
        elif request.method == "POST" and not await _csrf_ok(request, session):
            response = refused(request, 403, "csrf")
        elif session is not None and not roles.may(session.role, request.method, _route(request)):
            response = refused(request, 403, "role")
        else:
            response = await handler(request)
        if session is not None and request.method == "POST":
            _log(session, request, response.status)
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.status != 405:
            response = refused(request, exc.status, exc.reason)
        else:
            raise
    if not response.prepared:  # a stream (the live feed) set them before it started
        response.headers.update(HEADERS)
        cache = STATIC_CACHE if versioned(request.path, request.query.get("v")) else "no-store"
        response.headers.setdefault("Cache-Control", cache)
    return response


def _route(request: web.Request) -> str:
    """The canonical path of the matched route (ids as {id}); the path itself when none."""
    info = request.match_info
    resource = info.route.resource if info.route is not None else None
    return resource.canonical if resource is not None else request.path


def _log(session: Session, request: web.Request, status: int) -> None:
    """One content-free line per state-changing request: who, which route, ok or refused."""
    outcome = "ok" if status < 400 else f"refused {status}"
    audit.info(
        "staff %s: %s %s %s", session.user or "(operator)", request.method, _route(request), outcome
    )


async def _csrf_ok(request: web.Request, session: Session | None) -> bool:
    """Every POST carries the session's token: a form field, or a header from our own JS.
    (The local API's middleware has already refused a foreign Origin.)"""
    if session is None:
        return False
    supplied = request.headers.get("X-CSRF-Token")
    if supplied is None:
        form = await request.post()
        field = form.get("csrf")
        supplied = field if isinstance(field, str) else ""
    return session.csrf_ok(supplied)


# -- sign-in, sign-out, language ---------------------------------------------------------------


async def _signin(request: web.Request) -> web.StreamResponse:
    token = request.query.get("token", "")
    if not token:
        return await routes_staff.signin_form(request)
    if _through_proxy(request) or not routes_staff.link_allowed(request):
        # Over the proxy only named staff sign in: the operator's link is for loopback.
        return page(request, "signed_out.html", {"link_refused": True}, status=403)
    opened = request.app[SESSIONS_KEY].redeem(token, time.monotonic())
    if opened is None:
        return page(request, "signed_out.html", {"link_refused": True}, status=403)
    sid, _ = opened
    response = web.HTTPSeeOther(UI_PREFIX)
    response.set_cookie(
        request.app[COOKIE_KEY], sid, path=UI_PREFIX, httponly=True, samesite="Strict"
    )
    return response


def _through_proxy(request: web.Request) -> bool:
    """Whether this request came by the public URL (the reverse proxy), not loopback."""
    public = node_of(request).config.ui_public_url
    host = urlsplit(public).netloc.lower() if public else ""
    return bool(host) and request.headers.get("Host", "").lower() == host


async def _signout(request: web.Request) -> web.StreamResponse:
    request.app[SESSIONS_KEY].end(request.cookies.get(request.app[COOKIE_KEY], ""))
    request["session"] = None
    response = page(request, "signed_out.html", {"signed_out_now": True})
    response.del_cookie(request.app[COOKIE_KEY], path=UI_PREFIX)
    return response


async def _set_lang(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    lang = form.get("lang")
    back = form.get("back")
    if isinstance(lang, str) and lang in i18n.NAMES:
        session_of(request).lang = lang
    target = back if isinstance(back, str) and back.startswith(UI_PREFIX) else UI_PREFIX
    raise web.HTTPSeeOther(target.split("\n")[0])


async def _link(request: web.Request) -> web.Response:
    """POST /v1/ui/link (local API, bearer token): a one-time sign-in URL for `canopy ui`."""
    ui: web.Application = request.app[UI_APP_KEY]
    if not node_of(request).config.ui_enabled:
        return web.json_response({"error": "the web app is off ([ui] enabled = false)"}, status=400)
    token = ui[SESSIONS_KEY].issue_link(time.monotonic())
    base = str(node_of(request).api_url)  # type: ignore[attr-defined]
    return web.json_response({"url": f"{base}{UI_PREFIX}signin?token={token}"})


def mount(api_app: web.Application, node: actions.RunningNode) -> None:
    """Serve the web app under /ui/ on the local API app, and `canopy ui`'s link route."""
    from node.web import routes_content, routes_knowwho, routes_node, routes_response

    ui = web.Application(middlewares=[_guard])
    ui[SESSIONS_KEY] = Sessions()
    ui[COOKIE_KEY] = "canopy_" + secrets.token_hex(4)  # one node's cookie, not its neighbour's
    ui[ENVIRONMENTS_KEY] = {}
    ui[PENDING_KEY] = response.Pending()
    ui[GUIDE_LISTS_KEY] = GuideLists()
    ui[STORE_READS_KEY] = StoreReads()
    ui[routes_staff.THROTTLE_KEY] = routes_staff.Throttle()
    ui.router.add_get("/signin", _signin)
    ui.router.add_routes(routes_staff.routes)
    ui.router.add_post("/signout", _signout)
    ui.router.add_post("/lang", _set_lang)
    ui.router.add_static("/static/", HERE / "static")
    for module in (routes_node, routes_content, routes_knowwho, routes_response):
        ui.router.add_routes(module.routes)
    api_app[NODE_KEY] = node
    api_app[UI_APP_KEY] = ui
    api_app.router.add_post("/v1/ui/link", _link)
    api_app.router.add_routes(routes_staff.api_routes)
    if node.config.ui_enabled:
        api_app.add_subapp(UI_PREFIX, ui)
