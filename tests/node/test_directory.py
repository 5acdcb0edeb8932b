"""node.directory on a real data directory: what each policy writes, what the store lets
travel, the in-memory index (dedupe, region/lang/text matching, ranking, stale marks)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from node import directory
from node.local import Local
from node.trust import trust_node
from protocol.contact import DAY_MS, Filter
from protocol.errors import CanopyError
from protocol.identity import Identity
from protocol.record import Kind, Record, Scope

PEER = Identity(b"\x11" * 32)
ADDR = "ws://peer.example:7420/canopy"


async def _local(tmp_path: Path) -> Local:
    local = await Local.create(tmp_path / "d", "Org", None)
    await trust_node(local, str(PEER.node_id), ADDR, "Peer", int(time.time() * 1000))
    return local


async def _add(local: Local, share: str, **kw: object) -> directory.Added:
    fields: dict[str, object] = {
        "kind": "lawyer",
        "name": f"Name {share}",
        "region": "KE-28",
        "langs": ["sw"],
        "channels": ["phone:+254700000001"],
        "specialties": ["land-rights"],
        "notes": "",
        "share": share,
        "to": None,
        "review_days": 180,
        "now_ms": int(time.time() * 1000),
    }
    fields.update(kw)
    return await directory.add_contact(local, **fields)  # type: ignore[arg-type]


async def test_policies_map_to_scopes_and_private_never_travels(tmp_path: Path) -> None:
    local = await _local(tmp_path)
    try:
        peers = await _add(local, "peers")
        network = await _add(local, "network")
        request = await _add(local, "on-request")
        private = await _add(local, "private")
        assert peers.record.scope is Scope.PEERS
        assert network.record.scope is Scope.NETWORK
        assert request.record.scope is Scope.NETWORK and request.details is not None
        assert request.details.scope is Scope.PRIVATE
        assert private.record.scope is Scope.PRIVATE
        now = int(time.time() * 1000)
        offered = {i for _, i in await local.store.exchangeable_items(PEER.node_id.raw, now)}
        ids = [peers.record.id, network.record.id, request.record.id]
        assert set(ids) <= offered
        assert private.record.id not in offered and request.details.id not in offered
        asked = [*ids, private.record.id, request.details.id]
        served = await local.store.records_for_peer(asked, PEER.node_id.raw, now)
        assert set(served) == set(ids)
    finally:
        await local.close()


async def test_index_dedupes_matches_and_marks_stale(tmp_path: Path) -> None:
    local = await _local(tmp_path)
    try:
        await _add(local, "on-request", name="Nyumba Salama", kind="shelter", region="KE-30")
        await _add(local, "network", name="Old Contact", review_days=1,
                   now_ms=int(time.time() * 1000) - 3 * DAY_MS)  # fmt: skip
        now = int(time.time() * 1000)
        rows = await directory.local_query(local, Filter.build(kind="shelter"), now)
        assert [r["name"] for r in rows] == ["Nyumba Salama"]  # details win over the teaser
        rows = await directory.local_query(local, Filter.build(text="nairobi"), now)
        assert [r["name"] for r in rows] == ["Nyumba Salama"]  # KE-30 is Nairobi City
        rows = await directory.local_query(local, Filter.build(text="old"), now)
        assert rows[0]["stale"] is True
        due = await directory.review(local, now)
        assert [r["name"] for r in due] == ["Old Contact"] and due[0]["state"] == "overdue"
    finally:
        await local.close()


async def test_withdrawing_a_teaser_withdraws_its_details(tmp_path: Path) -> None:
    local = await _local(tmp_path)
    try:
        added = await _add(local, "on-request")
        assert added.details is not None
        tombstone = await directory.withdraw(local, added.record.id.hex(), int(time.time() * 1000))
        assert tombstone.kind is Kind.TOMBSTONE
        held = await local.store.get_records([added.record.id, added.details.id])
        assert held == {}
        with pytest.raises(CanopyError, match="withdrawn"):
            await directory.vouch(local, added.record.id.hex(), int(time.time() * 1000))
    finally:
        await local.close()


async def test_vouch_scope_follows_the_contact(tmp_path: Path) -> None:
    local = await _local(tmp_path)
    try:
        now = int(time.time() * 1000)
        network = await _add(local, "network")
        peers = await _add(local, "peers")
        v_net, _ = await directory.vouch(local, network.record.id.hex(), now)
        v_peers, _ = await directory.vouch(local, peers.record.id.hex(), now)
        v_org, what = await directory.vouch(local, "Peer", now)
        assert Record.from_bytes(v_net.to_bytes()).scope is Scope.NETWORK
        assert v_peers.scope is Scope.PEERS
        assert v_org.scope is Scope.NETWORK and "organisation" in what
        with pytest.raises(CanopyError):
            await directory.vouch(local, str(local.node_id), now)
    finally:
        await local.close()


async def test_contacts_vouched_only_by_a_revoked_key_are_unverified(tmp_path: Path) -> None:
    from node.revocation import mark_revoked
    from protocol.revocation import make_revocation

    local = await _local(tmp_path)
    try:
        await _add(local, "network", name="Wakili Mwema")
        now = int(time.time() * 1000)
        (before,) = await directory.local_query(local, Filter.build(kind="lawyer"), now)
        assert before["unverified"] is False
        # The author's key is declared compromised: anyone holding it may have written this.
        revocation = make_revocation(local.identity, created=now)
        assert await mark_revoked(local, revocation, now)
        (after,) = await directory.local_query(local, Filter.build(kind="lawyer"), now)
        assert after["unverified"] is True
        assert after["score"] <= before["score"] / 10
    finally:
        await local.close()
