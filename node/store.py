"""The node's database: records, settings, peers and invites in one SQLite file (WAL).

Owns durability ("acknowledged = survives kill -9": synchronous=FULL, one transaction per
batch) and at-rest encryption: every row that could reveal content or who we work with is
sealed with a sub-key of the storage key. It must never write plaintext of a record, a
peer's name or address, or a network key to disk; temp tables live in memory.

The queries live in one module a responsibility, joined here as mixins of `Store` over the
shared connection of node/store_core.py: records (store_records.py), what a peer may
receive (store_exchange.py), the opened-record cache (store_opened.py), withdrawals and
expiry (store_withdrawal.py), settings, sealed tables, deliveries and counters (store_rows.py).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite

from node.migrations import check_key, migrate
from node.store_batch import BatchQueries
from node.store_exchange import ExchangeQueries
from node.store_opened import OpenedQueries
from node.store_records import RecordMeta, RecordQueries, RecordRow, row_of
from node.store_rows import RowQueries
from node.store_withdrawal import WithdrawalQueries
from protocol.errors import StoreError

__all__ = ["RecordMeta", "RecordRow", "Store", "row_of"]


class Store(
    BatchQueries, RecordQueries, ExchangeQueries, OpenedQueries, WithdrawalQueries, RowQueries
):
    """Async facade over one aiosqlite connection. Open with `await Store.open(...)`."""

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
