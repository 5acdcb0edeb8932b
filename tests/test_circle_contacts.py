"""Contacts and vouches to circles, the growing peers circle and each network, end to end:
real `canopy run` processes on 127.0.0.1 (docs/spec/70-contacts-and-queries.md "Sharing
policies"). A circle member reads a contact shared with its circle, a removed member does
not read one shared after; a peer trusted later reads contacts shared `--share peers`; a
contact of one network never reaches a node that is only in the other."""

from __future__ import annotations

from typing import Any

import pytest

from node.demo import PASSPHRASE, NodeProcess, wait_until
from node.local import Local
from protocol.record import Record
from tests.conftest import Net
from tests.test_circles import holds
from tests.test_multinode import _all, link, three_nodes
from tests.test_networks import two_networks

pytestmark = pytest.mark.timeout(240)


async def add(node: NodeProcess, name: str, share: str, phone: str) -> str:
    _, out, _ = await node.cli(
        "contact", "add", "--kind", "lawyer", "--name", name, "--region", "KE-28",
        "--lang", "sw", "--channel", f"phone:{phone}", "--share", share,
    )  # fmt: skip
    return out.split()[0]


async def names(node: NodeProcess) -> list[str]:
    """The contacts `canopy query` shows this node (its running index)."""
    rows: list[dict[str, Any]] = (await node.json("query", "--kind", "lawyer"))["results"]
    return sorted(str(r["name"]) for r in rows)


async def names_are(node: NodeProcess, expected: list[str]) -> bool:
    return await names(node) == sorted(expected)


async def stored_contacts(node: NodeProcess) -> set[str]:
    """Ids of every contact and vouch record in the node's store, readable or not."""
    local = await Local.open(node.data, PASSPHRASE.encode())
    try:
        datas = await local.store.records_of_kind("contact")
        datas += await local.store.records_of_kind("vouch")
        return {Record.from_bytes(d).id.hex() for d in datas}
    finally:
        await local.close()


async def test_a_circle_member_reads_a_contact_shared_with_its_circle_and_a_removed_one_not_after(
    net: Net,
) -> None:
    a, b, c = await three_nodes(net)  # A - B - C: C gets A's records through B
    await a.cli("circle", "create", "Land lawyers")
    await a.cli("circle", "add", "Land lawyers", b.node_id)
    await a.cli("circle", "add", "Land lawyers", c.node_id)
    before = await add(a, "Wakili Before", "circle:Land lawyers", "+254711000001")
    await wait_until(
        "B and C read the circle's contact",
        lambda: _all(names_are(b, ["Wakili Before"]), names_are(c, ["Wakili Before"])),
    )
    assert await names(a) == ["Wakili Before"]

    await a.cli("circle", "remove", "Land lawyers", c.node_id)

    async def b_has_epoch_1() -> bool:
        return [r["epoch"] for r in (await b.json("circle", "list"))["circles"]] == [1]

    await wait_until("B applies the removal", b_has_epoch_1)
    after = await add(a, "Wakili After", "circle:Land lawyers", "+254711000002")
    await wait_until("B reads the new one", lambda: names_are(b, ["Wakili After", "Wakili Before"]))
    await wait_until("C holds the new one", lambda: holds(c, after))
    assert await names(c) == ["Wakili Before"]  # history shared: the old one stays readable
    assert not await holds(c, before)
    # A circle contact is never passed on: a network query from C finds nothing of it at B.
    result = await c.json("query", "--kind", "lawyer", "--network")
    assert sorted(r["name"] for r in result["results"]) == ["Wakili Before"]
    # A vouch goes where the contact goes: to the circle, sealed to its current epoch.
    _, out, _ = await b.cli("vouch", after)
    vouch_id = out.split()[0]
    await wait_until("C holds B's vouch", lambda: _holds_id(c, vouch_id))
    assert await holds(c, vouch_id)  # held, and no key of C's opens it


async def _holds_id(node: NodeProcess, prefix: str) -> bool:
    return any(i.startswith(prefix) for i in await stored_contacts(node))


async def test_a_peer_trusted_later_reads_contacts_shared_with_peers_before(net: Net) -> None:
    a, b, _ = await three_nodes(net)
    await add(a, "Wakili Grows", "peers", "+254711000003")
    frozen = await add(a, "Wakili Frozen", "peers-now", "+254711000004")
    await wait_until("B reads both", lambda: names_are(b, ["Wakili Frozen", "Wakili Grows"]))
    d = await net.node("D", "Delta Clinic")
    await d.start()
    await link(a, d)  # trusted later
    await wait_until("D reads the --share peers contact", lambda: names_are(d, ["Wakili Grows"]))
    assert await holds(d, frozen)  # held, but sealed to the peers of that day


async def test_a_contact_of_one_network_never_reaches_a_node_only_in_the_other(
    net: Net,
) -> None:
    a, b, c = await two_networks(net)  # A and B in "default", A and C in "N2"
    only_n1 = await add(a, "Wakili Default", "network:default", "+254711000005")
    await add(a, "Wakili Everywhere", "network", "+254711000006")
    await wait_until(
        "each network's contacts reach its members",
        lambda: _all(
            names_are(b, ["Wakili Default", "Wakili Everywhere"]),
            names_are(c, ["Wakili Everywhere"]),
        ),
    )
    assert await names(a) == ["Wakili Default", "Wakili Everywhere"]  # one row per contact
    _, out, _ = await a.cli("vouch", only_n1)
    vouch_id = out.split()[0]
    await wait_until("B holds the vouch", lambda: _holds_id(b, vouch_id))
    assert len(await stored_contacts(b)) == 3  # N1's two contact records and the vouch
    held_c = await stored_contacts(c)
    assert not any(i.startswith(only_n1) for i in held_c)
    assert len(held_c) == 1  # the N2 record of "everywhere" only: no N1 contact, no vouch
    # A network query from C (depth 2, through A) never brings back a contact of N1.
    result = await c.json("query", "--kind", "lawyer", "--network", "--depth", "2")
    assert sorted(r["name"] for r in result["results"]) == ["Wakili Everywhere"]
    # A never sent it (C would have refused it and penalised A for an unreadable answer).
    rejected = (await c.json("status"))["rejected"]
    assert not [k for k in rejected if k.startswith("answer_")], rejected


@pytest.mark.parametrize(
    ("share", "said"),
    [
        ("circle:Nobody", "no circle 'Nobody'"),
        ("network:Elsewhere", "no network called 'Elsewhere'"),
        ("circle", "unknown --share"),
        ("network:", "needs a name after the colon"),
        ("everyone", "unknown --share"),
    ],
)
async def test_a_share_naming_nothing_this_node_has_is_refused_in_one_line_and_writes_nothing(
    net: Net, share: str, said: str
) -> None:
    a = await net.node("A", "Alpha Legal")
    code, _, err = await a.cli(
        "contact", "add", "--kind", "lawyer", "--name", "Wakili", "--region", "KE",
        "--share", share, check=False,
    )  # fmt: skip
    assert code != 0 and said in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert await stored_contacts(a) == set()
