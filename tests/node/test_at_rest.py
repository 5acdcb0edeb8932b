"""What a seized disk shows: exactly the clear metadata the SPEC lists, and nothing that
says which records this node wrote (docs/spec/40-invites-and-storage.md, "Tables").

The list of tables and columns is parsed from the SPEC part itself, so the two cannot drift;
every store here is a real SQLite file made by the real code.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

from node import circles
from node.alerts import Alerts
from node.checkins import make_plan
from node.checklists import publish_checklist, set_tick
from node.content import publish_guides, row_of, withdraw
from node.library_import import import_library
from node.local import Local, Peer
from node.notices import Notices
from node.peer_book import PeerBook
from node.revocation import mark_revoked, own_certificate
from node.store import Store
from node.trust import create_invite
from node.web import staff
from node.wipe import wipe
from protocol import limits
from protocol.content import item_id
from protocol.identity import Identity
from tests.node.guides import publish_guide

ROOT = Path(__file__).resolve().parents[2]
STORAGE_PART = ROOT / "docs" / "spec" / "40-invites-and-storage.md"
PASS = b"at rest pass"
NOW = 1_900_000_000_000
HOUR = 3600 * 1000
ORG = "Quetzal Legal Aid Collective"
PEER_NAME = "Harbour Shelter Network"
PEER_ADDRESS = "wss://harbour-shelter.example/canopy"
CHECKLIST_TITLE = "Office lock-up routine"
PLAN_MESSAGE = "Amina missed her check-in at the Kisumu border post"
DURESS_PIN = "729146"
CHECKLIST_ITEM = "Shred the visitor log every Friday"
LIBRARY_TITLE = "Night crossings at Busia"  # a lesson of an imported library
NOTICE_TEXT = "HELP REQUEST (legal, KE): Wanjiru held at Malaba police post"
SEAL_OVERHEAD = 24 + 16  # nonce + MAC of a secretbox


def spec_tables() -> dict[str, tuple[set[str], set[str], set[str]]]:
    """table -> (clear columns, sealed columns, listed values of clear columns), from the
    SPEC's "Tables" table: a backticked name outside parentheses is a column; backticked
    names inside the parentheses of a clear cell are the values that column takes."""
    text = STORAGE_PART.read_text(encoding="utf-8")
    section = text[text.index("### Tables") :]
    section = section[: section.index("\n### ", 1)]
    out: dict[str, tuple[set[str], set[str], set[str]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not re.fullmatch(r"`\w+`", cells[0]):
            continue

        def outside(cell: str) -> str:
            while re.search(r"\([^()]*\)", cell):
                cell = re.sub(r"\([^()]*\)", "", cell)
            return cell

        def names(cell: str) -> set[str]:
            return set(re.findall(r"`(\w+)`", cell))

        clear, sealed = cells[1], cells[2]
        values = set().union(*(names(inner) for inner in re.findall(r"\(([^()]*)\)", clear)))
        out[cells[0].strip("`")] = (names(outside(clear)), names(outside(sealed)), values)
    assert out, "no table found in the SPEC's storage part"
    return out


def schema(db: Path) -> dict[str, set[str]]:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")} for t in tables}


def rows(db: Path, table: str) -> list[dict[str, object]]:
    with sqlite3.connect(db) as conn:
        cur = conn.execute(f"SELECT * FROM {table}")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def is_bucket(sealed: bytes) -> bool:
    size = len(sealed) - SEAL_OVERHEAD
    return size >= limits.MIN_PAD_BUCKET and size & (size - 1) == 0


async def filled(tmp_path: Path) -> tuple[Local, Path]:
    """A store with something in every table: our records and a relayed one, a peer, an
    invite, an introduction request, a revoked key, a withdrawal, deliveries, rejections."""
    tmp_path.mkdir(exist_ok=True)
    guide = tmp_path / "g.md"
    guide.write_text("# Night routes\n\nAsk at the back door.\n")
    other = await Local.create(tmp_path / "other", "Other Org", PASS)
    relayed = await publish_guide(other, guide, now_ms=NOW)
    their_revocation = await own_certificate(other, NOW)
    await other.close()

    local = await Local.create(tmp_path / "node", ORG, PASS)
    await own_certificate(local, NOW)  # what init keeps (sealed)
    peer = Identity(b"\x07" * 32).node_id
    await local.save_peer(Peer(peer, name=PEER_NAME, addresses=[PEER_ADDRESS], added=NOW))
    ours = [await publish_guide(local, guide, to=to, now_ms=NOW) for to in ("network", "peers")]
    await local.store.put_records([row_of(relayed, local=False)], NOW + 5000)
    await local.store.put_records([row_of(their_revocation, local=False)], NOW + 5000)
    await mark_revoked(local, their_revocation, NOW + 5000)
    await create_invite(local, [PEER_ADDRESS], NOW, HOUR)
    await local.store.put_row(
        "introductions", b"\x01" * 16, {"status": "pending", "asker": peer.raw, "decided": None}
    )
    await staff.add(local.store, "amina.k", "editor", NOW)  # a staff user of the web app
    checklist = tmp_path / "c_office.yml"
    checklist.write_text(f"title: {CHECKLIST_TITLE}\nlist:\n  - check: {CHECKLIST_ITEM}\n")
    record, _ = await publish_checklist(
        local,
        checklist,
        title=None,
        lang="en",
        topics=[],
        to="peers",
        review_days=90,
        now_ms=NOW,
    )
    await set_tick(local, record.id.hex(), "1", True, NOW + 3)  # progress: its own table
    # Attachments (chunk rows with their keyed group): one kept, one withdrawn with its guide.
    kit = tmp_path / "kit.bin"
    kit.write_bytes(b"Night routes, the attached map. " * 10_000)  # two chunks
    attached = []
    for _ in range(2):
        ((record, _),) = await publish_guides(
            local,
            [guide],
            title=None,
            lang="",
            topics=[],
            region="",
            to="network",
            now_ms=NOW,
            attach=[kit],
        )
        attached.append(record)
    kit.unlink()
    await withdraw(local, attached[1].id.hex(), NOW + 1)
    await circles.create(local, "Safety", "all", NOW)  # a check-in plan: its own sealed row
    await circles.add(local, "Safety", str(peer), NOW)
    await make_plan(
        local, every=HOUR, grace=60_000, circle_ref="Safety", message=PLAN_MESSAGE,
        confirmations=None, escalate_to="network", duress_pin=DURESS_PIN, now=NOW,
    )  # fmt: skip
    library = tmp_path / "library" / "en" / "safety"  # an imported library: its sealed map
    library.mkdir(parents=True)
    (library / "s_routes.md").write_text(f"---\ntitle: {LIBRARY_TITLE}\nindex: 1\n---\n\nx\n")
    await import_library(local, tmp_path / "library", to="peers", now_ms=NOW)
    shutil.rmtree(tmp_path / "library")
    await kept_notice(local)  # a notice the running node raised: its own sealed row
    await withdraw(local, ours[0].id.hex(), NOW + 1)
    await local.store.record_deliveries([(peer.raw, ours[1].id)], NOW + 2)
    await local.store.count_rejection("record_DecodeError", 2)
    return local, tmp_path / "node" / "canopy.db"


async def kept_notice(local: Local) -> None:
    """What node/notices.py keeps when the running node raises a help request's notice."""
    book = PeerBook(
        count_rejection=local.store.count_rejection,
        min_score=-100,
        reconnect_min=1.0,
        reconnect_max=2.0,
        disconnect=_no_disconnect,
    )
    notices = Notices(local, Alerts(local.identity, book), book)
    entry = {"id": "help-" + "ab" * 32, "kind": "help_request", "created": NOW}
    assert notices.raise_({**entry, "text": NOTICE_TEXT, "received_at_ms": NOW}, None, NOW)
    await notices.flush()
    assert list(await local.store.rows("notices")) == [b"help-" + b"ab" * 32]


