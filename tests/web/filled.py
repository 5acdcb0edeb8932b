"""A node with something on every page, for the accessibility check and the screenshots:
two guides, contacts (one shared to the network, one on request), an alert sent and one
received from a connected peer, a staff user waiting to enrol. Built with the CLI, as an
operator would."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

from node.demo import NodeProcess, wait_until
from tests.web.conftest import Nodes

GUIDES = {
    "Phone hygiene at checkpoints": (
        "# Phone hygiene at checkpoints\n\nBefore you travel, **log out** of every account"
        " you do not need.\n\n- Turn on full-disk encryption.\n- Carry a second phone.\n"
    ),
    "Documenting land grabs safely": (
        "# Documenting land grabs\n\nKeep the originals *offline*; share copies only with"
        " the lawyer handling the case.\n"
    ),
}


@dataclass
class Filled:
    a: NodeProcess  # the node whose app is looked at
    b: NodeProcess  # its connected peer
    guide_id: str
    enrol_url: str
    request_id: str = ""  # B's help request to the circle A and B are in


async def filled(nodes: Nodes, root: Path) -> Filled:
    a = await nodes.node("a", "Legal Aid Nairobi")
    b = await nodes.node("b", "Shelter Mombasa")
    _, code, _ = await a.cli("invite", "--address", a.address)
    await b.cli("accept", code.strip())

    async def fill_a() -> str:
        for title, text in GUIDES.items():
            source = root / (title.split()[0].lower() + ".md")
            source.write_text(text)
            await a.cli("publish", "guide", str(source), "--title", title, "--lang", "en",
                        "--topic", "digital-security", "--region", "KE")
        await a.cli("contact", "add", "--kind", "lawyer", "--name", "Wanjiru Land Rights Clinic",
                    "--region", "KE", "--lang", "sw", "--lang", "en", "--channel",
                    "phone:+254700000001", "--specialty", "land-rights", "--share", "network")
        await a.cli("contact", "add", "--kind", "shelter", "--name", "Safe House Kisumu",
                    "--region", "KE", "--lang", "sw", "--share", "on-request")
        await a.cli("alert", "Checkpoint on the Mombasa road tonight: take the coast route",
                    "--urgency", "high")
        _, enrol, _ = await a.cli("ui", "user", "add", "amina", "--role", "editor")
        await a.start()
        return enrol

    async def fill_b() -> None:
        await b.cli("contact", "add", "--kind", "medical", "--name", "Coast Trauma Clinic",
                    "--region", "KE", "--lang", "en", "--share", "network")
        await b.start()

    # The two data directories are separate: fill and start them side by side.
    enrol, _ = await asyncio.gather(fill_a(), fill_b())

    async def connected() -> bool:
        rows = (await a.api("/v1/peers"))["peers"]
        return any(r["state"] == "connected" for r in rows)

    await wait_until("A and B connected", connected)
    await b.cli("alert", "Flooding near Likoni ferry: the shelter has moved to the school",
                "--urgency", "normal")

    async def alert_arrived() -> bool:
        return "Likoni" in json.dumps(await a.api("/v1/alerts"))

    await wait_until("B's alert at A", alert_arrived)
    guides = (await a.json("guides"))
    rows = guides["guides"] if isinstance(guides, dict) else guides
    guide_id = next(g["id"] for g in rows if g["title"] == "Phone hygiene at checkpoints")
    request_id = await _rapid_response(a, b)
    return Filled(a, b, guide_id, enrol.splitlines()[0].strip(), request_id)


async def _rapid_response(a: NodeProcess, b: NodeProcess) -> str:
    """A circle of A and B; a check-in plan each (A makes one and watches B's); B's help
    request to the circle; an alert each asking for acknowledgement. The plans' intervals
    are long: nothing is missed while the pages are looked at."""
    circle = "Coast responders"
    await a.cli("circle", "create", circle)
    await a.cli("circle", "add", circle, b.node_id)

    async def b_in_it() -> bool:
        return bool((await b.json("circle", "list"))["circles"])

    await wait_until("B in A's circle", b_in_it)
    for node in (a, b):
        await node.cli("checkin", "plan", "--every", "12h", "--grace", "2h", "--circle", circle)
    text = "Two staff held at the Likoni ferry checkpoint since noon"
    to = ("--to", f"circle:{circle}")
    _, out, _ = await b.cli("help", "request", "--need", "legal", "--region", "KE", *to, text)
    await a.cli("alert", "--ack", *to, "Police visit expected tomorrow: confirm you saw this")
    await b.cli("alert", "--ack", *to, "Shelter moving tonight: confirm you can take two")

    async def arrived() -> bool:
        watched = (await a.json("checkin", "status"))["plans"]
        asked = (await a.json("help", "list"))["requests"]
        alerts = (await a.json("alerts"))["alerts"]
        return len(watched) == 2 and len(asked) == 1 and len(alerts) >= 4

    await wait_until("B's plan, request and alert at A", arrived)
    return str(out.split()[0])
