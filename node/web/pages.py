"""What every page of the web app shares: the application's keys, the security headers (a
strict CSP with no inline script or style, no framing, nothing from another host), and
rendering a template in the request's language with what the layout needs."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import jinja2
from aiohttp import web
from markupsafe import Markup

from node.web import actions, i18n, render, response, roles
from node.web.kept import StoreReads
from node.web.listings import GuideLists
from node.web.sessions import Session, Sessions
from protocol.errors import CanopyError

HERE = Path(__file__).parent
SESSIONS_KEY = web.AppKey("sessions", Sessions)
NODE_KEY = web.AppKey("node", object)
COOKIE_KEY = web.AppKey("cookie", str)
UI_APP_KEY = web.AppKey("ui_app", web.Application)
ENVIRONMENTS_KEY = web.AppKey("environments", dict)  # lang -> jinja2.Environment, on first use
PENDING_KEY = web.AppKey("pending", response.Pending)  # home's fold of help and acks
GUIDE_LISTS_KEY = web.AppKey("guide_lists", GuideLists)  # guide-list pages kept made
STORE_READS_KEY = web.AppKey("store_reads", StoreReads)  # home's store reads, by version

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make Chromium send "Origin: null"
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATIC = "/ui/static/"
# The stylesheet and script are named by their content (?v=...), so a browser may keep them
# for good: a page load then waits for no second request, and a changed file is a new URL.
STATIC_CACHE = "public, max-age=31536000, immutable"


def _versions() -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        for path in sorted((HERE / "static").iterdir())
        if path.is_file()
    }


VERSIONS = _versions()


def asset(name: str) -> str:
    """The URL of a static file, with its content's version."""
    return f"{STATIC}{name}?v={VERSIONS[name]}"


def versioned(path: str, version: str | None) -> bool:
    """Whether `path` is a static file asked for by its current content's version (what may
    be kept for good); anything else, a missing file included, is not."""
    name = path.removeprefix(STATIC) if path.startswith(STATIC) else None
    return name is not None and version is not None and VERSIONS.get(name) == version


PageHandler = TypeVar("PageHandler", bound=Callable[..., Awaitable[web.StreamResponse]])


class Routes(web.RouteTableDef):
    """aiohttp's table of routes declared on their handlers (`@routes.get(path)`), typed so a
    decorated handler keeps its signature: pages call one another with an error to show."""

    def get(self, path: str, **kwargs: Any) -> Callable[[PageHandler], PageHandler]:
        return super().get(path, **kwargs)  # type: ignore[return-value]

    def post(self, path: str, **kwargs: Any) -> Callable[[PageHandler], PageHandler]:
        return super().post(path, **kwargs)  # type: ignore[return-value]


def node_of(request: web.Request) -> actions.RunningNode:
    node: actions.RunningNode = request.config_dict[NODE_KEY]  # type: ignore[assignment]
    return node


def session_of(request: web.Request) -> Session:
    session: Session = request["session"]
    return session


def _environment(lang: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
        auto_reload=False,  # compiled once per language: no stat of every template per page
        cache_size=-1,
    )
    env.install_gettext_translations(i18n.translations(lang), newstyle=True)  # type: ignore[attr-defined]
    formats = i18n.Formats(lang)
    env.filters["when"] = formats.when
    env.filters["number"] = formats.number
    env.filters["duration"] = formats.duration
    env.filters["peer"] = render.peer_text
    env.filters["markdown"] = render.markdown
    env.globals.update(lang=lang, rtl=formats.rtl, languages=i18n.NAMES, asset=asset)
    return env


def page(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    """Render `template` in the request's language, with what the layout needs."""
    session = request.get("session")
    flash = ""
    if session is not None:
        flash, session.flash = session.flash, ""
    context = {
        **context,
        "flash": flash,
        "csrf": session.csrf if session else "",
        "signed_in": session is not None,
        # Whether this session's role may use a route: the page shows no control it refuses.
        "can": lambda route, method="POST": (
            session is not None and roles.may(session.role, method, route)
        ),
        "me": actions.me(node_of(request)),
        "path": request.path,
    }
    html = _environments(request).get_template(template).render(context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def fragment(request: web.Request, template: str, context: dict[str, Any]) -> Markup:
    """A part of a page in the request's language, from `context` alone (nothing of the
    session): what a page may keep rendered and put into its template again."""
    html = _environments(request).get_template(template).render(context)
    return Markup(html)  # rendered by the autoescaping environment: safe as it is


def _environments(request: web.Request) -> jinja2.Environment:
    environments: dict[str, jinja2.Environment] = request.config_dict[ENVIRONMENTS_KEY]
    lang = request["lang"]
    if lang not in environments:  # built on first use: a node start parses no catalogue
        environments[lang] = _environment(lang)
    return environments[lang]


def then(request: web.Request, target: str, flash: str) -> web.StreamResponse:
    """After an action: to `target` (303, so a reload does not repeat it), saying `flash`."""
    session_of(request).flash = flash
    return web.HTTPSeeOther(target)


async def act(
    request: web.Request,
    action: Awaitable[object],
    target: str,
    flash: str,
    again: Callable[..., Awaitable[web.StreamResponse]] | None = None,
) -> web.StreamResponse:
    """A form's action: done, to `target` saying `flash` (see then); refused, the page
    `again` shown with the refusal as its error, or the error page (400) if there is none."""
    try:
        await action
    except CanopyError as exc:
        if again is None:
            return refused(request, 400, str(exc))
        return await again(request, error=str(exc))
    return then(request, target, flash)


async def found(
    request: web.Request, lookup: Awaitable[object], template: str, name: str
) -> web.StreamResponse:
    """The page of one thing looked up by the id in its path (as `name` in `template`), or
    the error page (404) when there is none to show."""
    try:
        row = await lookup
    except CanopyError as exc:
        return refused(request, 404, str(exc))
    return page(request, template, {name: row})


def refused(request: web.Request, status: int, message: str) -> web.Response:
    return page(request, "error.html", {"message": message}, status=status)
