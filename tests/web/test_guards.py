"""What the web app refuses, in a real Chromium and over plain HTTP on a real node: a POST
without the session's CSRF token, a foreign Host or Origin (DNS rebinding, another page),
a sign-in link used twice, no session at all; and the right-to-left layout in Arabic."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from node.demo import NodeProcess
from tests.web.conftest import Nodes, open_app, sign_in_url

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def solo(nodes: Nodes) -> AsyncIterator[NodeProcess]:
    node = await nodes.node("solo", "Guarded Org")
    await node.start()
    yield node


def http(
    url: str, *, method: str = "GET", headers: dict[str, str] | None = None, data: bytes = b""
) -> tuple[int, str]:
    request = urllib.request.Request(
        url, method=method, headers=headers or {}, data=data if method == "POST" else None
    )

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_post_without_csrf_token_is_refused(browser: Any, solo: NodeProcess) -> None:
    app = await open_app(browser, solo)
    await app.goto("/alerts")
    csrf = await app.page.input_value("input[name=csrf]")
    form = {"text": "should not be sent", "to": "peers", "urgency": "normal", "hours": "1"}
    origin = {"Origin": app.base.removesuffix("/ui")}
    # The same request as the form, with the session cookie, but without the token ...
    refused = await app.page.request.post(
        app.base + "/alerts", form=form, headers=origin, max_redirects=0
    )
    assert refused.status == 403
    wrong = await app.page.request.post(
        app.base + "/alerts", form={**form, "csrf": "x" * len(csrf)}, headers=origin,
        max_redirects=0,
    )  # fmt: skip
    assert wrong.status == 403
    assert (await solo.api("/v1/alerts"))["alerts"] == []  # nothing was sent
    # ... and with it, accepted: the refusal above is the token's doing.
    accepted = await app.page.request.post(
        app.base + "/alerts", form={**form, "csrf": csrf}, headers=origin, max_redirects=0
    )
    assert accepted.status == 303
    assert app.dialogs == []
    await app.page.context.close()


async def test_foreign_host_and_origin_are_refused(solo: NodeProcess) -> None:
    url = await sign_in_url(solo)
    base = url.split("/ui/", 1)[0]
    port = base.rsplit(":", 1)[1]
    # DNS rebinding: a name of the attacker's that resolves to 127.0.0.1.
    status, _ = http(url, headers={"Host": f"evil.example:{port}"})
    assert status == 421
    # The link was not spent by the refused request: it still signs in.
    status, _ = http(url)
    assert status == 303
    # Another page (another origin) posting to the app.
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{int(port) + 1}"):
        status, _ = http(
            base + "/ui/signout", method="POST", headers={"Origin": origin}, data=b"csrf=x"
        )
        assert status == 403, origin


async def test_used_sign_in_link_is_refused(browser: Any, solo: NodeProcess) -> None:
    url = await sign_in_url(solo)
    assert http(url)[0] == 303
    status, body = http(url)
    assert status == 403 and "used already or has expired" in body
    context = await browser.new_context()
    page = await context.new_page()
    response = await page.goto(url)
    assert response is not None and response.status == 403
    assert await context.cookies() == []  # no session was opened
    home = await page.goto(url.split("/signin", 1)[0] + "/")
    assert home is not None and home.status == 401
    await context.close()


async def test_session_cookie_is_httponly_strict_and_path_bound(
    browser: Any, solo: NodeProcess
) -> None:
    app = await open_app(browser, solo)
    (cookie,) = await app.page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui/"
    assert await app.page.evaluate("document.cookie") == ""  # no script can read it
    headers = (await app.goto("/")).headers
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    await app.page.click("text=Sign out")
    assert (await app.goto("/")).status == 401  # the session ended at once
    await app.page.context.close()


async def test_no_session_no_page(solo: NodeProcess) -> None:
    base = (await sign_in_url(solo)).split("/ui/", 1)[0]
    for path in ("/ui/", "/ui/guides", "/ui/knowwho", "/ui/peers", "/ui/status", "/ui/alerts/feed"):
        status, body = http(base + path)
        assert status == 401 and "canopy ui" in body, path
    status, _ = http(base + "/ui/wipe", method="POST", data=b"confirm=WIPE")
    assert status == 401
    assert (await solo.api("/v1/status"))["name"] == "Guarded Org"  # not wiped: still up


async def test_arabic_is_right_to_left_and_the_switcher_changes_language(
    browser: Any, solo: NodeProcess
) -> None:
    app = await open_app(browser, solo, locale="ar")
    html = app.page.locator("html")
    assert await html.get_attribute("dir") == "rtl" and await html.get_attribute("lang") == "ar"
    assert await app.page.inner_text("nav") != ""
    assert "الأدلة" in await app.page.inner_text("nav")
    # Logical properties: the navigation starts on the right.
    box = await app.page.locator(".brand").bounding_box()
    width = await app.page.evaluate("window.innerWidth")
    assert box is not None and box["x"] > width / 2
    await app.page.select_option("#lang-choice", "fr")
    await app.page.click("text=تغيير")  # "Switch", in Arabic
    assert await html.get_attribute("dir") == "ltr"
    assert "Accueil" in await app.page.inner_text("nav")
    await app.page.context.close()


async def test_pages_are_never_cached_and_assets_are_cached_under_their_content_name(
    browser: Any, solo: NodeProcess
) -> None:
    """A page (it may show contacts) is never kept by the browser; its stylesheet and script
    are, for good, under URLs that name their content, so a page load waits for no second
    request and a changed file is fetched at once under its new name."""
    import hashlib
    import re

    from node.web.pages import HERE

    app = await open_app(browser, solo)
    response = await app.goto("/")
    assert response.headers["cache-control"] == "no-store"
    html = await response.text()
    urls = re.findall(r'(?:href|src)="(/ui/static/[^"]+)"', html)
    assert {u.split("?")[0] for u in urls} == {"/ui/static/app.css", "/ui/static/app.js"}
    origin = app.base.removesuffix("/ui")
    for url in urls:
        name, version = url.removeprefix("/ui/static/").split("?v=")
        asset = await app.page.request.get(origin + url)
        body = await asset.body()
        assert body == (HERE / "static" / name).read_bytes()
        assert version == hashlib.sha256(body).hexdigest()[:16]
        assert "immutable" in asset.headers["cache-control"]
        assert asset.headers["content-security-policy"]  # the same headers as every response
    missing = await app.page.request.get(origin + "/ui/static/nothing.css")
    assert missing.status == 404 and missing.headers["cache-control"] == "no-store"
    for stale in ("/ui/static/app.css", "/ui/static/app.css?v=0000000000000000"):
        assert (await app.page.request.get(origin + stale)).headers["cache-control"] == "no-store"
    await app.page.context.close()
