"""Key compromise and seizure with real `canopy run` processes: revocation (live key and
pre-signed certificate), refusal everywhere, unverified guides, exposure, a successor
identity, and the panic wipe."""

from __future__ import annotations

import asyncio
import os
import re
import stat
import time
from pathlib import Path

import pytest

from node.demo import MARKER, PASSPHRASE, NodeProcess, scan_for, wait_until
from node.local import DB_FILE, KEY_FILE, RUNTIME_FILE, Local
from protocol.errors import NotInitialised
from protocol.identity import Identity
from tests.conftest import Net
from tests.test_multinode import _all, connected, link, publish, three_nodes
from tests.test_network_adversarial import RawPeer, guide

pytestmark = pytest.mark.timeout(120)


async def revoked_on(node: NodeProcess, node_id: str) -> bool:
    return node_id in (await node.json("status"))["revoked"]


async def peer_row(node: NodeProcess, node_id: str) -> dict[str, object]:
    rows = (await node.json("peers"))["peers"]
    return next(r for r in rows if r["id"] == node_id)


async def rejected(node: NodeProcess, reason: str) -> int:
    return int((await node.json("status"))["rejected"].get(reason, 0))


async def identity_of(node: NodeProcess) -> Identity:
    local = await Local.open(node.data, PASSPHRASE.encode())
    try:
        return local.identity
    finally:
        await local.close()


async def test_revoked_key_refused_everywhere_and_its_guides_flagged_unverified(
    net: Net, tmp_path: Path
) -> None:
    a, b, c = await three_nodes(net)
    await publish(a, tmp_path, "Before compromise", "network")

    async def c_has_guide() -> bool:
        return len((await c.json("guides"))["guides"]) == 1

    await wait_until("guide reaches C", c_has_guide)
    a_identity = await identity_of(a)
    _, out, _ = await a.cli("revoke-key")
    assert "revoked this node's key" in out

    # Every node learns at once (pushed), marks A revoked and tells its operator.
    await wait_until(
        "B and C learn", lambda: _all(revoked_on(b, a.node_id), revoked_on(c, a.node_id))
    )
    row = await peer_row(b, a.node_id)
    assert row["state"] == "revoked" and row["revoked"] is True
    assert "revoked" in str(row["last_error"])
    _, text, _ = await c.cli("status")
    assert "REVOKED" in text
    guides = (await c.json("guides"))["guides"]
    assert [g["unverified"] for g in guides] == [True]
    _, listing, _ = await c.cli("guides")
    assert "UNVERIFIED" in listing

    # Its handshakes are refused: A (still running) redials B and is turned away.
    await wait_until("B refuses A's handshake", lambda: _positive(rejected(b, "handshake_revoked")))
    assert not await connected(b, 2)

    # Its new records are refused, even relayed by an honest peer, who is not blamed.
    _, code, _ = await b.cli("invite", "--address", b.address)
    from protocol.invite import Invite

    invite = Invite.from_code(code.strip())
    relay = await RawPeer.open(b.address)
    assert await relay.handshake(
        invite.capability(), Identity.generate(os.urandom), invite.node_id.raw
    )
    network_key = invite.network_key
    forged_new = guide(a_identity, network_key)
    await relay.send(relay.session.records([forged_new.to_bytes()]))
    await wait_until("refused", lambda: _positive(rejected(b, "revoked_author_refused")))
    await relay.close()
    assert sum((await b.json("status"))["records"].values()) == 2  # the guide + the revocation
    rows = (await b.json("peers"))["peers"]
    assert all(r["score"] in (None, 100) for r in rows if r["id"] != a.node_id)
    print("\nADVERSARIAL revoked-author: attempts=1 accepted=0 crashes=0")
    for node in (b, c):
        assert node.proc is not None and node.proc.returncode is None


async def _positive(count: object) -> bool:
    return int(await count) > 0  # type: ignore[misc]


async def test_certificate_from_any_node_revokes_lost_device_and_successor_is_trusted(
    net: Net, tmp_path: Path
) -> None:
    a, b, c = await three_nodes(net)
    cert = tmp_path / "a.revocation"
    await a.cli("revocation", "export", "--out", str(cert))
    assert stat.S_IMODE(cert.stat().st_mode) == 0o600
    guide_id = await publish(a, tmp_path, "Lost laptop guide", "network")

    async def c_has_guide() -> bool:
        return len((await c.json("guides"))["guides"]) == 1

    await wait_until("guide reaches C", c_has_guide)
    await a.stop()  # the device is gone

    _, out, _ = await b.cli("revoke-key", "--certificate", str(cert))
    assert "published the revocation" in out
    await wait_until("C learns from B", lambda: revoked_on(c, a.node_id))

    # Exposure: B relayed A's guide to C, and can say so (C's operator gets warned).
    report = await b.json("exposure", a.node_id)
    assert [p["peer_id"] for p in report["peers"]] == [c.node_id]
    sent = {r["kind"]: r["id"] for r in report["peers"][0]["records"]}
    assert sent.keys() == {"guide", "revocation"}  # the revocation travelled the same way
    assert sent["guide"].startswith(guide_id)
    _, text, _ = await b.cli("exposure", a.node_id)
    assert "Gamma Shelter" in text

    # A tampered certificate is refused with a one-line error.
    bad = tmp_path / "bad.revocation"
    bad.write_text(cert.read_text().strip()[:-4] + "AAAA\n")
    code, _, err = await b.cli("revoke-key", "--certificate", str(bad), check=False)
    assert code == 1 and "not a valid revocation certificate" in err

    # The successor: a new identity that peers trust after comparing safety codes.
    a2 = await net.node("A2", "Alpha Legal (new key)")
    await a2.start()
    await link(b, a2)  # an invite handed over in person, or `trust ID` after a phone call
    await wait_until("successor connects", lambda: connected(a2, 1))
    assert a2.node_id != a.node_id
    # ...while the old identity stays refused when it comes back.
    await a.start()
    await wait_until("old key refused", lambda: _positive(rejected(b, "handshake_revoked")))
    row = await peer_row(b, a.node_id)
    assert row["state"] == "revoked"
    assert (await peer_row(b, a2.node_id))["state"] == "connected"


async def test_wipe_makes_data_unreadable_within_a_second_even_while_running(
    tmp_path: Path,
) -> None:
    node = NodeProcess(tmp_path, "W", "Wiped Org")
    await node.init()
    await publish(node, tmp_path, "Secret shelter list", "network")
    await node.start()
    assert node.proc is not None
    assert (node.data / RUNTIME_FILE).exists()
    code, out, err = await node.cli("wipe", check=False)
    assert code == 2 and "--yes" in err  # never by accident
    start = time.monotonic()
    _, out, _ = await node.cli("wipe", "--yes")
    await asyncio.wait_for(node.proc.wait(), 1.0)  # the running node is gone
    wall = time.monotonic() - start
    took_ms = int(re.search(r"destroyed in (\d+) ms", out).group(1))  # type: ignore[union-attr]
    print(f"\nWIPE keys destroyed in {took_ms} ms; command and node exit {wall:.2f} s")
    assert took_ms < 1000
    assert "running node was stopped" in out
    assert not (node.data / KEY_FILE).exists()
    with pytest.raises(NotInitialised):
        await Local.open(node.data, PASSPHRASE.encode())
    assert (node.data / DB_FILE).exists()
    _, hits = scan_for(node.data, [MARKER.encode(), b"Secret shelter", b"Wiped Org"])
    assert hits == []
    code, _, err = await node.cli("status", check=False)
    assert code == 1 and "no Canopy identity" in err
    node.proc = None
