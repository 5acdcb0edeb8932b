"""Upgrades: a database made by the first schema opens with the current code, data intact.

Each shipped schema gets a case here when a migration is added: build the database with the
migrations up to it (what that Canopy wrote), then open it with everything.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

import nacl.secret
import pytest

import node.migrations
import node.store
from node.content import readable, withdraw
from node.local import Local, Peer
from node.migrations import LAYOUT_SINCE, MIGRATIONS
from protocol import labels
from protocol.encoding import pack
from protocol.errors import StoreError
from protocol.identity import Identity, open_key_file
from protocol.record import Kind, Record
from tests.node.guides import copy_key_file, publish_guide

PASS = b"upgrade pass"


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


# Schemas since the current at-rest layout: the current code writes them itself. Older
# layouts are built as the code of their time wrote them (test_old_layout_... below).
@pytest.mark.parametrize("first", range(LAYOUT_SINCE, len(MIGRATIONS)))
async def test_database_from_an_older_schema_upgrades_with_its_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first: int
) -> None:
    data = tmp_path / "node"
    now = int(time.time() * 1000)
    peer_id = Identity(b"\x05" * 32).node_id
    guide = tmp_path / "g.md"
    guide.write_text("# Old guide\n\nwritten by schema 1\n")

    # What an old Canopy wrote: only the migrations it knew.
    with monkeypatch.context() as patch:
        patch.setattr(node.migrations, "MIGRATIONS", MIGRATIONS[:first])
        if first < 11:  # before several networks: the single network key was a setting
            patch.setattr(Local, "_adopt_networks", _no_networks_table)
        old = await Local.create(data, "Old Org", PASS)
        old_key = await old.network_key()
        await old.save_peer(Peer(peer_id, name="Partner", addresses=["ws://p.example/canopy"]))
        # Before several networks, `network` meant the one key; today's parse needs the table.
        to = "peers-now" if first < 11 else "network"
        record = await publish_guide(old, guide, topics=("upgrade",), now_ms=now, to=to)
        await old.store.count_rejection("record_DecodeError", 3)
        await old.close()
    assert user_version(data / "canopy.db") == first

    # The current code opens it, migrates it and reads everything back.
    local = await Local.open(data, PASS)
    try:
        assert user_version(data / "canopy.db") == len(MIGRATIONS)
        assert await local.name() == "Old Org"
        peers = await local.peers()
        assert peers[peer_id].name == "Partner"
        assert peers[peer_id].addresses == ["ws://p.example/canopy"]
        # Migration 11: the one network key is the first network, and the peer is in it.
        (first_network,) = await local.networks()
        assert (first_network.name, first_network.key) == ("default", old_key)
        if first < 11:  # the peer of the single network became a member of the first
            assert peers[peer_id].networks == [first_network.tag]
        items, unreadable = await readable(local, Kind.GUIDE, now)
        assert [it.body.content["title"] for it in items] == ["Old guide"]
        assert unreadable == 0
        assert await local.store.rejections() == {"record_DecodeError": 3}
        assert await local.store.integrity_check() == "ok"
        # And what the newer schema added works on the old data (withdrawal: migration 2).
        await withdraw(local, record.id.hex(), now + 1)
        assert await local.store.is_withdrawn(record.id)
        # Migration 9: the sealed staff table of the web app.
        await local.store.put_row("staff", b"ana", {"role": "reader"})
        assert await local.store.rows("staff") == {b"ana": {"role": "reader"}}
        # Migration 10: the sealed checklist progress of this organisation.
        await local.store.put_row("checklist_progress", b"k" * 64, {"reviewed": 1})
        assert await local.store.rows("checklist_progress") == {b"k" * 64: {"reviewed": 1}}
        # Migration 11: this node's sealed check-in plan row.
        await local.store.put_row("checkin_plans", b"own-plan", {"plan": b"p" * 16})
        assert await local.store.rows("checkin_plans") == {b"own-plan": {"plan": b"p" * 16}}
        # Migration 14: the sealed map of what `publish library` published.
        await local.store.put_row("library_imports", b"lib\nen\ns_a.md", {"hash": b"h" * 32})
        assert await local.store.rows("library_imports") == {
            b"lib\nen\ns_a.md": {"hash": b"h" * 32}
        }
        # Migration 15: the notices the running node raised.
        await local.store.put_row("notices", b"help-x", {"kind": "help_request"})
        assert await local.store.rows("notices") == {b"help-x": {"kind": "help_request"}}
    finally:
        await local.close()


async def _no_networks_table(self: Local, joined: int = 0) -> None:
    """What `Local.create` did before migration 11: no networks row to write."""


# -- stores in the layout before `_AT_REST` (schemas 1 to LAYOUT_SINCE - 1) ---------------------


def _subkey(storage_key: bytes, person: bytes) -> bytes:
    return hashlib.blake2b(b"", key=storage_key, person=person, digest_size=32).digest()


def _write_old_layout(
    db_path: Path,
    first: int,
    storage_key: bytes,
    settings: dict[str, bytes],
    peers: list[Peer],
    records: list[tuple[Record, bool, int]],
) -> None:
    """Exactly what the store code of schemas 1..6 wrote: settings and rows sealed without
    padding, and records with `local` and `received_at` in clear."""
    settings_box = nacl.secret.SecretBox(_subkey(storage_key, labels.STORAGE_SETTINGS))
    records_box = nacl.secret.SecretBox(_subkey(storage_key, labels.STORAGE_RECORDS))
    tag_key = _subkey(storage_key, labels.STORAGE_TAG)

    def tag(raw: bytes) -> bytes:
        return hashlib.blake2b(raw, key=tag_key, person=labels.STORAGE_TAG, digest_size=16).digest()

    with sqlite3.connect(db_path) as db:
        for script in MIGRATIONS[:first]:
            db.executescript(script)
        db.execute(f"PRAGMA user_version = {first}")
        for name, value in settings.items():
            db.execute(
                "INSERT INTO settings (name, value) VALUES (?, ?)",
                (name, bytes(settings_box.encrypt(value))),
            )
        for peer in peers:
            sealed = bytes(settings_box.encrypt(pack([peer.node_id.raw, peer.to_value()])))
            db.execute(
                "INSERT INTO peers (tag, data) VALUES (?, ?)", (tag(peer.node_id.raw), sealed)
            )
        for record, local, received_at in records:
            db.execute(
                "INSERT INTO records (id, kind, scope, created, expires, author_tag, local,"
                " received_at, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    str(record.kind),
                    int(record.scope),
                    record.created,
                    record.expires,
                    tag(record.author.raw),
                    int(local),
                    received_at,
                    bytes(records_box.encrypt(record.to_bytes())),
                ),
            )
        # A last record purged (expired): the numbering has gone past the highest seq.
        db.execute(
            "INSERT INTO records (id, kind, scope, created, expires, author_tag, local,"
            " received_at, data) VALUES (zeroblob(32), 'guide', 1, 0, 1, zeroblob(16), 1, 0, x'')"
        )
        db.execute("DELETE FROM records WHERE expires = 1")


@pytest.mark.parametrize("first", range(1, LAYOUT_SINCE))
async def test_old_layout_converts_and_no_longer_says_which_records_are_ours(
    tmp_path: Path, first: int
) -> None:
    now = int(time.time() * 1000)
    guide = tmp_path / "g.md"
    guide.write_text("# Old guide\n\nwritten in the old layout\n")
    # Real records and keys, made by the current code in scratch directories.
    scratch = await Local.create(tmp_path / "scratch", "Old Org", PASS)
    ours = [
        await publish_guide(scratch, guide, now_ms=now),
        await publish_guide(scratch, guide, title="Second", now_ms=now + 1),
    ]
    network_key = await scratch.network_key()
    await scratch.close()
    stranger = await Local.create(tmp_path / "stranger", "Stranger Org", PASS)
    relayed = await publish_guide(stranger, guide, now_ms=now)
    await stranger.close()

    data = tmp_path / "node"
    key_file = copy_key_file(tmp_path / "scratch", data)
    storage_key = open_key_file(key_file, PASS).storage_key
    peer_id = Identity(b"\x05" * 32).node_id
    _write_old_layout(
        data / "canopy.db",
        first,
        storage_key,
        {"canary": b"canopy", "name": b"Old Org", "network_key": network_key},
        [Peer(peer_id, name="Partner", addresses=["ws://p.example/canopy"])],
        [(ours[0], True, now), (relayed, False, now + 2500), (ours[1], True, now + 1)],
    )
    with sqlite3.connect(data / "canopy.db") as db:
        old_top = int(
            db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()[0]
        )

    # A wrong key is named as such, and converts nothing.
    with pytest.raises(StoreError, match="does not belong to this key"):
        await node.store.Store.open(data / "canopy.db", bytes(32))
    assert user_version(data / "canopy.db") == first

    local = await Local.open(data, PASS)
    try:
        assert user_version(data / "canopy.db") == len(MIGRATIONS)
        assert await local.name() == "Old Org"
        assert (await local.peers())[peer_id].addresses == ["ws://p.example/canopy"]
        items, _ = await readable(local, Kind.GUIDE, now)
        assert sorted(it.body.content["title"] for it in items) == ["Old guide", "Second"]
        # What was `local` is now the keyed mark: the node still finds exactly its own.
        _, found = await local.store.local_records_after(0)
        assert [m.id for m, _ in found] == [ours[0].id, ours[1].id]
        assert await local.store.integrity_check() == "ok"
        # The next record continues the old numbering (a seq is never used twice).
        record = await publish_guide(local, guide, title="New", now_ms=now + 2)
        _, found = await local.store.local_records_after(0)
        assert found[-1][0].id == record.id and found[-1][0].seq > old_top
    finally:
        await local.close()
    with sqlite3.connect(data / "canopy.db") as db:
        columns = {r[1] for r in db.execute("PRAGMA table_info(records)")}
        assert not columns & {"local", "received_at"} and "mark" in columns
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "records_local" not in indexes
        for table, column in (("settings", "value"), ("peers", "data")):
            for (sealed,) in db.execute(f"SELECT {column} FROM {table}"):
                size = len(sealed) - 40
                assert size >= 256 and size & (size - 1) == 0, (table, len(sealed))


async def test_withdrawn_rows_keep_id_author_and_expiry_when_keyed_by_author(
    tmp_path: Path,
) -> None:
    now = int(time.time() * 1000)
    author, squatter = b"\xaa" * 32, b"\xcc" * 32
    rid = b"\x01" * 32
    scratch = await Local.create(tmp_path / "scratch", "Old Org", PASS)  # real keys
    network_key = await scratch.network_key()
    tag = scratch.store.tag(author)
    await scratch.close()
    data = tmp_path / "node"
    key_file = copy_key_file(tmp_path / "scratch", data)
    # The schema before withdrawn ids were keyed by (id, author), as its code wrote it.
    before = next(i for i, m in enumerate(MIGRATIONS) if "withdrawn_by_author" in m)
    _write_old_layout(
        data / "canopy.db",
        before,
        open_key_file(key_file, PASS).storage_key,
        {"canary": b"canopy", "name": b"Old Org", "network_key": network_key},
        [],
        [],
    )
    with sqlite3.connect(data / "canopy.db") as db:  # the row the old code's withdraw wrote
        db.execute(
            "INSERT INTO withdrawn (id, author_tag, expires) VALUES (?, ?, ?)",
            (rid, tag, now + 3_600_000),
        )

    local = await Local.open(data, PASS)
    try:
        assert user_version(data / "canopy.db") == len(MIGRATIONS)
        assert await local.store.withdrawn_among([(rid, author)]) == {rid}
        assert await local.store.withdrawn_among([(rid, squatter)]) == set()
        # Another author naming the same id is now a row of its own, not a conflict.
        await local.store.withdraw([rid], squatter, now + 1)
        await local.store.delete_expired(now + 1)
        assert await local.store.withdrawn_among([(rid, author)]) == {rid}  # expiry kept
        await local.store.delete_expired(now + 3_600_000)
        assert await local.store.withdrawn_among([(rid, author)]) == set()
        assert await local.store.integrity_check() == "ok"
    finally:
        await local.close()
