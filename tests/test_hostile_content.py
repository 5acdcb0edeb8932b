"""A trusted but hostile peer (its own real key, redeemed from a real invite) against a real
`canopy run` process: content that breaks its kind's schema, and names and titles made to
take over the operator's terminal. Readers (`guides`, `show`, `/v1/alerts`, `watch`) keep
working, show none of the malformed records, and never print a raw control character.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nacl.utils
import pytest

from node.demo import NodeProcess, wait_until
from protocol.encoding import Value
from protocol.envelope import seal_record
from protocol.identity import Identity
from protocol.invite import Invite
from protocol.record import Kind, Record, Scope
from tests.test_network_adversarial import RawPeer

pytestmark = pytest.mark.timeout(120)
DAY = 24 * 3600 * 1000
# What must never reach a terminal raw (tab and newline aside).
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
HOSTILE = (
    "\x1b[2J\x1b[H"  # clear the screen, cursor home
    "\x1b]0;pwned\x07"  # OSC 0: window title
    "\x1b]8;;https://evil.example/\x1b\\click me\x1b]8;;\x1b\\"  # OSC 8: hyperlink
    "\u202eelif.exe"  # right-to-left override
    "\x9b31m"  # C1 CSI
)


def sealed(identity: Identity, network_key: bytes, kind: Kind, content: dict[str, Value]) -> Record:
    """Signed by the hostile peer's own key, readable by every network member."""
    now = int(time.time() * 1000)
    return seal_record(
        identity,
        kind,
        content,
        created=now,
        expires=now + DAY,
        scope=Scope.NETWORK,
        recipients=[],
        network_key=network_key,
        random=nacl.utils.random,
    )


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[NodeProcess]:
    node = NodeProcess(tmp_path, "T", "Target")
    await node.init()
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def hostile_peer(node: NodeProcess, name: str = "raw") -> tuple[RawPeer, Identity, Invite]:
    _, code, _ = await node.cli("invite", "--address", node.address)
    invite = Invite.from_code(code.strip())
    identity = Identity.generate(nacl.utils.random)
    peer = await RawPeer.open(node.address)
    assert await peer.handshake(invite.capability(), identity, invite.node_id.raw, name)
    return peer, identity, invite


async def counts(node: NodeProcess) -> dict[str, int]:
    return dict((await node.api("/v1/status"))["records"])


async def watch(node: NodeProcess) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        "--data",
        str(node.data),
        "watch",
        env=node.env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    line = await asyncio.wait_for(proc.stderr.readline(), 30)
    assert b"watching" in line, line
    return proc


async def test_malformed_guides_from_trusted_peer_are_never_shown_and_crash_no_reader(
    target: NodeProcess,
) -> None:
    peer, hostile, invite = await hostile_peer(target)
    key = invite.network_key
    bad_guides = [
        {"title": b"bytes title", "text": "x"},
        {"title": "int topics", "topics": 7, "text": "x"},
        {"title": "huge list", "topics": ["t"] * 100_000, "text": "x"},
        {"title": "nested text", "text": {"a": [1, 2]}},
        {"title": "unknown field", "text": "x", "script": "rm -rf"},
    ]
    guides = [sealed(hostile, key, Kind.GUIDE, c) for c in bad_guides]
    good = sealed(hostile, key, Kind.GUIDE, {"title": "Good guide", "text": "fine"})
    await peer.send(peer.session.records([r.to_bytes() for r in [*guides, good]]))
    await wait_until("guides stored", lambda: _has(target, "guide", 6))

    code, out, err = await target.cli("guides", "--json", check=False)
    assert code == 0, err
    listed = json.loads(out)
    assert [g["title"] for g in listed["guides"]] == ["Good guide"]
    assert listed["held_malformed"] == len(bad_guides)
    code, out, err = await target.cli("guides", check=False)
    assert code == 0 and "Good guide" in out and "5 malformed" in out, err
    for record in guides:
        code, out, err = await target.cli("show", record.id.hex(), check=False)
        assert code == 1 and "malformed" in err and "Traceback" not in err, err
        assert err.count("\n") == 1 and out == ""
    code, out, err = await target.cli("show", good.id.hex(), check=False)
    assert code == 0 and "fine" in out, err
    # The running node opened each guide once as it arrived: the malformed ones are counted
    # and cost their author (who signed them), the good one nothing.
    await wait_until("malformed guides counted", lambda: _rejected(target, len(bad_guides)))
    score = int((await _rows(target))[str(hostile.node_id)]["score"])
    assert score < 100
    assert (await target.api("/v1/status"))["rejected"]["content_malformed"] == len(bad_guides)

    # Contacts and vouches: the know-who index opens them on arrival; the malformed ones
    # are counted and cost their author.
    await wait_until("index ready", lambda: _index_ready(target))
    malformed = [
        sealed(hostile, key, Kind.CONTACT, {"name": b"bytes name", "v": 1}),
        sealed(hostile, key, Kind.VOUCH, {"v": 1, "about": "peer", "subject": 7}),
    ]
    await peer.send(peer.session.records([r.to_bytes() for r in malformed]))
    # The guides cost it its score already: the first malformed contact cuts it off (which
    # also stops the rest of that batch).
    await wait_until("malformed contact counted", lambda: _rejected(target, len(bad_guides) + 1))
    row = (await _rows(target))[str(hostile.node_id)]
    assert int(row["score"]) < score or float(row["banned_for_s"]) > 0
    await peer.close()


