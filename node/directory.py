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
from dataclasses import dataclass, replace

from node import circles
from node.contact_index import ContactIndex
from node.contact_rows import result_rows
from node.content import Audience, _resolve_id, parse_audience, withdraw_records
from node.local import Local, random
from node.opened_cache import build_index
from node.publish import publish, store_own
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
    records: tuple[Record, ...] = ()  # every readable record: one per network for `network`


def share_policy(share: str, to: str | None) -> tuple[str, str | None]:
    """What `--share` (and `--to`) mean: the policy the contact carries and the audience
    (`--to` words of node/content.py) its readable record is sealed for; None: private.

    `peers` is the author's growing peers circle (a peer trusted later reads it),
    `peers-now` the peers trusted now, `--to IDS` some of them (frozen); `circle:NAME` a
    circle; `network` every network (a record each), `network:NAME` one; `on-request`
    (or `on-request:NAME`) puts the teaser in every network (or that one)."""
    head, sep, name = share.strip().partition(":")
    head, name = head.strip().lower(), name.strip()
    if sep and not name:
        raise ContactError(f"--share {share!r} needs a name after the colon")
    if to is not None and head != "peers":
        raise ContactError("--to narrows --share peers to some of your peers; not with this share")
    if head == "peers" and not sep:
        return "peers", (to or "peers").strip()
    if head == "peers-now" and not sep:
        return "peers", "peers-now"
    if head == "circle" and sep:
        return "circle", f"circle:{name}"
    if head in ("network", "on-request"):
        return head, f"network:{name}" if sep else "network"
    if head == "private" and not sep:
        return "private", None
    raise ContactError(
        f"unknown --share {share!r}; choose one of: peers, peers-now, circle:NAME, network,"
        " network:NAME, on-request, private"
    )


@dataclass(frozen=True, slots=True)
class Draft:
    """A contact as a person (`contact add`, the web form) or an HSDS import gave it: the
    fields `Contact.build` checks, before its id, its share policy and its review date."""

    kind: str
    name: str
    region: str
    langs: Sequence[str] = ()
    channels: Sequence[str] = ()
    specialties: Sequence[str] = ()
    notes: str = ""

    def build(self, *, uid: bytes, share: str, review: int) -> Contact:
        """Validated (ContactError names the first bad field)."""
        fields = {f: getattr(self, f) for f in self.__slots__}
        return Contact.build(uid=uid, share=share, review=review, **fields)


async def add_contact(
    local: Local,
    draft: Draft,
    *,
    share: str,
    to: str | None,
    review_days: int,
    now_ms: int,
) -> Added:
    policy_review = now_ms + check_review_days(review_days) * DAY_MS
    policy, to_words = share_policy(share, to)
    contact = draft.build(uid=random(UID_BYTES), share=policy, review=policy_review)
    expires = now_ms + limits.DEFAULT_CONTACT_LIFETIME_MS
    audience = None if to_words is None else await contact_audience(local, contact, to_words)
    rows: list[Record] = []
    details: Record | None = None
    if audience is None:  # private
        record = seal_contact(local, contact.to_content(), Scope.PRIVATE, (), None, now_ms, expires)
        records = [record]
    else:
        shown = contact
        if contact.share is Share.ON_REQUEST:  # others see a teaser; the details stay here
            details = seal_contact(
                local, contact.to_content(), Scope.PRIVATE, (), None, now_ms, expires
            )
            rows.append(details)
            shown = contact.teaser_of(local.node_id.raw)
        records = await publish(
            local, audience, Kind.CONTACT, shown.to_content(), now_ms, store=False
        )
    rows += records
    await store_own(local, rows, now_ms)
    return Added(records[0], details, contact.share, tuple(records))


async def contact_audience(local: Local, contact: Contact, to: str) -> Audience:
    """The audience a contact's readable record is sealed for (checked, nothing written)."""
    audience = await parse_audience(local, to)
    if contact.share is Share.PEERS and not audience.grows and audience.recipients:
        # Some peers, by name or id: sealed to them alone and never passed on (scope PEERS).
        return replace(audience, scope=Scope.PEERS, networks=())
    if contact.share is Share.PEERS and not (audience.grows or audience.scope is Scope.PEERS):
        raise ContactError("--to for --share peers names peers, not the network or a circle")
    return audience


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
    network_keys, circle_keys = await reading_keys(local)
    try:
        body = open_record(record, local.identity, network_keys, circle_keys=circle_keys)
        return record, body, Contact.from_content(body.content)
    except (NotForUs, RemoteProtocolError):
        raise CanopyError(f"contact {ref} is held here but this node cannot read it") from None


