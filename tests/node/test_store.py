"""The store on a real SQLite file: schema, record queries, sealing at rest, and durability.

Every test opens a real database in tmp_path with a real storage key; the kill -9 test runs
the writer in a child process and SIGKILLs it right after it reported a write as stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from node.local import Local, Peer
from node.migrations import MIGRATIONS
from node.store import RecordRow, Store
from protocol.errors import StoreError
from protocol.identity import Identity
from tests.strategies import seeded

ROOT = Path(__file__).resolve().parents[2]
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
OWNER = b"\xaa" * 32  # the node whose store it is: `row`'s default author
NOW = 1_700_000_000_000
HOUR = 3600 * 1000

MARKER = "ZEBRA-MARKER-7f3e"
PHONE = "+254 712 345 678"
# The same secrets as they might end up on disk in other shapes.
NEEDLES = [
    MARKER.encode(),
    MARKER.encode("utf-16-le"),
    PHONE.encode(),
    b"254712345678",
    b"712 345 678",
]


def rid(n: int) -> bytes:
    return hashlib.blake2b(n.to_bytes(8, "big"), digest_size=32).digest()


def row(
    n: int,
    *,
    kind: str = "guide",
    scope: int = 1,
    created: int = NOW,
    expires: int = NOW + HOUR,
    local: bool = False,
    data: bytes | None = None,
    author: bytes = b"\xaa" * 32,
) -> RecordRow:
    return RecordRow(
        id=rid(n),
        kind=kind,
        scope=scope,
        created=created,
        expires=expires,
        author=author,
        local=local,
        data=data if data is not None else f"record {n}".encode(),
    )


@pytest.fixture
async def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = await Store.open(tmp_path / "canopy.db", KEY, owner=OWNER)
    yield s
    await s.close()


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


# -- schema ------------------------------------------------------------------------------


async def test_migrations_from_empty_reach_latest_version(tmp_path: Path) -> None:
    path = tmp_path / "canopy.db"
    s = await Store.open(path, KEY)
    await s.close()
    assert user_version(path) == len(MIGRATIONS) >= 1
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    assert {"records", "settings", "peers", "invites", "rejections", "meta"} <= tables
    assert mode == "wal"
    # Re-opening applies nothing twice and keeps what was stored.
    s = await Store.open(path, KEY)
    try:
        await s.set_setting("x", b"1")
    finally:
        await s.close()
    s = await Store.open(path, KEY)
    try:
        assert await s.get_setting("x") == b"1"
    finally:
        await s.close()
    assert user_version(path) == len(MIGRATIONS)


async def test_database_from_a_newer_canopy_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "canopy.db"
    s = await Store.open(path, KEY)
    await s.close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="newer than this Canopy"):
        await Store.open(path, KEY)


async def test_failed_migration_raises_store_error_and_rolls_back(tmp_path: Path) -> None:
    path = tmp_path / "canopy.db"
    with sqlite3.connect(path) as db:  # a clashing table makes migration 1 fail half-way
        db.execute("CREATE TABLE meta (x)")
    with pytest.raises(StoreError, match="migration 1 failed"):
        await Store.open(path, KEY)
    assert user_version(path) == 0
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "records" not in tables  # the part that ran before the failure was rolled back


# -- records -----------------------------------------------------------------------------


async def test_put_records_flags_new_and_duplicate_and_is_idempotent(store: Store) -> None:
    rows = [row(1), row(2), row(1)]  # a duplicate inside one batch too
    assert await store.put_records(rows, NOW) == [True, True, False]
    assert await store.put_records([row(2), row(3)], NOW) == [False, True]
    assert await store.put_records([row(1), row(2), row(3)], NOW) == [False, False, False]
    assert await store.put_records([], NOW) == []
    assert await store.count_by_kind() == {"guide": 3}
    assert await store.max_seq() == 3  # nothing was inserted twice


async def test_duplicate_keeps_the_first_bytes(store: Store) -> None:
    await store.put_records([row(1, data=b"first")], NOW)
    assert await store.put_records([row(1, data=b"second")], NOW) == [False]
    assert await store.get_records([rid(1)]) == {rid(1): b"first"}


async def test_get_records_and_has(store: Store) -> None:
    await store.put_records([row(1, data=b"\x00one"), row(2, data=b"two" * 1000)], NOW)
    got = await store.get_records([rid(1), rid(2), rid(99)])
    assert got == {rid(1): b"\x00one", rid(2): b"two" * 1000}
    assert await store.has([rid(1), rid(99)]) == {rid(1)}
    assert await store.has([]) == set()
    assert await store.get_records([]) == {}


async def test_has_and_get_records_over_many_ids(store: Store) -> None:
    """More ids than one SQL chunk (500) holds."""
    rows = [row(n) for n in range(1234)]
    assert all(await store.put_records(rows, NOW))
    ids = [r.id for r in rows] + [rid(10_000 + n) for n in range(300)]
    assert await store.has(ids) == {r.id for r in rows}
    got = await store.get_records(ids)
    assert len(got) == 1234
    assert got[rid(777)] == b"record 777"


async def test_records_of_kind_oldest_first(store: Store) -> None:
    await store.put_records(
        [
            row(1, created=NOW + 2, data=b"c"),
            row(2, created=NOW, data=b"a"),
            row(3, kind="contact", created=NOW + 1, data=b"x"),
            row(4, created=NOW + 1, data=b"b"),
        ],
        NOW,
    )
    assert await store.records_of_kind("guide") == [b"a", b"b", b"c"]
    assert await store.records_of_kind("contact") == [b"x"]
    assert await store.records_of_kind("alert") == []


async def test_ids_with_prefix(store: Store) -> None:
    await store.put_records([row(n) for n in range(200)], NOW)
    target = rid(42)
    for length in (1, 2, 4, 16, 32):
        found = await store.ids_with_prefix(target[:length])
        assert target in found or length == 1  # a 1-byte prefix may hit the LIMIT of 10
        assert all(i.startswith(target[:length]) for i in found)
        assert len(found) <= 10
    assert await store.ids_with_prefix(target) == [target]
    assert await store.ids_with_prefix(target[:4]) == [target]
    absent = bytes([target[0] ^ 0xFF]) + target[1:4]
    assert absent not in {r[:4] for r in (rid(n) for n in range(200))}
    assert await store.ids_with_prefix(absent) == []


async def test_exchangeable_items_are_what_this_pair_may_trade(store: Store) -> None:
    peer, other = b"\xbb" * 32, b"\xcc" * 32
    await store.put_records(
        [
            row(1, scope=1, local=False, author=b"\xdd" * 32, created=NOW + 3),  # relayed
            row(2, scope=0, local=False, author=other),  # a third node's peers-scoped record
            row(3, scope=0, local=True, created=NOW + 1),  # our own peers-scoped record
            row(4, scope=1, local=True, created=NOW + 2),
            row(5, scope=0, local=False, author=peer, created=NOW + 4),  # the peer's own
            row(6, scope=1, local=False, expires=NOW + 10),  # expired by the time we ask
        ],
        NOW,
    )
    items = await store.exchangeable_items(peer, NOW + 10)
    assert items == [(NOW + 1, rid(3)), (NOW + 2, rid(4)), (NOW + 3, rid(1)), (NOW + 4, rid(5))]


async def test_withdraw_deletes_only_the_authors_records_and_remembers(store: Store) -> None:
    author, other = b"\xaa" * 32, b"\xcc" * 32
    await store.put_records([row(1, author=author), row(2, author=other)], NOW)
    deleted = await store.withdraw([rid(1), rid(2), rid(3)], author, NOW + HOUR)
    assert deleted == [rid(1)]
    assert set(await store.get_records([rid(1), rid(2)])) == {rid(2)}
    assert await store.withdrawn_among([(rid(1), author), (rid(3), author)]) == {rid(1), rid(3)}
    # A withdrawal by someone else does not hold against the real author's record.
    assert await store.withdrawn_among([(rid(2), other)]) == set()
    await store.delete_expired(NOW + HOUR)
    assert await store.withdrawn_among([(rid(1), author)]) == set()


async def test_withdrawal_is_keyed_by_id_and_author_whoever_tombstones_first(
    store: Store,
) -> None:
    author, squatter = b"\xaa" * 32, b"\xcc" * 32
    # A squatter's tombstone names the author's record before the author's own arrives.
    assert await store.withdraw([rid(1)], squatter, NOW + HOUR) == []
    assert await store.withdrawn_among([(rid(1), author)]) == set()
    assert await store.withdraw([rid(1)], author, NOW + 2 * HOUR) == []
    # The author's withdrawal holds all the same: a stale copy of the record is refused.
    assert await store.withdrawn_among([(rid(1), author)]) == {rid(1)}
    await store.delete_expired(NOW + HOUR)  # the squatter's memory expires, the author's stays
    assert await store.withdrawn_among([(rid(1), author)]) == {rid(1)}
    assert await store.withdrawn_among([(rid(1), squatter)]) == set()


async def test_withdraw_never_deletes_a_revocation(store: Store) -> None:
    author = b"\xaa" * 32
    await store.put_records([row(1, author=author, kind="revocation")], NOW)
    assert await store.withdraw([rid(1)], author, NOW + HOUR) == []
    assert set(await store.get_records([rid(1)])) == {rid(1)}


async def test_local_records_after_pages_our_own_in_insertion_order(store: Store) -> None:
    await store.put_records([row(1, local=True), row(2), row(3, local=True)], NOW)
    await store.put_records([row(4, local=True, data=b"four")], NOW)
    last, page = await store.local_records_after(0)
    assert [(m.id, m.local) for m, _ in page] == [(rid(1), True), (rid(3), True), (rid(4), True)]
    seqs = [m.seq for m, _ in page]
    assert seqs == sorted(seqs) and last == seqs[-1]
    assert page[2][1] == b"four"
    _, after = await store.local_records_after(seqs[0])
    assert [m.id for m, _ in after] == [rid(3), rid(4)]
    # A page is `limit` rows looked at, ours or not: row 2 alone, then row 3.
    assert await store.local_records_after(seqs[0], limit=1) == (seqs[0] + 1, [])
    _, (only,) = await store.local_records_after(seqs[0] + 1, limit=1)
    assert only[0].id == rid(3)
    assert await store.local_records_after(seqs[-1]) == (seqs[-1], [])
    assert await store.max_seq() == seqs[-1]


async def test_count_by_kind(store: Store) -> None:
    assert await store.count_by_kind() == {}
    await store.put_records(
        [row(1), row(2), row(3, kind="contact"), row(4, kind="vouch"), row(5, kind="vouch")], NOW
    )
    assert await store.count_by_kind() == {"guide": 2, "contact": 1, "vouch": 2}


def _plan(path: Path, sql: str, params: tuple[object, ...] = ()) -> str:
    with sqlite3.connect(path) as db:
        return " / ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, params))


async def test_frequent_reads_use_an_index_not_a_scan_of_every_record(tmp_path: Path) -> None:
    # The running node counts by kind for every status/metrics call and polls for records
    # written here several times a second; reading every record row each time cost a
    # catching-up node a third of its CPU (bench catch-up).
    store = await Store.open(tmp_path / "canopy.db", KEY)
    await store.put_records([row(i, local=i % 10 == 0) for i in range(200)], NOW)
    await store.close()
    db = tmp_path / "canopy.db"
    counts = _plan(db, "SELECT kind, COUNT(*) FROM records GROUP BY kind")
    assert "COVERING INDEX records_kind" in counts
    poll = _plan(
        db, "SELECT seq, id, mark FROM records WHERE seq > ? ORDER BY seq LIMIT ?", (0, 500)
    )
    assert "USING INTEGER PRIMARY KEY" in poll  # from where the last poll stopped, no further
    by_kind = _plan(db, "SELECT data FROM records WHERE kind = ? ORDER BY created, id", ("x",))
    assert "INDEX records_kind" in by_kind and "TEMP B-TREE" not in by_kind


async def test_sealing_in_bulk_matches_secretbox(store: Store) -> None:
    import nacl.secret

    datas = [b"", b"x", os.urandom(3000)]
    sealed = store.at_rest.seal_records(datas)
    assert len({s[:24] for s in sealed}) == 3  # a fresh nonce each
    box = nacl.secret.SecretBox(store.at_rest._records_key)
    assert [box.decrypt(s) for s in sealed] == datas


async def test_delete_expired_removes_exactly_the_expired(store: Store) -> None:
    await store.put_records(
        [
            row(1, expires=NOW - 1),
            row(2, expires=NOW),  # expires at `now`: gone (expires <= now)
            row(3, expires=NOW + 1),
            row(4, expires=NOW + HOUR),
        ],
        NOW,
    )
    assert await store.delete_expired(NOW) == 2
    assert await store.has([rid(n) for n in range(1, 5)]) == {rid(3), rid(4)}
    assert await store.delete_expired(NOW) == 0
    assert await store.delete_expired(NOW + HOUR) == 2
    assert await store.count_by_kind() == {}


async def test_tampered_record_row_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "canopy.db"
    s = await Store.open(path, KEY)
    await s.put_records([row(1, data=b"payload")], NOW)
    await s.close()
    with sqlite3.connect(path) as db:
        (data,) = db.execute("SELECT data FROM records").fetchone()
        flipped = bytes(data[:-1]) + bytes([data[-1] ^ 1])
        db.execute("UPDATE records SET data = ?", (flipped,))
    s = await Store.open(path, KEY)
    try:
        with pytest.raises(StoreError, match="integrity"):
            await s.get_records([rid(1)])
    finally:
        await s.close()


# -- settings, sealed rows, counters -------------------------------------------------------


async def test_settings_round_trip_and_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "canopy.db"
    s = await Store.open(path, KEY)
    assert await s.get_setting("missing") is None
    await s.set_setting("name", "Réseau d'aide".encode())
    await s.set_setting("blob", bytes(range(256)))
    await s.set_setting("empty", b"")
    await s.set_setting("name", b"renamed")
    await s.close()
    s = await Store.open(path, KEY)
    try:
        assert await s.get_setting("name") == b"renamed"
        assert await s.get_setting("blob") == bytes(range(256))
        assert await s.get_setting("empty") == b""
    finally:
        await s.close()


async def test_sealed_rows_round_trip_delete_and_epoch(tmp_path: Path) -> None:
    path = tmp_path / "canopy.db"
    s = await Store.open(path, KEY)
    epoch0 = await s.epoch()
    value = {"name": "Shelter", "addresses": ["ws://a:1/canopy"], "n": 7, "b": b"\x00", "x": None}
    await s.put_row("peers", b"\x01" * 32, value)
    await s.put_row("peers", b"\x02" * 32, {"name": "two"})
    await s.put_row("peers", b"\x02" * 32, {"name": "two again"})  # upsert
    await s.put_row("invites", b"\x03" * 32, {"expires": 5})
    assert await s.epoch() == epoch0 + 4  # a running node sees every change
    await s.close()
    s = await Store.open(path, KEY)
    try:
        assert await s.rows("peers") == {b"\x01" * 32: value, b"\x02" * 32: {"name": "two again"}}
        assert await s.rows("invites") == {b"\x03" * 32: {"expires": 5}}
        assert await s.delete_row("peers", b"\x01" * 32) is True
        assert await s.delete_row("peers", b"\x01" * 32) is False
        assert list(await s.rows("peers")) == [b"\x02" * 32]
        with pytest.raises(ValueError):
            await s.put_row("records", b"k", {})
        with pytest.raises(ValueError):
            await s.rows("settings; DROP TABLE records")
    finally:
        await s.close()


async def test_rejection_counters_and_integrity_check(store: Store) -> None:
    assert await store.rejections() == {}
    await store.count_rejection("bad_signature")
    await store.count_rejection("bad_signature", 4)
    await store.count_rejection("expired", 2)
    assert await store.rejections() == {"bad_signature": 5, "expired": 2}
    assert await store.integrity_check() == "ok"


# -- wrong key, garbage ------------------------------------------------------------------


async def test_wrong_storage_key_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "canopy.db"
    s = await Store.open(path, KEY)
    await s.set_setting("name", b"secret org")
    await s.put_records([row(1)], NOW)
    await s.close()
    with pytest.raises(StoreError, match="does not belong to this key"):
        await Store.open(path, OTHER_KEY)
    s = await Store.open(path, KEY)  # the failed open damaged nothing
    try:
        assert await s.get_setting("name") == b"secret org"
        assert await s.has([rid(1)]) == {rid(1)}
    finally:
        await s.close()


@pytest.mark.parametrize(
    "content",
    [
        b"this is not a database, it is a shopping list\n" * 200,
        seeded("garbage")(8192),
        b"SQLite format 3\x00" + b"\xff" * 4080,  # right magic, garbage header
    ],
    ids=["text", "random", "bad-header"],
)
async def test_garbage_database_file_raises_store_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "canopy.db"
    path.write_bytes(content)
    with pytest.raises(StoreError):
        await Store.open(path, KEY)
    assert path.read_bytes() == content  # and it was not overwritten


async def test_missing_directory_raises_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        await Store.open(tmp_path / "no" / "such" / "dir" / "canopy.db", KEY)


# -- no plaintext at rest ----------------------------------------------------------------


def _scan(directory: Path, needles: list[bytes]) -> dict[str, list[bytes]]:
    found: dict[str, list[bytes]] = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            hits = [n for n in needles if n in data]
            if hits:
                found[path.name] = hits
    return found


async def test_no_plaintext_in_store_files(tmp_path: Path) -> None:
    path = tmp_path / "canopy.db"
    secret_row = f"lawyer {MARKER}, phone {PHONE}".encode()
    s = await Store.open(path, KEY)
    await s.put_records(
        [row(n, data=secret_row + str(n).encode(), local=n % 2 == 0) for n in range(50)], NOW
    )
    await s.set_setting("name", f"Org {MARKER}".encode())
    await s.set_setting("contact", PHONE.encode())
    await s.put_row("peers", MARKER.encode() * 2, {"name": MARKER, "addresses": [PHONE]})
    await s.put_row("invites", b"k" * 32, {"note": f"{MARKER} {PHONE}"})
    # Deleted content must not linger in freed pages either.
    await s.put_records([row(999, data=secret_row, expires=NOW + 1)], NOW)
    await s.delete_expired(NOW + 1)
    files_while_open = {p.name for p in tmp_path.iterdir()}
    assert _scan(tmp_path, NEEDLES) == {}  # db, -wal and -shm as a running node leaves them
    await s.close()
    assert _scan(tmp_path, NEEDLES) == {}
    assert "canopy.db-wal" in files_while_open  # the scan did cover the WAL


async def test_no_plaintext_in_data_dir_after_real_use(tmp_path: Path) -> None:
    """The same scan over a whole data directory used through node/ (key file included)."""
    from node.content import publish_guides
    from node.library import build_guides

    data = tmp_path / "data"
    local = await Local.create(data, f"Org {MARKER}", b"pw")
    try:
        peer = Identity(b"\x07" * 32).node_id
        await local.save_peer(
            Peer(peer, name=f"Shelter {MARKER}", addresses=[f"ws://{MARKER.lower()}.org/canopy"])
        )
        guide = tmp_path / "guide.md"
        guide.write_text(f"# Safe houses\n\nCall {PHONE}, ask for {MARKER}.\n")
        await publish_guides(
            local, [guide], title=None, lang="en", topics=[], region="KE", to="peers", now_ms=NOW
        )
        # The library's index cached next to the record: its title, words, lesson, sealed.
        assert len((await build_guides(local, NOW)).entries) == 1
        assert (await build_guides(local, NOW)).opened == 0  # read back from the cache
        network_key = await local.network_key()
        needles = [*NEEDLES, MARKER.lower().encode(), network_key, peer.raw, str(peer).encode()]
        assert _scan(data, needles) == {}
    finally:
        await local.close()
    assert _scan(data, needles) == {}


# -- durability --------------------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import asyncio, hashlib, sys
    from pathlib import Path
    from node.store import RecordRow, Store

    async def main():
        store = await Store.open(Path(sys.argv[1]), bytes.fromhex(sys.argv[2]))
        batch = int(sys.argv[3])
        try:  # closed on an error, so that the process ends (and the test sees it)
            while True:
                rows = [
                    RecordRow(
                        id=hashlib.blake2b(f"{batch}/{i}".encode(), digest_size=32).digest(),
                        kind="guide", scope=1, created=1, expires=2**62, author=b"a" * 32,
                        local=True, data=f"batch {batch} row {i}".encode() * 20,
                    )
                    for i in range(20)
                ]
                flags = await store.put_records(rows, 1)
                assert all(flags), f"batch {batch} was there already"
                print(f"acked {batch}", flush=True)
                batch += 1
        finally:
            await store.close()

    asyncio.run(main())
    """
)


