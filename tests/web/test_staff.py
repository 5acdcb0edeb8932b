"""Staff on a community server, on a real `canopy run` node over plain HTTP (no page here
needs a browser): enrolment by link with a real TOTP code, sign-in with name + password +
code, the roles table enforced on crafted POSTs with a valid CSRF token, lockout after
repeated failures, removal ending a live session, nothing readable on disk, a content-free
action log, and `canopy ui user` errors as one line."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pyotp
import pytest
import pytest_asyncio

from node.demo import NodeProcess, scan_for, wait_until
from protocol import limits
from tests.web.conftest import Nodes

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]

PASSWORD = "correct horse battery staple"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(nodes: Nodes) -> AsyncIterator[NodeProcess]:
    node = await nodes.node("staffed", "Staffed Org")
    await node.start()
    yield node


class Staff:
    """One staff member's HTTP client (its own cookie jar) on the node's app."""

    def __init__(self, base: str, origin: str = "", headers: dict[str, str] | None = None) -> None:
        self.base = base  # http://127.0.0.1:PORT
        self.origin = origin or base  # what the browser sends (the proxy's public origin)
        # (a Secure cookie, set behind an https proxy, comes back over this plain http)
        jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[base])
        self.http = aiohttp.ClientSession(cookie_jar=jar, headers=headers)
        self.secret = ""

    async def get(self, path: str) -> tuple[int, str]:
        async with self.http.get(self.base + path, allow_redirects=False) as r:
            return r.status, await r.text()

    async def post(self, path: str, form: dict[str, str]) -> tuple[int, str]:
        headers = {"Origin": self.origin}
        async with self.http.post(
            self.base + path, data=form, headers=headers, allow_redirects=False
        ) as r:
            return r.status, await r.text()

    async def csrf(self) -> str:
        _, html = await self.get("/ui/")
        found = re.search(r'name="csrf" value="([^"]+)"', html)
        assert found, "no CSRF token on the home page: not signed in"
        return found.group(1)

    async def enrol(self, url: str) -> int:
        path = url.split("127.0.0.1", 1)[1].split("/", 1)[1]
        status, html = await self.get("/" + path)
        assert status == 200, html
        secret = re.search(r'<code id="totp-secret">([A-Z2-7]+)</code>', html)
        assert secret
        self.secret = secret.group(1)
        token = path.split("token=", 1)[1]
        form = {"token": token, "password": PASSWORD, "again": PASSWORD}
        status, _ = await self.post("/ui/enrol", {**form, "code": self.code()})
        return status

    def code(self, offset: int = 0) -> str:
        return pyotp.TOTP(self.secret).at(time.time() + offset)

    async def close(self) -> None:
        await self.http.close()


async def add_user(node: NodeProcess, name: str, role: str) -> str:
    _, out, _ = await node.cli("ui", "user", "add", name, "--role", role)
    return out.splitlines()[0]


def base_of(node: NodeProcess) -> str:
    import json

    return str(json.loads((node.data / "node.json").read_text())["api"]).rstrip("/")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def team(server: NodeProcess) -> AsyncIterator[dict[str, Staff]]:
    made: dict[str, Staff] = {}
    for name, role in (
        ("rhea-reader", "reader"),
        ("eddie-editor", "editor"),
        ("ada-admin", "admin"),
    ):
        member = Staff(base_of(server))
        assert await member.enrol(await add_user(server, name, role)) == 303
        made[role] = member
    yield made
    for member in made.values():
        await member.close()


async def test_enrolment_signs_in_and_its_link_works_once(server: NodeProcess) -> None:
    url = await add_user(server, "once-only", "reader")
    member = Staff(base_of(server))
    try:
        assert await member.enrol(url) == 303
        assert (await member.get("/ui/"))[0] == 200  # signed in by enrolling
        again = Staff(base_of(server))
        path = url.split("/ui/", 1)[1]
        assert (await again.get("/ui/" + path))[0] == 403
        await again.close()
        users = await server.json("ui", "user", "list")
        mine = [u for u in users if u["name"] == "once-only"]
        assert mine and mine[0]["enrolled"] and mine[0]["role"] == "reader"
        assert mine[0]["last_signin_ms"]
    finally:
        await member.close()


async def test_sign_in_needs_name_password_and_fresh_code(
    server: NodeProcess, team: dict[str, Staff]
) -> None:
    reader = team["reader"]
    fresh = Staff(base_of(server))
    try:
        wrong_password = {"name": "rhea-reader", "password": "x" * 12, "code": reader.code()}
        assert (await fresh.post("/ui/signin", wrong_password))[0] == 403
        wrong_code = {"name": "rhea-reader", "password": PASSWORD, "code": "000000"}
        if wrong_code["code"] != reader.code():
            assert (await fresh.post("/ui/signin", wrong_code))[0] == 403
        # The code that enrolled (this time step) cannot be replayed: the next one works.
        good = {"name": "rhea-reader", "password": PASSWORD, "code": reader.code(30)}
        assert (await fresh.post("/ui/signin", good))[0] == 303
        assert (await fresh.get("/ui/"))[0] == 200
        assert (await fresh.post("/ui/signin", good))[0] == 403  # same code, replayed
    finally:
        await fresh.close()


async def test_lockout_after_repeated_failures(nodes: Nodes) -> None:
    # A node of its own: failures are also counted per address, and every client here is
    # 127.0.0.1, so the other tests' failures would count too.
    server = await nodes.node("lockable", "Lockable Org")
    await server.start()
    url = await add_user(server, "locked-out", "reader")
    member = Staff(base_of(server))
    try:
        assert await member.enrol(url) == 303
        attacker = Staff(base_of(server))
        wrong = {"name": "locked-out", "password": "guess " * 3, "code": "123456"}
        for _ in range(limits.UI_SIGNIN_FAILURES):
            assert (await attacker.post("/ui/signin", wrong))[0] == 403
        # Locked now: even the right password and a fresh code are not checked.
        right = {"name": "locked-out", "password": PASSWORD, "code": member.code(30)}
        status, html = await attacker.post("/ui/signin", right)
        assert status == 429 and "Too many failed sign-ins" in html
        await attacker.close()
    finally:
        await member.close()
        await server.stop()


GUIDE = {"title": "Staff guide", "lang": "en", "topics": "", "region": "", "to": "peers"}


async def test_reader_cannot_publish_even_with_a_crafted_post(team: dict[str, Staff]) -> None:
    reader = team["reader"]
    form = {**GUIDE, "text": "# Hello\n\nfrom a reader", "csrf": await reader.csrf()}
    status, html = await reader.post("/ui/guides", form)
    assert status == 403 and "Your role does not allow this." in html
    assert (await reader.get("/ui/guides"))[0] == 200  # reading is allowed


async def test_editor_publishes_but_cannot_distrust_or_wipe(team: dict[str, Staff]) -> None:
    editor = team["editor"]
    csrf = await editor.csrf()
    form = {**GUIDE, "text": "# Editor\n\nby the editor", "csrf": csrf}
    assert (await editor.post("/ui/guides", form))[0] == 303
    assert (await editor.post("/ui/peers/abcd/distrust", {"csrf": csrf}))[0] == 403
    assert (await editor.post("/ui/wipe", {"csrf": csrf, "confirm": "x"}))[0] == 403
    assert (await editor.post("/ui/peers/invite", {"csrf": csrf, "hours": "1"}))[0] == 403


async def test_admin_may_manage_peers(team: dict[str, Staff]) -> None:
    admin = team["admin"]
    csrf = await admin.csrf()
    assert (await admin.post("/ui/peers/invite", {"csrf": csrf, "hours": "1"}))[0] in (200, 303)
    status, html = await admin.post("/ui/peers/abcd/distrust", {"csrf": csrf})
    assert "Your role does not allow this." not in html
    status, html = await admin.get("/ui/wipe")
    assert status == 200
    status, html = await admin.get("/ui/staff")
    assert status == 200 and "eddie-editor" in html


async def test_removing_a_user_ends_its_live_session_at_once(server: NodeProcess) -> None:
    member = Staff(base_of(server))
    try:
        assert await member.enrol(await add_user(server, "soon-gone", "editor")) == 303
        assert (await member.get("/ui/"))[0] == 200
        _, out, _ = await server.cli("ui", "user", "remove", "soon-gone")
        assert "1 session(s) ended" in out
        assert (await member.get("/ui/"))[0] == 401
        names = [u["name"] for u in await server.json("ui", "user", "list")]
        assert "soon-gone" not in names
    finally:
        await member.close()


async def test_users_table_holds_no_readable_name_or_secret(
    server: NodeProcess, team: dict[str, Staff]
) -> None:
    needles = [b"eddie-editor", b"rhea-reader", PASSWORD.encode()]
    needles += [m.secret.encode() for m in team.values()]
    scanned, hits = scan_for(server.data, needles)
    assert scanned > 0 and hits == []


async def test_action_log_holds_no_content(server: NodeProcess, team: dict[str, Staff]) -> None:
    editor = team["editor"]
    word = "zanzibarquokka"
    form = {
        **GUIDE,
        "title": f"About {word}",
        "text": f"# {word}\n\n{word}",
        "csrf": await editor.csrf(),
    }
    assert (await editor.post("/ui/guides", form))[0] == 303

    async def logged() -> bool:
        return "staff eddie-editor: POST /ui/guides ok" in server.log_path.read_text()

    await wait_until("the action in the node log", logged)
    text = server.log_path.read_text()
    assert word not in text and PASSWORD not in text
    assert "staff rhea-reader: POST /ui/guides refused 403" in text


async def test_ui_user_errors_are_one_line(server: NodeProcess, nodes: Nodes) -> None:
    for args in (
        ("ui", "user", "add", "bad name!", "--role", "reader"),
        ("ui", "user", "add", "eddie-editor", "--role", "reader"),
        ("ui", "user", "remove", "nobody-here"),
        ("ui", "user", "add", "someone", "--role", "boss"),
    ):
        code, out, err = await server.cli(*args, check=False)
        assert code != 0 and out == "", args
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (args, err)


async def test_ui_user_works_with_the_node_stopped(nodes: Nodes) -> None:
    node = await nodes.node("stopped", "Stopped Org")
    _, out, _ = await node.cli("ui", "user", "add", "offline-ona", "--role", "editor")
    assert out.startswith("/ui/enrol?token=")
    users: list[dict[str, Any]] = await node.json("ui", "user", "list")
    assert [(u["name"], u["role"], u["enrolled"]) for u in users] == [
        ("offline-ona", "editor", False)
    ]
    await node.cli("ui", "user", "remove", "offline-ona")
    assert await node.json("ui", "user", "list") == []
