"""The store's records: writing a batch durably (sealed, keyed tags for author, network and
attachment group), reading them back by id, kind, prefix or insertion order, and counting them.
What a peer may receive of them is node/store_exchange.py."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from node.at_rest import SEAL_OVERHEAD
from node.store_core import StoreCore, in_chunks
from protocol.attachment import tag_of
from protocol.record import Kind, Record


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


class RecordQueries(StoreCore):
    """Records in and out (a mixin of `Store`, node/store.py)."""

    async def put_records(
        self, rows: Sequence[RecordRow], received_at: int, *, defer: bool = False
    ) -> list[bool]:
        """Insert in one durable transaction; returns, per row, whether it was new. Nothing
        in clear says whether a row is ours (`local`): that is the keyed `mark`. The time
        of arrival is not stored (`received_at` stays in the signature for the callers).
        `defer`, inside this task's `batch`: rows are gathered and written a few thousand
        at a time (`has`, `get_records`, `rows`, `withdraw` write them first; other reads
        do not see them until then) and each is answered as new."""
        if defer and self._in_batch():
            return await self._defer_records(rows)
        return await self._put_now(rows)

    async def _put_now(self, rows: Sequence[RecordRow]) -> list[bool]:
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

    async def has(self, ids: Sequence[bytes]) -> set[bytes]:
        await self._see_batch()
        found: set[bytes] = set()
        for chunk, marks in in_chunks(ids):
            sql = f"SELECT id FROM records WHERE id IN ({marks})"
            async with self._db.execute(sql, chunk) as cur:
                found.update([bytes(row[0]) async for row in cur])
        return found

    async def get_records(self, ids: Sequence[bytes]) -> dict[bytes, bytes]:
        """Record wire bytes by id, for the ids that are stored."""
        await self._see_batch()
        out: dict[bytes, bytes] = {}
        for chunk, marks in in_chunks(ids):
            sql = f"SELECT id, data FROM records WHERE id IN ({marks})"
            out.update(await self._records_by_id(sql, chunk))
        return out

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
        for chunk, marks in in_chunks(ours):
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

    async def ids_with_prefix(self, prefix: bytes) -> list[bytes]:
        """Stored ids starting with `prefix` (for short ids typed by people)."""
        upper = prefix + b"\xff" * (32 - len(prefix))
        sql = "SELECT id FROM records WHERE id >= ? AND id <= ? LIMIT 10"
        async with self._db.execute(sql, (prefix, upper)) as cur:
            return [bytes(row[0]) async for row in cur]

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
        for chunk, marks in in_chunks(tags):
            sql = (
                "SELECT author_tag, COUNT(*), COALESCE(SUM(length(data)), 0) FROM records"
                f" WHERE author_tag IN ({marks}){kinds} GROUP BY author_tag"
            )
            async with self._db.execute(sql, chunk) as cur:
                for tag, n, size in await cur.fetchall():
                    out[by_tag[bytes(tag)]] = (int(n), int(size) - int(n) * SEAL_OVERHEAD)
        return out

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
