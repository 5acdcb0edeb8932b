"""The node's database: records, settings, peers and invites in one SQLite file (WAL).

Owns durability ("acknowledged = survives kill -9": synchronous=FULL, one transaction per
batch) and at-rest encryption: every row that could reveal content or who we work with is
sealed with a sub-key of the storage key. It must never write plaintext of a record, a
peer's name or address, or a network key to disk; temp tables live in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import aiosqlite

from node.at_rest import SEAL_OVERHEAD, AtRest
from node.migrations import check_key, migrate
from protocol.attachment import tag_of
from protocol.encoding import Value
from protocol.errors import StoreError
from protocol.lifecycle import NEVER_WITHDRAWN
from protocol.networks import NetworkView
from protocol.record import Kind, Record

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class RecordRow:
    """A record as the store keeps it; `data` is the record's wire bytes (sealed on disk)."""

    id: bytes
    kind: str
    scope: int
    created: int
    expires: int
    author: bytes
    local: bool
    data: bytes
    network: bytes | None = None  # the network tag of a network-scoped record, if it has one
    group: bytes | None = None  # a chunk's attachment tag (kept as a keyed tag with its author)


def row_of(record: Record, *, local: bool) -> RecordRow:
    """The row that stores `record` (`local`: written by this node, not received)."""
    return RecordRow(
        id=record.id,
        kind=str(record.kind),
        scope=int(record.scope),
        created=record.created,
        expires=record.expires,
        author=record.author.raw,
        local=local,
        data=record.to_bytes(),
        network=record.network,
        group=tag_of(record.payload) if record.kind is Kind.CHUNK else None,
    )


@dataclass(frozen=True, slots=True)
class RecordMeta:
    seq: int
    id: bytes
    kind: str
    scope: int
    created: int
    expires: int
    local: bool


