"""Know-who with real `canopy run` processes on 127.0.0.1: A - B - C in a line.

What B (A's peer) and C (two hops from A) can and cannot see under each sharing policy,
network queries that never reveal the asker beyond the first hop, the introduction flow,
vouches and ranking, withdrawal reaching every holder, and a scan of every data directory
for a contact's name and phone number.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import pytest

from node.demo import NodeProcess, scan_for, wait_until
from tests.conftest import Net
from tests.test_multinode import connected, link

pytestmark = pytest.mark.timeout(180)

CONTACTS = {
    "peers": ("lawyer", "Wakili Peers Kamau", "KE-28", "+254711000001"),
    "network": ("lawyer", "Wakili Network Otieno", "KE-28", "+254711000002"),
    "on-request": ("shelter", "Nyumba Request Salama", "KE-30", "+254711000003"),
    "private": ("medical", "Daktari Private Njeri", "KE-28", "+254711000004"),
}


async def line(net: Net, **c_env: str) -> tuple[NodeProcess, NodeProcess, NodeProcess]:
    """A - B - C, started and connected (`c_env`: environment of C's process)."""
    a = await net.node("A", "Alpha Legal")
    b = await net.node("B", "Beta Rights")
    c = await net.node("C", "Gamma Shelter", **c_env)
    for node in (a, b, c):
        await node.start()
    await link(a, b)
    await link(b, c)

    async def linked() -> bool:
        return (await connected(a, 1)) and (await connected(b, 2)) and (await connected(c, 1))

    await wait_until("links", linked)
    return a, b, c


async def api_query(node: NodeProcess, **fields: object) -> dict[str, Any]:
    """POST /v1/query straight to the node's API (a `canopy` process per query is slow)."""
    runtime = json.loads((node.data / "node.json").read_text())
    request = urllib.request.Request(
        runtime["api"] + "/v1/query",
        data=json.dumps(fields).encode(),
        headers={"Authorization": f"Bearer {runtime['token']}"},
        method="POST",
    )

    def fetch() -> dict[str, Any]:
        with urllib.request.urlopen(request, timeout=60) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

    return await asyncio.to_thread(fetch)


async def add(node: NodeProcess, share: str) -> str:
    kind, name, region, phone = CONTACTS[share]
    _, out, _ = await node.cli(
        "contact", "add", "--kind", kind, "--name", name, "--region", region, "--lang", "sw",
        "--channel", f"phone:{phone}", "--specialty", "land-rights", "--share", share,
    )  # fmt: skip
    return out.split()[0]


async def query(node: NodeProcess, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = await node.json("query", *args)
    return result


def names(result: dict[str, Any]) -> set[str]:
    return {r["name"] or f"teaser:{r['kind']}" for r in result["results"]}


async def test_policies_across_two_hops_introduction_and_query_privacy(net: Net) -> None:
    a, b, c = await line(net)
    ids = {share: await add(a, share) for share in CONTACTS}
    peers_name, network_name, request_name, private_name = (v[1] for v in CONTACTS.values())

    async def replicated() -> bool:
        at_b = names(await query(b))
        at_c = names(await query(c))
        return at_b == {peers_name, network_name, "teaser:shelter"} and at_c == {
            network_name,
            "teaser:shelter",
        }

    await wait_until("contacts to replicate within their policies", replicated)
    # A reads all four (the on-request one in full, as its author).
    assert names(await query(a)) == {peers_name, network_name, request_name, private_name}
    # B found A's peers-only lawyer offline, by kind, country and language (KE matches KE-28).
    found = await query(b, "--kind", "lawyer", "--region", "KE", "--lang", "sw")
    assert names(found) == {peers_name, network_name}
    # The teaser tells C only kind, region, language and who introduces.
    teaser = next(r for r in (await query(c))["results"] if r["teaser"])
    assert teaser["name"] == "" and "channels" not in teaser
    assert teaser["introducer"] == a.node_id and teaser["region"] == "KE-30"

    # Network query from C: B answers and forwards on its own behalf to A (depth 2).
    result = await query(c, "--network", "--region", "KE")
    assert result["asked"] == 1 and result["answered"] == 1
    assert names(result) == {network_name, "teaser:shelter"}  # never peers, never private
    received_at_a = (await a.api("/v1/queries"))["received"]
    assert received_at_a, "A was never asked"
    assert {q["from"] for q in received_at_a} == {b.node_id}
    assert c.node_id not in json.dumps(received_at_a)
    assert not set(result["query_ids"]) & {q["query_id"] for q in received_at_a}
    received_at_b = (await b.api("/v1/queries"))["received"]
    assert {q["from"] for q in received_at_b} == {c.node_id}

    # Introduction: C asks, A approves, the details reach C sealed to C alone.
    await c.cli("introduce", teaser["id"], "--note", "client needs shelter tonight")

    async def requested() -> list[dict[str, Any]]:
        rows = (await a.json("introductions"))["introductions"]
        return [r for r in rows if r["direction"] == "incoming" and r["status"] == "pending"]

    await wait_until("the request to reach A", requested)
    pending = (await requested())[0]
    assert pending["asker"] == c.node_id and pending["note"] == "client needs shelter tonight"
    await a.cli("introductions", "--approve", pending["id"][:12])

    async def introduced() -> bool:
        return request_name in names(await query(c))

    await wait_until("the details to reach C", introduced)

    async def reply_seen() -> bool:
        rows = (await c.json("introductions"))["introductions"]
        return any(r["status"] == "approved" for r in rows)

    await wait_until("the approval to reach C", reply_seen)
    # B relayed the sealed copy but still sees only the teaser.
    assert names(await query(b)) == {peers_name, network_name, "teaser:shelter"}
    # C holds the details now, but never passes them on: a network query of B's finds none.
    via_b = await query(b, "--network", "--kind", "shelter")
    assert names(via_b) == {"teaser:shelter"}

    # The private contact never left A.
    for node in (b, c):
        assert (await query(node, "--kind", "medical"))["results"] == []
        assert (await query(node, "--network", "--kind", "medical"))["results"] == []
    assert (await query(a, "--kind", "medical"))["results"][0]["id"] == ids["private"]

    # Nothing readable of any contact in any data file.
    needles = [v[1].encode() for v in CONTACTS.values()] + [
        v[3].encode() for v in CONTACTS.values()
    ]
    for node in (a, b, c):
        scanned, hits = scan_for(node.data, needles)
        assert scanned >= 2
        assert hits == []
    # ... nor in the logs (the log files sit beside the data directories).
    for node in (a, b, c):
        text = node.log_path.read_bytes()
        assert not any(n in text for n in needles)


async def test_vouches_rank_and_withdrawal_reaches_every_holder(net: Net) -> None:
    a, b, c = await line(net)
    network_lawyer = await add(a, "network")
    _, out, _ = await b.cli(
        "contact", "add", "--kind", "lawyer", "--name", "Wakili Beta Mwangi", "--region", "KE-28",
        "--lang", "sw", "--channel", "signal:mwangi.07", "--share", "network", "--review-days", "1",
    )  # fmt: skip
    b_lawyer = out.split()[0]

    async def both_at_c() -> bool:
        return len((await query(c, "--kind", "lawyer"))["results"]) == 2

    await wait_until("both lawyers at C", both_at_c)
    # B vouches for A (web of trust) and for A's lawyer (endorsement).
    await b.cli("vouch", a.node_id)
    await b.cli("vouch", network_lawyer[:16])

    async def vouched() -> bool:
        rows = (await query(c, "--network", "--kind", "lawyer"))["results"]
        top = rows[0] if rows else {}
        return top.get("id") == network_lawyer and len(top.get("vouchers", [])) == 2

    await wait_until("the vouches to count at C", vouched)
    rows = (await query(c, "--network", "--kind", "lawyer"))["results"]
    first = rows[0]
    assert {v["id"] for v in first["vouchers"]} == {a.node_id, b.node_id}
    distances = {v["id"]: v["distance"] for v in first["vouchers"]}
    assert distances == {a.node_id: 2, b.node_id: 1}  # B is C's peer; B vouches for A
    assert first["distance"] == 1

    # Review: B's own lawyer is due within the review window.
    due = (await b.json("review"))["due"]
    assert [r["id"] for r in due] == [b_lawyer]

    # A withdraws its lawyer: gone at A, B and C; B's vouch for it goes too when B withdraws.
    await a.cli("withdraw", network_lawyer[:16])

    async def gone() -> bool:
        results = [await query(n, "--kind", "lawyer") for n in (a, b, c)]
        return all(network_lawyer not in {r["id"] for r in res["results"]} for res in results)

    await wait_until("the withdrawal to reach every holder", gone)
    code, _, err = await c.cli("vouch", network_lawyer[:16], check=False)
    assert code == 1 and ("withdrawn" in err or "no record" in err)
