"""Know-who pages: search (offline and across the network) with each result's vouchers,
trust distance and staleness; add a contact with validated choices; vouch; the review
queue; introductions (ask, approve, decline)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from node.web import UI_PREFIX, actions, render
from node.web.pages import Routes, act, node_of, page, then
from protocol import limits
from protocol.errors import CanopyError

routes = Routes()  # app.py mounts it under /ui
SEARCH = ("text", "kind", "region", "lang")
CONTACT_FIELDS = (
    "kind", "name", "region", "langs", "channels", "specialties", "notes", "share", "review_days",
)  # fmt: skip
BLANK_CONTACT = {"share": "peers", "review_days": str(limits.DEFAULT_REVIEW_DAYS)}


@routes.get("/knowwho")
async def knowwho(
    request: web.Request, *, error: str = "", draft: dict[str, str] | None = None
) -> web.StreamResponse:
    node = node_of(request)
    wanted = {k: request.query.get(k, "").strip()[:200] for k in SEARCH}
    network = request.query.get("network") == "1"
    result: dict[str, Any] | None = None
    search_error = ""
    if request.query.get("search") is not None:
        try:
            result = await actions.query(node, network=network, **wanted)
        except CanopyError as exc:
            search_error = str(exc)
    # Together: the store answers each in turn, without a round trip to the loop between.
    due, introductions = await asyncio.gather(actions.review(node), actions.introductions(node))
    return page(
        request,
        "knowwho.html",
        {
            "wanted": wanted,
            "network": network,
            "result": result,
            "search_error": search_error,
            "kinds": actions.KIND_CHOICES,
            "shares": actions.SHARE_CHOICES,
            "datalists": render.datalist("regions", actions.regions())
            + render.datalist("languages", actions.languages()),
            "due": due,
            "introductions": introductions,
            "error": error,
            "draft": draft or {**dict.fromkeys(CONTACT_FIELDS, ""), **BLANK_CONTACT},
        },
        status=400 if error else 200,
    )


@routes.post("/knowwho/contacts")
async def add_contact(request: web.Request) -> web.StreamResponse:
    from node.directory import Draft

    form = await request.post()
    draft = {k: str(form.get(k, "")) for k in CONTACT_FIELDS}
    try:
        review_days = int(draft["review_days"] or limits.DEFAULT_REVIEW_DAYS)
        typed = Draft(
            kind=draft["kind"],
            name=draft["name"],
            region=draft["region"],
            langs=[x.strip() for x in draft["langs"].split(",") if x.strip()],
            channels=[x.strip() for x in draft["channels"].splitlines() if x.strip()],
            specialties=[x.strip() for x in draft["specialties"].split(",") if x.strip()],
            notes=draft["notes"],
        )
        await actions.add_contact(
            node_of(request), typed, share=draft["share"], review_days=review_days
        )
    except ValueError:
        return await knowwho(request, error="review_days", draft=draft)
    except CanopyError as exc:
        return await knowwho(request, error=str(exc), draft=draft)
    return then(request, f"{UI_PREFIX}knowwho", "contact_added")


@routes.post("/knowwho/vouch")
async def vouch(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    vouched = actions.vouch(node_of(request), str(form.get("target", "")))
    return await act(request, vouched, f"{UI_PREFIX}knowwho", "vouched", knowwho)


@routes.post("/knowwho/introduce")
async def introduce(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    asked = actions.introduce(node_of(request), str(form.get("id", "")), str(form.get("note", "")))
    return await act(request, asked, f"{UI_PREFIX}knowwho", "introduction_asked", knowwho)


@routes.post("/knowwho/introductions/{id}")
async def decide(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    approve = form.get("decision") == "approve"
    decided = actions.decide(node_of(request), request.match_info["id"], approve)
    flash = "approved" if approve else "declined"
    return await act(request, decided, f"{UI_PREFIX}knowwho", flash, knowwho)
