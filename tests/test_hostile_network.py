"""Hostile peers against a real `canopy run` process: each case prints one line
(attempts, accepted, crashes) and fails if any invalid input is accepted or the node dies.

Extends tests/test_network_adversarial.py (wrong network key, untrusted key, forged,
expired, replayed and re-signed records, corrupted and truncated frames live there).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import nacl.utils
import pytest
from aiohttp import WSMsgType, web

from node.demo import NodeProcess, wait_until
from protocol import limits
from protocol.boxstream import BoxStreamDecoder, BoxStreamEncoder
from protocol.encoding import pack
from protocol.handshake import ClientHandshake, HandshakeState, ServerHandshake
from protocol.identity import Identity
from protocol.invite import Invite
from protocol.record import Kind, Record, Scope
from protocol.session import SyncSession
from tests.test_network_adversarial import RawPeer, guide

pytestmark = pytest.mark.timeout(120)
NO_BAN = {"CANOPY_SYNC_MIN_SCORE": "-1000000"}  # to count every attempt on one identity


def report(name: str, attempts: int, accepted: int, node: NodeProcess) -> None:
    crashes = 0 if node.proc is not None and node.proc.returncode is None else 1
    print(f"\nADVERSARIAL {name}: attempts={attempts} accepted={accepted} crashes={crashes}")
    assert crashes == 0


async def start_target(tmp_path: Path, env: dict[str, str] | None = None) -> NodeProcess:
    node = NodeProcess(tmp_path, "T", "Target", env=env)
    await node.init()
    await node.start()
    return node


async def invites(node: NodeProcess, n: int) -> list[Invite]:
    outs = await asyncio.gather(*(node.cli("invite", "--address", node.address) for _ in range(n)))
    return [Invite.from_code(out.strip()) for _, out, _ in outs]


async def status(node: NodeProcess) -> dict[str, object]:
    return dict(await node.json("status"))


async def stored(node: NodeProcess) -> int:
    return sum((await node.json("status"))["records"].values())


async def rejected(node: NodeProcess, reason: str) -> int:
    return int((await node.json("status"))["rejected"].get(reason, 0))


async def scores(node: NodeProcess) -> dict[str, object]:
    return {r["id"]: r for r in (await node.json("peers"))["peers"]}


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[NodeProcess]:
    node = await start_target(tmp_path, NO_BAN)
    try:
        yield node
    finally:
        await node.stop()


async def test_replayed_handshake_messages_refused(target: NodeProcess) -> None:
    (invite,) = await invites(target, 1)
    me = Identity.generate(nacl.utils.random)
    # A real, successful handshake, recorded.
    hs = ClientHandshake(invite.capability(), me.secret_key, invite.node_id.raw, os.urandom(32))
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(target.address)
        msg1 = hs.start()
        await ws.send_bytes(msg1)
        msg3 = hs.receive_data((await ws.receive(timeout=5)).data)
        await ws.send_bytes(msg3)
        hs.receive_data((await ws.receive(timeout=5)).data)
        assert hs.state is HandshakeState.DONE
        await ws.close()
        attempts = accepted = 0
        for _ in range(5):  # the same msg1 and msg3 again, with both keys the node accepts
            for key_msgs in ((msg1, msg3),):
                ws = await http.ws_connect(target.address)
                attempts += 1
                await ws.send_bytes(key_msgs[0])
                reply = await ws.receive(timeout=5)
                if reply.type == WSMsgType.BINARY:
                    await ws.send_bytes(key_msgs[1])
                    final = await ws.receive(timeout=5)
                    accepted += final.type == WSMsgType.BINARY
                await ws.close()
    await wait_until("refusals", lambda: _at_least(rejected(target, "handshake_refused"), 5))
    report("replayed-handshake", attempts, accepted, target)
    assert accepted == 0


async def test_low_order_x25519_points_refused_before_reply(target: NodeProcess) -> None:
    (invite,) = await invites(target, 1)
    points = [
        "00" * 32,
        "01" + "00" * 31,
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ec" + "ff" * 30 + "7f",
        "ed" + "ff" * 30 + "7f",
        "ee" + "ff" * 30 + "7f",
        "00" * 31 + "80",
    ]
    accepted = 0
    async with aiohttp.ClientSession() as http:
        for point_hex in points:
            point = bytes.fromhex(point_hex)
            for key in (invite.network_key, invite.capability()):
                msg1 = hmac.new(key, point, hashlib.sha512).digest()[:32] + point
                ws = await http.ws_connect(target.address)
                await ws.send_bytes(msg1)
                reply = await ws.receive(timeout=5)
                accepted += reply.type == WSMsgType.BINARY
                await ws.close()
    report("low-order-points", 2 * len(points), accepted, target)
    assert accepted == 0


def _bombs() -> dict[str, bytes]:
    """Hostile msgpack, each a record's bytes (and a whole message body, below)."""
    return {
        "array32-length-bomb": b"\xdd\xff\xff\xff\xff",
        "bin32-length-bomb": b"\xc6\xff\xff\xff\xff" + b"x" * 16,
        "map32-length-bomb": b"\xdf\xff\xff\xff\xff",
        "depth-bomb": b"\x91" * 100_000 + b"\xc0",
        "ext-type": b"\xd4\x01\x00",
        "timestamp-ext": b"\xd6\xff\x00\x00\x00\x01",
        "duplicate-keys": b"\x82\xa1a\x01\xa1a\x02",
        "nan": b"\xcb" + struct.pack(">d", float("nan")),
        "float32": b"\xca\x7f\xc0\x00\x00",
        "non-canonical-int": b"\xcd\x00\x01",
    }


