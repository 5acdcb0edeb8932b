"""Several networks per node, end to end: real `canopy run` processes on 127.0.0.1, where
A is in N1 with B and accepts C's invite into N2 without leaving N1, and each network's
records travel only between its members (docs/spec/45-networks.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from node.content import publish_guide_texts
from node.demo import PASSPHRASE, NodeProcess, wait_until
from node.local import Local
from protocol.networks import NetworkView, network_tag
from protocol.record import Record
from tests.conftest import Net
from tests.test_multinode import connected, link, publish

pytestmark = pytest.mark.timeout(180)


async def _all(*checks: Any) -> bool:
    return all(await asyncio.gather(*checks))


async def networks(node: NodeProcess) -> dict[str, list[str]]:
    """{network name: member ids} as `canopy networks --json` lists them."""
    return {r["name"]: r["members"] for r in (await node.json("networks"))["networks"]}


async def two_networks(net: Net) -> tuple[NodeProcess, NodeProcess, NodeProcess]:
    """A and B in N1 (A's network, "default" on both); C's own network, which A joins as
    N2 by accepting C's invite. B and C share nothing."""
    a = await net.node("A", "Alpha Legal")
    b = await net.node("B", "Beta Rights")
    c = await net.node("C", "Gamma Shelter")
    for node in (a, b, c):
        await node.start()
    await link(a, b)
    _, code, _ = await c.cli("invite", "--address", c.address)
    _, out, _ = await a.cli("accept", code.strip(), "--network-name", "N2")
    assert "this invite adds network 'N2'" in out and "beside 'default'" in out
    await wait_until("links", lambda: _all(connected(a, 2), connected(b, 1), connected(c, 1)))
    return a, b, c


async def test_accepting_another_networks_invite_adds_it_beside_the_first(net: Net) -> None:
    a, b, c = await two_networks(net)
    assert await networks(a) == {"default": [b.node_id], "N2": [c.node_id]}
    assert await networks(b) == {"default": [a.node_id]}
    assert await networks(c) == {"default": [a.node_id]}  # C's own name for N2
    (row_a_n2,) = [r for r in (await a.json("networks"))["networks"] if r["name"] == "N2"]
    (row_c,) = (await c.json("networks"))["networks"]
    assert row_a_n2["tag"] == row_c["tag"]  # the same network, whatever each calls it
    _, text, _ = await a.cli("networks")
    assert "N2" in text and "default (first)" in text


async def test_leaving_a_network_keeps_the_others_and_the_last_cannot_be_left(
    net: Net,
) -> None:
    a, b, _ = await two_networks(net)
    code, _, err = await b.cli("networks", "leave", "default", check=False)
    assert code == 1 and "only network" in err and "Traceback" not in err
    code, _, err = await a.cli("networks", "leave", "N3", check=False)
    assert code == 1 and "no network called 'N3'" in err
    _, out, _ = await a.cli("networks", "leave", "N2")
    assert "left network 'N2'" in out
    assert await networks(a) == {"default": [b.node_id]}
    # Without N2's key, A's handshakes with C fail: the two no longer connect.
    await a.stop()
    await a.start()
    await wait_until("A back with B", lambda: connected(a, 1))
    peers = {p["id"]: p for p in (await a.json("peers"))["peers"]}
    assert peers[b.node_id]["state"] == "connected"


async def held_titles(node: NodeProcess) -> list[str]:
    return sorted(g["title"] for g in (await node.json("guides"))["guides"])


async def stored_ids(node: NodeProcess) -> set[str]:
    """Ids of every guide record in the node's store, readable or not (the store itself,
    opened while the node runs: WAL readers do not block it)."""
    local = await Local.open(node.data, PASSPHRASE.encode())
    try:
        datas = await local.store.records_of_kind("guide")
        return {Record.from_bytes(d).id.hex() for d in datas}
    finally:
        await local.close()


async def test_network_records_travel_only_between_members_of_their_network(
    net: Net, tmp_path: Path
) -> None:
    a, b, c = await two_networks(net)
    only_n1 = await publish(a, tmp_path, "For N1 only", "network:default")
    await publish(a, tmp_path, "For every network", "network")
    from_c = await publish(c, tmp_path, "From C to N2", "network")

    async def delivered() -> bool:
        return (
            await held_titles(b) == ["For N1 only", "For every network"]
            and await held_titles(c) == ["For every network", "From C to N2"]
            # `--to network` wrote one record per network: A holds both, lists it once.
            and await held_titles(a) == ["For N1 only", "For every network", "From C to N2"]
        )

    await wait_until("each network's records reach its members", delivered)
    # A relays nothing across: C's store never held the N1-only record, B's never N2's.
    assert only_n1 not in {i[: len(only_n1)] for i in await stored_ids(c)}
    assert from_c not in {i[: len(from_c)] for i in await stored_ids(b)}
    assert len(await stored_ids(c)) == 2 and len(await stored_ids(b)) == 2


async def test_reconciliation_set_with_a_peer_covers_only_the_networks_shared(
    tmp_path: Path,
) -> None:
    local = await Local.create(tmp_path / "a", "Alpha", None)
    try:
        n2 = await local.add_network("N2", b"\x02" * 32, 1)
        first = (await local.networks())[0]
        now = 1_800_000_000_000

        async def guide(title: str, to: str) -> set[bytes]:
            made = await publish_guide_texts(
                local,
                [(f"{title}.md", f"# {title}\n\nx")],
                title=None,
                lang="en",
                topics=[],
                region="",
                to=to,
                now_ms=now,
            )
            return {r.id for r, _ in made}

        in_n1 = await guide("one", "network:default")
        in_n2 = await guide("two", "network:N2")
        both = await guide("both", "network")
        assert len(both) == 2
        peer = b"\x09" * 32
        only_n2 = NetworkView(frozenset({n2.tag}), first.tag)
        items = {rid for _, rid in await local.store.exchangeable_items(peer, now, only_n2)}
        n2_copy = {rid for rid in both if rid in items}
        assert items == in_n2 | n2_copy and len(n2_copy) == 1
        every = NetworkView(frozenset({n2.tag, first.tag}), first.tag)
        assert {rid for _, rid in await local.store.exchangeable_items(peer, now, every)} == (
            in_n1 | in_n2 | both
        )
        sent = await local.store.records_for_peer(sorted(in_n1 | in_n2), peer, now, only_n2)
        assert set(sent) == in_n2  # asked for an N1 record, the peer gets nothing of it
        assert network_tag(b"\x02" * 32) == n2.tag
    finally:
        await local.close()


async def test_a_record_of_a_network_the_peer_is_not_in_is_refused_and_penalised(
    tmp_path: Path,
) -> None:
    import time

    import nacl.utils

    from protocol.envelope import seal_record
    from protocol.identity import Identity
    from protocol.invite import Invite
    from protocol.record import Kind, Scope
    from tests.test_network_adversarial import RawPeer

    target = NodeProcess(tmp_path, "T", "Target")
    await target.init()
    await target.start()
    peer = None
    try:
        _, code, _ = await target.cli("invite", "--address", target.address)
        invite = Invite.from_code(code.strip())
        # T (no longer alone: it has an invite out) joins a second network N2, through an
        # invite whose inviter never answers.
        n2_key, now = nacl.utils.random(32), int(time.time() * 1000)
        inviter = Identity.generate(nacl.utils.random)
        offer = Invite.create(
            inviter,
            name="Uganda shelters",
            addresses=["ws://127.0.0.1:9/canopy"],
            network_key=n2_key,
            secret=nacl.utils.random(32),
            expires=now + 3_600_000,
        )
        await target.cli("accept", offer.to_code(), "--network-name", "N2")
        # P, invited into T's first network only, sends records of both.
        member = Identity.generate(nacl.utils.random)
        peer = await RawPeer.open(target.address)
        assert await peer.handshake(invite.capability(), member, invite.node_id.raw)

        def guide(key: bytes, title: str) -> bytes:
            return seal_record(
                member,
                Kind.GUIDE,
                {"title": title, "text": "x"},
                created=now,
                expires=now + 3_600_000,
                scope=Scope.NETWORK,
                recipients=[],
                network_key=key,
                random=nacl.utils.random,
                network=network_tag(key),
            ).to_bytes()

        await peer.send(peer.session.records([guide(n2_key, "smuggled into N2")]))

        async def refused() -> bool:
            status = await target.json("status")
            return int(status["rejected"].get("record_other_network", 0)) >= 1

        await wait_until("the N2 record refused", refused)
        rows = {r["id"]: r for r in (await target.json("peers"))["peers"]}
        assert int(rows[str(member.node_id)]["score"]) < 100
        await peer.send(peer.session.records([guide(invite.network_key, "for N1")]))

        async def stored_one() -> bool:
            return (await target.json("status"))["records"].get("guide", 0) == 1

        await wait_until("the first network's record stored", stored_one)
    finally:
        if peer is not None:
            await peer.close()
        await target.stop()
