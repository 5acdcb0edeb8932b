"""What the indexes opened of each record, kept sealed beside it (a cache of the records'
readable content, bound to the record's id and padded to its row's size)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from node.at_rest import AtRest
from node.store_core import StoreCore


class OpenedQueries(StoreCore):
    """The opened-record cache column of `records` (a mixin of `Store`)."""

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
