"""The storage cap per unknown author (`Intake.within_caps`) on a real store: copies of
records already held take no room, so a relayed record arriving again from another peer
never makes the cap refuse a record that fits (it then waited for the next round)."""

from __future__ import annotations

import os
import time

from node.content import row_of
from node.intake import Intake
from node.peer_book import PeerBook
from node.store import Store
from protocol import limits
from protocol.identity import Identity
from protocol.record import Kind, Record, Scope

DAY = 24 * 3600 * 1000


def _records(author: Identity, n: int, now: int) -> list[Record]:
    return [
        Record.create(
            author,
            Kind.GUIDE,
            created=now + i,
            expires=now + DAY,
            scope=Scope.NETWORK,
            payload=os.urandom(64),
        )
        for i in range(n)
    ]


async def _nothing(*_: object) -> None:
    return None


def _intake(store: Store, us: Identity) -> Intake:
    book = PeerBook(
        count_rejection=_nothing,
        min_score=0,
        reconnect_min=1.0,
        reconnect_max=2.0,
        disconnect=_nothing,
    )
    return Intake(store, book, us=us.node_id, max_source_records=10**6, trusted=lambda: {})


async def test_copies_of_held_records_take_no_room_under_the_unknown_author_cap(
    tmp_path,
) -> None:
    store = await Store.open(tmp_path / "store.db", os.urandom(32))
    try:
        us, source, stranger = (Identity(os.urandom(32)) for _ in range(3))
        intake = _intake(store, us)
        book = intake.book
        now = int(time.time() * 1000)
        most = limits.MAX_UNKNOWN_AUTHOR_RECORDS
        held = _records(stranger, most - 2, now)
        await store.put_records([row_of(r, local=False) for r in held], now)
        fresh = _records(stranger, 3, now + most)
        # Copies of 100 held records, the two that still fit, one of them twice, and a third
        # that does not fit: only the third is refused.
        batch = [*held[:100], fresh[0], fresh[1], fresh[0], fresh[2]]
        kept = await intake.within_caps(batch, source.node_id)
        assert [r.id for r in kept] == [r.id for r in batch[:-1]]
        assert book.rejected["quota_author_storage"] == 1
    finally:
        await store.close()


async def test_a_copy_of_a_held_record_is_checked_again_but_for_its_signature(
    tmp_path,
) -> None:
    """Held or not, a record gets the same verdict: only its signature is not checked twice
    (a copy has the id, so the bytes, of the record stored)."""
    us, author, relay = (Identity(os.urandom(32)) for _ in range(3))
    now = int(time.time() * 1000)
    peers_only = Record.create(
        author,
        Kind.GUIDE,
        created=now,
        expires=now + DAY,
        scope=Scope.PEERS,
        payload=os.urandom(64),
    )
    records = [*_records(author, 2, now), peers_only]
    verdicts = []
    for held in (False, True):
        store = await Store.open(tmp_path / f"store-{held}.db", os.urandom(32))
        try:
            intake = _intake(store, us)
            if held:
                await store.put_records([row_of(r, local=False) for r in records], now)
            good, errors = await intake.check(
                relay.node_id, [r.to_bytes() for r in records], [r.id for r in records]
            )
            verdicts.append(([r.id for r in good], [type(e).__name__ for e in errors]))
        finally:
            await store.close()
    assert verdicts[0] == verdicts[1]
    assert "RecordRejected" in verdicts[1][1]  # the peers-scoped one, from a relay