async def test_msgpack_bombs_ext_types_duplicate_keys_and_nan_rejected(
    target: NodeProcess,
) -> None:
    (invite,) = await invites(target, 1)
    me = Identity.generate(nacl.utils.random)
    peer = await RawPeer.open(target.address)
    assert await peer.handshake(invite.capability(), me, invite.node_id.raw)
    bombs = _bombs()
    # As records inside a well-formed Records message: each costs score, not the link.
    for bomb in bombs.values():
        await peer.send(peer.session.records([bomb]))
    await wait_until(
        "record bombs counted",
        lambda: _at_least(rejected(target, "record_DecodeError"), len(bombs)),
    )
    await peer.close()
    # As whole message bodies: each ends its connection.
    closed = 0
    for bomb in bombs.values():
        conn = await RawPeer.open(target.address)
        assert await conn.handshake(invite.network_key, me, invite.node_id.raw)
        await conn.send(struct.pack(">I", len(bomb)) + bomb)
        closed += await conn.closed_by_server()
        await conn.close()
    attempts = 2 * len(bombs)
    report("msgpack-bombs", attempts, await stored(target), target)
    assert closed == len(bombs)
    assert await stored(target) == 0


def _sized(identity: Identity, size: int) -> bytes:
    now = int(time.time() * 1000)

    def make(payload: bytes) -> Record:
        return Record(
            Kind.GUIDE, identity.node_id, now, now + 3_600_000, Scope.NETWORK, payload, bytes(64)
        )

    overhead = len(make(b"\x00" * 70_000).to_bytes()) - 70_000
    unsigned = make(b"\x00" * (size - overhead))
    signature = identity.sign(unsigned.signed_bytes())
    data = pack(
        [1, "guide", identity.node_id.raw, now, now + 3_600_000, 1, unsigned.payload, signature]
    )
    assert len(data) == size
    return data


async def test_oversized_record_exactly_at_limit_accepted_one_over_rejected(
    target: NodeProcess,
) -> None:
    (invite,) = await invites(target, 1)
    me = Identity.generate(nacl.utils.random)
    peer = await RawPeer.open(target.address)
    assert await peer.handshake(invite.capability(), me, invite.node_id.raw)
    at_limit = _sized(me, limits.MAX_RECORD_BYTES)
    over = _sized(me, limits.MAX_RECORD_BYTES + 1)
    await peer.send(peer.session.records([at_limit]))
    # At the limit, the record passes the size check and the link stays up; a sealed
    # payload never gets this large (its buckets are powers of two), so the guide's
    # zeros are then refused by the sealed-layout check, typed and counted.
    await wait_until(
        "record at the limit checked", lambda: _at_least(rejected(target, "record_DecodeError"), 1)
    )
    # One over does not even fit a Records message: the link is cut.
    body = pack([5, [over]])
    await peer.send(struct.pack(">I", len(body)) + body)
    assert await peer.closed_by_server()
    await peer.close()
    report("oversized-record", 1, await stored(target), target)
    assert await stored(target) == 0


