"""Who gets in, and how: addresses as people type them, client addresses behind a proxy,
fair pending-handshake slots, pre-authentication message bounds and half-open HTTP
requests, against real `canopy run` processes over real loopback sockets."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import resource
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import nacl.utils
import pytest
from aiohttp import WSMsgType

from node.admission import AcceptErrorFilter, PendingSlots, client_address, parse_proxies
from node.config import load_config
from node.demo import NodeProcess, wait_until
from protocol import limits
from protocol.errors import ConfigError
from protocol.handshake import ClientHandshake, HandshakeState
from protocol.identity import Identity
from protocol.invite import Invite
from protocol.record import Kind
from tests.conftest import Net
from tests.test_hostile_content import sealed
from tests.test_network_adversarial import RawPeer

pytestmark = pytest.mark.timeout(180)


async def _connected(node: NodeProcess, count: int) -> bool:
    peers = (await node.api("/v1/peers"))["peers"]
    return sum(p["state"] == "connected" for p in peers) == count


async def _titles(node: NodeProcess) -> list[str]:
    return sorted(g["title"] for g in (await node.json("guides"))["guides"])


async def test_address_without_path_works_end_to_end(net: Net, tmp_path: Path) -> None:
    a = await net.node("A", "Alpha Legal")
    b = await net.node("B", "Beta Rights")
    await a.start()
    await b.start()
    bare = f"ws://127.0.0.1:{a.port}"  # what a newcomer types
    _, code, _ = await a.cli("invite", "--address", bare)
    _, out, _ = await b.cli("accept", code.strip())
    assert f"{bare}/canopy" in out  # the invite carries the dialable address
    await wait_until("connected", lambda: _connected(b, 1))
    await wait_until("connected", lambda: _connected(a, 1))
    guide = tmp_path / "g.md"
    guide.write_text("# Bare address\n\nIt works as typed.\n")
    await a.cli("publish", "guide", str(guide), "--to", "peers")
    await wait_until("delivery", lambda: _is(_titles(b), ["Bare address"]))
    # The peer endpoint also answers at "/", for addresses stored before the fix.
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{bare}/")
        await ws.close()
    # `trust --address` and `[node] advertise` normalise the same way.
    c = await net.node("C", "Gamma Shelter", CANOPY_NODE_ADVERTISE="wss://c.example.org")
    await c.cli("trust", a.node_id, "--address", bare)
    peers = (await c.json("peers"))["peers"]
    assert peers[0]["addresses"] == [f"{bare}/canopy"]
    _, code, _ = await c.cli("invite")
    assert Invite.from_code(code.strip()).addresses == ("wss://c.example.org/canopy",)


async def _is(value: object, expected: object) -> bool:
    return await value == expected  # type: ignore[misc, no-any-return]


# -- pending handshakes behind a proxy (issue 11, item 4) --------------------------------


async def _invite(node: NodeProcess) -> Invite:
    _, code, _ = await node.cli("invite", "--address", node.address)
    return Invite.from_code(code.strip())


async def _handshake(ws: aiohttp.ClientWebSocketResponse, invite: Invite) -> bool:
    """SHS1 with the invite's one-time key, as a newcomer: True if the node completed it."""
    me = Identity.generate(nacl.utils.random)
    hs = ClientHandshake(invite.capability(), me.secret_key, invite.node_id.raw, os.urandom(32))
    await ws.send_bytes(hs.start())
    while hs.state is not HandshakeState.DONE:
        msg = await ws.receive(timeout=5)
        if msg.type != WSMsgType.BINARY:
            return False
        reply = hs.receive_data(msg.data)
        if reply:
            await ws.send_bytes(reply)
    return True


async def _still_pending(ws: aiohttp.ClientWebSocketResponse) -> bool:
    """True while the node still waits for this connection's handshake."""
    try:
        msg = await ws.receive(timeout=1.5)
    except TimeoutError:
        return True
    return msg.type == WSMsgType.BINARY


async def _rejected(node: NodeProcess, reason: str) -> int:
    return int((await node.api("/v1/status"))["rejected"].get(reason, 0))


@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[NodeProcess]:
    """A node behind a proxy on 127.0.0.1: every connection arrives from there."""
    node = NodeProcess(tmp_path, "T", "Target", env={"CANOPY_NODE_TRUSTED_PROXIES": "127.0.0.1"})
    await node.init()
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def test_idle_websockets_behind_a_proxy_do_not_lock_out_an_honest_peer(
    proxied: NodeProcess,
) -> None:
    invite = await _invite(proxied)
    idle: list[aiohttp.ClientWebSocketResponse] = []
    async with aiohttp.ClientSession() as http:
        for i in range(2 * limits.MAX_PENDING_PER_ADDRESS):  # more than one address's share
            forwarded = {"X-Forwarded-For": f"10.0.0.{i + 1}"}
            idle.append(await http.ws_connect(proxied.address, headers=forwarded))
        honest = await http.ws_connect(proxied.address, headers={"X-Forwarded-For": "10.9.9.9"})
        assert await _handshake(honest, invite)
        # The idle ones were each counted against their own client: none was displaced.
        assert all(await asyncio.gather(*(_still_pending(ws) for ws in idle)))
        for ws in [*idle, honest]:
            await ws.close()