async def test_malformed_alerts_never_reach_watch_or_the_api_and_cost_their_author(
    target: NodeProcess,
) -> None:
    peer, hostile, invite = await hostile_peer(target)
    key = invite.network_key
    watcher = await watch(target)
    try:
        bad_alerts = [
            {"text": b"bytes alert", "urgency": "high"},
            {"text": "x" * 5000, "urgency": "high"},
            {"text": "odd urgency", "urgency": 3},
            {"text": "no urgency"},
        ]
        alerts = [sealed(hostile, key, Kind.ALERT, c) for c in bad_alerts]
        await peer.send(peer.session.records([r.to_bytes() for r in alerts]))
        await wait_until("bad alerts stored", lambda: _has(target, "alert", len(alerts)))
        fine = sealed(hostile, key, Kind.ALERT, {"text": "Bridge closed", "urgency": "high"})
        await peer.send(peer.session.records([fine.to_bytes()]))
        assert watcher.stdout is not None
        line = await asyncio.wait_for(watcher.stdout.readline(), 20)
        assert b"Bridge closed" in line, line  # `watch` outlived every malformed alert
        assert watcher.returncode is None
    finally:
        watcher.terminate()
        await watcher.wait()
    buffered = (await target.api("/v1/alerts"))["alerts"]  # 200, not 500
    assert [a["text"] for a in buffered if a["readable"]] == ["Bridge closed"]
    assert {a["id"] for a in buffered} == {fine.id.hex()}

    status = await target.json("status")
    assert status["rejected"]["content_malformed"] == len(bad_alerts)
    rows = {r["id"]: r for r in (await target.json("peers"))["peers"]}
    assert int(rows[str(hostile.node_id)]["score"]) < 100  # the author is held to account
    await peer.close()


async def _index_ready(node: NodeProcess) -> bool:
    return bool((await node.api("/v1/status"))["knowwho"]["ready"])


async def _rejected(node: NodeProcess, n: int) -> bool:
    return int((await node.api("/v1/status"))["rejected"].get("content_malformed", 0)) >= n


async def _rows(node: NodeProcess) -> dict[str, dict[str, object]]:
    return {r["id"]: r for r in (await node.json("peers"))["peers"]}


async def _has(node: NodeProcess, kind: str, n: int) -> bool:
    return (await counts(node)).get(kind, 0) >= n


