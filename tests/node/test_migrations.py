"""Upgrades: a database made by the first schema opens with the current code, data intact.

Each shipped schema gets a case here when a migration is added: build the database with the
migrations up to it (what that Canopy wrote), then open it with everything.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

import node.store
from node.content import publish_guides, readable, withdraw
from node.local import Local, Peer
from node.migrations import MIGRATIONS
from protocol.identity import Identity
from protocol.record import Kind

PASS = b"upgrade pass"


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


@pytest.mark.parametrize("first", range(1, len(MIGRATIONS)))
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
        patch.setattr(node.store, "MIGRATIONS", MIGRATIONS[:first])
        old = await Local.create(data, "Old Org", PASS)
        await old.save_peer(Peer(peer_id, name="Partner", addresses=["ws://p.example/canopy"]))
        published = await publish_guides(
            old,
            [guide],
            title=None,
            lang="en",
            topics=["upgrade"],
            region="KE",
            to="network",
            now_ms=now,
        )
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
        items, unreadable = await readable(local, Kind.GUIDE, now)
        assert [it.body.content["title"] for it in items] == ["Old guide"]
        assert unreadable == 0
        assert await local.store.rejections() == {"record_DecodeError": 3}
        assert await local.store.integrity_check() == "ok"
        # And what the newer schema added works on the old data (withdrawal: migration 2).
        record = published[0][0]
        await withdraw(local, record.id.hex(), now + 1)
        assert await local.store.is_withdrawn(record.id)
    finally:
        await local.close()


async def test_withdrawn_rows_keep_id_author_and_expiry_when_keyed_by_author(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "node"
    now = int(time.time() * 1000)
    author, squatter = b"\xaa" * 32, b"\xcc" * 32
    rid = b"\x01" * 32
    # The schema before withdrawn ids were keyed by (id, author).
    before = next(i for i, m in enumerate(MIGRATIONS) if "withdrawn_by_author" in m)
    with monkeypatch.context() as patch:
        patch.setattr(node.store, "MIGRATIONS", MIGRATIONS[:before])
        old = await Local.create(data, "Old Org", PASS)
        tag = old.store.tag(author)
        await old.close()
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
