"""Compromise and withdrawal: a revocation can never be withdrawn, only an author's own
tombstone withdraws, and a revocation takes effect by whatever path it arrives (network,
bundle with or without a running node, a store written before it was applied).

The unit-level tests drive `accept_records` (the one accept path) on a real data directory;
the others run real `canopy run` processes, as tests/test_compromise.py does."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import nacl.utils
import pytest

from node.bundles import import_bundle
from node.content import row_of
from node.demo import PASSPHRASE, NodeProcess, wait_until
from node.ingest import accept_records
from node.local import Local, Peer
from node.revocation import own_certificate, revoked_ids
from protocol.bundle import seal_bundle
from protocol.identity import Identity, NodeId
from protocol.lifecycle import Withdrawal
from protocol.record import Kind, Record, Scope
from protocol.revocation import make_revocation
from tests.conftest import Net
from tests.test_compromise import rejected, revoked_on
from tests.test_multinode import _all, publish, three_nodes
from tests.test_network_adversarial import RawPeer, guide

pytestmark = pytest.mark.timeout(120)

DAY = 86_400_000


def now_ms() -> int:
    return int(time.time() * 1000)


def tombstone(identity: Identity, targets: list[bytes], now: int) -> Record:
    return Record.create(
        identity,
        Kind.TOMBSTONE,
        created=now,
        expires=now + DAY,
        scope=Scope.NETWORK,
        payload=Withdrawal(tuple(targets)).to_payload(),
    )


def new_identity() -> Identity:
    return Identity.generate(nacl.utils.random)


@pytest.fixture
async def local(tmp_path: Path) -> Local:
    node = await Local.create(tmp_path / "observer", "Observer", None)
    yield node  # type: ignore[misc]
    await node.close()


# -- unit level: both orders of arrival ---------------------------------------------------------


@pytest.mark.parametrize("signer", ["stolen key", "stranger"])
@pytest.mark.parametrize("order", ["tombstone first", "revocation first"])
async def test_stolen_key_cannot_block_its_revocation_in_either_order(
    local: Local, order: str, signer: str
) -> None:
    now = now_ms()
    x = new_identity()
    revocation = make_revocation(x, created=now - 1000)
    withdrawal = tombstone(x if signer == "stolen key" else new_identity(), [revocation.id], now)
    batches = [[withdrawal], [revocation]]
    if order == "revocation first":
        batches.reverse()
    refused = 0
    for batch in batches:
        refused += (await accept_records(local, batch, now)).refused["withdrawn_refused"]
    assert refused == 0
    assert await local.store.has([revocation.id]) == {revocation.id}  # kept, relayed on
    assert x.node_id in await revoked_ids(local)
    # And a copy arriving later again is simply held already, never refused.
    again = await accept_records(local, [revocation], now)
    assert again.refused == {} and again.fresh == []


@pytest.mark.parametrize("order", ["squatter first", "author first"])
async def test_only_the_author_tombstone_withdraws_whatever_arrives_first(
    local: Local, order: str
) -> None:
    now = now_ms()
    alice, squatter = new_identity(), new_identity()
    network_key = await local.network_key()
    record = guide(alice, network_key, created=now - 1000)
    squat = tombstone(squatter, [record.id], now)
    own = tombstone(alice, [record.id], now + 1)
    await accept_records(local, [record], now)
    first, second = (squat, own) if order == "squatter first" else (own, squat)
    await accept_records(local, [first], now)
    await accept_records(local, [second], now)
    assert await local.store.has([record.id]) == set()  # Alice's own withdrawal purged it
    stale = await accept_records(local, [record], now)  # a stale copy from a slow relay
    assert stale.refused == {"withdrawn_refused": 1} and stale.fresh == []
    assert await local.store.has([record.id]) == set()


async def test_a_tombstone_by_another_author_withdraws_nothing(local: Local) -> None:
    now = now_ms()
    alice, squatter = new_identity(), new_identity()
    record = guide(alice, await local.network_key(), created=now - 1000)
    await accept_records(local, [tombstone(squatter, [record.id], now)], now)
    stored = await accept_records(local, [record], now)
    assert [r.id for r in stored.fresh] == [record.id] and stored.refused == {}


async def test_bundle_revocation_is_applied_without_a_running_node(
    local: Local, tmp_path: Path
) -> None:
    now = now_ms()
    sender, x, y = new_identity(), new_identity(), new_identity()
    await local.save_peer(Peer(sender.node_id, name="Courier", addresses=[]))
    network_key = await local.network_key()
    revocation = make_revocation(x, created=now - 2000)
    forged = guide(x, network_key, created=now - 1000)  # the thief's, in the same bundle
    honest = guide(y, network_key, created=now - 1000)
    path = tmp_path / "in.bundle"
    path.write_bytes(
        seal_bundle(
            sender,
            local.node_id,
            [r.to_bytes() for r in (revocation, forged, honest)],
            created=now,
            random=nacl.utils.random,
        )
    )
    done = await import_bundle(local, path, now)
    assert x.node_id in await revoked_ids(local)
    assert done.new == 2 and done.rejected == {"revoked_author_refused": 1}
    assert await local.store.has([revocation.id, forged.id, honest.id]) == {
        revocation.id,
        honest.id,
    }
    assert await local.store.rejections() == {"bundle_revoked_author_refused": 1}


# -- real `canopy run` processes ------------------------------------------------------------------


async def _guides_unverified(node: NodeProcess, count: int) -> bool:
    guides = (await node.json("guides"))["guides"]
    return len(guides) == count and all(g["unverified"] for g in guides)


async def test_stolen_key_cannot_block_its_revocation(net: Net, tmp_path: Path) -> None:
    a, b, c = await three_nodes(net)
    cert = tmp_path / "a.revocation"
    await a.cli("revocation", "export", "--out", str(cert))
    await publish(a, tmp_path, "Before the seizure", "network")

    async def c_has_guide() -> bool:
        return len((await c.json("guides"))["guides"]) == 1

    await wait_until("guide reaches C", c_has_guide)
    await a.stop()
    # The thief holds a copy of A's data directory, so A's key and A's revocation record.
    stolen = tmp_path / "stolen"
    shutil.copytree(a.data, stolen)
    thief_local = await Local.open(stolen, PASSPHRASE.encode())
    try:
        x = thief_local.identity
        network_key = await thief_local.network_key()
        revocation_id = (await own_certificate(thief_local, now_ms())).id
    finally:
        await thief_local.close()
    b_raw = NodeId.from_text(b.node_id).raw
    thief = await RawPeer.open(b.address)
    assert await thief.handshake(network_key, x, b_raw)  # B still trusts A's key
    now = now_ms()
    block = tombstone(x, [revocation_id], now)
    await thief.send(thief.session.records([block.to_bytes(), guide(x, network_key).to_bytes()]))

    async def tombstone_everywhere() -> bool:
        counts = [(await n.json("status"))["records"].get("tombstone", 0) for n in (b, c)]
        return counts == [1, 1]

    await wait_until("the thief's tombstone reaches B and C", tombstone_everywhere)
    await thief.close()

    # The owner publishes the certificate from another node.
    _, out, _ = await c.cli("revoke-key", "--certificate", str(cert))
    assert "published the revocation" in out
    await wait_until(
        "B and C mark A revoked", lambda: _all(revoked_on(b, a.node_id), revoked_on(c, a.node_id))
    )
    assert await rejected(b, "withdrawn_refused") == 0
    for node in (b, c):  # the old guide and the thief's new one are both flagged
        assert await _guides_unverified(node, 2)
        records = (await node.json("status"))["records"]
        assert records.get("revocation") == 1
    _, listing, _ = await b.cli("guides")
    assert "UNVERIFIED" in listing
    # The thief's handshakes are refused now.
    again = await RawPeer.open(b.address)
    assert not await again.handshake(network_key, x, b_raw)
    await again.close()
    assert await rejected(b, "handshake_revoked") >= 1


async def test_bundle_revocation_is_applied_like_one_from_the_network(
    net: Net, tmp_path: Path
) -> None:
    a, b, c = await three_nodes(net)
    cert = tmp_path / "a.revocation"
    await a.cli("revocation", "export", "--out", str(cert))
    await publish(a, tmp_path, "Carried guide", "network")

    async def b_and_c_hold_it() -> bool:
        counts = [len((await n.json("guides"))["guides"]) for n in (b, c)]
        return counts == [1, 1]

    await wait_until("guide reaches B and C", b_and_c_hold_it)
    await a.stop()
    await c.stop()
    # C, offline, publishes the certificate and carries it to B by hand.
    await c.cli("revoke-key", "--certificate", str(cert))
    bundle = tmp_path / "for-b.bundle"
    await c.cli("export", "--for", b.node_id, "--out", str(bundle))
    _, out, _ = await b.cli("import", str(bundle))  # B is running
    assert "1 new" in out
    # The running node applied it at once, as if it had come over the network.
    assert (await b.api("/v1/status"))["revoked"] == [a.node_id]
    assert await _guides_unverified(b, 1)
    await a.start()  # A's key comes back: refused
    await wait_until("B refuses A", lambda: _positive(rejected(b, "handshake_revoked")))


async def _positive(count: object) -> bool:
    return int(await count) > 0  # type: ignore[misc]


async def test_stored_revocation_applied_at_start(tmp_path: Path) -> None:
    x = new_identity()
    revocation = make_revocation(x, created=now_ms() - 1000)
    nodes = []
    for label in ("S", "T"):
        node = NodeProcess(tmp_path, label, f"Store {label}")
        await node.init()
        # What a store written before this fix may hold: the revocation, never applied.
        local = await Local.open(node.data, PASSPHRASE.encode())
        try:
            await local.store.put_records([row_of(revocation, local=False)], now_ms())
            assert await revoked_ids(local) == {}
        finally:
            await local.close()
        nodes.append(node)
    s, t = nodes
    await s.start()  # no CLI command has opened it since
    try:
        assert (await s.api("/v1/status"))["revoked"] == [str(x.node_id)]
    finally:
        await s.stop()
    # And a CLI command on a directory no node ever ran on sees it too.
    status = await t.json("status")
    assert status["revoked"] == [str(x.node_id)]
