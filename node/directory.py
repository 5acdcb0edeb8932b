"""Know-who on a data directory, as the CLI uses it: adding contacts under a sharing policy,
vouching, withdrawing, review reminders, the offline query, and opening stored contacts.

Owns the mapping from sharing policies to records (docs/spec/70-contacts-and-queries.md):
peers -> scope peers sealed to our peers; network -> scope network sealed with the network
key; on-request -> a private details record plus a network-scoped teaser; private -> scope
private sealed to ourselves. Nothing readable of a contact is ever written to disk or to a
log line: the index (node.contact_index) lives in memory only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from node.contact_index import ContactIndex
from node.contact_rows import result_rows
from node.content import _resolve_id, parse_audience, row_of, withdraw_records
from node.local import Local, random
from node.opened_cache import build_index
from node.revocation import revoked_ids
from node.trust import match_peers, parse_node_id
from protocol import limits
from protocol.contact import (
    DAY_MS,
    UID_BYTES,
    Contact,
    Filter,
    Share,
    Vouch,
    VouchAbout,
    check_review_days,
)
from protocol.encoding import Value
from protocol.envelope import Body, BodyFields, open_record, open_stored, seal_record
from protocol.errors import CanopyError, ContactError, NotForUs, RemoteProtocolError
from protocol.identity import NodeId
from protocol.record import Kind, Record, RecordFields, Scope, stored_fields


async def local_query(
    local: Local, flt: Filter, now_ms: int, limit: int = limits.DEFAULT_RESULTS
) -> list[dict[str, object]]:
    """The offline query: build the index from the store in this process and search it."""
    index = await build_index(local, now_ms)
    index.set_revoked(n.raw for n in await revoked_ids(local))
    return result_rows(index, flt, now_ms, await local.peers(), limit)


# -- adding contacts -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Added:
    record: Record  # what the policy lets others see (the details, or the teaser)
    details: Record | None  # on-request: the private details record
    share: Share


async def add_contact(
    local: Local,
    *,
    kind: str,
    name: str,
    region: str,
    langs: Sequence[str],
    channels: Sequence[str],
    specialties: Sequence[str],
    notes: str,
    share: str,
    to: str | None,
    review_days: int,
    now_ms: int,
) -> Added:
    policy_review = now_ms + check_review_days(review_days) * DAY_MS
    contact = Contact.build(
        uid=random(UID_BYTES),
        share=share,
        kind=kind,
        name=name,
        region=region,
        langs=langs,
        channels=channels,
        specialties=specialties,
        notes=notes,
        review=policy_review,
    )
    if to is not None and contact.share is not Share.PEERS:
        raise ContactError("--to narrows --share peers to some of your peers; not with this share")
    expires = now_ms + limits.DEFAULT_CONTACT_LIFETIME_MS
    network_key = await local.network_key()
    rows: list[Record] = []
    details: Record | None = None
    if contact.share is Share.PEERS:
        # The know-who index opens with the network key and our own slots only: a peers
        # contact is sealed to the peers trusted now, not to the growing peers circle.
        want = (to or "peers").strip()
        audience = await parse_audience(local, "peers-now" if want == "peers" else want)
        if audience.circle:
            raise ContactError("contacts cannot be shared with a circle yet")
        if audience.network:
            raise ContactError("--to for --share peers names peers, not the network")
        record = seal_contact(
            local, contact.to_content(), Scope.PEERS, audience.recipients, None, now_ms, expires
        )
    elif contact.share is Share.NETWORK:
        record = seal_contact(
            local, contact.to_content(), Scope.NETWORK, (), network_key, now_ms, expires
        )
    elif contact.share is Share.PRIVATE:
        record = seal_contact(local, contact.to_content(), Scope.PRIVATE, (), None, now_ms, expires)
    else:
        details = seal_contact(
            local, contact.to_content(), Scope.PRIVATE, (), None, now_ms, expires
        )
        teaser = contact.teaser_of(local.node_id.raw)
        record = seal_contact(
            local, teaser.to_content(), Scope.NETWORK, (), network_key, now_ms, expires
        )
        rows.append(details)
    rows.append(record)
    await local.store.put_records([row_of(r, local=True) for r in rows], now_ms)
    return Added(record, details, contact.share)


def seal_contact(
    local: Local,
    content: dict[str, Value],
    scope: Scope,
    recipients: Sequence[NodeId],
    network_key: bytes | None,
    now_ms: int,
    expires: int,
) -> Record:
    """A contact record of ours sealed as given (also a referral's copy to its requester,
    node/help_requests.py); nothing stored yet."""
    return seal_record(
        local.identity,
        Kind.CONTACT,
        content,
        created=now_ms,
        expires=expires,
        scope=scope,
        recipients=recipients,
        network_key=network_key,
        random=random,
    )


# -- looking records up ----------------------------------------------------------------------


async def readable_contact(local: Local, ref: str) -> tuple[Record, Body, Contact]:
    rid = await _resolve_id(local, ref)
    data = (await local.store.get_records([rid]))[rid]
    record = Record.from_bytes(data)
    if record.kind is not Kind.CONTACT:
        raise CanopyError(f"{ref} is a {record.kind}, not a contact")
    try:
        body = open_record(record, local.identity, await local.network_key())
        return record, body, Contact.from_content(body.content)
    except (NotForUs, RemoteProtocolError):
        raise CanopyError(f"contact {ref} is held here but this node cannot read it") from None


def open_quietly(
    local: Local, network_key: bytes | None, data: bytes
) -> tuple[RecordFields, BodyFields] | None:
    """Open one record from our own store (checked before it was stored: see
    `protocol.record.stored_fields`); None if this node cannot read it."""
    try:
        record = stored_fields(data)
        return record, open_stored(record, local.identity, network_key)
    except (NotForUs, RemoteProtocolError):
        return None


async def own_contacts(local: Local, uid: bytes) -> list[Record]:
    """Every stored record of ours of the contact `uid` (details, teaser, introduced copies)."""
    return [record for record, contact in await authored_records(local) if contact.uid == uid]


async def authored_records(local: Local) -> list[tuple[Record, Contact]]:
    """Every stored contact record this node wrote that opens, with its contact (details,
    teasers, introduced copies), oldest first."""
    network_key = await local.network_key()
    out: list[tuple[Record, Contact]] = []
    for data in await local.store.records_of_kind(str(Kind.CONTACT)):
        record = Record.from_stored(data)
        if record.author != local.node_id:
            continue
        opened = open_quietly(local, network_key, data)
        if opened is None:
            continue
        try:
            out.append((record, Contact.from_content(opened[1].content)))
        except RemoteProtocolError:
            continue
    return out


# -- vouching --------------------------------------------------------------------------------


async def vouch(local: Local, ref: str, now_ms: int) -> tuple[Record, str]:
    """Vouch for a contact (a record id) or for an organisation (a node id or peer name)."""
    network_key = await local.network_key()
    recipients: tuple[NodeId, ...] = ()
    if re.fullmatch(r"[0-9a-fA-F]{8,64}", ref.strip()):
        record, _, contact = await readable_contact(local, ref)
        subject = Vouch(VouchAbout.CONTACT, record.author.raw, contact.uid)
        # A vouch never travels further than the contact it endorses may.
        if record.scope is Scope.NETWORK and (contact.share is Share.NETWORK or contact.teaser):
            scope, key, recipients = Scope.NETWORK, network_key, ()
        elif contact.share is Share.PRIVATE or record.scope is Scope.PRIVATE:
            scope, key, recipients = Scope.PRIVATE, None, ()
        else:
            scope, key = Scope.PEERS, None
            recipients = tuple(await local.peers())
        what = f"contact {record.id.hex()[:12]}"
    else:
        peers = list((await local.peers()).values())
        named = match_peers(peers, ref)
        if len(named) > 1:
            raise CanopyError(f"{ref!r} matches several peers; give more of the id")
        node = named[0].node_id if named else parse_node_id(ref)
        if node == local.node_id:
            raise CanopyError("vouching for yourself adds nothing")
        subject = Vouch(VouchAbout.PEER, node.raw)
        scope, key, recipients = Scope.NETWORK, network_key, ()
        what = f"organisation {node.short}"
    vouch_record = seal_record(
        local.identity,
        Kind.VOUCH,
        subject.to_content(),
        created=now_ms,
        expires=now_ms + limits.DEFAULT_CONTACT_LIFETIME_MS,
        scope=scope,
        recipients=recipients,
        network_key=key,
        random=random,
    )
    await local.store.put_records([row_of(vouch_record, local=True)], now_ms)
    return vouch_record, what


# -- withdrawing -----------------------------------------------------------------------------


async def withdraw(local: Local, ref: str, now_ms: int) -> Record:
    """Withdraw one of our records; for a contact, every record of it (details, teaser,
    introduced copies) goes with it."""
    rid = await _resolve_id(local, ref)
    record = Record.from_bytes((await local.store.get_records([rid]))[rid])
    if record.author != local.node_id:
        raise CanopyError(
            f"record {ref} was written by another node; only its author can withdraw it"
        )
    targets = [record]
    if record.kind is Kind.CONTACT:
        opened = open_quietly(local, await local.network_key(), record.to_bytes())
        if opened is not None:
            uid = Contact.from_content(opened[1].content).uid
            targets += [r for r in await own_contacts(local, uid) if r.id != record.id]
    return await withdraw_records(local, targets[: limits.MAX_WITHDRAW_TARGETS], now_ms)


# -- reviews ---------------------------------------------------------------------------------


async def review(
    local: Local, now_ms: int, index: ContactIndex | None = None
) -> list[dict[str, object]]:
    """Contacts we wrote or vouched for that are due (or nearly due) for re-verification,
    from `index` (a running node's live one) or, without it, one built from the store."""
    if index is None:
        index = await build_index(local, now_ms)
    me = index.me
    mine_vouched = {
        (v.vouch.subject, v.vouch.uid)
        for v in index.vouches.values()
        if v.voucher == me and v.vouch.about is VouchAbout.CONTACT
    }
    soon = now_ms + limits.REVIEW_SOON_DAYS * DAY_MS
    rows: list[dict[str, object]] = []
    seen: set[tuple[bytes, bytes]] = set()
    # Ours first, then sorted: a whole directory sorted per page view costs ~0.1 s at 100,000.
    ours = [e for e in index.entries.values() if e.author == me or e.key in mine_vouched]
    for entry in sorted(ours, key=lambda e: e.contact.teaser):
        if entry.key in seen:
            continue
        seen.add(entry.key)
        held = index.contact_vouches.get(entry.key, {})
        last = max(held.values(), default=0)
        due = max(entry.contact.review, last + limits.DEFAULT_REVIEW_DAYS * DAY_MS if last else 0)
        if due > soon:
            continue
        rows.append(
            {
                "id": entry.rid.hex(),
                "kind": entry.contact.kind,
                "name": entry.contact.name,
                "region": entry.contact.region,
                "share": entry.contact.share.value,
                "due": due,
                "state": "overdue" if due <= now_ms else "due soon",
                "yours": entry.author == me,
            }
        )
    return sorted(rows, key=lambda r: int(str(r["due"])))
