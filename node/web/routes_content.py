"""Know-how pages: guides (browse, filter, search, read, publish, new version, withdraw) and
alerts (send, and the live feed as server-sent events from this origin)."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from markupsafe import Markup
from multidict import MultiDictProxy

from node.web import UI_PREFIX, actions, i18n, render, response
from node.web.pages import (
    GUIDE_LISTS_KEY,
    HEADERS,
    Routes,
    act,
    found,
    fragment,
    node_of,
    page,
    then,
)
from protocol import limits
from protocol.errors import CanopyError

routes = Routes()  # app.py mounts it under /ui
FILTERS = ("q", "lang", "topic", "region", "author")


@routes.get("/guides")
async def guides(request: web.Request) -> web.StreamResponse:
    wanted = {k: request.query.get(k, "").strip()[:200] for k in FILTERS}
    per = limits.UI_GUIDES_PER_PAGE
    asked = _page_number(request.query.get("page", ""), 10**6)
    kept = request.config_dict[GUIDE_LISTS_KEY]
    found = await actions.guides(node_of(request), wanted, asked, per, kept)
    number, pages = found["page"], found["pages"]
    query = {k: v for k, v in wanted.items() if v}
    # The rows, rendered once per language while the page is kept (the page's greater part).
    rendered: dict[str, Markup] = found.setdefault("rows_html", {})
    if request["lang"] not in rendered:
        rendered[request["lang"]] = fragment(request, "_guide_rows.html", {"guides": found["rows"]})
    return page(
        request,
        "guides.html",
        {"guides": found["rows"], "rows_html": rendered[request["lang"]],
         "matched": found["matched"], "error": found["error"],
         "total": found["total"],
         "unreadable": found["unreadable"], "wanted": wanted, "choices": found["choices"],
         "page": number, "pages": pages, "first": (number - 1) * per + 1,
         "previous": _page_link(query, number - 1) if number > 1 else "",
         "next": _page_link(query, number + 1) if number < pages else ""},
    )  # fmt: skip


def _page_number(value: str, pages: int) -> int:
    """The page asked for, 1 when none or not a number, never past the last."""
    number = int(value) if value.isdigit() and len(value) < 7 else 1
    return min(max(number, 1), pages)


def _page_link(query: dict[str, str], number: int) -> str:
    """The guide list's URL for page `number` under the same filters."""
    return "/ui/guides?" + urlencode({**query, "page": str(number)})


def _draft(form: MultiDictProxy[Any] | None, replaces: str = "") -> dict[str, Any]:
    get = lambda k: str(form.get(k, "")) if form else ""  # noqa: E731
    return {
        "title": get("title"),
        "text": get("text"),
        "lang": get("lang"),
        "topics": get("topics"),
        "region": get("region"),
        "to": get("to") or "peers",
        "chosen": [str(v) for v in form.getall("chosen", [])] if form else [],
        "replaces": get("replaces") or replaces,
    }


async def _editor(
    request: web.Request, draft: dict[str, Any], *, error: str = "", preview: bool = False
) -> web.StreamResponse:
    peers = await actions.peers(node_of(request))
    return page(
        request,
        "guide_form.html",
        {"draft": draft, "peers": peers, "error": error, "preview": preview},
        status=400 if error else 200,
    )


@routes.get("/guides/new")
async def new_guide(request: web.Request) -> web.StreamResponse:
    replaces = request.query.get("replaces", "")
    draft = _draft(None, replaces)
    if replaces:  # a new version starts from the old one
        try:
            old = await actions.guide(node_of(request), replaces)
        except CanopyError as exc:
            return page(request, "error.html", {"message": str(exc)}, status=404)
        draft.update(
            title=old["title"], text=old["text"], lang=old["lang"], region=old["region"],
            topics=", ".join(old["topics"]), replaces=old["id"],
        )  # fmt: skip
    return await _editor(request, draft)