def _batch_ids(batch: int) -> list[bytes]:
    return [hashlib.blake2b(f"{batch}/{i}".encode(), digest_size=32).digest() for i in range(20)]


async def _check_batches(path: Path, batches: range) -> None:
    s = await Store.open(path, KEY)
    try:
        assert await s.integrity_check() == "ok"
        for batch in batches:
            got = await s.get_records(_batch_ids(batch))
            assert len(got) == 20, f"acknowledged batch {batch} lost"
            assert got[_batch_ids(batch)[5]] == f"batch {batch} row 5".encode() * 20
    finally:
        await s.close()


def test_acknowledged_record_survives_kill_9(tmp_path: Path) -> None:
    """A writer keeps committing batches of 20 rows and prints "acked N" after each; it is
    SIGKILLed right after we read an acknowledgement, usually inside the next transaction.
    Five runs on the same file; every acknowledged batch of every run must be there."""
    import asyncio

    env = {k: v for k, v in os.environ.items() if not k.startswith("CANOPY_")}
    env["PYTHONPATH"] = str(ROOT)
    path = tmp_path / "canopy.db"
    next_batch = 0
    for extra in (0, 3, 1, 6, 2):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), KEY.hex(), str(next_batch)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        assert proc.stdout is not None and proc.stderr is not None
        last = -1
        try:
            while last < next_batch + extra:
                line = proc.stdout.readline().decode().strip()
                if not line.startswith("acked "):
                    proc.kill()
                    proc.wait()
                    pytest.fail(f"writer stopped: {line!r} {proc.stderr.read().decode()}")
                last = int(line.split()[1])
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            proc.stdout.close()
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        asyncio.run(_check_batches(path, range(last + 1)))
        # The writer runs on until the kill lands: each batch it committed after the last
        # acknowledgement we read is wholly there, and the one in flight wholly absent.
        next_batch = last + 1
        while (in_flight := asyncio.run(_count_present(path, next_batch))) == 20:
            next_batch += 1
        assert in_flight == 0
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 20 * next_batch