async def _no_disconnect(peer: object, reason: str) -> None:
    """Nothing is connected in a store test."""


async def test_store_clear_metadata_is_exactly_what_the_spec_lists(tmp_path: Path) -> None:
    listed = spec_tables()
    fresh = await Local.create(tmp_path / "fresh", ORG, PASS)
    await fresh.close()
    # Every table and every column of a fresh store, no more and no fewer than listed.
    assert schema(tmp_path / "fresh" / "canopy.db") == {
        table: clear | sealed for table, (clear, sealed, _) in listed.items()
    }

    local, db = await filled(tmp_path)
    await local.close()
    assert schema(db) == schema(tmp_path / "fresh" / "canopy.db")
    for table, (_clear, sealed, values) in listed.items():
        found = rows(db, table)
        assert found, f"the filled store has no row in {table}"
        for row in found:
            # Clear columns that take listed values take only those.
            if table in ("settings", "meta", "sqlite_sequence"):
                assert row["name"] in values, (table, row["name"])
            for column in sealed:
                value = row[column]
                if value is None:
                    continue
                assert isinstance(value, bytes), (table, column)
                if table not in ("records",):  # records are as long as on the wire
                    assert is_bucket(value), (table, column, len(value))
    # Nothing readable of the organisation, the peer or its address, in any cell.
    needles = [ORG.encode(), PEER_NAME.encode(), PEER_ADDRESS.encode(), b"Night routes"]
    needles += [CHECKLIST_TITLE.encode(), CHECKLIST_ITEM.encode(), item_id(CHECKLIST_ITEM).encode()]
    needles += [PLAN_MESSAGE.encode(), b"Kisumu", DURESS_PIN.encode(), b"Safety"]
    needles += [LIBRARY_TITLE.encode(), b"s_routes.md", b"safety/"]
    needles += [NOTICE_TEXT.encode(), b"Wanjiru", b"help_request", b"help-"]
    for table in listed:
        for row in rows(db, table):
            for value in row.values():
                raw = value if isinstance(value, bytes) else str(value).encode()
                assert not any(n in raw for n in needles), (table, value)
    # The organisation name's length does not show: every setting is in the smallest
    # bucket but the revocation certificate.
    sizes = {str(r["name"]): len(r["value"]) for r in rows(db, "settings")}  # type: ignore[arg-type]
    assert sizes["name"] == sizes["canary"] == sizes["network_key"]


