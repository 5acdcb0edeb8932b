"""`canopy demo --know-who`: three real nodes on 127.0.0.1 sharing a vetted directory.

A (Nairobi) - B (Mombasa) - C (Dar es Salaam) in a line. A and B add a realistic dataset
(Kenya, Tanzania, Uganda, DR Congo, Somalia; Swahili, English, French, Somali, Lingala,
Arabic) under every sharing policy; each node queries from the command line, C queries the
network, asks for an introduction that A approves, and every data directory is scanned for
the contacts' names and phone numbers. The names and numbers are fictional.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from node.demo import NodeProcess, wait_until
from node.demo_story import Demo, scan_all

NAMES = {
    "A": "Amani Legal Aid (Nairobi)",
    "B": "Pwani Rights Network (Mombasa)",
    "C": "Ukombozi Shelter (Dar es Salaam)",
}

# (who adds it, kind, name, region, langs, channels, specialties, share)
DATASET: list[tuple[str, str, str, str, list[str], list[str], list[str], str]] = [
    ("A", "lawyer", "Wakili Amina Chege", "KE-28", ["sw", "en"],
     ["phone:+254700100201", "signal:amina.28"], ["land-rights", "evictions"], "network"),
    ("A", "lawyer", "Wakili Otieno Odhiambo", "KE-30", ["sw", "en"],
     ["phone:+254700100202"], ["detention"], "peers"),
    ("A", "shelter", "Nyumba ya Amani", "KE-30", ["sw"],
     ["phone:+254700100203"], ["gbv"], "on-request"),
    ("A", "medical", "Dr. Faith Wambui (forensic exams)", "KE-30", ["en", "sw"],
     ["phone:+254700100204"], ["gbv"], "private"),
    ("A", "digital-security", "Usalama Digital Helpdesk", "KE", ["sw", "en"],
     ["email:help@usalama.example", "signal:usalama.01"], ["device-forensics"], "network"),
    ("A", "psychosocial", "Cadaan Xasan Counselling", "SO-BN", ["so", "ar"],
     ["whatsapp:+252610100205"], ["trauma"], "network"),
    ("B", "lawyer", "Wakili Rehema Mushi", "TZ-02", ["sw"],
     ["phone:+255710100206"], ["land-rights"], "network"),
    ("B", "relocation", "Safe Passage East Africa", "UG", ["en", "sw"],
     ["email:desk@safepassage.example"], ["temporary-relocation"], "network"),
    ("B", "lawyer", "Maître Mbuyi Kabasele", "CD-KN", ["fr", "ln"],
     ["phone:+243810100207"], ["press-freedom"], "network"),
    ("B", "emergency-funds", "Mfuko wa Dharura", "KE", ["sw", "en"],
     ["url:https://mfuko.example/apply"], [], "on-request"),
]  # fmt: skip

QUERIES = [
    ("B, offline: a lawyer in Kenya who speaks Swahili",
     "B", ["query", "--kind", "lawyer", "--region", "KE", "--lang", "sw"]),
    ("C, offline: anything in Mombasa", "C", ["query", "mombasa"]),
    ("C, network (depth 2): lawyers anywhere", "C", ["query", "--network", "--kind", "lawyer"]),
    ("C, network: French-speaking help", "C", ["query", "--network", "--lang", "fr"]),
]  # fmt: skip


async def _story(root: Path, nodes: dict[str, NodeProcess]) -> int:
    a, b, c = nodes.values()
    say = print
    await a.invite(b)
    await b.invite(c)

    async def linked() -> bool:
        peers = (await b.json("peers"))["peers"]
        return len(peers) == 2 and all(p["state"] == "connected" for p in peers)

    await wait_until("A-B and B-C to connect", linked)
    say("A <-> B <-> C connected\n")
    for who, kind, name, region, langs, channels, specialties, share in DATASET:
        args = ["contact", "add", "--kind", kind, "--name", name, "--region", region]
        args += [x for lang in langs for x in ("--lang", lang)]
        args += [x for ch in channels for x in ("--channel", ch)]
        args += [x for sp in specialties for x in ("--specialty", sp)]
        await nodes[who].cli(*args, "--share", share)
        say(f"{who} adds {kind:17} {region:6} {','.join(langs):6} share {share}")
    await b.cli("vouch", a.node_id)
    say("B vouches for A (web of trust)\n")

    async def spread() -> bool:
        return len((await c.json("query"))["results"]) >= 7

    await wait_until("contacts to spread", spread)
    for title, who, args in QUERIES:
        say(f"== {title}\n$ canopy {' '.join(args)}")
        _, out, _ = await nodes[who].cli(*args)
        say(out)

    teaser = next(r for r in (await c.json("query", "--kind", "shelter"))["results"])
    say(f"== C asks for an introduction to the on-request shelter {teaser['id'][:12]}")
    await c.cli("introduce", teaser["id"], "--note", "a client needs a safe place tonight")

    async def pending() -> list[dict[str, Any]]:
        rows = (await a.json("introductions"))["introductions"]
        return [r for r in rows if r["status"] == "pending"]

    await wait_until("the request to reach A", pending)
    request = (await pending())[0]
    say(f"A sees request {request['id'][:12]} from {request['asker'][:16]}…: approving")
    await a.cli("introductions", "--approve", request["id"])

    async def introduced() -> bool:
        rows = (await c.json("query", "--kind", "shelter"))["results"]
        return any(r["name"] for r in rows)

    await wait_until("the details to reach C", introduced)
    _, out, _ = await c.cli("query", "--kind", "shelter")
    say(f"$ canopy query --kind shelter   (on C)\n{out}")
    _, out, _ = await b.cli("query", "--kind", "shelter")
    say(f"B relayed it sealed and still sees only the teaser:\n{out}")

    needles = [d[2].encode() for d in DATASET]
    needles += [ch.split(":", 1)[1].encode() for d in DATASET for ch in d[5]]
    clean = scan_all(nodes, needles, "every name and number")
    say(json.dumps({"ok": clean}))
    return 0 if clean else 1


DEMO = Demo("know-who", NAMES, _story)
