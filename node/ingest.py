"""Ingest: checking records from elsewhere and the one path into the store for them.

Owns what happens to records that arrive by network sync or in an imported bundle, whether
or not the node runs: decode, verify and time-check (`check_records`, on worker threads for
a large batch), then `accept_records` (revocations applied, revoked authors refused, the
withdrawal rules, durable storage, tombstones applied). The running node adds the live part
(pushes, alerts, the index) in `node.runtime`. Never logs content.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from node.content import row_of
from node.local import Local
from node.revocation import mark_revoked, revoked_ids
from protocol import limits
from protocol.attachment import tag_of
from protocol.conversation import check_record
from protocol.envelope import NetworkKeys, open_record
from protocol.errors import NotForUs, RemoteProtocolError
from protocol.identity import Identity, NodeId
from protocol.keyring import KeyRing
from protocol.lifecycle import Withdrawal, withdrawable
from protocol.record import Kind, Record

log = logging.getLogger("canopy.node")


def malformed_among(
    datas: Sequence[bytes],
    identity: Identity,
    network_key: NetworkKeys,
    circle_keys: Sequence[bytes] = (),
) -> list[tuple[Record, RemoteProtocolError]]:
    """Of stored records (checked on ingest), those this node can open whose body or
    content is malformed (pure; may run in a worker thread). Records sealed to others are
    not ours to judge. The keys are tried as a `KeyRing` does: the way that opened the
    last record first (a batch is mostly of one network or one circle)."""
    ring = circle_keys if isinstance(circle_keys, KeyRing) else KeyRing(circle_keys)
    out: list[tuple[Record, RemoteProtocolError]] = []
    for data in datas:
        record = Record.from_stored(data)  # its signature was checked before it was stored
        try:
            open_record(record, identity, network_key, circle_keys=ring)
        except NotForUs:
            continue
        except RemoteProtocolError as exc:
            out.append((record, exc))
    return out


async def check_parallel(
    datas: Sequence[bytes],
    ids: Sequence[bytes],
    now: int,
    sender: NodeId,
    held: Collection[bytes] = frozenset(),
) -> list[Record | RemoteProtocolError]:
    """Verify on two worker threads when the batch is large (libsodium releases the GIL),
    in count or in bytes (attachment chunks: hashing them must not hold up the loop).
    `held`: ids of records this node holds (their copies are not verified again)."""
    loop = asyncio.get_running_loop()
    if len(datas) <= limits.PARALLEL_VERIFY_OVER:
        if sum(map(len, datas)) <= limits.PARALLEL_VERIFY_BYTES:
            return check_records(datas, now, sender, ids, held)
        if len(datas) == 1:
            return await loop.run_in_executor(None, check_records, datas, now, sender, ids, held)
    half = (len(datas) + 1) // 2
    first, second = await asyncio.gather(
        loop.run_in_executor(None, check_records, datas[:half], now, sender, ids[:half], held),
        loop.run_in_executor(None, check_records, datas[half:], now, sender, ids[half:], held),
    )
    return [*first, *second]


def check_records(
    datas: Sequence[bytes],
    now: int,
    sender: NodeId,
    ids: Sequence[bytes] = (),
    held: Collection[bytes] = frozenset(),
) -> list[Record | RemoteProtocolError]:
    """Decode, verify and time-check each record by the protocol's one rule
    (`protocol.conversation.check_record`); pure, may run in a worker thread. `ids`, when
    given, are the record_id of each of `datas`; of those in `held` (copies of records
    stored here, so of the same bytes) the signature is not checked again."""
    out: list[Record | RemoteProtocolError] = []
    for i, data in enumerate(datas):
        rid = ids[i] if ids else None
        try:
            out.append(check_record(data, rid, now, sender, held=rid is not None and rid in held))
        except RemoteProtocolError as exc:
            out.append(exc)
    return out


@dataclass(frozen=True, slots=True)
class Accepted:
    """What `accept_records` did with a batch of checked records."""

    fresh: list[Record]  # stored now for the first time
    purged: list[bytes]  # ids deleted by tombstones among them
    revoked: list[NodeId]  # identities this batch revoked (not known revoked before)
    refused: Counter[str]  # reason -> records refused (revoked_author_refused, withdrawn_refused)


async def accept_records(
    local: Local, records: Sequence[Record], now: int, revoked: Collection[NodeId] | None = None
) -> Accepted:
    """The one path for checked records from elsewhere (network sync, `canopy import`),
    whether or not the node runs: revocations applied (also for a copy already stored, so a
    revocation never stays stored but unapplied), records of revoked authors refused (those
    revoked by this very batch too), withdrawal rules obeyed, the new ones stored durably.
    `revoked`: the identities known revoked (read from the store when not given). The
    running node adds the live part (`Node.accept`)."""
    known = set(revoked if revoked is not None else (await revoked_ids(local)).keys())
    newly: list[NodeId] = []
    for record in records:
        if record.kind is Kind.REVOCATION and await mark_revoked(local, record, now):
            newly.append(record.author)
            known.add(record.author)
    refused: Counter[str] = Counter()
    kept = [r for r in records if r.author not in known or r.kind is Kind.REVOCATION]
    if len(kept) < len(records):
        refused["revoked_author_refused"] = len(records) - len(kept)
    stored = await store_checked(local, kept, now)
    if stored.withdrawn_refused:
        refused["withdrawn_refused"] = stored.withdrawn_refused
    return Accepted(stored.fresh, stored.purged, newly, refused)


@dataclass(frozen=True, slots=True)
class Stored:
    """What `store_checked` did: the records that were new, and how many were refused
    because their author had withdrawn them."""

    fresh: list[Record]
    withdrawn_refused: int
    purged: list[bytes]  # ids deleted by tombstones among the fresh records


async def store_checked(local: Local, records: Sequence[Record], now: int) -> Stored:
    """Store records that passed `check_records`, durably, and apply new tombstones.

    Called by `accept_records` only, the one path for records from elsewhere (network
    sync and imported bundles), so both obey the same withdrawal rules."""
    # Only the author's own tombstone withdraws, and never a revocation (protocol rule:
    # `lifecycle.withdrawable`), whatever arrived first.
    candidates = [r for r in records if withdrawable(r.kind)]
    withdrawn = await local.store.withdrawn_among([(r.id, r.author.raw) for r in candidates])
    # A chunk of an attachment its author withdrew (docs/spec/85-attachments.md).
    chunks = [
        (r.id, r.author.raw, tag)
        for r in records
        if r.kind is Kind.CHUNK and (tag := tag_of(r.payload)) is not None
    ]
    if chunks:
        withdrawn |= await local.store.withdrawn_chunks(chunks)
    keep = [r for r in records if r.id not in withdrawn or not withdrawable(r.kind)]
    own = local.node_id  # once, not per record
    flags = await local.store.put_records([row_of(r, local=r.author == own) for r in keep], now)
    fresh = [r for r, new in zip(keep, flags, strict=True) if new]
    purged: list[bytes] = []
    for record in fresh:
        if record.kind is Kind.TOMBSTONE:
            purged += await apply_tombstone(local, record)
    return Stored(fresh, len(withdrawn), purged)


async def apply_tombstone(local: Local, tombstone: Record) -> list[bytes]:
    """Delete what `tombstone` withdraws (its own author's records only); the ids deleted."""
    try:
        withdrawal = Withdrawal.from_payload(tombstone.payload)
    except RemoteProtocolError:
        return []  # signed by its author, so not the relay's fault; nothing to apply
    deleted = await local.store.withdraw(
        withdrawal.targets, tombstone.author.raw, tombstone.expires, withdrawal.tags
    )
    if deleted:
        log.info("purged %d withdrawn record(s)", len(deleted))
        await local.store.checkpoint()
    return deleted
