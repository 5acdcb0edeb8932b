"""Floods and exhaustion (issue 11, items 6 to 8) against real `canopy run` processes.

A hostile peer is our own protocol stack driven by hand (tests/test_network_adversarial.py's
RawPeer): it opens reconciliation rounds and never closes them, sends records nobody asked
for, opens rounds as fast as the quotas allow, floods one message with repeats, and makes
the node forward its queries. Each case checks the bound that stops it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import nacl.utils
import pytest
from aiohttp import WSMsgType

from node.demo import NodeProcess, wait_until
from protocol import limits
from protocol.contact import Filter
from protocol.identity import Identity
from protocol.invite import Invite
from protocol.messages import Reconcile, SyncDone, encode_message
from protocol.reconcile import Reconciler
from protocol.record import Kind, Record, Scope
from protocol.session import Event, PeerAnswer, PeerReconcile
from tests.conftest import Net
from tests.test_knowwho import api_query
from tests.test_multinode import connected, link
from tests.test_network_adversarial import RawPeer

pytestmark = pytest.mark.timeout(180)
DAY = 24 * 3600 * 1000


def sealed_layout() -> bytes:
    """Bytes with the layout of a sealed payload (4 slots, the smallest bucket) that open
    for nobody: what a relay sees of a record it cannot read."""
    return b"\x01" + os.urandom(24 + 32) + (4).to_bytes(2, "big") + os.urandom(4 * 48 + 256 + 16)


def junk(author: Identity, created: int) -> Record:
    return Record.create(
        author,
        Kind.GUIDE,
        created=created,
        expires=created + 30 * DAY,
        scope=Scope.NETWORK,
        payload=sealed_layout(),
    )


async def start(tmp_path: Path, label: str = "T", **env: str) -> NodeProcess:
    node = NodeProcess(tmp_path, label, "Target", env=env)
    await node.init()
    await node.start()
    return node


async def invite(node: NodeProcess) -> Invite:
    _, code, _ = await node.cli("invite", "--address", node.address)
    return Invite.from_code(code.strip())


async def trusted(node: NodeProcess, code: Invite) -> tuple[RawPeer, Identity]:
    identity = Identity.generate(nacl.utils.random)
    peer = await RawPeer.open(node.address)
    assert await peer.handshake(code.capability(), identity, code.node_id.raw)
    return peer, identity


async def next_event(peer: RawPeer, want: Callable[[Event], bool], timeout: float = 10) -> Event:
    """Read the node's frames until an event `want` accepts arrives."""
    assert peer.decoder is not None
    deadline = time.monotonic() + timeout
    while True:
        while isinstance(plaintext := peer.decoder.next_event(), bytes):
            for event in peer.session.receive_data(plaintext):
                if want(event):
                    return event
        msg = await peer.ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        assert msg.type == WSMsgType.BINARY, msg
        peer.decoder.receive_data(msg.data)


async def send_all(peer: RawPeer, datas: list[bytes], per_message: int = 500) -> int:
    """Send in Records messages; how many went out before the node cut us off."""
    sent = 0
    for start in range(0, len(datas), per_message):
        chunk = datas[start : start + per_message]
        try:
            await peer.send(peer.session.records(chunk))
        except Exception:  # cut off, as it should be
            break
        sent += len(chunk)
    return sent


async def status(node: NodeProcess) -> dict[str, object]:
    return dict(await node.api("/v1/status"))


async def stored(node: NodeProcess) -> int:
    return sum((await status(node))["records"].values())  # type: ignore[attr-defined]


async def rejected(node: NodeProcess, reason: str) -> int:
    return int((await status(node))["rejected"].get(reason, 0))  # type: ignore[attr-defined]


