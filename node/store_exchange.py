"""What this node and one peer may exchange, in SQL over the stored rows without parsing a
record: the rules of docs/SPEC.md "Who may receive what" (network-scoped records of the
networks the two share, peers-scoped ones ours or theirs, never a private one, never a revoked
author's, never a record back to its author)."""

from __future__ import annotations

from collections.abc import Sequence

from node.store_core import StoreCore, in_chunks
from protocol.networks import NetworkView

# A revoked author's records are kept (flagged) but never offered or served onward; the
# revocation itself always is.
_NOT_REVOKED = " AND (kind = 'revocation' OR author_tag NOT IN (SELECT tag FROM revoked))"


class ExchangeQueries(StoreCore):
    """The records a peer may receive from us, and those we may exchange (a mixin of `Store`)."""

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
        for chunk, marks in in_chunks(ids):
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
        for chunk, marks in in_chunks(ids):
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