async def test_hello_names_follow_the_name_rule_and_none_poses_as_another_peer(
    target: NodeProcess,
) -> None:
    # A Hello name full of escapes is refused by the name rule; so is a name another peer
    # already goes by, however it is spelled.
    first, first_id, _ = await hostile_peer(target, "Alice Aid")
    await wait_until("first name taken", lambda: _named(target, first_id, "Alice Aid"))
    evil, evil_id, _ = await hostile_peer(target, HOSTILE)
    twin, twin_id, _ = await hostile_peer(target, "ALICE  aid")
    await wait_until("hellos seen", lambda: _refused(target, 2))
    rows = {r["id"]: r for r in (await target.json("peers"))["peers"]}
    assert rows[str(first_id.node_id)]["name"] == "Alice Aid"
    assert rows[str(evil_id.node_id)]["name"] == ""
    assert rows[str(twin_id.node_id)]["name"] == ""
    rejected = (await target.json("status"))["rejected"]
    assert rejected["hello_name_refused"] == 1 and rejected["hello_name_taken"] == 1

    # Two peers that go by one name (here: so named by the operator) are each listed with
    # their short id.
    others = [Identity.generate(nacl.utils.random).node_id for _ in range(2)]
    for other in others:
        await target.cli(
            "trust", str(other), "--address", "ws://192.0.2.1:7420/canopy", "--name", "Twin Org"
        )
    _, out, _ = await target.cli("peers")
    for other in others:
        assert f"Twin Org ({other.short})" in out
    assert f"Alice Aid ({first_id.node_id.short})" not in out  # a unique name stands alone
    for p in (first, evil, twin):
        await p.close()


async def test_peer_names_and_guide_titles_never_reach_the_terminal_raw(
    target: NodeProcess,
) -> None:
    # A name stored before the name rule (here: typed by the operator) prints escaped.
    await target.cli(
        "trust",
        str(Identity.generate(nacl.utils.random).node_id),
        "--address",
        "ws://192.0.2.2:7420/canopy",
        "--name",
        HOSTILE,
    )
    code, out, err = await target.cli("peers", check=False)
    assert code == 0, err
    assert not RAW.search(out + err), out
    assert "\\u001b[2J" in out and "\\u202e" in out

    # A guide whose title and text carry the same sequences: readable, and printed escaped.
    peer, hostile, invite = await hostile_peer(target)
    title = f"Safety {HOSTILE}"
    record = sealed(
        hostile, invite.network_key, Kind.GUIDE, {"title": title, "text": f"line 1\n{HOSTILE}\n"}
    )
    await peer.send(peer.session.records([record.to_bytes()]))
    await wait_until("guide stored", lambda: _has(target, "guide", 1))
    for args in (("guides",), ("show", record.id.hex()[:12])):
        code, out, err = await target.cli(*args, check=False)
        assert code == 0, err
        assert not RAW.search(out + err), out
        assert "\\u001b]0;pwned\\u0007" in out
    assert "\\u202eelif.exe" in out and "line 1\n" in out  # `show`: the text, lines kept
    code, out, _ = await target.cli("guides", "--json")
    assert json.loads(out)["guides"][0]["title"] == title  # JSON: escaped by JSON, exact
    assert not RAW.search(out)
    await peer.close()


async def _named(node: NodeProcess, peer: Identity, name: str) -> bool:
    rows = {r["id"]: r for r in (await node.json("peers"))["peers"]}
    return bool(rows.get(str(peer.node_id), {}).get("name") == name)


async def _refused(node: NodeProcess, n: int) -> bool:
    rejected = (await node.api("/v1/status"))["rejected"]
    return int(rejected.get("hello_name_refused", 0) + rejected.get("hello_name_taken", 0)) >= n


def test_cli_output_path_escapes_every_control_and_bidi_character() -> None:
    import io

    import cli

    every = "".join(map(chr, [*range(0x20), *range(0x7F, 0xA0)])) + "\u061c\u200e\u200f"
    every += "".join(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)])) + "\u2028"
    assert not RAW.search(cli.printable(every + HOSTILE, cell=True))
    assert cli.printable("a\tb\nc") == "a\tb\nc"  # lines and tabs pass outside table cells
    assert cli.printable("a\tb\nc", cell=True) == "a\\u0009b\\u000ac"
    out = io.StringIO()
    stream = cli._Printable(out)
    print(json.dumps({"t": HOSTILE}, ensure_ascii=False), file=stream)  # type: ignore[arg-type]
    assert json.loads(out.getvalue()) == {"t": HOSTILE}  # a JSON log line stays JSON
    assert not RAW.search(out.getvalue())