def metrics(node: NodeProcess) -> str:
    runtime = json.loads((node.data / "node.json").read_text())
    request = urllib.request.Request(
        runtime["api"] + "/metrics", headers={"Authorization": f"Bearer {runtime['token']}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return str(response.read().decode())


def cpu_seconds(node: NodeProcess) -> float:
    """utime + stime of the node's process, from /proc/PID/stat."""
    assert node.proc is not None
    fields = Path(f"/proc/{node.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def stable(read: Callable[[], object], settle: float = 1.5) -> object:
    """The value `read` returns once it stops changing (the node finished a backlog)."""
    last = await read()  # type: ignore[misc]
    while True:
        await asyncio.sleep(settle)
        now = await read()  # type: ignore[misc]
        if now == last:
            return now
        last = now


async def open_round(peer: RawPeer, items: list[tuple[int, bytes]]) -> Reconciler:
    """Run reconciliation as the initiator with `items`; leave the round open."""
    reconciler = Reconciler(items)
    message: bytes | None = reconciler.initiate()
    while message is not None:
        await peer.send(peer.session.reconcile(message))
        reply = await next_event(peer, lambda e: isinstance(e, PeerReconcile))
        assert isinstance(reply, PeerReconcile)
        message = reconciler.reconcile(reply.payload)
    return reconciler


# -- 6: disk fill through an open round -----------------------------------------------------


async def test_unasked_records_in_a_round_are_charged_against_what_was_announced(
    tmp_path: Path,
) -> None:
    node = await start(tmp_path)
    try:
        seeder, seed_id = await trusted(node, await invite(node))
        base = int(time.time() * 1000) - DAY
        held = [junk(seed_id, base + k * 1000) for k in range(300)]
        assert await send_all(seeder, [r.to_bytes() for r in held]) == 300
        await wait_until("seed stored", lambda: _equal(stored(node), 300))
        await seeder.close()

        peer, me = await trusted(node, await invite(node))
        new = [junk(me, base + k * 1000 + 500) for k in range(100, 110)]
        items = [(r.created, r.id) for r in held + new]
        reconciler = await open_round(peer, items)
        assert sorted(reconciler.have) == sorted(r.id for r in new)  # what it may send
        # The round stays open; beside the 10 announced records come 7,000 nobody
        # announced (dated before everything both sides agreed on).
        flood = [junk(me, base - DAY + i) for i in range(7000)]
        await send_all(peer, [r.to_bytes() for r in new + flood])
        await wait_until("cut off", lambda: _at_least(rejected(node, "QuotaExceeded"), 1))
        total = await stable(lambda: stored(node))
        await peer.close()
        unasked = int(total) - 300  # type: ignore[call-overload]
        print(f"\nROUND-CHARGE unasked sent=7010 stored={unasked}")
        assert unasked <= 10 + limits.PEER_PUSH_RECORDS_BURST + 1000
    finally:
        await node.stop()


async def test_peer_cannot_fill_the_disk_through_an_open_round(tmp_path: Path) -> None:
    node = await start(tmp_path, CANOPY_SYNC_MAX_SOURCE_RECORDS="1500")
    try:
        peer, me = await trusted(node, await invite(node))
        now = int(time.time() * 1000)
        throwaway = Identity.generate(nacl.utils.random)
        strangers = [junk(throwaway, now - 3_600_000 + i) for i in range(1200)]
        own = [junk(me, now - 1_800_000 + i) for i in range(1000)]
        unreadable = Record.create(  # a guide whose payload is no sealed payload
            me, Kind.GUIDE, created=now, expires=now + DAY, scope=Scope.NETWORK, payload=b"x" * 400
        )
        # One round, left open, in which the node (holding nothing) lacks everything.
        await open_round(peer, [(r.created, r.id) for r in strangers + own])
        await send_all(peer, [r.to_bytes() for r in strangers + own] + [unreadable.to_bytes()])
        await wait_until(
            "caps hit", lambda: _at_least(rejected(node, "quota_source_storage"), 1), timeout=60
        )
        total = await stable(lambda: stored(node))
        text = metrics(node)
        counts = (await status(node))["rejected"]
        await peer.close()
        print(f"\nDISK-FILL sent=2201 stored={total} rejected={counts}")
        assert counts["quota_author_storage"] == 200  # type: ignore[index]
        assert counts["quota_source_storage"] == 500  # type: ignore[index]
        assert counts["record_DecodeError"] == 1  # type: ignore[index]
        assert total == 1500
        assert 'canopy_rejected_total{reason="quota_source_storage"} 500' in text
        assert 'canopy_rejected_total{reason="quota_author_storage"} 200' in text
    finally:
        await node.stop()


# -- 7: cheap amplification -----------------------------------------------------------------


async def test_rapid_rounds_are_throttled_and_cost_little(tmp_path: Path) -> None:
    node = await start(tmp_path)
    try:
        code = await invite(node)
        peer, me = await trusted(node, code)
        now = int(time.time() * 1000)
        held = [junk(me, now - DAY + i) for i in range(4000)]
        assert await send_all(peer, [r.to_bytes() for r in held]) == 4000
        await wait_until("seed stored", lambda: _equal(stored(node), 4000))
        # Reconcile + SyncDone pairs at 86 a second for 6 s (within the query quota),
        # reconnecting whenever the node hangs up.
        payload = Reconciler([(now, bytes(32))]).initiate()
        pair = encode_message(Reconcile(payload)) + encode_message(SyncDone())
        before = cpu_seconds(node)
        started = time.monotonic()
        sent = 0
        while time.monotonic() - started < 6.0:
            try:
                await peer.send(pair)
                sent += 1
                await asyncio.sleep(1 / 86)
                continue
            except Exception:
                pass
            await peer.close()
            peer = await RawPeer.open(node.address)
            try:
                if not await peer.handshake(code.network_key, me, code.node_id.raw):
                    await asyncio.sleep(0.2)  # refused: banned for now
            except Exception:
                await asyncio.sleep(0.2)
        cost = cpu_seconds(node) - before
        await peer.close()
        throttled = await rejected(node, "RateLimited")
        print(
            f"\nRAPID-ROUNDS pairs sent={sent} node cpu={cost:.2f} s in 6 s throttled={throttled}"
        )
        assert throttled >= 1
        assert cost < 2.0
    finally:
        await node.stop()


async def test_empty_strings_flood_logs_one_line(tmp_path: Path) -> None:
    node = await start(tmp_path)
    try:
        peer, _ = await trusted(node, await invite(node))
        lines_before = node.log_path.read_text().count("sent bad input")
        flood = peer.session.records([b""] * 20_000)  # one 40 KB message
        assert len(flood) < 64 * 1024
        await peer.send(flood)
        await wait_until("refused", lambda: _at_least(rejected(node, "record_DecodeError"), 1))
        # The same again, and again: still nothing stored, and barely a line more.
        for _ in range(3):
            with_junk = [b"", b"\x00", b"\x01"] * 5000
            try:
                await peer.send(peer.session.records(with_junk))
            except Exception:
                break
        await asyncio.sleep(2.0)
        await stable(lambda: rejected(node, "record_DecodeError"))
        lines = node.log_path.read_text().count("sent bad input") - lines_before
        refused = await rejected(node, "record_DecodeError")
        await peer.close()
        print(f"\nEMPTY-STRINGS 20,000 + 45,000 junk: log lines={lines} refusals={refused}")
        assert lines <= 2
        assert refused <= 1 + 3 * 3
        assert await stored(node) == 0
    finally:
        await node.stop()


# -- 8: query starvation --------------------------------------------------------------------


async def test_forwarded_queries_cannot_starve_the_operators_own(net: Net) -> None:
    target = await net.node("T", "Target")
    other = await net.node("B", "Beta Rights")
    await target.start()
    await other.start()
    await link(target, other)
    await wait_until("linked", lambda: connected(target, 1))
    hostile, _ = await trusted(target, await invite(target))
    flt = Filter.build("", "lawyer", "", "")
    answers = 0

    async def drain() -> None:
        nonlocal answers
        while True:
            event = await next_event(hostile, lambda e: isinstance(e, PeerAnswer), timeout=30)
            answers += 1
            del event

    reader = asyncio.create_task(drain())
    try:
        # 30 depth-2 queries in 12 s: within the per-peer query limit, each one forwarded.
        for _ in range(30):
            while not hostile.session.query_capacity:
                await asyncio.sleep(0.05)
            await hostile.send(hostile.session.query(os.urandom(16), 2, flt))
            await asyncio.sleep(0.4)
        result = await api_query(target, network=True, depth=1, kind="lawyer")
        forward_refused = await rejected(target, "query_forward_rate")
        print(
            f"\nQUERY-STARVATION own query: asked={result['asked']} busy={result['busy']}"
            f" answered={result['answered']}; forwards refused={forward_refused}"
        )
        assert result["busy"] == 0 and result["answered"] == 1
        assert forward_refused >= 30 - limits.MAX_FORWARDED_QUERIES_PER_PEER_PER_MINUTE
    finally:
        reader.cancel()
        await hostile.close()


async def _at_least(value: object, n: int) -> bool:
    return int(await value) >= n  # type: ignore[misc, call-overload]


async def _equal(value: object, n: int) -> bool:
    return int(await value) == n  # type: ignore[misc, call-overload]