# Routes are tried in the order they stand: this one after /guides/new, which it would match.
@routes.get("/guides/{id}")
async def guide(request: web.Request) -> web.StreamResponse:
    lookup = actions.guide(node_of(request), request.match_info["id"])
    return await found(request, lookup, "guide.html", "guide")


@routes.post("/guides")
async def publish(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    draft = _draft(form)
    if form.get("action") == "preview":  # the editor's preview, without JavaScript
        return await _editor(request, draft, preview=True)
    to = draft["to"]
    if to == "chosen":
        to = ",".join(draft["chosen"])
        if not to:
            return await _editor(request, draft, error="choose")
    elif to not in ("peers", "network"):
        return await _editor(request, draft, error="audience")
    try:
        rid = await actions.publish_guide(
            node_of(request),
            title=draft["title"].strip(),
            text=draft["text"],
            lang=draft["lang"].strip(),
            topics=[t.strip() for t in draft["topics"].split(",") if t.strip()],
            region=draft["region"].strip(),
            to=to,
            replaces=draft["replaces"].strip() or None,
        )
    except CanopyError as exc:
        return await _editor(request, draft, error=str(exc))
    return then(request, f"{UI_PREFIX}guides/{rid}", "published")


@routes.post("/guides/preview")
async def preview(request: web.Request) -> web.StreamResponse:
    """The editor's live preview (our own JS): the text rendered as a reader will see it."""
    form = await request.post()
    return web.Response(text=render.markdown(str(form.get("text", ""))), content_type="text/html")


@routes.post("/guides/{id}/withdraw")
async def withdraw(request: web.Request) -> web.StreamResponse:
    withdrawn = actions.withdraw(node_of(request), request.match_info["id"])
    return await act(request, withdrawn, f"{UI_PREFIX}guides", "withdrawn")


@routes.get("/alerts")
async def alerts(request: web.Request, *, error: str = "") -> web.StreamResponse:
    node = node_of(request)
    return page(
        request,
        "alerts.html",
        {
            "alerts": actions.alerts(node),
            "peers": await actions.peers(node),
            "listed": await response.alert_rows(node),
            "error": error,
        },
        status=400 if error else 200,
    )


@routes.post("/alerts")
async def send_alert(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    to = str(form.get("to", "peers"))
    if to == "chosen":
        to = ",".join(str(v) for v in form.getall("chosen", []))
    try:
        hours = float(str(form.get("hours", "")) or limits.DEFAULT_ALERT_LIFETIME_MS / 3.6e6)
        await actions.send_alert(
            node_of(request),
            str(form.get("text", "")),
            to=to,
            urgency=str(form.get("urgency", "normal")),
            hours=hours,
        )
    except ValueError:
        return await alerts(request, error="hours")
    except CanopyError as exc:
        return await alerts(request, error=str(exc))
    return then(request, f"{UI_PREFIX}alerts", "alert_sent")


@routes.get("/alerts/feed")
async def feed(request: web.Request) -> web.StreamResponse:
    """Server-sent events: each readable alert as it arrives, as JSON the page inserts as
    text (never as HTML); a comment line now and then notices a closed page."""
    response = web.StreamResponse(headers={**HEADERS, "Cache-Control": "no-store"})
    response.content_type = "text/event-stream"
    await response.prepare(request)
    formats = i18n.Formats(request["lang"])  # the date as the page writes it, not the JS's
    async with actions.watch(node_of(request)) as queue:
        await response.write(b": open\n\n")
        try:
            while True:
                try:
                    entry = await asyncio.wait_for(queue.get(), limits.UI_FEED_KEEPALIVE_S)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if not entry:
                    break  # the node is stopping
                if not entry.get("readable"):
                    continue
                shown = {
                    k: entry.get(k) for k in ("id", "from", "text", "urgency", "created", "kind")
                }
                shown["when"] = formats.when(entry.get("created"))
                await response.write(f"data: {json.dumps(shown)}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
    return response