async def _count_present(path: Path, batch: int) -> int:
    s = await Store.open(path, KEY)
    try:
        return len(await s.has(_batch_ids(batch)))
    finally:
        await s.close()


async def test_a_write_cancelled_anywhere_leaves_no_transaction_open(store: Store) -> None:
    """A write task cancelled at any point (a node stopping mid-write), including while
    its BEGIN or COMMIT waits on the database thread, must not leave the connection inside
    a transaction: every later write would fail with 'cannot start a transaction within a
    transaction'."""
    for turns in range(40):  # cancel after 0, 1, 2... turns of the event loop
        write = asyncio.create_task(
            store.set_setting("name", b"x")  # BEGIN is its first wait
            if turns % 2
            else store.put_records([row(1000 + turns)], NOW)
        )
        for _ in range(turns // 2):
            await asyncio.sleep(0)
        write.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await write
        assert await store.put_records([row(turns)], NOW) == [True], turns


# -- a batch of writes (publish library) ---------------------------------------------------------


def _held_by_another_connection(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM records").fetchone()[0])


async def test_a_batch_commits_its_deferred_writes_together_and_its_reads_see_them(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "canopy.db"
    async with store.batch():
        assert await store.put_records([row(1), row(2)], NOW, defer=True) == [True, True]
        await store.put_row("library_imports", b"k", {"ids": [rid(1)]}, defer=True)
        assert _held_by_another_connection(path) == 0  # nothing committed yet
        assert await store.has([rid(1), rid(2), rid(3)]) == {rid(1), rid(2)}  # its own reads
        await store.put_records([row(3)], NOW, defer=True)
        assert await store.rows("library_imports") == {b"k": {"ids": [rid(1)]}}
    assert _held_by_another_connection(path) == 3
    assert set(await store.get_records([rid(1), rid(2), rid(3)])) == {rid(1), rid(2), rid(3)}
    # Outside a batch, `defer` changes nothing: written at once.
    await store.put_records([row(4)], NOW, defer=True)
    assert _held_by_another_connection(path) == 4


async def test_a_failed_batch_leaves_nothing_and_another_task_waits_for_it(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "canopy.db"
    with pytest.raises(RuntimeError, match="boom"):
        async with store.batch():
            await store.put_records([row(1)], NOW, defer=True)
            await store.put_records([row(2)], NOW)  # immediate, but inside the transaction
            raise RuntimeError("boom")
    assert _held_by_another_connection(path) == 0
    assert await store.has([rid(1), rid(2)]) == set()
    order: list[str] = []

    async def other() -> None:
        await store.put_records([row(9)], NOW)
        order.append("other")

    async with store.batch():
        task = asyncio.create_task(other())
        await asyncio.sleep(0.05)  # gives it a chance to write, which it must not take
        assert not task.done()
        await store.put_records([row(5)], NOW, defer=True)
        order.append("batch")
    await task
    assert order == ["batch", "other"]
    assert await store.has([rid(5), rid(9)]) == {rid(5), rid(9)}