class Store:
    """Async facade over one aiosqlite connection. Open with `await Store.open(...)`."""

    def __init__(
        self, db: aiosqlite.Connection, storage_key: bytes, owner: bytes | None = None
    ) -> None:
        self._db = db
        # Every sealed column's layout and the keys for it (node/at_rest.py).
        self.at_rest = AtRest(storage_key)
        self.tag = self.at_rest.tag
        self.mark = self.at_rest.mark
        self.delivery_tag = self.at_rest.delivery_tag
        self._open_record = self.at_rest.open_record
        # This node's author tag: the records it authored are the peers-scoped ones it may
        # serve (SPEC "Who may receive what"). Without an owner, no record is ours.
        self._own_tag = self.tag(owner) if owner is not None else b""
        # One connection, many tasks: explicit transactions must not interleave.
        self._write_lock = asyncio.Lock()
        # Bumped by every write of this process that may change which records are held, so
        # that a running node can keep derived state (reconciliation sets) until it moves.
        self.generation = 0

    # -- lifecycle ---------------------------------------------------------------------

    @classmethod
    async def open(cls, path: Path, storage_key: bytes, owner: bytes | None = None) -> Store:
        try:
            db = await aiosqlite.connect(str(path), timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=FULL")
            await db.execute("PRAGMA temp_store=MEMORY")
            await db.execute("PRAGMA secure_delete=ON")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA busy_timeout=30000")
            store = cls(db, storage_key, owner)
            if await migrate(db, store.at_rest):
                await store.checkpoint()  # the old layout's pages leave the WAL
            await check_key(store.get_setting, store.set_setting)
        except sqlite3.DatabaseError as exc:
            await db.close()
            raise StoreError(f"database {path} is unreadable: {exc}") from exc
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        await self._db.close()

    # -- records -------------------------------------------------------------------------

    async def put_records(self, rows: Sequence[RecordRow], received_at: int) -> list[bool]:
        """Insert in one durable transaction; returns, per row, whether it was new. Nothing
        in clear says whether a row is ours (`local`): that is the keyed `mark`. The time
        of arrival is not stored (`received_at` stays in the signature for the callers)."""
        if not rows:
            return []
        ids = [r.id for r in rows]
        already = await self.has(ids)
        fresh: list[RecordRow] = []
        seen: set[bytes] = set()
        result: list[bool] = []
        for row in rows:
            new = row.id not in already and row.id not in seen
            result.append(new)
            if new:
                seen.add(row.id)
                fresh.append(row)
        if fresh:
            self.generation += 1
            sealed = self.at_rest.seal_records([r.data for r in fresh])
            # A batch is mostly one author's records (a sync, a bundle): one keyed hash each.
            tags = {author: self.tag(author) for author in {r.author for r in fresh}}
            marks = self.at_rest.marks([(r.id, r.local) for r in fresh])
            nets = {n: self.tag(n) for n in {r.network for r in fresh} if n is not None}
            params = [
                (
                    r.id,
                    r.kind,
                    r.scope,
                    r.created,
                    r.expires,
                    tags[r.author],
                    mark,
                    data,
                    *(() if not nets else (None if r.network is None else nets[r.network],)),
                )
                for r, data, mark in zip(fresh, sealed, marks, strict=True)
            ]
            # Optional columns, only when the batch has a value for them: `net` (a tagged
            # record, migration 11) and `group_tag` (an attachment chunk, migration 12); a
            # batch without either writes what every layout since migration 8 has.
            columns = "id, kind, scope, created, expires, author_tag, mark, data"
            columns += ", net" if nets else ""
            if any(r.group is not None for r in fresh):  # chunks: their keyed group too
                groups = [
                    None if r.group is None else self.group_tag(r.author, r.group) for r in fresh
                ]
                params = [(*p, g) for p, g in zip(params, groups, strict=True)]
                columns += ", group_tag"
            marks_sql = ", ".join("?" * len(params[0]))
            await self._write_many(
                f"INSERT OR IGNORE INTO records ({columns}) VALUES ({marks_sql})", params
            )
        return result

    async def _write_many(self, sql: str, params: Iterable[Sequence[object]]) -> None:
        async with self._transaction():
            await self._db.executemany(sql, params)

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        """One durable write transaction (BEGIN IMMEDIATE ... COMMIT) under the write lock."""
        async with self._write_lock:
            try:
                try:
                    await self._db.execute("BEGIN IMMEDIATE")
                    yield
                    await self._db.execute("COMMIT")
                except BaseException:
                    # Also when the task is cancelled while BEGIN or COMMIT waits on the
                    # database thread: they still run there, in order, so a ROLLBACK queued
                    # now ends any transaction they left open (and finds none after a COMMIT).
                    with contextlib.suppress(sqlite3.OperationalError):
                        await self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"database write failed: {exc}") from exc

    async def has(self, ids: Sequence[bytes]) -> set[bytes]:
        found: set[bytes] = set()
        for chunk, marks in _in_chunks(ids):
            sql = f"SELECT id FROM records WHERE id IN ({marks})"
            async with self._db.execute(sql, chunk) as cur:
                found.update([bytes(row[0]) async for row in cur])
        return found

    async def get_records(self, ids: Sequence[bytes]) -> dict[bytes, bytes]:
        """Record wire bytes by id, for the ids that are stored."""
        out: dict[bytes, bytes] = {}
        for chunk, marks in _in_chunks(ids):
            sql = f"SELECT id, data FROM records WHERE id IN ({marks})"
            out.update(await self._records_by_id(sql, chunk))
        return out

    async def _records_by_id(self, sql: str, params: Sequence[object]) -> dict[bytes, bytes]:
        """Wire bytes by id of the (id, data) rows `sql` selects."""
        async with self._db.execute(sql, params) as cur:
            rows = await cur.fetchall()  # one trip to the database thread
        return {bytes(rid): self._open_record(data) for rid, data in rows}

    async def records_for_peer(
        self, ids: Sequence[bytes], peer: bytes, now_ms: int, view: NetworkView | None = None
    ) -> dict[bytes, bytes]:
        """Wire bytes of the stored, unexpired `ids` that `peer` may receive from us: network-
        scoped, or peers-scoped and ours; never a private one, never a record back to its
        author. The rules of docs/SPEC.md "Who may receive what", without parsing records.
        With `view`, network-scoped ones only of the networks it shares."""
        out: dict[bytes, bytes] = {}
        peer_tag = self.tag(peer)
        networks, net_params = self._networks_sql(view)
        for chunk, marks in _in_chunks(ids):
            sql = (
                f"SELECT id, data FROM records WHERE id IN ({marks}) AND expires > ?"
                " AND (scope = 1 OR (scope = 0 AND author_tag = ?)) AND author_tag != ?"
                + _NOT_REVOKED
                + networks
            )
            params = (*chunk, now_ms, self._own_tag, peer_tag, *net_params)
            out.update(await self._records_by_id(sql, params))
        return out

    def _networks_sql(self, view: NetworkView | None) -> tuple[str, list[bytes]]:
        """The condition (and its parameters) for the records of the networks `view` shares:
        not network-scoped, a revocation or tombstone (every network), tagged for a shared
        network, or untagged when this node's first network is shared."""
        if view is None:
            return "", []
        nets = [self.tag(t) for t in sorted(view.shared)]
        parts = ["scope != 1", "kind IN ('revocation', 'tombstone')"]
        if nets:
            parts.append(f"net IN ({', '.join('?' * len(nets))})")
        if view.first_shared:
            parts.append("net IS NULL")
        return " AND (" + " OR ".join(parts) + ")", nets

    async def records_for_peer_within(
        self,
        ids: Sequence[bytes],
        peer: bytes,
        now_ms: int,
        max_bytes: int,
        view: NetworkView | None = None,
    ) -> tuple[dict[bytes, bytes], list[bytes]]:
        """`records_for_peer` of the first of `ids` whose rows add up to `max_bytes` (at
        least one), and the ids left for later: a look-up of large records (attachment
        chunks) never reads more than that into memory at once."""
        sizes: dict[bytes, int] = {}
        for chunk, marks in _in_chunks(ids):
            sql = f"SELECT id, length(data) FROM records WHERE id IN ({marks})"
            async with self._db.execute(sql, chunk) as cur:
                sizes.update({bytes(rid): int(n) for rid, n in await cur.fetchall()})
        total, cut = 0, len(ids)
        for i, rid in enumerate(ids):
            total += sizes.get(rid, 0)
            if total > max_bytes and i > 0:
                cut = i
                break
        found = await self.records_for_peer(ids[:cut], peer, now_ms, view)
        return found, list(ids[cut:])

    async def local_records_after(
        self, seq: int, limit: int = 1000
    ) -> tuple[int, list[tuple[RecordMeta, bytes]]]:
        """Records written here (their `mark` is ours), in insertion order, among the next
        `limit` rows after `seq`, with their wire bytes; and the last seq looked at (where
        the next call starts; `seq` itself when there was nothing new)."""
        sql = "SELECT seq, id, mark FROM records WHERE seq > ? ORDER BY seq LIMIT ?"
        async with self._db.execute(sql, (seq, limit)) as cur:
            rows = list(await cur.fetchall())
        if not rows:
            return seq, []
        ours = [int(s) for s, rid, mark in rows if hmac.compare_digest(mark, self.mark(rid))]
        out: list[tuple[RecordMeta, bytes]] = []
        for chunk, marks in _in_chunks(ours):
            sql = (
                "SELECT seq, id, kind, scope, created, expires, data FROM records"
                f" WHERE seq IN ({marks}) ORDER BY seq"
            )
            async with self._db.execute(sql, chunk) as cur:
                for s, rid, kind, scope, created, expires, data in await cur.fetchall():
                    meta = RecordMeta(s, bytes(rid), kind, scope, created, expires, True)
                    out.append((meta, self._open_record(data)))
        return int(rows[-1][0]), out

    async def records_of_kind(self, kind: str) -> list[bytes]:
        """Wire bytes of every stored record of `kind`, oldest first."""
        sql = "SELECT data FROM records WHERE kind = ? ORDER BY created, id"
        async with self._db.execute(sql, (kind,)) as cur:
            rows = await cur.fetchall()  # one trip to the database thread, not one per 64 rows
        return [self._open_record(data) for (data,) in rows]

    # -- what the index opened (a cache of the records' readable content) ----------------------

    async def opened_of_kind(
        self, kind: str, chunk: int = 2048
    ) -> AsyncIterator[list[tuple[bytes, bytes | None, bytes | None]]]:
        """(id, cached, data) of every stored record of `kind`, oldest first, `chunk` rows at
        a time. `cached`: what `put_opened` stored for it, else None; `data`: the record's
        wire bytes when nothing was stored for it, so the caller can open it now. Both are
        None when a stored value fails to open or names another record (a copy moved
        between rows): the caller fetches that record and opens it again. The database
        thread reads the next rows while the caller works on these."""
        sql = (
            "SELECT id, opened, CASE WHEN opened IS NULL THEN data END FROM records"
            " WHERE kind = ? ORDER BY created, id"
        )
        async with self._db.execute(sql, (kind,)) as cur:
            ahead = asyncio.ensure_future(cur.fetchmany(chunk))
            while rows := await ahead:
                ahead = asyncio.ensure_future(cur.fetchmany(chunk))
                yield [
                    (
                        bytes(rid),
                        self.at_rest.open_opened(rid, sealed),
                        None if data is None else self._open_record(data),
                    )
                    for rid, sealed, data in rows
                ]

    async def put_opened(self, items: Sequence[tuple[bytes, bytes, int]]) -> None:
        """Keep, sealed and bound to its record's id, what was opened of each record:
        (id, value, size of the record's wire bytes), padded to the size of the record's
        own row (`AtRest.seal_opened`: not even whether this node could read it shows). A
        value longer than `opened_room` is not kept; a record deleted meanwhile is skipped
        (the write checks the size given is the row's); rows go with their record."""
        rows = self.at_rest.seal_opened(items)
        if rows:
            await self._write_many(
                "UPDATE records SET opened = ? WHERE id = ? AND length(data) = ?", rows
            )

    @staticmethod
    def opened_room(record_bytes: int) -> int:
        """How long a value `put_opened` keeps for a record of that many bytes can be."""
        return AtRest.opened_room(record_bytes)

    async def forget_opened(self) -> None:
        """Drop every cached opening (the keys that decide what we can open changed)."""
        await self._write_many("UPDATE records SET opened = NULL WHERE opened IS NOT NULL", [()])

    async def ids_with_prefix(self, prefix: bytes) -> list[bytes]:
        """Stored ids starting with `prefix` (for short ids typed by people)."""
        upper = prefix + b"\xff" * (32 - len(prefix))
        sql = "SELECT id FROM records WHERE id >= ? AND id <= ? LIMIT 10"
        async with self._db.execute(sql, (prefix, upper)) as cur:
            return [bytes(row[0]) async for row in cur]

    async def exchangeable_items(
        self, peer: bytes, now_ms: int, view: NetworkView | None = None
    ) -> list[tuple[int, bytes]]:
        """(created, id), sorted, of unexpired records this node and `peer` may exchange:
        network-scoped ones (with `view`, of the networks the two share), and peers-scoped
        ones written by either of the two (private ones never)."""
        networks, net_params = self._networks_sql(view)
        sql = (
            "SELECT created, id FROM records WHERE expires > ?"
            " AND (scope = 1 OR (scope = 0 AND author_tag IN (?, ?)))"
            + _NOT_REVOKED
            + networks
            + " ORDER BY created, id"
        )
        params = (now_ms, self._own_tag, self.tag(peer), *net_params)
        async with self._db.execute(sql, params) as cur:
            # sqlite3 already gives int and bytes for these columns: no copy per row.
            rows: list[tuple[int, bytes]] = list(await cur.fetchall())
        return rows

    def group_tag(self, author: bytes, attachment_tag: bytes) -> bytes:
        """The keyed stand-in of (author, attachment tag) on a chunk's row."""
        return self.tag(author + attachment_tag)

    async def withdraw(
        self,
        targets: Sequence[bytes],
        author: bytes,
        expires: int,
        attachment_tags: Sequence[bytes] = (),
    ) -> list[bytes]:
        """Apply a tombstone by `author`: delete its targets written by that author (never a
        revocation: `lifecycle.withdrawable`), and remember them as withdrawn *by that
        author* until `expires`, so a late copy by that author is refused. Another author's
        tombstone naming the same ids changes nothing for them. `attachment_tags`: the
        chunks of that author carrying one of them go too, and later ones are refused
        (docs/spec/85-attachments.md). Returns the deleted ids."""
        tag = self.tag(author)
        groups = [self.group_tag(author, t) for t in attachment_tags]
        marks = ",".join("?" * len(targets))
        kept = sorted(NEVER_WITHDRAWN)
        where = f"id IN ({marks}) AND author_tag = ? AND kind NOT IN ({','.join('?' * len(kept))})"
        self.generation += 1
        async with self._transaction():
            async with self._db.execute(
                f"SELECT id FROM records WHERE {where}", (*targets, tag, *kept)
            ) as cur:
                deleted = [bytes(row[0]) for row in await cur.fetchall()]
            await self._db.execute(f"DELETE FROM records WHERE {where}", (*targets, tag, *kept))
            await self._db.executemany(
                "INSERT INTO withdrawn (id, author_tag, expires) VALUES (?, ?, ?)"
                " ON CONFLICT(id, author_tag)"
                " DO UPDATE SET expires = MAX(expires, excluded.expires)",
                [(t, tag, expires) for t in targets],
            )
            if groups:
                deleted += await self._purge_groups(groups, expires)
        return deleted

    async def _purge_groups(self, groups: Sequence[bytes], expires: int) -> list[bytes]:
        """Inside a transaction: delete the chunks of these keyed groups, remember them."""
        where = f"kind = 'chunk' AND group_tag IN ({','.join('?' * len(groups))})"
        async with self._db.execute(f"SELECT id FROM records WHERE {where}", groups) as cur:
            deleted = [bytes(row[0]) for row in await cur.fetchall()]
        await self._db.execute(f"DELETE FROM records WHERE {where}", groups)
        await self._db.executemany(
            "INSERT INTO withdrawn_groups (tag, expires) VALUES (?, ?)"
            " ON CONFLICT(tag) DO UPDATE SET expires = MAX(expires, excluded.expires)",
            [(g, expires) for g in groups],
        )
        return deleted

    async def withdrawn_chunks(self, items: Sequence[tuple[bytes, bytes, bytes]]) -> set[bytes]:
        """Of (id, author, attachment tag) of chunks, the ids whose attachment their own
        author has withdrawn."""
        keyed: dict[bytes, list[bytes]] = {}
        for rid, author, t in items:
            keyed.setdefault(self.group_tag(author, t), []).append(rid)
        out: set[bytes] = set()
        groups = list(keyed)
        for chunk, marks in _in_chunks(groups):
            sql = f"SELECT tag FROM withdrawn_groups WHERE tag IN ({marks})"
            async with self._db.execute(sql, chunk) as cur:
                for (g,) in await cur.fetchall():
                    out.update(keyed[bytes(g)])
        return out

    async def withdrawn_among(self, items: Sequence[tuple[bytes, bytes]]) -> set[bytes]:
        """Of (id, author) pairs, the ids their own author has withdrawn."""
        out: set[bytes] = set()
        for chunk, marks in _in_chunks(items):
            sql = f"SELECT id, author_tag FROM withdrawn WHERE id IN ({marks})"
            async with self._db.execute(sql, [i for i, _ in chunk]) as cur:
                found = {(bytes(rid), bytes(tag)) for rid, tag in await cur.fetchall()}
            if found:  # rare: tag only the authors of ids that were withdrawn
                ids = {rid for rid, _ in found}
                out.update(i for i, author in chunk if i in ids and (i, self.tag(author)) in found)
        return out

    async def author_usage(
        self, authors: Sequence[bytes], *, chunks: bool | None = None
    ) -> dict[bytes, tuple[int, int]]:
        """Per author (of those given): how many records of theirs are stored, and their
        encoded size (the sealed rows' length less the sealing overhead). `chunks`: True
        counts only their attachment chunks, False all but those, None everything."""
        out: dict[bytes, tuple[int, int]] = {}
        by_tag = {self.tag(a): a for a in authors}
        tags = list(by_tag)
        kinds = {None: "", True: " AND kind = 'chunk'", False: " AND kind != 'chunk'"}[chunks]
        for chunk, marks in _in_chunks(tags):
            sql = (
                "SELECT author_tag, COUNT(*), COALESCE(SUM(length(data)), 0) FROM records"
                f" WHERE author_tag IN ({marks}){kinds} GROUP BY author_tag"
            )
            async with self._db.execute(sql, chunk) as cur:
                for tag, n, size in await cur.fetchall():
                    out[by_tag[bytes(tag)]] = (int(n), int(size) - int(n) * SEAL_OVERHEAD)
        return out

    async def is_withdrawn(self, rid: bytes) -> bool:
        async with self._db.execute("SELECT 1 FROM withdrawn WHERE id = ?", (rid,)) as cur:
            return await cur.fetchone() is not None

    async def max_seq(self) -> int:
        async with self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM records") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def count_by_network(self, tags: Sequence[bytes]) -> dict[bytes | None, int]:
        """Network-scoped records per network tag among `tags` (None: untagged ones)."""
        by_net = {self.tag(t): t for t in tags}
        out: dict[bytes | None, int] = {}
        sql = "SELECT net, COUNT(*) FROM records WHERE scope = 1 GROUP BY net"
        async with self._db.execute(sql) as cur:
            async for net, n in cur:
                key = None if net is None else by_net.get(bytes(net))
                if net is None or key is not None:
                    out[key] = int(n)
        return out

    async def count_by_kind(self) -> dict[str, int]:
        async with self._db.execute("SELECT kind, COUNT(*) FROM records GROUP BY kind") as cur:
            return {str(kind): int(n) async for kind, n in cur}

    async def delete_expired(self, now_ms: int) -> int:
        """Purge expired records and tombstone memories; returns how many records went."""
        try:
            cur = await self._db.execute("DELETE FROM records WHERE expires <= ?", (now_ms,))
            await self._db.execute("DELETE FROM withdrawn WHERE expires <= ?", (now_ms,))
            await self._db.execute("DELETE FROM withdrawn_groups WHERE expires <= ?", (now_ms,))
        except sqlite3.Error as exc:
            raise StoreError(f"database write failed: {exc}") from exc
        if cur.rowcount:
            self.generation += 1
            await self.checkpoint()
        return cur.rowcount

    async def checkpoint(self) -> None:
        """Fold the WAL into the database and truncate it, so purged pages leave the disk
        (secure_delete zeroes them in the main file)."""
        with contextlib.suppress(sqlite3.Error):
            await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- settings (sealed key-value) -----------------------------------------------------

    async def get_setting(self, name: str) -> bytes | None:
        async with self._db.execute("SELECT value FROM settings WHERE name = ?", (name,)) as cur:
            row = await cur.fetchone()
        return None if row is None else self.at_rest.open_setting(bytes(row[0]))

    async def set_setting(self, name: str, value: bytes) -> None:
        sealed = self.at_rest.seal_setting(value)
        await self._write_many(
            "INSERT INTO settings (name, value) VALUES (?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            [(name, sealed)],
        )

    # -- sealed rows: peers and invites ----------------------------------------------------

    async def put_row(self, table: str, key: bytes, value: dict[str, Value]) -> None:
        """Store `value` under a keyed tag of `key`; both the key and the value stay sealed."""
        _check_table(table)
        sealed = self.at_rest.seal_row(key, value)
        await self._write_many(
            f"INSERT INTO {table} (tag, data) VALUES (?, ?)"
            " ON CONFLICT(tag) DO UPDATE SET data = excluded.data",
            [(self.tag(key), sealed)],
        )
        if table == "revoked":
            self.generation += 1
        await self.bump_epoch()

    async def delete_row(self, table: str, key: bytes) -> bool:
        _check_table(table)
        try:
            cur = await self._db.execute(f"DELETE FROM {table} WHERE tag = ?", (self.tag(key),))
        except sqlite3.Error as exc:
            raise StoreError(f"database write failed: {exc}") from exc
        await self.bump_epoch()
        return cur.rowcount > 0

    async def version(self) -> tuple[int, int]:
        """Moves whenever anything in the database may have changed, in one round trip:
        SQLite's data_version (moved by commits of other connections: `canopy` in another
        process) and this connection's total_changes (every row this process writes). A
        value read after it is at least as new as it."""
        async with self._db.execute("PRAGMA data_version") as cur:
            row = await cur.fetchone()
        assert row is not None
        return int(row[0]), self._db.total_changes

    async def rows(self, table: str) -> dict[bytes, dict[str, Value]]:
        _check_table(table)
        out: dict[bytes, dict[str, Value]] = {}
        async with self._db.execute(f"SELECT data FROM {table}") as cur:
            async for (data,) in cur:
                key, value = self.at_rest.open_row(bytes(data), table)
                out[key] = value
        return out

    # -- deliveries: who received which record (for `canopy exposure`) -------------------------

    async def record_deliveries(self, items: Sequence[tuple[bytes, bytes]], at: int) -> None:
        """Remember that each (peer id, record id) pair was sent; one transaction."""
        await self._write_many(
            "INSERT OR IGNORE INTO deliveries (peer_tag, record_tag, at) VALUES (?, ?, ?)",
            [(self.tag(peer), self.delivery_tag(rid), at) for peer, rid in items],
        )

    async def exposure(self, author: bytes) -> dict[bytes, list[tuple[bytes, str, int]]]:
        """Per peer tag: (record id, kind, sent at) of the held records by `author` sent to it."""
        async with self._db.execute(
            "SELECT id, kind FROM records WHERE author_tag = ?", (self.tag(author),)
        ) as cur:
            held = {
                self.delivery_tag(bytes(rid)): (bytes(rid), str(kind)) async for rid, kind in cur
            }
        out: dict[bytes, list[tuple[bytes, str, int]]] = {}
        tags = list(held)
        for chunk, marks in _in_chunks(tags):
            sql = f"SELECT peer_tag, record_tag, at FROM deliveries WHERE record_tag IN ({marks})"
            async with self._db.execute(sql, chunk) as cur:
                async for peer_tag, record_tag, at in cur:
                    rid, kind = held[bytes(record_tag)]
                    out.setdefault(bytes(peer_tag), []).append((rid, kind, int(at)))
        return out

    # -- change signal for a running node ----------------------------------------------------

    async def bump_epoch(self) -> None:
        """Tell a running node (which polls `epoch`) that trust or invites changed."""
        await self._db.execute(
            "INSERT INTO meta (name, value) VALUES ('epoch', 1)"
            " ON CONFLICT(name) DO UPDATE SET value = value + 1"
        )

    async def epoch(self) -> int:
        async with self._db.execute("SELECT value FROM meta WHERE name = 'epoch'") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # -- counters ----------------------------------------------------------------------------

    async def count_rejection(self, reason: str, n: int = 1) -> None:
        await self._db.execute(
            "INSERT INTO rejections (reason, count) VALUES (?, ?)"
            " ON CONFLICT(reason) DO UPDATE SET count = count + excluded.count",
            (reason, n),
        )

    async def rejections(self) -> dict[str, int]:
        async with self._db.execute("SELECT reason, count FROM rejections ORDER BY reason") as cur:
            return {str(reason): int(n) async for reason, n in cur}

    async def integrity_check(self) -> str:
        async with self._db.execute("PRAGMA integrity_check") as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else "no answer"


_TABLES = frozenset(
    {
        "peers",
        "invites",
        "introductions",
        "revoked",
        "staff",
        "checklist_progress",
        "networks",
        "checkin_plans",
        "library_imports",
        "notices",
    }
)
# A revoked author's records are kept (flagged) but never offered or served onward; the
# revocation itself always is.
_NOT_REVOKED = " AND (kind = 'revocation' OR author_tag NOT IN (SELECT tag FROM revoked))"


def _in_chunks(items: Sequence[_T]) -> Iterator[tuple[list[_T], str]]:
    """`items` 500 at a time (under SQLite's bound on a statement's parameters), each chunk
    with as many `?` placeholders for an `IN (...)`."""
    for start in range(0, len(items), 500):
        chunk = list(items[start : start + 500])
        yield chunk, ",".join("?" * len(chunk))


def _check_table(table: str) -> None:
    if table not in _TABLES:
        raise ValueError(f"no such sealed table: {table}")
