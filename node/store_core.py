"""What every part of the store shares: the one aiosqlite connection, its write lock and
durable transactions, the at-rest keys, the change counters a running node watches, and
`in_chunks` for `IN (...)` look-ups under SQLite's bound on a statement's parameters.

The queries live beside it, one responsibility a module (node/store_records.py,
store_opened.py, store_withdrawal.py, store_rows.py); node/store.py joins them into `Store`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import aiosqlite

from node.at_rest import AtRest
from protocol.errors import StoreError

_T = TypeVar("_T")


class StoreCore:
    """The connection and keys the query mixins of `Store` work with."""

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
        # A batch (node/store_batch.py): the task inside it, and what it has gathered.
        self._batch_task: asyncio.Task[object] | None = None
        self._epoch_due = False  # a row written in the batch: bump the epoch at its end
        self._deferred: list[Any] = []  # RecordRows the batch will write
        self._deferred_bytes = 0
        self._deferred_rows: list[tuple[str, bytes, bytes]] = []  # (table, tag, sealed)

    async def close(self) -> None:
        await self._db.close()

    async def _write_many(self, sql: str, params: Iterable[Sequence[object]]) -> None:
        async with self._transaction():
            await self._db.executemany(sql, params)

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        """One durable write transaction (BEGIN IMMEDIATE ... COMMIT) under the write lock;
        inside this task's `batch`, part of the batch's own."""
        if self._in_batch():
            yield
            return
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

    def _in_batch(self) -> bool:
        return self._batch_task is not None and self._batch_task is asyncio.current_task()

    async def _see_batch(self) -> None:
        """Inside this task's batch, write what it gathered so that a read sees it."""
        if self._in_batch() and (self._deferred or self._deferred_rows):
            await self._flush_deferred()

    # Joined in `Store` from the mixins that own them.
    async def _flush_deferred(self) -> None:
        raise NotImplementedError  # node/store_batch.py

    async def _defer_records(self, rows: Sequence[Any]) -> list[bool]:
        raise NotImplementedError  # node/store_batch.py

    async def _put_now(self, rows: Sequence[Any]) -> list[bool]:
        raise NotImplementedError  # node/store_records.py

    async def _records_by_id(self, sql: str, params: Sequence[object]) -> dict[bytes, bytes]:
        """Wire bytes by id of the (id, data) rows `sql` selects."""
        async with self._db.execute(sql, params) as cur:
            rows = await cur.fetchall()  # one trip to the database thread
        return {bytes(rid): self._open_record(data) for rid, data in rows}

    def group_tag(self, author: bytes, attachment_tag: bytes) -> bytes:
        """The keyed stand-in of (author, attachment tag) on a chunk's row."""
        return self.tag(author + attachment_tag)

    async def checkpoint(self) -> None:
        """Fold the WAL into the database and truncate it, so purged pages leave the disk
        (secure_delete zeroes them in the main file)."""
        with contextlib.suppress(sqlite3.Error):
            await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

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

    async def integrity_check(self) -> str:
        async with self._db.execute("PRAGMA integrity_check") as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else "no answer"


def in_chunks(items: Sequence[_T]) -> Iterator[tuple[list[_T], str]]:
    """`items` 500 at a time (under SQLite's bound on a statement's parameters), each chunk
    with as many `?` placeholders for an `IN (...)`."""
    for start in range(0, len(items), 500):
        chunk = list(items[start : start + 500])
        yield chunk, ",".join("?" * len(chunk))
