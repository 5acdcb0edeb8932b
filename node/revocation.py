"""Key compromise on an unlocked data directory: the kept certificate, revoked identities,
publishing a revocation, and the exposure report.

Used by the CLI (offline or online) and by the running node when a revocation arrives.
Revoked ids live in the sealed `revoked` table (migration 4); which record went to which
peer is kept as keyed tags only. Never stores a certificate or an id in clear.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.local import Local
from node.store import row_of
from node.trust import match_peers, parse_node_id
from protocol.errors import CanopyError, RemoteProtocolError
from protocol.identity import NodeId
from protocol.record import Kind, Record
from protocol.revocation import check_revocation, from_text, make_revocation, to_text

CERTIFICATE_SETTING = "revocation_certificate"


async def create_certificate(local: Local, now_ms: int) -> str:
    """Make and keep (sealed) this node's pre-signed revocation; returns its text form."""
    record = make_revocation(local.identity, created=now_ms)
    await local.store.set_setting(CERTIFICATE_SETTING, record.to_bytes())
    return to_text(record)


async def own_certificate(local: Local, now_ms: int) -> Record:
    """The certificate made at init (or made now, for a directory older than this feature)."""
    data = await local.store.get_setting(CERTIFICATE_SETTING)
    if data is None:
        await create_certificate(local, now_ms)
        data = await local.store.get_setting(CERTIFICATE_SETTING)
        assert data is not None
    return Record.from_bytes(data)


async def mark_revoked(local: Local, record: Record, now_ms: int) -> bool:
    """Remember that `record` (a checked revocation) revokes its author; False if known."""
    certificate = check_revocation(record)
    known = await revoked_ids(local)
    if certificate.node_id in known:
        return False
    await local.store.put_row(
        "revoked",
        certificate.node_id.raw,
        {"created": certificate.created, "learnt": now_ms, "record": record.id},
    )
    return True


async def apply_stored_revocations(local: Local, now_ms: int) -> list[NodeId]:
    """Apply every stored revocation not applied yet; the identities newly revoked.

    Stores written before every path applied revocations may hold one unapplied (a bundle
    stored it, and the copy from sync was then "not new"). Run when the node starts and
    when the CLI opens a data directory, so no revocation stays stored but ignored."""
    known = await revoked_ids(local)
    out: list[NodeId] = []
    for data in await local.store.records_of_kind(Kind.REVOCATION.value):
        try:
            record = Record.from_bytes(data)
            if record.author in known:
                continue
            record.verify()
            if await mark_revoked(local, record, now_ms):
                out.append(record.author)
                known[record.author] = now_ms
        except RemoteProtocolError:
            continue  # checked on the way in; a bad one is not a revocation
    return out


async def revoked_ids(local: Local) -> dict[NodeId, int]:
    """Revoked identities and when this node learnt of each (ms)."""
    rows = await local.store.rows("revoked")
    out: dict[NodeId, int] = {}
    for raw, value in rows.items():
        learnt = value.get("learnt")
        out[NodeId(raw)] = learnt if isinstance(learnt, int) else 0
    return out


async def publish_revocation(local: Local, text: str | None, now_ms: int) -> Record:
    """Store a revocation for every peer to receive: ours (made at init) or a given one."""
    if text is None:
        record = await own_certificate(local, now_ms)
    else:
        try:
            record = from_text(text)
        except RemoteProtocolError as exc:
            raise CanopyError(f"not a valid revocation certificate: {exc}") from None
    record.verify()
    # Stored as "local" so this node pushes it, whoever signed it: anyone may publish it.
    await local.store.put_records([row_of(record, local=True)], now_ms)
    await mark_revoked(local, record, now_ms)
    return record


@dataclass(frozen=True, slots=True)
class Exposure:
    peer: str  # label of a trusted peer, or "unknown peer" if trust was withdrawn since
    peer_id: str | None
    records: tuple[tuple[str, str, int], ...]  # (record id hex, kind, sent at ms)


async def exposure(local: Local, ref: str) -> tuple[NodeId, list[Exposure]]:
    """Which peers this node sent which of `ref`'s records to (`ref`: an id or a peer)."""
    peers = await local.peers()
    named = match_peers(list(peers.values()), ref)
    author = named[0].node_id if len(named) == 1 else parse_node_id(ref)
    by_tag = {local.store.tag(node_id.raw): peer for node_id, peer in peers.items()}
    out: list[Exposure] = []
    for peer_tag, items in (await local.store.exposure(author.raw)).items():
        peer = by_tag.get(peer_tag)
        records = tuple(sorted((rid.hex(), kind, at) for rid, kind, at in items))
        out.append(
            Exposure(
                peer.label if peer else "unknown peer (no longer trusted)",
                str(peer.node_id) if peer else None,
                records,
            )
        )
    out.sort(key=lambda e: e.peer)
    return author, out
