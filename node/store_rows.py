"""The store's sealed rows other than records: settings (key-value), the keyed tables of
peers, invites and the like, deliveries (who received which record, for `canopy exposure`)
and rejection counters."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from node.store_core import StoreCore, in_chunks
from protocol.encoding import Value
from protocol.errors import StoreError


class RowQueries(StoreCore):
    """Settings, sealed tables, deliveries and counters (a mixin of `Store`)."""

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

    async def put_row(
        self, table: str, key: bytes, value: dict[str, Value], *, defer: bool = False
    ) -> None:
        """Store `value` under a keyed tag of `key`; both the key and the value stay sealed.
        `defer`: as for `put_records`."""
        _check_table(table)
        sealed = self.at_rest.seal_row(key, value)
        if table == "revoked":
            self.generation += 1
        if defer and self._in_batch():
            self._deferred_rows.append((table, self.tag(key), sealed))
            self._epoch_due = True
            return
        await self._write_many(
            f"INSERT INTO {table} (tag, data) VALUES (?, ?)"
            " ON CONFLICT(tag) DO UPDATE SET data = excluded.data",
            [(self.tag(key), sealed)],
        )
        await self.bump_epoch()

    async def delete_row(self, table: str, key: bytes) -> bool:
        await self._see_batch()
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
        await self._see_batch()
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
        for chunk, marks in in_chunks(tags):
            sql = f"SELECT peer_tag, record_tag, at FROM deliveries WHERE record_tag IN ({marks})"
            async with self._db.execute(sql, chunk) as cur:
                async for peer_tag, record_tag, at in cur:
                    rid, kind = held[bytes(record_tag)]
                    out.setdefault(bytes(peer_tag), []).append((rid, kind, int(at)))
        return out

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


def _check_table(table: str) -> None:
    if table not in _TABLES:
        raise ValueError(f"no such sealed table: {table}")
