"""Bundles by network: `canopy export --for PEER` carries only the records of the networks
the two share (`--network NAME`: that one alone, the peer a member of it), and `canopy
import` stores nothing of a network this node is not in, and says how many it skipped.
Real `canopy run` processes and data directories (docs/spec/50-bundles.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.clock import now_ms
from node.demo import PASSPHRASE, NodeProcess, wait_until
from node.local import Local, random, write_private
from protocol.bundle import seal_bundle
from protocol.identity import NodeId
from protocol.record import Record
from tests.conftest import Net
from tests.test_multinode import publish
from tests.test_networks import held_titles, stored_ids, two_networks

pytestmark = pytest.mark.timeout(240)


async def _guides(node: NodeProcess) -> list[bytes]:
    local = await Local.open(node.data, PASSPHRASE.encode())
    try:
        return await local.store.records_of_kind("guide")
    finally:
        await local.close()


async def test_a_bundle_carries_only_the_networks_the_two_share(net: Net, tmp_path: Path) -> None:
    a, b, c = await two_networks(net)
    n1 = await publish(a, tmp_path, "Default only", "network:default")
    n2 = await publish(a, tmp_path, "N2 only", "network:N2")
    await wait_until("B took its one", lambda: _titles(b, ["Default only"]))
    await wait_until("C took its one", lambda: _titles(c, ["N2 only"]))

    for_b = tmp_path / "for-b.bundle"
    _, out, _ = await a.cli("export", "--for", b.node_id, "--out", str(for_b))
    assert "networks carried: 'default'" in out
    for_c = tmp_path / "for-c.bundle"
    _, out, _ = await a.cli("export", "--for", c.node_id, "--out", str(for_c), "--network", "N2")
    assert "networks carried: 'N2'" in out
    code, _, err = await a.cli(
        "export", "--for", c.node_id, "--out", str(tmp_path / "x"), "--network", "default",
        check=False,
    )  # fmt: skip
    assert code != 0 and "not a member of network 'default'" in err and "Traceback" not in err

    # What each bundle holds, opened by its recipient: only its network's guide.
    _, out, _ = await b.cli("import", str(for_b))
    assert "0 new" in out and "skipped" not in out
    assert n2 not in {i[: len(n2)] for i in await stored_ids(b)}
    _, out, _ = await c.cli("import", str(for_c))
    assert "0 new" in out and "skipped" not in out
    assert n1 not in {i[: len(n1)] for i in await stored_ids(c)}


async def test_import_skips_records_of_a_network_this_node_is_not_in(
    net: Net, tmp_path: Path
) -> None:
    a, _, c = await two_networks(net)
    n1 = await publish(a, tmp_path, "Default only", "network:default")
    # A sender that puts every record it holds in a bundle (an old or hostile node).
    local = await Local.open(a.data, PASSPHRASE.encode())
    try:
        datas = await local.store.records_of_kind("guide")
        sealed = seal_bundle(
            local.identity, NodeId.from_text(c.node_id), datas, created=now_ms(), random=random
        )
    finally:
        await local.close()
    path = tmp_path / "everything.bundle"
    write_private(path, sealed, exclusive=True)
    _, out, _ = await c.cli("import", str(path))
    assert "skipped 1 records of networks this node is not in (not stored)" in out
    assert n1 not in {i[: len(n1)] for i in await stored_ids(c)}
    assert [Record.from_bytes(d).network for d in await _guides(c)] == []


async def _titles(node: NodeProcess, expected: list[str]) -> bool:
    return await held_titles(node) == expected
