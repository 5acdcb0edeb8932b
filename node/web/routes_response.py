"""Rapid-response pages: check-ins (status of the plans made and watched, the "Check in"
button, "Reached" / "Could not reach" on a missed one), help requests (the open list,
overdue first; one request's history; ack, claim, hand off, refer a know-who contact,
accept a referral, resolve; the request form), and
acknowledging an alert. Every action goes through node/web/response.py."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.web import UI_PREFIX, response
from node.web.actions import KIND_CHOICES
from node.web.pages import Routes, act, node_of, page, then
from protocol.errors import CanopyError

routes = Routes()  # app.py mounts it under /ui


@routes.get("/checkins")
async def checkins(request: web.Request, *, error: str = "") -> web.StreamResponse:
    node = node_of(request)
    rows = await response.checkin_rows(node)
    return page(
        request,
        "checkins.html",
        {
            "mine": [r for r in rows if r["mine"]],
            "watched": [r for r in rows if not r["mine"]],
            "duty": await response.duty(node),
            "back": "checkins",
            "error": error,
        },
        status=400 if error else 200,
    )


@routes.post("/checkins")
async def check_in(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    checked = response.check_in(node_of(request), str(form.get("pin", "")))
    return await act(request, checked, f"{UI_PREFIX}checkins", "checked_in", checkins)


@routes.post("/checkins/{defender}/{outcome}")
async def report(request: web.Request) -> web.StreamResponse:
    reached = request.match_info["outcome"] == "reached"
    if request.match_info["outcome"] not in ("reached", "unreachable"):
        raise web.HTTPNotFound()
    try:
        _, _, escalated = await response.report(
            node_of(request), request.match_info["defender"], reached
        )
    except CanopyError as exc:
        return await checkins(request, error=str(exc))
    flash = "reached" if reached else ("escalated" if escalated else "unreachable")
    return then(request, f"{UI_PREFIX}checkins", flash)


@routes.get("/help")
async def help_list(
    request: web.Request, *, error: str = "", draft: dict[str, str] | None = None
) -> web.StreamResponse:
    node = node_of(request)
    return page(
        request,
        "help.html",
        {
            "requests": await response.help_rows(node),
            "needs": response.needs(),
            "circles": await response.circle_names(node),
            "draft": draft or {},
            "duty": await response.duty(node),
            "back": "help",
            "error": error,
        },
        status=400 if error else 200,
    )


@routes.get("/help/{id}")
async def help_one(request: web.Request, *, error: str = "") -> web.StreamResponse:
    node, ref = node_of(request), request.match_info["id"]
    find = {k: request.query.get(k, "") for k in ("text", "kind", "region")}
    try:
        choices = await response.help_choices(node, ref, find)
    except CanopyError as exc:
        if error:  # the request went away while a step was refused: say the step's error
            return page(request, "error.html", {"message": error}, status=400)
        return page(request, "error.html", {"message": str(exc)}, status=404)
    return page(
        request,
        "help_request.html",
        {"error": error, "find": find, "kinds": KIND_CHOICES, **choices},
        status=400 if error else 200,
    )


@routes.post("/help")
async def ask(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    draft: dict[str, Any] = {k: str(form.get(k, "")) for k in ("need", "region", "to", "text")}
    to = draft["to"]
    try:
        rid = await response.ask_for_help(
            node_of(request),
            need=draft["need"],
            region=draft["region"],
            to=to if to == "network" else f"circle:{to}",
            text=draft["text"],
        )
    except CanopyError as exc:
        return await help_list(request, error=str(exc), draft=draft)
    return then(request, f"{UI_PREFIX}help/{rid}", "help_asked")


@routes.post("/help/{id}/{op}")
async def help_step(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    ref, op = request.match_info["id"], request.match_info["op"]
    if op not in response.STEPS:
        raise web.HTTPNotFound()
    try:
        fields = {k: str(form.get(k, "")) for k in ("peer", "contact", "referral")}
        outcome = str(form.get("outcome", ""))
        late = await response.help_step(node_of(request), ref, op, outcome, fields)
    except CanopyError as exc:
        return await help_one(request, error=str(exc))
    flash = "claimed_late" if late else f"help_{op.replace('-', '_')}"
    return then(request, f"{UI_PREFIX}help/{ref}", flash)


@routes.post("/away")
async def away(request: web.Request) -> web.StreamResponse:
    """Off duty until a date, or back on duty (`canopy away`), from the help or check-ins
    page, and back to it."""
    form = await request.post()
    back = "checkins" if form.get("back") == "checkins" else "help"
    off = form.get("off") == "1"
    try:
        until = await response.set_away(node_of(request), str(form.get("until", "")), off=off)
    except CanopyError as exc:
        shown = checkins if back == "checkins" else help_list
        return await shown(request, error=str(exc))
    return then(request, f"{UI_PREFIX}{back}", "away" if until else "on_duty")


@routes.post("/alerts/{id}/ack")
async def acknowledge(request: web.Request) -> web.StreamResponse:
    acked = response.acknowledge(node_of(request), request.match_info["id"])
    return await act(request, acked, f"{UI_PREFIX}alerts", "acknowledged")
