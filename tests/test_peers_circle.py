"""Audiences that grow: `--to peers` seals to the author's implicit peers circle, so a peer
trusted later reads what was shared with peers before, and a distrusted peer reads nothing
published after; `--to peers-now` keeps the frozen meaning. Real `canopy run` processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from node import peers_circle
from node.content import parse_audience, publish_guide_texts
from node.demo import wait_until
from node.local import Local
from protocol.errors import CanopyError
from protocol.record import Kind
from tests.conftest import Net
from tests.test_circles import holds
from tests.test_multinode import _all, link, publish, three_nodes, titles

pytestmark = pytest.mark.timeout(180)
NOW = 1_800_000_000_000


async def test_a_peer_trusted_later_reads_what_was_shared_with_peers_before(
    net: Net, tmp_path: Path
) -> None:
    a, b, c = await three_nodes(net)  # A - B - C
    grows = await publish(a, tmp_path, "Shared with peers", "peers")
    frozen = await publish(a, tmp_path, "Peers of that day", "peers-now")
    await wait_until(
        "B reads both", lambda: _titles_are(b, ["Peers of that day", "Shared with peers"])
    )
    d = await net.node("D", "Delta Clinic")
    await d.start()
    await link(a, d)  # trusted a month later

    await wait_until(
        "D reads the earlier --to peers guide", lambda: _titles_are(d, ["Shared with peers"])
    )
    assert await holds(d, frozen)  # D holds the --to peers-now guide but no key opens it
    assert not await holds(d, grows)
    listed = (await d.json("circle", "list"))["circles"]
    assert [(r["name"], r["owner"], len(r["members"])) for r in listed] == [("peers", a.node_id, 3)]
    # C is B's peer, never A's: it holds nothing of A's peers circle that opens.
    assert await titles(c) == []


async def test_a_distrusted_peer_reads_nothing_published_after(net: Net, tmp_path: Path) -> None:
    a, b, _ = await three_nodes(net)
    d = await net.node("D", "Delta Clinic")
    await d.start()
    await link(a, d)
    before = await publish(a, tmp_path, "Before", "peers")
    await wait_until(
        "B and D read it", lambda: _all(_titles_are(b, ["Before"]), _titles_are(d, ["Before"]))
    )

    await a.cli("distrust", d.node_id)

    async def epoch_moved() -> bool:
        rows = (await b.json("circle", "list"))["circles"]
        return [(r["epoch"], len(r["members"])) for r in rows] == [(1, 2)]

    await wait_until("B sees D removed from A's peers circle", epoch_moved)
    after = await publish(a, tmp_path, "After", "peers")
    await wait_until("B reads the new guide", lambda: _titles_are(b, ["After", "Before"]))
    assert await titles(d) == ["Before"]  # D keeps what it had; the new epoch never reached it
    assert not await holds(d, before)
    assert after


async def _titles_are(node: object, expected: list[str]) -> bool:
    return await titles(node) == expected  # type: ignore[arg-type]


async def test_a_refused_publish_to_peers_writes_no_circle_record(tmp_path: Path) -> None:
    local = await Local.create(tmp_path / "a", "Alpha", None)
    try:
        audience = await parse_audience(local, "peers")
        assert audience.grows and audience.describe() == "peers"
        with pytest.raises(CanopyError):
            await publish_guide_texts(
                local,
                [("x.md", "# T\n\nbody"), ("big.md", "x" * 10_000_000)],
                title=None,
                lang="en",
                topics=[],
                region="",
                to="peers",
                now_ms=NOW,
            )
        assert await local.store.records_of_kind(str(Kind.CIRCLE)) == []
        assert await peers_circle.mine(local) is None
        await publish_guide_texts(
            local,
            [("x.md", "# T\n\nbody")],
            title=None,
            lang="en",
            topics=[],
            region="",
            to="peers",
            now_ms=NOW,
        )
        assert (await peers_circle.mine(local)) is not None
    finally:
        await local.close()


async def test_the_peers_circle_name_is_reserved(tmp_path: Path) -> None:
    from node import circles

    local = await Local.create(tmp_path / "a", "Alpha", None)
    try:
        with pytest.raises(CanopyError, match="implicit"):
            await circles.create(local, "peers", "all", NOW)
    finally:
        await local.close()