async def test_single_source_cannot_hold_every_pending_slot(proxied: NodeProcess) -> None:
    invite = await _invite(proxied)
    idle: list[aiohttp.ClientWebSocketResponse] = []
    async with aiohttp.ClientSession() as http:
        # One client behind the proxy opens as many idle handshakes as the node has slots.
        for _ in range(limits.MAX_PENDING_HANDSHAKES):
            forwarded = {"X-Forwarded-For": "10.1.1.1"}
            idle.append(await http.ws_connect(proxied.address, headers=forwarded))
        # A newcomer from the same client gets in too (the idle ones, which read nothing,
        # do not linger in a closing handshake), and the client held only its share.
        same = await http.ws_connect(proxied.address, headers={"X-Forwarded-For": "10.1.1.1"})
        assert await _handshake(same, invite)
        pending = sum(await asyncio.gather(*(_still_pending(ws) for ws in idle)))
        assert pending <= limits.MAX_PENDING_PER_ADDRESS
        assert await _rejected(proxied, "handshake_evicted") >= len(idle) - pending
        for ws in [*idle, same]:
            await ws.close()
    # X-Forwarded-For from a peer that is not a trusted proxy is ignored: connections from
    # 127.0.0.2 naming a different client each all count against 127.0.0.2.
    spoofed: list[aiohttp.ClientWebSocketResponse] = []
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        for i in range(2 * limits.MAX_PENDING_PER_ADDRESS):
            forwarded = {"X-Forwarded-For": f"10.2.0.{i + 1}"}
            spoofed.append(await http.ws_connect(proxied.address, headers=forwarded))
        pending = sum(await asyncio.gather(*(_still_pending(ws) for ws in spoofed)))
        assert pending <= limits.MAX_PENDING_PER_ADDRESS
        for ws in spoofed:
            await ws.close()


async def test_oversize_message_before_the_handshake_is_refused(proxied: NodeProcess) -> None:
    # A frame announcing 4 MiB: the node hangs up after a few KiB, long before the
    # handshake timeout, instead of buffering the message.
    reader, writer = await asyncio.open_connection("127.0.0.1", proxied.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET /canopy HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101")
    size = 4 * 1024 * 1024 - 1
    writer.write(b"\x82\xff" + struct.pack(">Q", size) + b"\x00\x00\x00\x00")  # masked, binary
    started = time.monotonic()
    with contextlib.suppress(ConnectionError):
        for _ in range(64):
            writer.write(bytes(16 * 1024))
            await writer.drain()
    with contextlib.suppress(ConnectionError):  # reset or EOF: the node hung up
        await asyncio.wait_for(reader.read(), 5)
    assert time.monotonic() - started < 5  # well before the 10 s handshake timeout
    writer.close()
    # One byte more than msg3, the largest handshake message: refused at once.
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(proxied.address)
        await ws.send_bytes(os.urandom(limits.MAX_HANDSHAKE_MESSAGE_BYTES + 1))
        msg = await ws.receive(timeout=5)
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
        await ws.close()
    assert await _rejected(proxied, "preauth_oversize") == 2
    # After the handshake the normal bound applies: a 200 kB record (a real sealed guide:
    # junk of that size is refused by the sealed-layout check) arrives.
    invite = await _invite(proxied)
    me = Identity.generate(nacl.utils.random)
    peer = await RawPeer.open(proxied.address)
    assert await peer.handshake(invite.capability(), me, invite.node_id.raw)
    large = sealed(me, invite.network_key, Kind.GUIDE, {"title": "Large", "text": "x" * 190_000})
    assert len(large.to_bytes()) > 190_000
    await peer.send(peer.session.records([large.to_bytes()]))

    async def stored() -> bool:
        return sum((await proxied.api("/v1/status"))["records"].values()) >= 1

    await wait_until("large record stored", stored)
    await peer.close()


# -- half-open HTTP requests (issue 11, item 5) -------------------------------------------

NOFILE = 256  # the node runs with this many file descriptors, so a flood of 260+ is cheap


def _low_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


async def test_half_open_requests_capped_and_honest_peer_and_api_served(
    net: Net, tmp_path: Path
) -> None:
    t = await net.node("T", "Target")
    b = await net.node("B", "Beta Rights")
    t.preexec = _low_nofile
    await t.start()
    await b.start()
    _, code, _ = await t.cli("invite", "--address", t.address)
    flood: list[asyncio.StreamWriter] = []
    readers: list[asyncio.StreamReader] = []

    async def half_open(port: int) -> None:
        # From 127.0.0.2, so that the honest peer (127.0.0.1) is another address.
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=("127.0.0.2", 0)
        )
        flood.append(writer)
        readers.append(reader)
        with contextlib.suppress(OSError):  # over the cap: closed at once
            writer.write(b"GET /canopy HTTP/1.1\r\nHost: x\r\n")  # and never finish
            await writer.drain()

    try:
        await asyncio.gather(*(half_open(t.port) for _ in range(NOFILE + 44)))
        log_before = t.log_path.stat().st_size
        # The operator's local API still answers, and a new honest peer gets in and syncs.
        assert (await t.api("/v1/status"))["id"] == t.node_id
        await b.cli("accept", code.strip())
        await wait_until("honest peer connected", lambda: _connected(t, 1))
        guide = tmp_path / "g.md"
        guide.write_text("# Through the flood\n\nStill delivered.\n")
        await b.cli("publish", "guide", str(guide), "--to", "peers")
        await wait_until("delivery", lambda: _is(_titles(t), ["Through the flood"]))
        capped = await _rejected(t, "connection_cap")
        assert capped >= NOFILE + 44 - limits.MAX_TCP_PER_ADDRESS

        # The ones let in are closed once the header-read deadline passes.
        async def all_closed() -> bool:
            return all(r.at_eof() or r.exception() is not None for r in readers)

        for reader in readers:
            asyncio.get_running_loop().create_task(_drain(reader))
        await wait_until("header timeout", all_closed, timeout=limits.HTTP_HEADER_TIMEOUT_S + 15)
        assert await _rejected(t, "header_timeout") >= 1
        grown = t.log_path.stat().st_size - log_before
        print(f"\nHALF-OPEN {NOFILE + 44} opened; capped={capped}; log grew {grown} bytes")
        assert grown < 16 * 1024
    finally:
        for writer in flood:
            writer.close()