async def test_junk_relayed_under_honest_id_penalises_relay_never_author(
    target: NodeProcess,
) -> None:
    honest_invite, relay_invite = await invites(target, 2)
    honest = Identity.generate(nacl.utils.random)
    relay_id = Identity.generate(nacl.utils.random)
    h = await RawPeer.open(target.address)
    assert await h.handshake(honest_invite.capability(), honest, honest_invite.node_id.raw)
    relay = await RawPeer.open(target.address)
    assert await relay.handshake(relay_invite.capability(), relay_id, relay_invite.node_id.raw)
    network_key = honest_invite.network_key
    junk = []
    for _ in range(5):
        data = bytearray(guide(honest, network_key).to_bytes())
        data[-3] ^= 0x40  # the signature no longer verifies: "by honest", says the junk
        junk.append(bytes(data))
    await relay.send(relay.session.records(junk))
    # The same bad bytes again: refused by id from the negative cache, not re-verified.
    await relay.send(relay.session.records(junk))
    await wait_until(
        "known-bad counted", lambda: _at_least(rejected(target, "record_known_bad"), 5)
    )
    rows = await scores(target)
    assert rows[str(honest.node_id)]["score"] == 100
    assert int(rows[str(relay_id.node_id)]["score"]) < 100  # type: ignore[call-overload]
    counts = (await status(target))["rejected"]
    assert counts["record_VerificationError"] == 10  # type: ignore[index]
    assert counts["record_known_bad"] == 5  # type: ignore[index]
    await h.send(h.session.records([guide(honest, network_key).to_bytes()]))
    await wait_until("honest author still heard", lambda: _at_least(stored(target), 1))
    await h.close()
    await relay.close()
    report("relayed-junk-under-honest-id", 10, await stored(target) - 1, target)


async def test_flood_from_3_of_10_compromised_peers_keeps_honest_delivery(
    tmp_path: Path,
) -> None:
    node = await start_target(tmp_path)  # real bans on: a flooder is cut off and backed off
    try:
        codes = await invites(node, 10)
        ids = [Identity.generate(nacl.utils.random) for _ in codes]
        peers = []
        for invite, identity in zip(codes, ids, strict=True):
            peer = await RawPeer.open(node.address)
            assert await peer.handshake(invite.capability(), identity, invite.node_id.raw)
            peers.append(peer)
        network_key = codes[0].network_key
        honest, flooders = list(range(7)), list(range(7, 10))
        per_honest, junk_sent = 30, 0

        async def flood(i: int) -> None:
            nonlocal junk_sent
            victim = ids[honest[i % 7]]  # the junk claims an honest author
            for _ in range(20):
                batch = []
                for _ in range(100):
                    data = bytearray(guide(victim, network_key).to_bytes())
                    data[-2] ^= 0x01
                    batch.append(bytes(data))
                try:
                    await peers[i].send(peers[i].session.records(batch))
                except Exception:  # cut off by the node, as it should be
                    return
                junk_sent += len(batch)
                await asyncio.sleep(0.01)

        async def publish(i: int) -> None:
            for _ in range(per_honest):
                record = guide(ids[i], network_key)
                await peers[i].send(peers[i].session.records([record.to_bytes()]))
                await asyncio.sleep(0.02)

        await asyncio.gather(*(flood(i) for i in flooders), *(publish(i) for i in honest))
        want = per_honest * len(honest)
        await wait_until("honest delivery", lambda: _at_least(stored(node), want), timeout=30)
        delivered = await stored(node)
        rows = await scores(node)
        for i in flooders:
            row = rows[str(ids[i].node_id)]
            assert float(row["banned_for_s"]) > 0  # type: ignore[arg-type]
            assert row["last_error"]
        for i in honest:
            assert rows[str(ids[i].node_id)]["score"] == 100
        print(f"\nFLOOD honest delivered={delivered}/{want} ({100 * delivered / want:.1f} %)")
        report("flood-3-of-10", junk_sent, delivered - want, node)
        assert delivered == want  # >= 99 % required; every honest record arrived
        for peer in peers:
            await peer.close()
    finally:
        await node.stop()


