"""What leaves the store: tombstones applied (a withdrawn record and an attachment's chunks
deleted, and remembered as withdrawn by their author until the tombstone expires), the checks
against those memories, and the purge of expired records and memories."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from node.store_core import StoreCore, in_chunks
from protocol.errors import StoreError
from protocol.lifecycle import NEVER_WITHDRAWN


class WithdrawalQueries(StoreCore):
    """Withdrawals and expiry (a mixin of `Store`)."""

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
        await self._see_batch()
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
        for chunk, marks in in_chunks(groups):
            sql = f"SELECT tag FROM withdrawn_groups WHERE tag IN ({marks})"
            async with self._db.execute(sql, chunk) as cur:
                for (g,) in await cur.fetchall():
                    out.update(keyed[bytes(g)])
        return out

    async def withdrawn_among(self, items: Sequence[tuple[bytes, bytes]]) -> set[bytes]:
        """Of (id, author) pairs, the ids their own author has withdrawn."""
        out: set[bytes] = set()
        for chunk, marks in in_chunks(items):
            sql = f"SELECT id, author_tag FROM withdrawn WHERE id IN ({marks})"
            async with self._db.execute(sql, [i for i, _ in chunk]) as cur:
                found = {(bytes(rid), bytes(tag)) for rid, tag in await cur.fetchall()}
            if found:  # rare: tag only the authors of ids that were withdrawn
                ids = {rid for rid, _ in found}
                out.update(i for i, author in chunk if i in ids and (i, self.tag(author)) in found)
        return out

    async def is_withdrawn(self, rid: bytes) -> bool:
        async with self._db.execute("SELECT 1 FROM withdrawn WHERE id = ?", (rid,)) as cur:
            return await cur.fetchone() is not None

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
