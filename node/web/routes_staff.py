"""Staff pages of the web app: sign-in by name + password + TOTP code, enrolment by link,
the admin's list of staff; and the local API routes `canopy ui user` calls.

Sign-in is throttled per name and per client address (node/web/throttle.py); links are
throttled per address. Nothing here logs a password, a code or a secret.
"""

from __future__ import annotations

import time
from typing import Any

import segno
from aiohttp import web
from markupsafe import Markup

from node.clock import now_ms
from node.web import UI_PREFIX, staff
from node.web.pages import COOKIE_KEY, SESSIONS_KEY, UI_APP_KEY, Routes, node_of, page
from node.web.throttle import Throttle
from protocol.errors import StaffError

routes = Routes()  # app.py mounts it under /ui
api_routes = Routes()  # on the local API itself, beside /v1/ui/link
THROTTLE_KEY = web.AppKey("throttle", Throttle)


def client(request: web.Request) -> str:
    """The client's address: behind the configured reverse proxy (on loopback), the last
    X-Forwarded-For hop it added; otherwise the peer address of the connection."""
    remote = request.remote or ""
    forwarded = request.headers.get("X-Forwarded-For", "")
    if node_of(request).config.ui_remote and forwarded and remote in ("127.0.0.1", "::1"):
        return forwarded.split(",")[-1].strip()[:64]
    return remote


def _signed_in(request: web.Request, user: str, role: str) -> web.StreamResponse:
    sid, _ = request.app[SESSIONS_KEY].open(time.monotonic(), user, role)
    response = web.HTTPSeeOther(UI_PREFIX)
    response.set_cookie(
        request.app[COOKIE_KEY],
        sid,
        path=UI_PREFIX,
        httponly=True,
        samesite="Strict",
        secure=node_of(request).config.ui_public_url.startswith("https://"),
    )
    return response


def link_allowed(request: web.Request) -> bool:
    return request.app[THROTTLE_KEY].link_try(client(request), time.monotonic())


async def signin_form(request: web.Request, **context: Any) -> web.Response:
    return page(request, "signin.html", context, status=int(context.pop("status", 200)))


@routes.post("/signin")
async def signin(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    name, password, code = (str(form.get(k, ""))[:300] for k in ("name", "password", "code"))
    throttle = request.app[THROTTLE_KEY]
    keys = ("name:" + name.lower(), "addr:" + client(request))
    now = time.monotonic()
    wait = throttle.locked(keys, now)
    if wait > 0:
        return await signin_form(request, locked=int(wait) + 1, name=name, status=429)
    user = await staff.verify(node_of(request).local.store, name, password, code, now_ms())
    if user is None:
        throttle.failed(keys, now)
        return await signin_form(request, refused=True, name=name, status=403)
    throttle.succeeded(keys[0])
    return _signed_in(request, user.name, user.role)


@routes.get("/enrol")
async def enrol_page(request: web.Request) -> web.StreamResponse:
    token = request.query.get("token", "")
    found = None
    if token and link_allowed(request):
        found = await staff.enrolling(node_of(request).local.store, token, now_ms())
    if found is None:
        return page(request, "signed_out.html", {"link_refused": True}, status=403)
    return _enrol_form(request, token, *found)


def _enrol_form(
    request: web.Request, token: str, name: str, secret: str, error: str = "", status: int = 200
) -> web.Response:
    uri = staff.provisioning_uri(name, secret, node_of(request).name)
    qr = segno.make(uri, error="m").svg_inline(scale=3, dark="#000", light="#fff", border=2)
    context = {"token": token, "name": name, "secret": secret, "qr": Markup(qr), "error": error}
    return page(request, "enrol.html", context, status=status)


@routes.post("/enrol")
async def enrol(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    token, password, again, code = (
        str(form.get(k, ""))[:300] for k in ("token", "password", "again", "code")
    )
    store = node_of(request).local.store
    found = await staff.enrolling(store, token, now_ms()) if link_allowed(request) else None
    if found is None:
        return page(request, "signed_out.html", {"link_refused": True}, status=403)
    if password != again:
        return _enrol_form(request, token, *found, error="differ", status=400)
    try:
        user = await staff.enrol(store, token, password, code, now_ms())
    except StaffError as exc:
        kind = "code" if "code" in str(exc) else "password"
        return _enrol_form(request, token, *found, error=kind, status=400)
    if user is None:
        return page(request, "signed_out.html", {"link_refused": True}, status=403)
    return _signed_in(request, user.name, user.role)


@routes.get("/staff")
async def staff_page(request: web.Request) -> web.Response:
    users = await staff.users(node_of(request).local.store)
    return page(request, "staff.html", {"users": users})


# -- the local API, for `canopy ui user` (bearer token) ------------------------------------


def _error(exc: Exception) -> web.Response:
    return web.json_response({"error": str(exc)}, status=400)


@api_routes.get("/v1/ui/users")
async def api_users(request: web.Request) -> web.Response:
    users = await staff.users(node_of(request).local.store)
    return web.json_response({"users": [user_json(u) for u in users]})


def user_json(user: staff.User) -> dict[str, object]:
    return {
        "name": user.name,
        "role": user.role,
        "enrolled": user.enrolled,
        "last_signin_ms": user.last_signin_ms or None,
    }


@api_routes.post("/v1/ui/users")
async def api_add(request: web.Request) -> web.Response:
    try:
        body = await request.json()
        token = await staff.add(
            node_of(request).local.store, str(body["name"]), str(body["role"]), now_ms()
        )
    except StaffError as exc:
        return _error(exc)
    except (ValueError, KeyError, TypeError):
        return _error(ValueError("expected {name, role}"))
    return web.json_response({"url": enrol_url(request, token)})


def enrol_url(request: web.Request, token: str) -> str:
    config = node_of(request).config
    base = config.ui_public_url.rstrip("/") or str(node_of(request).api_url).rstrip("/")  # type: ignore[attr-defined]
    return f"{base}{UI_PREFIX}enrol?token={token}"


@api_routes.post("/v1/ui/users/remove")
async def api_remove(request: web.Request) -> web.Response:
    try:
        name = str((await request.json())["name"])
    except (ValueError, KeyError, TypeError):
        return _error(ValueError("expected {name}"))
    removed = await staff.remove(node_of(request).local.store, name)
    ended = request.app[UI_APP_KEY][SESSIONS_KEY].end_user(name)
    if not removed:
        return _error(StaffError(f"no staff user named {name}"))
    return web.json_response({"removed": name, "sessions_ended": ended})
