"""Invites carry the network's name (docs/spec/10-identity-records.md "Invite", version 2):
`canopy accept` names the network as the inviter does unless `--network-name` is given or
one of its networks goes by that name, says what the inviter calls it, and refuses an
invite whose network name would put escapes or bidi overrides on a terminal. Real `canopy`
processes on real data directories."""

from __future__ import annotations

from typing import Any

import pytest

from node.demo import PASSPHRASE, NodeProcess
from node.local import Local
from protocol import labels
from protocol.encoding import pack
from protocol.identity import b32encode
from protocol.invite import Invite
from tests.conftest import Net

pytestmark = pytest.mark.timeout(120)


async def names(node: NodeProcess) -> list[str]:
    rows: list[dict[str, Any]] = (await node.json("networks"))["networks"]
    return [str(r["name"]) for r in rows]


async def invite(node: NodeProcess, *args: str) -> str:
    _, code, _ = await node.cli("invite", "--address", "ws://127.0.0.1:9/canopy", *args)
    return code.strip()


async def shelters(net: Net) -> tuple[NodeProcess, NodeProcess]:
    """A in its network "default" with a peer; C in the network "Uganda shelters"."""
    a, b = await net.node("A", "Alpha Legal"), await net.node("B", "Beta Rights")
    await b.cli("accept", await invite(a))  # B alone: adopts A's network, "default"
    c, d = await net.node("C", "Gamma Shelter"), await net.node("D", "Delta Refuge")
    await c.cli("accept", await invite(d), "--network-name", "Uganda shelters")
    return a, c


async def test_accept_names_the_network_as_the_invite_does(net: Net) -> None:
    a, c = await shelters(net)
    assert await names(c) == ["Uganda shelters"]
    _, out, _ = await a.cli("accept", await invite(c))
    assert "this invite adds network 'Uganda shelters'" in out
    assert await names(a) == ["default", "Uganda shelters"]


async def test_network_name_given_on_accept_wins_and_the_inviters_is_shown(net: Net) -> None:
    a, c = await shelters(net)
    _, out, _ = await a.cli("accept", await invite(c), "--network-name", "UG")
    assert "adds network 'UG'" in out
    assert "(the inviter calls this network 'Uganda shelters')" in out
    assert await names(a) == ["default", "UG"]


async def test_an_invited_name_one_of_our_networks_has_is_not_taken(net: Net) -> None:
    a, _ = await shelters(net)
    e, f = await net.node("E", "Epsilon"), await net.node("F", "Phi")
    await e.cli("accept", await invite(f))  # E's network is called "default" too
    _, out, _ = await a.cli("accept", await invite(e))
    (added,) = [n for n in await names(a) if n != "default"]
    assert added.startswith("net-") and "(the inviter calls this network 'default')" in out


@pytest.mark.parametrize(
    "hostile", ["Shelters\u202e\u2066liam", "Shelters\x1b[2J", "Shelters\r\nroot", ""]
)
async def test_an_invite_with_a_hostile_network_name_is_refused_in_one_line(
    net: Net, hostile: str
) -> None:
    a, c = await shelters(net)
    real = Invite.from_code(await invite(c))
    local = await Local.open(c.data, PASSPHRASE.encode())
    try:  # signed by the inviter's own key: the name rule refuses it, not the signature
        head = [real.node_id.raw, real.name, list(real.addresses), real.network_key]
        fields = [2, *head, real.secret, real.expires, hostile]
        signature = local.identity.sign(labels.INVITE_SIGNATURE + pack(fields))
    finally:
        await local.close()
    code = labels.INVITE_PREFIX + b32encode(pack([*fields, signature]))
    status, out, err = await a.cli("accept", code, check=False)
    assert status != 0 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "network name" in err and "\x1b" not in err + out and "\u202e" not in err + out
    assert await names(a) == ["default"]