async def test_disk_does_not_say_which_records_are_ours(tmp_path: Path) -> None:
    # The same record in two stores under the same storage key: written here in one,
    # relayed into the other seconds later. Apart from the keyed mark and the random nonces
    # of the sealed columns, the rows must be identical; the marks must look alike.
    other = await Local.create(tmp_path / "author", "Author Org", PASS)
    guide = tmp_path / "g.md"
    guide.write_text("# A guide\n\nbody\n")
    record = await publish_guide(other, guide, now_ms=NOW)
    await other.close()
    key = bytes(range(32))
    here = await Store.open(tmp_path / "here.db", key)
    relay = await Store.open(tmp_path / "relay.db", key)
    await here.put_records([row_of(record, local=True)], record.created)
    await relay.put_records([row_of(record, local=False)], record.created + 4321)
    (ours,) = rows(tmp_path / "here.db", "records")
    (theirs,) = rows(tmp_path / "relay.db", "records")
    assert set(ours) == set(theirs)
    sealed = {"data", "opened", "mark"}
    assert {c: v for c, v in ours.items() if c not in sealed} == {
        c: v for c, v in theirs.items() if c not in sealed
    }
    for column in sealed:
        assert type(ours[column]) is type(theirs[column])
        if isinstance(ours[column], bytes):
            assert len(ours[column]) == len(theirs[column])  # type: ignore[arg-type]
    # Only the key tells them apart, and the node still finds its own.
    assert ours["mark"] == here.mark(record.id) and theirs["mark"] != relay.mark(record.id)
    assert [m.id for m, _ in (await here.local_records_after(0))[1]] == [record.id]
    assert (await relay.local_records_after(0))[1] == []
    await here.close()
    await relay.close()
    for db in ("here.db", "relay.db"):
        with sqlite3.connect(tmp_path / db) as conn:
            indexes = [r[0] for r in conn.execute("SELECT sql FROM sqlite_master")]
        assert not any(sql and re.search(r"\blocal\b", sql) for sql in indexes)

    # A real data directory, wiped: what is left holds no clear column that singles out
    # the records this node published among those it relayed.
    local, db = await filled(tmp_path / "wiped")
    await local.close()
    wipe(tmp_path / "wiped" / "node")
    columns = schema(db)["records"]
    assert not columns & {"local", "received_at"}
    found = rows(db, "records")
    # `net`: a keyed tag like author_tag, NULL on a record without a network tag (a peers-
    # scoped or private one: its clear scope says as much), ours or relayed alike.
    keyed = {"seq", "id", "author_tag", "mark", "data", "opened", "net", "group_tag"}
    for column in columns - keyed:
        # kind, scope, created, expires: the same range for ours and the relayed guide
        assert len({type(r[column]) for r in found}) == 1, column
    # group_tag is set on chunk rows only, by kind: whoever wrote them (a keyed tag).
    assert all((r["group_tag"] is None) == (r["kind"] != "chunk") for r in found)
    assert {len(r["mark"]) for r in found} == {16}  # type: ignore[arg-type]
