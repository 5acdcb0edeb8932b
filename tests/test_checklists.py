"""Checklists for preparedness (issue 14): the strict content schema and its item ids, a
checklist published on A and read on B by real `canopy run` processes, B's progress that
never leaves B (not in A's data directory, not in what B sends or bundles, not readable on
B's own disk), progress kept across a new version for unchanged items, review due dates,
and malformed checklist files refused with one clear line."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from node.checklists import mark_reviewed, publish_checklist, set_tick, states
from node.demo import NodeProcess, scan_for, wait_until
from node.local import Local
from protocol import limits
from protocol.contact import DAY_MS
from protocol.content import Checklist, item_id
from protocol.errors import DecodeError
from protocol.record import Kind
from tests.conftest import Net
from tests.test_hostile_content import _has, _rejected, hostile_peer, sealed
from tests.test_multinode import connected, link

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[1]
PASS = b"checklist pass"
NOW = 1_900_000_000_000
ITEMS = [
    "Lock the filing cabinet with the case files",
    "Back up the laptops to the encrypted drive",
    "Check who holds a key to the office",
]


def _yml(path: Path, title: str, items: list[str]) -> Path:
    lines = ["index: 3", f"title: {title}", "list:", *(f"  - check: {t}" for t in items)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- the schema -------------------------------------------------------------------------------


def _content(**change: object) -> dict[str, object]:
    content: dict[str, object] = {"title": "Office", "items": ["One", "Two"], "review_days": 90}
    content.update(change)
    return {k: v for k, v in content.items() if v is not None}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"colour": "red"}, "unknown key"),
        ({"items": None}, "lacks 'items'"),
        ({"items": []}, "at least one item"),
        ({"items": ["One", "One"]}, "repeated"),
        ({"items": ["One", "  "]}, "empty"),
        ({"items": ["x" * (limits.MAX_CHECKLIST_ITEM_BYTES + 1)]}, "too long"),
        ({"items": [f"i{n}" for n in range(limits.MAX_CHECKLIST_ITEMS + 1)]}, "too many"),
        ({"items": "One"}, "array"),
        ({"title": ""}, "empty"),
        ({"review_days": 0}, "out of range"),
        ({"review_days": limits.MAX_CHECKLIST_REVIEW_DAYS + 1}, "out of range"),
        ({"review_days": True}, "integer"),
        ({"translation_of": b"\x01" * 31}, "32 bytes"),
        ({"lesson": "ab" * 32}, "bytes"),
    ],
)
def test_checklist_content_outside_the_schema_is_a_decode_error(
    change: dict[str, object], reason: str
) -> None:
    with pytest.raises(DecodeError, match=reason):
        Checklist.from_content(_content(**change))  # type: ignore[arg-type]


def test_item_ids_depend_on_the_text_alone_and_match_the_spec_example() -> None:
    first = Checklist.from_content(_content(items=["One", "Two"]))  # type: ignore[arg-type]
    second = Checklist.from_content(_content(items=["Zero", "Two", "One"]))  # type: ignore[arg-type]
    assert first.item_ids[0] == second.item_ids[2] and first.item_ids[1] == second.item_ids[1]
    assert len(set(second.item_ids)) == 3
    assert re.fullmatch(r"[0-9a-f]{12}", item_id("One"))
    assert f"`{item_id('Lock the office door')}`" in (ROOT / "docs" / "SPEC.md").read_text()
    assert Checklist.from_content(first.to_content()) == first  # type: ignore[arg-type]


# -- progress and review on one data directory -----------------------------------------------


async def test_a_checklist_is_due_until_fully_reviewed_and_again_after_its_interval(
    tmp_path: Path,
) -> None:
    local = await Local.create(tmp_path / "node", "Org", PASS)
    try:
        path = _yml(tmp_path / "c_office.yml", "Office", ITEMS)
        record, _ = await publish_checklist(
            local, path, title=None, lang="en", topics=[], to="peers", review_days=30, now_ms=NOW
        )
        ref = record.id.hex()

        async def due_at(at: int) -> bool:
            (found,), _ = await states(local, at)
            return found.due(at)

        assert await due_at(NOW)  # never reviewed: due at once
        for n, at in (("1", NOW + 1), ("2", NOW + 2)):
            await set_tick(local, ref, n, True, at)
        assert await due_at(NOW + 3)  # two of three ticked is not a full review
        await set_tick(local, ref, "check who", True, NOW + 10)  # by the start of its text
        assert not await due_at(NOW + 10)
        assert not await due_at(NOW + 10 + 30 * DAY_MS - 1)
        assert await due_at(NOW + 10 + 30 * DAY_MS)
        # An explicit review restarts the interval whatever is ticked.
        await set_tick(local, ref, "2", False, NOW + 40 * DAY_MS)
        reviewed = await mark_reviewed(local, ref, NOW + 41 * DAY_MS)
        assert reviewed.ticked == [True, False, True]
        assert reviewed.next_review == NOW + 71 * DAY_MS
        assert not await due_at(NOW + 70 * DAY_MS)
    finally:
        await local.close()


# -- two real nodes ---------------------------------------------------------------------------


async def _listed(node: NodeProcess) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = (await node.json("checklists"))["checklists"]
    return rows


async def test_progress_on_b_never_leaves_b_and_survives_a_new_version(
    net: Net, tmp_path: Path
) -> None:
    a = await net.node("A", "Alpha Legal")
    b = await net.node("B", "Beta Rights")
    for node in (a, b):
        await node.start()
    await link(a, b)
    await wait_until("A and B connect", lambda: _both(connected(a, 1), connected(b, 1)))

    source = _yml(tmp_path / "c_office.yml", "Office lock-up", ITEMS)
    _, out, _ = await a.cli("publish", "checklist", str(source), "--review-days", "90")
    first = out.split()[0]

    async def b_reads_first() -> bool:
        return [r["id"] for r in await _listed(b)] == [first]

    await wait_until("B reads the checklist", b_reads_first)
    shown = await b.json("checklist", "show", first[:12])
    assert [i["text"] for i in shown["items"]] == ITEMS and shown["review_days"] == 90
    assert shown["ticked"] == 0 and shown["due"]
    _, out, _ = await b.cli("show", first)  # the record itself, numbered as tick takes them
    assert f"1. {ITEMS[0]}" in out and f"3. {ITEMS[2]}" in out
    assert [r["id"] for r in (await b.json("review"))["checklists_due"]] == [first]

    records_before = (await b.json("status"))["records"]
    _, out, _ = await b.cli("checklist", "tick", first[:12], "1")
    assert ITEMS[0] in out
    await b.cli("checklist", "tick", first[:12], "back up")
    assert [i["ticked"] for i in (await b.json("checklist", "show", first))["items"]] == [
        True,
        True,
        False,
    ]
    # A tick is no record: B holds nothing new to offer a peer, and A never learns of it.
    assert (await b.json("status"))["records"] == records_before
    assert (await a.json("checklist", "show", first))["ticked"] == 0

    # A new version: item 1 unchanged, item 2 reworded, a new item 3.
    changed = [ITEMS[0], "Back up the laptops to two encrypted drives", "Shred old visitor logs"]
    _, out, _ = await a.cli(
        "publish", "checklist", str(_yml(source, "Office lock-up", changed)), "--replaces", first
    )
    second = out.splitlines()[-1].split()[0]

    async def b_reads_second() -> bool:
        return [r["id"] for r in await _listed(b)] == [second]

    await wait_until("B holds only the new version", b_reads_second)
    items = (await b.json("checklist", "show", second))["items"]
    assert [(i["text"], i["ticked"]) for i in items] == [
        (changed[0], True),
        (changed[1], False),
        (changed[2], False),
    ]
    source.unlink()  # the source is A's user's file, not a node's: keep the scans honest

    # B's progress as it would appear if it leaked: its item ids and its lesson's key.
    ticked_ids = [item_id(ITEMS[0]).encode(), item_id(ITEMS[1]).encode()]
    bundle = tmp_path / "for-a.bundle"
    await b.cli("export", "--for", a.node_id, "--out", str(bundle))
    for node in (a, b):
        scanned, hits = scan_for(node.data, ticked_ids)
        assert scanned >= 2 and hits == [], hits
    assert bundle.stat().st_size > 0
    assert not any(n in bundle.read_bytes() for n in ticked_ids)
    # The items themselves are sealed at rest on both nodes (the at-rest plaintext scan).
    item_text = [t.encode() for t in (*ITEMS, *changed)]
    for node in (a, b):
        scanned, hits = scan_for(node.data, item_text)
        assert scanned >= 2 and hits == [], hits
    # A takes in B's bundle and still knows nothing of B's ticks.
    await a.cli("import", str(bundle))
    assert (await a.json("checklist", "show", second))["ticked"] == 0
    assert (await b.json("checklist", "show", second))["ticked"] == 1


async def _both(*checks: object) -> bool:
    return all(await asyncio.gather(*checks))  # type: ignore[call-overload]


# -- malformed checklist files -----------------------------------------------------------------

BAD_FILES = {
    "broken.yml": "list: [one, two\n",
    "scalar.yml": "just a line of text\n",
    "nolist.yml": "title: Office\nindex: 1\n",
    "notcheck.yml": "list:\n  - check: Lock the door\n  - label: Heading\n",
    "emptycheck.yml": "list:\n  - check: '   '\n",
    "dupes.yml": "list:\n  - check: Lock the door\n  - check: Lock the door\n",
    "empty.md": "# A heading\n\nNo boxes here.\n",
    "checklist.pdf": "%PDF-1.4\n",
}


async def test_malformed_checklist_files_give_one_clear_line(net: Net, tmp_path: Path) -> None:
    node = await net.node("A")
    for name, text in {**BAD_FILES, "latin1.yml": None}.items():
        path = tmp_path / name
        if text is None:
            path.write_bytes("list:\n  - check: Caf\xe9\n".encode("latin-1"))
        else:
            path.write_text(text, encoding="utf-8")
        code, out, err = await node.cli("publish", "checklist", str(path), check=False)
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and lines[0].startswith("canopy: "), (name, err)
        assert name in lines[0] and "Traceback" not in err, err
    code, _, err = await node.cli("publish", "checklist", str(tmp_path / "none.yml"), check=False)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert await node.json("checklists") == {"checklists": [], "held_unreadable": 0}
    # Tick on a missing record, or a missing item, is one line too.
    path = _yml(tmp_path / "c_ok.yml", "Fine", ITEMS)
    _, out, _ = await node.cli("publish", "checklist", str(path))
    rid = out.split()[0]
    for args in (("tick", "deadbeef00", "1"), ("tick", rid, "9"), ("tick", rid, "zzz")):
        code, _, err = await node.cli("checklist", *args, check=False)
        assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


async def test_malformed_checklists_from_a_peer_are_never_listed_and_cost_their_author(
    net: Net,
) -> None:
    target = await net.node("T", "Target")
    await target.start()
    peer, hostile, invite = await hostile_peer(target)
    bad = [
        {"title": "no items", "items": []},
        {"title": "repeated", "items": ["a", "a"]},
        {"title": "bytes item", "items": [b"a"]},
        {"title": "interval", "items": ["a"], "review_days": -1},
        {"title": "unknown", "items": ["a"], "ticks": {"a": 1}},
    ]
    records = [sealed(hostile, invite.network_key, Kind.CHECKLIST, c) for c in bad]
    good = sealed(hostile, invite.network_key, Kind.CHECKLIST, {"title": "Good", "items": ["a"]})
    await peer.send(peer.session.records([r.to_bytes() for r in [*records, good]]))
    await wait_until("checklists stored", lambda: _has(target, "checklist", len(bad) + 1))
    listed = await target.json("checklists")
    assert [r["title"] for r in listed["checklists"]] == ["Good"]
    assert listed["held_unreadable"] == len(bad)
    assert [r["title"] for r in (await target.json("review"))["checklists_due"]] == ["Good"]
    for record in records:
        code, out, err = await target.cli("checklist", "show", record.id.hex(), check=False)
        assert code == 1 and "malformed" in err and "Traceback" not in err and out == "", err
    await wait_until("malformed checklists counted", lambda: _rejected(target, len(bad)))
    await peer.close()
