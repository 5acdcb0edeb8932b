"""Circles end to end: real `canopy run` processes on 127.0.0.1 sharing with a circle, a
member removed (new records unreadable to it, old ones kept), and a revoked key cut out of
the circle by whichever member sees the revocation, on real data directories."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from node import circles
from node.content import publish_guide_texts, readable
from node.demo import NodeProcess, wait_until
from node.local import Local
from node.revocation import mark_revoked, publish_revocation
from node.store import row_of
from protocol.record import Kind, Record
from tests.conftest import Net
from tests.test_multinode import publish, three_nodes, titles

pytestmark = pytest.mark.timeout(180)
NOW = 1_800_000_000_000


async def holds(node: NodeProcess, record_id: str) -> bool:
    code, _, err = await node.cli("show", record_id, check=False)
    return code == 1 and "cannot read" in err


async def test_a_removed_member_holds_new_circle_records_but_no_key_that_opens_them(
    net: Net, tmp_path: Path
) -> None:
    a, b, c = await three_nodes(net)  # A - B - C: everything for C goes through B
    await a.cli("circle", "create", "Land lawyers")
    await a.cli("circle", "add", "Land lawyers", b.node_id)
    await a.cli("circle", "add", "Land lawyers", c.node_id)
    before = await publish(a, tmp_path, "Before C left", "circle:Land lawyers")

    async def everyone_reads() -> bool:
        return await titles(b) == await titles(c) == ["Before C left"]

    await wait_until("the circle's first guide", everyone_reads)
    listed = (await c.json("circle", "list"))["circles"]
    assert [len(r["members"]) for r in listed] == [3]  # members see who is in the circle

    await a.cli("circle", "remove", "Land lawyers", c.node_id)

    async def b_has_epoch_1() -> bool:
        return [r["epoch"] for r in (await b.json("circle", "list"))["circles"]] == [1]

    await wait_until("B applies the removal", b_has_epoch_1)
    after = await publish(a, tmp_path, "After C left", "circle:Land lawyers")
    from_b = await publish(b, tmp_path, "From B after", "circle:Land lawyers")
    await wait_until("C holds both new records", lambda: _both(holds(c, after), holds(c, from_b)))
    assert await titles(b) == ["After C left", "Before C left", "From B after"]
    assert await titles(a) == ["After C left", "Before C left", "From B after"]
    assert await titles(c) == ["Before C left"]  # history shared: the old one stays readable
    assert not await holds(c, before)
    # C was never sent the new epoch: its view stops at the epoch it was removed from.
    assert [r["epoch"] for r in (await c.json("circle", "list"))["circles"]] == [0]
    code, _, err = await c.cli("circle", "add", "Land lawyers", a.node_id, check=False)
    assert code == 1 and "owner" in err and "Traceback" not in err


async def _both(*checks: object) -> bool:
    return all(await asyncio.gather(*checks))  # type: ignore[call-overload]


async def _copy(records: list[Record], to: Local) -> None:
    await to.store.put_records([row_of(r, local=False) for r in records], NOW)


async def _circle_records(local: Local) -> list[Record]:
    return [Record.from_bytes(d) for d in await local.store.records_of_kind(str(Kind.CIRCLE))]


async def test_revoking_a_members_key_removes_it_from_every_circle_on_every_member(
    tmp_path: Path,
) -> None:
    a = await Local.create(tmp_path / "a", "Alpha", None)
    b = await Local.create(tmp_path / "b", "Beta", None)
    c = await Local.create(tmp_path / "c", "Gamma", None)
    try:
        first = await circles.create(a, "Shelters", "all", NOW)
        await circles.create(a, "Rapid response", "new-only", NOW)
        for name in ("Shelters", "Rapid response"):
            await circles.add(a, name, str(b.node_id), NOW)
            await circles.add(a, name, str(c.node_id), NOW)
        for other in (b, c):
            await _copy(await _circle_records(a), other)
        assert len(await circles.rows(b)) == 2
        # C's key is compromised; its certificate reaches B first (not the owner).
        revocation = await publish_revocation(c, None, NOW)
        await _copy([revocation], b)
        await mark_revoked(b, revocation, NOW)
        rekeyed = await circles.cut_off_revoked(b, NOW + 1)
        assert {s.name for s in rekeyed} == {"Shelters", "Rapid response"}
        await _copy(await _circle_records(b), a)
        for member in (a, b):
            await mark_revoked(member, revocation, NOW)  # a hears of it too
            for row in await circles.rows(member):
                assert c.node_id.raw not in row.circle.members, row.circle.name
        # What A now shares with the circle, C's stolen key cannot open.
        published = await publish_guide_texts(
            a,
            [("after.md", "# After the revocation\n\nnew meeting point")],
            title=None,
            lang="en",
            topics=[],
            region="",
            to=f"circle:{first.name}",
            now_ms=NOW + 2,
        )
        for other in (b, c):
            await _copy([r for r, _ in published], other)
            await _copy(await _circle_records(a), other)
        seen, unreadable = await readable(c, Kind.GUIDE, NOW + 3)
        assert seen == [] and unreadable == 1
        seen, _ = await readable(b, Kind.GUIDE, NOW + 3)
        assert [r.body.content["title"] for r in seen] == ["After the revocation"]
    finally:
        for local in (a, b, c):
            await local.close()
