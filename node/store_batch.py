"""One durable transaction around many writes of one task (a library import): records and
sealed rows gathered and written a few thousand at a time, not one trip to the database
each; reads of that task see them first (`StoreCore._see_batch`); other tasks' writes wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from node.store_core import StoreCore
from node.store_records import RecordRow
from protocol import limits


class BatchQueries(StoreCore):
    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """Every write of this task inside commits at its end, or none does (`put_records`
        and `put_row` with `defer=True` gather theirs). Other tasks' writes wait."""
        if self._batch_task is not None:
            raise RuntimeError("a store batch is already open")
        async with self._transaction():
            self._batch_task = asyncio.current_task()
            self._epoch_due = False
            try:
                yield
                await self._flush_deferred()
            finally:
                self._batch_task = None
                self._deferred, self._deferred_rows, self._deferred_bytes = [], [], 0
            if self._epoch_due:  # once for the batch's rows, not once per row
                await self.bump_epoch()

    async def _defer_records(self, rows: Sequence[RecordRow]) -> list[bool]:
        self._deferred.extend(rows)
        self._deferred_bytes += sum(len(r.data) for r in rows)
        if (
            len(self._deferred) >= limits.STORE_DEFER_RECORDS
            or self._deferred_bytes >= limits.STORE_DEFER_BYTES
        ):
            await self._flush_deferred()
        return [True] * len(rows)

    async def _flush_deferred(self) -> None:
        """Write what this task's batch gathered (inside its transaction)."""
        rows, self._deferred, self._deferred_bytes = self._deferred, [], 0
        sealed_rows, self._deferred_rows = self._deferred_rows, []
        if rows:
            await self._put_now(rows)
        by_table: dict[str, list[tuple[bytes, bytes]]] = {}
        for table, tag, data in sealed_rows:
            by_table.setdefault(table, []).append((tag, data))
        for table, params in by_table.items():
            await self._write_many(
                f"INSERT INTO {table} (tag, data) VALUES (?, ?)"
                " ON CONFLICT(tag) DO UPDATE SET data = excluded.data",
                params,
            )
