"""`canopy demo --networks`: networks of networks, circles and audiences that grow, on three
real nodes on 127.0.0.1.

A (a Kenyan legal-aid group) shares network "Kenya legal" with B. C, a Ugandan shelter,
runs its own network; A accepts C's invite and so links the two without either leaving.
A publishes to both networks, to one, and to its peers (which C, trusted later, reads);
a circle of A, B and C loses C, and C cannot read what the circle shares after. Every data
directory is then scanned for the guides' text. The organisations are fictional.
"""

from __future__ import annotations

import json
from pathlib import Path

from node.demo import NodeProcess, wait_until
from node.demo_story import Demo, scan_all

NAMES = {
    "A": "Haki Legal Aid (Nairobi)",
    "B": "Pwani Paralegals (Mombasa)",
    "C": "Amani Shelter (Kampala)",
}

TEXTS = {
    "both": "Border crossing: what to carry, what to leave (Busia, Malaba)",
    "kenya": "Filing a habeas petition at the Milimani court",
    "peers": "Our intake hours and referral form",
    "circle-before": "Referral list for the border shelters, March",
    "circle-after": "Referral list for the border shelters, April",
}


async def _titles(node: NodeProcess) -> set[str]:
    return {g["title"] for g in (await node.json("guides"))["guides"]}


async def _publish(node: NodeProcess, root: Path, key: str, to: str) -> str:
    path = root / f"{key}.md"
    path.write_text(f"# {TEXTS[key]}\n\nMarker {key}: see the attached notes.\n")
    _, out, _ = await node.cli("publish", "guide", str(path), "--to", to)
    path.unlink()
    return out.split()[0]  # "ID  TITLE  (to ...)", one line per record


async def _story(root: Path, nodes: dict[str, NodeProcess]) -> int:
    a, b, c = nodes.values()
    say = print
    await a.invite(b)
    say("A and B share network 'default' (A's Kenyan network)")
    peers_guide = await _publish(a, root, "peers", "peers")
    say(f"A publishes {peers_guide[:12]} --to peers, while its only peer is B")

    out = await c.invite(a, "--network-name", "Uganda shelters")
    say(f"$ canopy accept <C's invite> --network-name 'Uganda shelters'   (on A)\n{out}")
    _, out, _ = await a.cli("networks")
    say(f"$ canopy networks   (on A)\n{out}")

    both = await _publish(a, root, "both", "network")
    kenya = await _publish(a, root, "kenya", "network:default")
    say(f"A publishes {both[:12]} --to network (both) and {kenya[:12]} --to network:default")

    async def delivered() -> bool:
        return await _titles(b) >= {TEXTS["both"], TEXTS["kenya"], TEXTS["peers"]} and (
            await _titles(c) >= {TEXTS["both"], TEXTS["peers"]}
        )

    await wait_until("the guides to reach B and C", delivered)
    for who, node in (("B", b), ("C", c)):
        say(f"{who} reads: " + "; ".join(sorted(await _titles(node))))
    code_c, _, err = await c.cli("show", kenya, check=False)
    say(f"C never received the Kenya-only guide: {err.strip()}")
    say("C, trusted after the --to peers guide, reads it: the peers circle grew\n")

    await a.cli("circle", "create", "Border referrals")
    for peer in (b, c):
        await a.cli("circle", "add", "Border referrals", peer.node_id)
    await _publish(a, root, "circle-before", "circle:Border referrals")
    await wait_until(
        "the circle's guide to reach B and C",
        lambda: _both_read(b, c, TEXTS["circle-before"]),
    )
    say("A's circle 'Border referrals' (A, B, C) reads the March list")
    await a.cli("circle", "remove", "Border referrals", c.node_id)
    after = await _publish(a, root, "circle-after", "circle:Border referrals")

    async def b_reads_after() -> bool:
        return TEXTS["circle-after"] in await _titles(b)

    await wait_until("B to read the April list", b_reads_after)
    code_after, _, err = await c.cli("show", after, check=False)
    say(f"C removed: B reads the April list; C does not: {err.strip()}")
    _, out, _ = await c.cli("circle", "list")
    say(f"$ canopy circle list   (on C)\n{out}")

    clean = scan_all(nodes, [t.encode() for t in TEXTS.values()], "every guide's text")
    ok = clean and code_c == 1 and code_after == 1
    say(json.dumps({"ok": ok}))
    return 0 if ok else 1


async def _both_read(b: NodeProcess, c: NodeProcess, title: str) -> bool:
    return title in await _titles(b) and title in await _titles(c)


DEMO = Demo("networks", NAMES, _story)