async def reading_keys(local: Local) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """What opens contacts and vouches here: every network's key, every circle epoch key."""
    return tuple(await local.network_keys()), await circles.read_keys(local)


def open_quietly(
    local: Local,
    network_key: bytes | Sequence[bytes] | None,
    data: bytes,
    circle_keys: Sequence[bytes] = (),
) -> tuple[RecordFields, BodyFields] | None:
    """Open one record from our own store (checked before it was stored: see
    `protocol.record.stored_fields`); None if this node cannot read it."""
    try:
        record = stored_fields(data)
        return record, open_stored(record, local.identity, network_key, circle_keys)
    except (NotForUs, RemoteProtocolError):
        return None


async def own_contacts(local: Local, uid: bytes) -> list[Record]:
    """Every stored record of ours of the contact `uid` (details, teaser, introduced copies)."""
    return [record for record, contact in await authored_records(local) if contact.uid == uid]


async def authored_records(local: Local) -> list[tuple[Record, Contact]]:
    """Every stored contact record this node wrote that opens, with its contact (details,
    teasers, introduced copies), oldest first."""
    network_keys, circle_keys = await reading_keys(local)
    out: list[tuple[Record, Contact]] = []
    for data in await local.store.records_of_kind(str(Kind.CONTACT)):
        record = Record.from_stored(data)
        if record.author != local.node_id:
            continue
        opened = open_quietly(local, network_keys, data, circle_keys)
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
    if re.fullmatch(r"[0-9a-fA-F]{8,64}", ref.strip()):
        record, _, contact = await readable_contact(local, ref)
        subject = Vouch(VouchAbout.CONTACT, record.author.raw, contact.uid)
        audience = await _vouch_audience(local, record, contact)
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
        # The web of trust is visible in each network the organisation is a member of with
        # us (a record each); for a node we do not know there, our first network.
        networks = await local.networks()
        member = named[0].networks if named else []
        homes = tuple(n for n in networks if n.tag in member) or (networks[0],)
        audience = Audience(Scope.NETWORK, (), True, networks=homes)
        what = f"organisation {node.short}"
    if audience is None:
        vouch_records = [
            seal_record(
                local.identity,
                Kind.VOUCH,
                subject.to_content(),
                created=now_ms,
                expires=now_ms + limits.DEFAULT_CONTACT_LIFETIME_MS,
                scope=Scope.PRIVATE,
                recipients=(),
                network_key=None,
                random=random,
            )
        ]
    else:
        vouch_records = await publish(
            local, audience, Kind.VOUCH, subject.to_content(), now_ms, store=False
        )
    await store_own(local, vouch_records, now_ms)
    return vouch_records[0], what


async def _vouch_audience(local: Local, record: Record, contact: Contact) -> Audience | None:
    """A vouch never travels further than the contact it endorses may: the same network
    (its tag), the same circle, the peers (our growing peers circle), or nowhere (None)."""
    if contact.share is Share.PRIVATE or record.scope is Scope.PRIVATE:
        return None
    if record.scope is Scope.PEERS:
        return await parse_audience(local, "peers")
    networks = await local.networks()
    home = next((n for n in networks if n.tag == record.network), networks[0])
    if contact.share is Share.CIRCLE:
        for state in (await circles.circles(local)).values():
            if not state.is_member(local.node_id):
                continue
            try:
                open_record(record, local.identity, None, circle_keys=state.read_keys)
            except (NotForUs, RemoteProtocolError):
                continue
            tag = () if record.network is None else (home,)
            return Audience(Scope.NETWORK, (), False, state.name, (state.key,), networks=tag)
        raise CanopyError("that contact was shared with a circle this node is no longer in")
    return Audience(Scope.NETWORK, (), True, networks=(home,))


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
        network_keys, circle_keys = await reading_keys(local)
        opened = open_quietly(local, network_keys, record.to_bytes(), circle_keys)
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
    soon = now_ms + limits.REVIEW_SOON_DAYS * DAY_MS
    rows: list[dict[str, object]] = []
    seen: set[tuple[bytes, bytes]] = set()
    # Ours, kept by the index as records come and go: no pass over 100,000 per page view.
    for entry in sorted(index.own(), key=lambda e: e.contact.teaser):
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