async def test_slowloris_500_connections_capped_and_honest_peer_served(
    target: NodeProcess,
) -> None:
    (invite,) = await invites(target, 1)
    me = Identity.generate(nacl.utils.random)
    honest = await RawPeer.open(target.address)
    assert await honest.handshake(invite.capability(), me, invite.node_id.raw)
    sockets: list[asyncio.StreamWriter] = []
    websockets: list[aiohttp.ClientWebSocketResponse] = []
    refused = 0
    http = aiohttp.ClientSession()

    async def half_open_http() -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", target.port)
        sockets.append(writer)
        with contextlib.suppress(OSError):  # over the per-address cap: closed at once
            writer.write(b"GET /canopy HTTP/1.1\r\nHost: x\r\n")  # and never finish
            await writer.drain()

    async def stalled_handshake() -> None:
        nonlocal refused
        try:
            websockets.append(await http.ws_connect(target.address))
        except aiohttp.ClientError:  # 503, or closed before HTTP by the per-address cap
            refused += 1

    async def still_pending(ws: aiohttp.ClientWebSocketResponse) -> bool:
        try:
            return (await ws.receive(timeout=1)).type == WSMsgType.BINARY
        except TimeoutError:
            return True  # the node still waits for this one's handshake

    try:
        await asyncio.gather(*(half_open_http() for _ in range(250)))
        await asyncio.gather(*(stalled_handshake() for _ in range(250)))
        # The honest, authenticated peer is still served, and so is the operator.
        await honest.send(honest.session.records([guide(me, invite.network_key).to_bytes()]))
        await wait_until("honest record stored", lambda: _at_least(stored(target), 1))
        caps = await rejected(target, "connection_cap")
        evicted = await rejected(target, "handshake_evicted")
        print(f"\nSLOWLORIS 500 opened; websocket upgrades refused by the cap={refused}")
        pending = sum(await asyncio.gather(*(still_pending(ws) for ws in websockets)))
        assert pending <= limits.MAX_PENDING_PER_ADDRESS
        assert caps + evicted >= 250 - limits.MAX_PENDING_PER_ADDRESS
    finally:
        for writer in sockets:
            writer.close()
        for ws in websockets:
            await ws.close()
        await http.close()
    # Once the flood is gone, a new honest connection gets in.
    again = await RawPeer.open(target.address)
    assert await again.handshake(invite.network_key, me, invite.node_id.raw)
    await again.close()
    await honest.close()
    report("slowloris-500", 500, 0, target)


async def test_peer_answering_far_more_than_asked_is_cut_off(target: NodeProcess) -> None:
    """The target dials a hostile 'peer' that floods it with valid records nobody asked for."""
    (invite,) = await invites(target, 1)
    evil = Identity.generate(nacl.utils.random)
    now = int(time.time() * 1000)
    flood = [
        Record.create(
            evil,
            Kind.GUIDE,
            created=now + i,
            expires=now + 3_600_000,
            scope=Scope.NETWORK,
            payload=i.to_bytes(4, "big"),
        ).to_bytes()
        for i in range(3 * limits.PEER_PUSH_RECORDS_BURST)
    ]
    sent = 0
    done = asyncio.Event()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        nonlocal sent
        ws = web.WebSocketResponse(max_msg_size=8 * 1024 * 1024)
        await ws.prepare(request)
        hs = ServerHandshake(
            [invite.network_key], evil.secret_key, os.urandom(32), lambda k, i: True
        )
        while hs.state is not HandshakeState.DONE:
            msg = await ws.receive(timeout=5)
            reply = hs.receive_data(msg.data)
            if reply:
                await ws.send_bytes(reply)
        keys = hs.keys
        encoder = BoxStreamEncoder(keys.encrypt_key, keys.encrypt_nonce)
        BoxStreamDecoder(keys.decrypt_key, keys.decrypt_nonce)
        session = SyncSession(initiator=False)
        try:
            await ws.send_bytes(encoder.encode(session.hello("evil")))
            for start in range(0, len(flood), 500):
                await ws.send_bytes(encoder.encode(session.records(flood[start : start + 500])))
                sent += 500
                await asyncio.sleep(0)
            await ws.receive(timeout=10)
        except (ConnectionError, RuntimeError, TimeoutError):
            pass
        finally:
            done.set()
        return ws

    app = web.Application()
    app.router.add_get("/canopy", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        await target.cli("trust", str(evil.node_id), "--address", f"ws://127.0.0.1:{port}/canopy")
        await asyncio.wait_for(done.wait(), 30)

        async def cut_off() -> bool:
            row = (await scores(target))[str(evil.node_id)]
            return "far more records" in str(row["last_error"])

        await wait_until("cut off", cut_off)
        held = await stored(target)
        row = (await scores(target))[str(evil.node_id)]
        assert float(row["banned_for_s"]) > 0  # type: ignore[arg-type]
        allowance = limits.PEER_PUSH_RECORDS_BURST + limits.PEER_PUSH_RECORDS_PER_S * 5
        report("far-more-than-asked", len(flood), max(0, held - allowance), target)
        assert held <= allowance
    finally:
        await runner.cleanup()


async def _at_least(value: object, n: int) -> bool:
    return int(await value) >= n  # type: ignore[misc]