async def _drain(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(ConnectionError):
        await reader.read()


def test_accept_errors_are_logged_once_per_interval() -> None:
    clock = [100.0]
    accept_filter = AcceptErrorFilter(interval=10.0, clock=lambda: clock[0])
    logger = logging.getLogger("test.asyncio.accept")
    logger.propagate = False
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    logger.addHandler(Collect())
    logger.addFilter(accept_filter)
    error = OSError(24, "Too many open files")
    for _ in range(1000):  # what asyncio does when accept() fails with EMFILE, every time
        logger.error(
            "socket.accept() out of system resource\nsocket: <socket>",
            exc_info=(OSError, error, None),
        )
        clock[0] += 0.005
    clock[0] += 10.0
    logger.error("socket.accept() out of system resource\nsocket: <socket>")
    logger.error("Task exception was never retrieved")  # other asyncio errors pass as they are
    assert len(lines) == 3  # the first, the one after the interval, and the other error
    assert "(999 more in the last interval not logged)" in lines[1]
    assert "Traceback" not in "".join(lines)
    assert lines[-1] == "Task exception was never retrieved"


def test_forwarded_client_is_the_rightmost_untrusted_entry() -> None:
    proxies = parse_proxies(["127.0.0.1", "10.0.0.0/8", "::1"])
    # Only the proxy's own entry (the right-most) counts; what the client wrote is ignored.
    assert client_address("127.0.0.1", ["6.6.6.6, 203.0.113.7"], proxies) == "203.0.113.7"
    # A chain of trusted proxies is skipped; several headers are one list.
    assert client_address("::1", ["198.51.100.2", "10.1.2.3, 10.0.0.9"], proxies) == (
        "198.51.100.2"
    )
    assert client_address("::ffff:127.0.0.1", ["203.0.113.7"], proxies) == "203.0.113.7"
    # From anyone else, or with no proxies configured, the header is never read.
    assert client_address("192.0.2.1", ["203.0.113.7"], proxies) == "192.0.2.1"
    assert client_address("127.0.0.1", ["203.0.113.7"], ()) == "127.0.0.1"
    # Nothing usable: the proxy itself is the source.
    assert client_address("127.0.0.1", [], proxies) == "127.0.0.1"
    assert client_address("127.0.0.1", ["10.0.0.1"], proxies) == "127.0.0.1"
    assert client_address("127.0.0.1", ["203.0.113.7, junk"], proxies) == "127.0.0.1"


def test_bad_trusted_proxy_is_one_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[node]\nlisten = "127.0.0.1:7420"\ntrusted_proxies = ["nginx"]\n')
    with pytest.raises(ConfigError, match=r"c\.toml:3: node\.trusted_proxies: 'nginx' is not"):
        load_config(path, {})
    path.write_text('[node]\ntrusted_proxies = ["127.0.0.1", "fd00::/8"]\n')
    assert load_config(path, {}).trusted_proxies == ("127.0.0.1", "fd00::/8")


def test_pending_slots_make_room_from_the_largest_holder() -> None:
    slots = PendingSlots(total=4, per_source=2)
    a1, _ = slots.admit("a", 0.0)
    a2, _ = slots.admit("a", 1.0)
    b1, _ = slots.admit("b", 2.0)
    # "a" is at its share: its own oldest makes room.
    a3, victim = slots.admit("a", 3.0)
    assert victim is a1 and a1.evicted and len(slots) == 3
    slots.admit("c", 4.0)
    # Every slot taken: the oldest of the source holding the most ("a") goes, not "b"'s.
    _, victim = slots.admit("d", 5.0)
    assert victim is a2 and not b1.evicted and len(slots) == 4
    slots.release(a3)
    slots.release(a3)  # twice is harmless
    assert slots.by_source == {"b": 1, "c": 1, "d": 1}
