"""The opened-record cache: what the know-who index made of each stored record, kept sealed
next to it so that a node starts without opening every record again.

On a real data directory (real SQLite file, real storage key). The properties: a warm build
opens nothing and indexes exactly what a cold build does; a cached value that is altered,
moved to another row, or of another version is ignored and the record opened again;
nothing readable reaches the disk; a change of network key or of the data packages that
check contacts drops the cache.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node import circles, directory, opened_cache
from node.config import Config
from node.contact_index import ContactIndex
from node.content import row_of
from node.entries import Entry, Opened, VouchEntry
from node.local import DB_FILE, Local
from node.runtime import Node
from node.trust import trust_node
from protocol.circle import History
from protocol.contact import Contact, Filter, Share, Vouch, VouchAbout
from protocol.envelope import seal_record
from protocol.identity import Identity
from protocol.record import Kind, Record, Scope

PEER = Identity(b"\x11" * 32)
STRANGER = Identity(b"\x22" * 32)
ADDR = "ws://peer.example:7420/canopy"
NAME = "Wakili Zawadi Kiptoo"
PHONE = "+254700999111"


def _now() -> int:
    return int(time.time() * 1000)


async def _local(tmp_path: Path) -> Local:
    local = await Local.create(tmp_path / "d", "Org", None)
    await trust_node(local, str(PEER.node_id), ADDR, "Peer", _now())
    for i, share in enumerate(["network", "peers", "on-request", "private", "network"]):
        draft = directory.Draft(
            kind="lawyer" if i % 2 else "shelter",
            name=f"{NAME} {i}",
            region="KE-30",
            langs=["sw", "en"],
            channels=[f"phone:{PHONE}", "signal:wakili.01"],
            specialties=["land-rights"],
            notes="Mombasa, weekdays",
        )
        await directory.add_contact(
            local, draft, share=share, to=None, review_days=180, now_ms=_now()
        )
    contact_id = next(iter((await opened_cache.build_index(local, _now())).entries))
    await directory.vouch(local, contact_id.hex(), _now())
    await directory.vouch(local, str(PEER.node_id), _now())
    return local


def _shape(index: ContactIndex) -> object:
    """Everything a build indexes, comparable across builds."""
    return (
        {rid: (e.author, e.scope, e.created, e.expires, e.contact, e.words) for rid, e in
         index.entries.items()},
        {rid: (v.voucher, v.scope, v.created, v.expires, v.vouch) for rid, v in
         index.vouches.items()},
        {k: sorted(v) for k, v in index.by_token.items()},
        {k: sorted(v) for k, v in index.by_lang.items()},
        {k: dict(v) for k, v in index.contact_vouches.items()},
        index.unreadable,
        index.malformed,
    )  # fmt: skip


def _no_opening(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Count the records a build opens (the slow path the cache spares)."""
    opened: list[bytes] = []
    real = opened_cache.open_stored

    def counting(data: bytes, *args: object) -> Opened | None:
        opened.append(data)
        return real(data, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(opened_cache, "open_stored", counting)
    return opened


async def _cached(local: Local) -> list[tuple[bytes, bytes | None]]:
    return [
        (rid, plain)
        async for rows in local.store.opened_of_kind("contact")
        for rid, plain, _ in rows
    ]


# A contact sealed by someone else to PEER alone: stored here, but no key of ours opens it.
_UNREADABLE_CONTACT = Contact(b"\x07" * 16, Share.PEERS, "medical", "UG", ("en",), name="Dr X")


async def _strangers_contact(local: Local, contact: Contact, network_key: bytes | None) -> Record:
    """`contact` by STRANGER, stored as if received: network-scoped when `network_key` is
    given, else sealed to PEER only."""
    record = seal_record(
        STRANGER, Kind.CONTACT, contact.to_content(), created=_now(),
        expires=_now() + 10**9, scope=Scope.NETWORK if network_key else Scope.PEERS,
        recipients=[] if network_key else [PEER.node_id], network_key=network_key,
        random=os.urandom,
    )  # fmt: skip
    await local.store.put_records([row_of(record, local=False)], _now())
    return record


def _db(local: Local) -> sqlite3.Connection:
    return sqlite3.connect(local.path / DB_FILE)


async def test_warm_build_opens_nothing_and_indexes_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = await _local(tmp_path)
    try:
        await local.store.forget_opened()
        opened = _no_opening(monkeypatch)
        cold = await opened_cache.build_index(local, _now())
        stored = len(await _cached(local)) + 2  # + the two vouches
        assert len(opened) == stored and len(cold.entries) >= 5 and len(cold.vouches) == 2
        cached = await _cached(local)
        assert all(plain is not None for _, plain in cached)
        opened.clear()
        warm = await opened_cache.build_index(local, _now())
        assert opened == []
        assert _shape(warm) == _shape(cold)
    finally:
        await local.close()


async def test_a_record_we_cannot_read_is_remembered_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = await _local(tmp_path)
    try:
        record = await _strangers_contact(local, _UNREADABLE_CONTACT, None)
        cold = await opened_cache.build_index(local, _now())
        assert cold.unreadable == 1 and record.id not in cold.entries
        opened = _no_opening(monkeypatch)
        warm = await opened_cache.build_index(local, _now())
        assert opened == [] and warm.unreadable == 1
    finally:
        await local.close()


async def test_altered_moved_or_outdated_cache_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = await _local(tmp_path)
    try:
        cold = await opened_cache.build_index(local, _now())
        rows = await _cached(local)
        (a, _), (b, _) = rows[0], rows[1]
        with _db(local) as db:
            blob_a = db.execute("SELECT opened FROM records WHERE id = ?", (a,)).fetchone()[0]
            flipped = bytearray(blob_a)
            flipped[-1] ^= 1
            db.execute("UPDATE records SET opened = ? WHERE id = ?", (bytes(flipped), a))
            db.execute("UPDATE records SET opened = ? WHERE id = ?", (blob_a, b))  # a's, on b
        opened = _no_opening(monkeypatch)
        again = await opened_cache.build_index(local, _now())
        assert len(opened) == 2  # both opened again, from the records themselves
        assert _shape(again) == _shape(cold)
        opened.clear()
        await opened_cache.build_index(local, _now())
        assert opened == []  # and cached again, correctly

        # Another version of the layout: ignored, opened again, replaced.
        monkeypatch.setattr(opened_cache, "OPENED_VERSION", opened_cache.OPENED_VERSION + 1)
        await opened_cache.build_index(local, _now())
        assert len(opened) == len(rows) + 2
    finally:
        await local.close()


async def test_new_network_key_or_data_packages_drop_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = await _local(tmp_path)
    try:
        await opened_cache.build_index(local, _now())
        await local.set_network_key(b"\x33" * 32)
        assert all(p is None for _, p in await _cached(local))
        await opened_cache.build_index(local, _now())
        assert all(p is not None for _, p in await _cached(local))

        monkeypatch.setattr(opened_cache, "opened_stamp", lambda: b"pycountry=99")
        opened = _no_opening(monkeypatch)
        await opened_cache.build_index(local, _now())
        assert len(opened) == len(await _cached(local)) + 2
    finally:
        await local.close()


async def test_a_cached_value_is_the_size_of_its_record(tmp_path: Path) -> None:
    """Readable or not, contact or vouch: a cached value's size is its record's, so the disk
    does not tell which records this node could read (recipients stay hidden at rest)."""
    local = await _local(tmp_path)
    try:
        await _strangers_contact(local, _UNREADABLE_CONTACT, None)
        index = await opened_cache.build_index(local, _now())
        assert index.unreadable == 1
    finally:
        await local.close()
    with _db(local) as db:
        rows = db.execute(
            "SELECT kind, length(data), length(opened) FROM records"
            " WHERE kind IN ('contact', 'vouch')"
        ).fetchall()
    assert len(rows) >= 8 and {kind for kind, _, _ in rows} == {"contact", "vouch"}
    assert all(data == opened for _, data, opened in rows), rows


async def test_cache_leaves_nothing_readable_on_disk(tmp_path: Path) -> None:
    local = await _local(tmp_path)
    try:
        await local.store.forget_opened()
        await opened_cache.build_index(local, _now())
        assert all(p is not None for _, p in await _cached(local))
    finally:
        await local.close()
    for path in (tmp_path / "d").iterdir():
        data = path.read_bytes()
        for secret in (NAME, PHONE, "wakili.01", "Mombasa"):
            assert secret.encode() not in data, (path.name, secret)


# -- the codec -----------------------------------------------------------------------------

_text = st.text(max_size=40)
_contacts = st.builds(
    Contact,
    uid=st.binary(min_size=16, max_size=16),
    share=st.sampled_from(list(Share)),
    kind=st.sampled_from(["lawyer", "shelter"]),
    region=st.sampled_from(["KE", "KE-30", "UG"]),
    langs=st.lists(st.sampled_from(["sw", "en", "fr-CD"]), max_size=3).map(tuple),
    specialties=st.lists(st.sampled_from(["asylum", "land-rights"]), max_size=2).map(tuple),
    name=_text,
    channels=st.lists(st.tuples(st.just("phone"), _text), max_size=3).map(tuple),
    notes=_text,
    review=st.integers(0, 2**45),
    teaser=st.booleans(),
    introducer=st.binary(max_size=32),
)
_entries = st.builds(
    Entry,
    rid=st.just(b"\x01" * 32),
    author=st.binary(min_size=32, max_size=32),
    scope=st.sampled_from(list(Scope)),
    created=st.integers(0, 2**45),
    expires=st.integers(0, 2**45),
    contact=_contacts,
    words=st.lists(_text, max_size=5).map(tuple),
)
_vouches = st.builds(
    VouchEntry,
    rid=st.just(b"\x01" * 32),
    voucher=st.binary(min_size=32, max_size=32),
    scope=st.sampled_from(list(Scope)),
    created=st.integers(0, 2**45),
    expires=st.integers(0, 2**45),
    vouch=st.builds(
        Vouch,
        st.sampled_from(list(VouchAbout)),
        st.binary(min_size=32, max_size=32),
        st.binary(max_size=16),
    ),
)


_CODES = st.sampled_from([opened_cache.UNREADABLE, opened_cache.MALFORMED])


@given(st.one_of(_entries, _vouches, _CODES))
def test_codec_round_trips(item: Entry | VouchEntry | int) -> None:
    rid = b"\x01" * 32
    assert opened_cache.unpack_opened(rid, opened_cache.pack_opened(item, 10**6)) == item
    if isinstance(item, Entry):  # no room for the words: recomputed when read
        item.words = item.contact.search_words()
        assert opened_cache.unpack_opened(rid, opened_cache.pack_opened(item, 0)) == item


@given(st.binary(max_size=300))
def test_codec_never_raises_on_garbage(data: bytes) -> None:
    got = opened_cache.unpack_opened(b"\x01" * 32, data)
    assert got is None or isinstance(got, Entry | VouchEntry | int)


async def test_running_node_caches_what_it_indexes_even_if_a_flush_is_cut_short(
    tmp_path: Path,
) -> None:
    """The running node's side: records it indexes are queued and written at its next
    flush; a flush cancelled mid-write (the node stopping) keeps them for the last one."""
    local = await _local(tmp_path)
    try:
        node = Node(local, Config())
        node.network_key = await local.network_key()
        contact = Contact(b"\x08" * 16, Share.NETWORK, "shelter", "KE", ("sw",), name="Nyumba")
        record = await _strangers_contact(local, contact, node.network_key)
        node.knowwho.add(record, verify_body=True)
        assert record.id in node.knowwho.index.entries

        flush = asyncio.create_task(node.knowwho.flush_opened())
        await asyncio.sleep(0)  # under way: waiting on the database
        flush.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flush
        assert dict(await _cached(local)).get(record.id) is None
        await node.knowwho.flush_opened()  # what Node.stop does last
        assert dict(await _cached(local))[record.id] is not None
        index = await opened_cache.build_index(local, _now())
        assert index.entries[record.id].contact == contact
    finally:
        await local.close()


async def test_values_queued_under_an_old_network_key_are_not_written(tmp_path: Path) -> None:
    local = await _local(tmp_path)
    try:
        node = Node(local, Config())
        await node._reload_trust()
        await opened_cache.build_index(local, _now())  # every value cached
        contact = Contact(b"\x09" * 16, Share.NETWORK, "shelter", "KE", ("sw",), name="Nyumba")
        record = await _strangers_contact(local, contact, node.network_key)
        node.knowwho.add(record, verify_body=True)  # queued

        await local.set_network_key(b"\x44" * 32)  # e.g. `canopy accept` while it runs
        await node._reload_trust()  # what the running node does when the epoch moves
        await node.knowwho.flush_opened()
        assert all(plain is None for _, plain in await _cached(local))
    finally:
        await local.close()


async def test_the_index_in_place_shows_changes_made_while_it_is_rebuilt(tmp_path: Path) -> None:
    """A key change (a circle created or joined) builds the know-who index again in the
    background, and the built one answers meanwhile: what is stored or withdrawn during the
    rebuild shows in it at once (a query right after `canopy contact add` finds the contact),
    and in the new index once it is done."""
    local = await _local(tmp_path)
    try:
        node = Node(local, Config())
        await node._reload_trust()
        await node.knowwho.start()
        await node.knowwho.ready.wait()
        await circles.create(local, "Land lawyers", History.ALL.value, _now())
        await node._reload_trust()  # the epoch moved: a new key, so the index builds again
        assert node.knowwho._pending is not None, "no rebuild under way"
        contact = Contact(b"\x0a" * 16, Share.NETWORK, "lawyer", "KE", ("sw",), name="Zephyrine")
        record = await _strangers_contact(local, contact, node.network_key)
        node.knowwho.add(record, verify_body=True)

        def names() -> list[str]:
            found = node.knowwho.local_query(Filter.build(text="zephyrine"), 10)["results"]
            return [r["name"] for r in found]  # type: ignore[attr-defined, index]

        assert names() == ["Zephyrine"]  # the index in place shows it
        node.knowwho.remove([record.id])
        assert names() == []  # and a withdrawal
        node.knowwho.add(record, verify_body=True)
        await asyncio.gather(*node.knowwho._tasks)  # the rebuild, done
        assert node.knowwho._pending is None
        assert names() == ["Zephyrine"]  # the new index got both changes, in order
    finally:
        node.knowwho.stop()
        await local.close()
