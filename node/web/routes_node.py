"""Pages about this node and whom it trusts: home, peers and invites, status, panic wipe."""

from __future__ import annotations

import asyncio

import segno
from aiohttp import web
from markupsafe import Markup

from node.web import UI_PREFIX, actions, response
from node.web.pages import (
    HEADERS,
    PENDING_KEY,
    STORE_READS_KEY,
    Routes,
    act,
    found,
    node_of,
    page,
    session_of,
    then,
)
from protocol.errors import CanopyError

routes = Routes()  # app.py mounts it under /ui


@routes.get("/")
async def home(request: web.Request) -> web.StreamResponse:
    node = node_of(request)
    # What the store held when last read, while its version is the same: one round trip.
    reads = request.config_dict[STORE_READS_KEY]
    kept = (reads, await reads.version(node.local))
    # Together, "Act now" too: after a change each is read again, and the store answers
    # them one after another without a round trip to the loop between.
    peers, due, checklists_due, introductions, act = await asyncio.gather(
        actions.peers(node, kept),
        actions.review(node),
        actions.checklists_due(node, kept),
        actions.introductions(node, kept),
        response.needs_action(node, request.config_dict[PENDING_KEY]),
    )
    status = actions.health(node)
    waiting = [
        r for r in introductions if r["direction"] == "incoming" and r["status"] == "pending"
    ]
    return page(
        request,
        "home.html",
        {
            "act": act,
            "peers": peers,
            "alerts": actions.alerts(node),
            "due": due,
            "checklists_due": checklists_due,
            "waiting": waiting,
            "revoked": [p for p in peers if p["revoked"]],
            "status": status,
        },
    )


@routes.get("/status")
async def status(request: web.Request) -> web.StreamResponse:
    return page(request, "status.html", {"status": await actions.status(node_of(request))})


@routes.get("/peers")
async def peers(request: web.Request, **extra: object) -> web.StreamResponse:
    rows = await actions.peers(node_of(request))
    return page(request, "peers.html", {"peers": rows, "invite": None, "error": "", **extra})


@routes.get("/peers/{id}")
async def peer(request: web.Request) -> web.StreamResponse:
    lookup = actions.peer(node_of(request), request.match_info["id"])
    return await found(request, lookup, "peer.html", "peer")


@routes.post("/peers/invite")
async def make_invite(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    try:
        hours = float(str(form.get("hours", "168")))
        code, expires = await actions.invite(node_of(request), hours)
    except ValueError:
        return await peers(request, error="hours")
    except CanopyError as exc:
        return await peers(request, error=str(exc))
    # The QR code as inline SVG from this page: nothing is fetched, nothing written to disk.
    qr = segno.make(code, error="m").svg_inline(scale=3, dark="#000", light="#fff", border=2)
    return await peers(request, invite={"code": code, "expires": expires, "qr": Markup(qr)})


@routes.post("/peers/accept")
async def accept(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    try:
        trusted = await actions.accept(node_of(request), str(form.get("code", "")).strip())
    except CanopyError as exc:
        return await peers(request, error=str(exc))
    return then(request, f"{UI_PREFIX}peers/{trusted['id']}", "accepted")


@routes.post("/peers/{id}/distrust")
async def distrust(request: web.Request) -> web.StreamResponse:
    distrusted = actions.distrust(node_of(request), request.match_info["id"])
    return await act(request, distrusted, f"{UI_PREFIX}peers", "distrusted", peers)


@routes.get("/wipe")
async def wipe_confirm(request: web.Request) -> web.StreamResponse:
    return page(request, "wipe.html", {"error": False})


@routes.post("/wipe")
async def wipe(request: web.Request) -> web.StreamResponse:
    """Panic wipe, only after the word is typed: the keys go first, then this node."""
    form = await request.post()
    if str(form.get("confirm", "")).strip().upper() != "WIPE":
        return page(request, "wipe.html", {"error": True}, status=400)
    session_of(request).flash = ""
    body = page(request, "wiped.html", {}).body
    assert isinstance(body, bytes)
    prepared = web.StreamResponse(status=200, headers={**HEADERS, "Cache-Control": "no-store"})
    prepared.content_type = "text/html"
    prepared.charset = "utf-8"
    await prepared.prepare(request)
    await prepared.write(body)
    await prepared.write_eof()  # the page is out before the node ends
    await actions.wipe(node_of(request))
    return prepared
