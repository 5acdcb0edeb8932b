"""What the know-who index holds of one record: a readable contact (`Entry`) or vouch
(`VouchEntry`), made from an opened record (`Opened`) by `entry_of`.

In memory only: nothing readable of a contact is written to disk or to a log line here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from protocol.contact import Contact, Share, Vouch
from protocol.encoding import Value
from protocol.envelope import open_stored as open_stored_body
from protocol.errors import DecodeError, NotForUs, RemoteProtocolError
from protocol.identity import Identity
from protocol.record import ID_BYTES, Kind, Scope, stored_fields

# Codes of the opened-record cache (node.opened_cache, node.guide_index): what a cached value
# is. Changing how a record is checked, or a cached layout, means bumping OPENED_VERSION.
OPENED_VERSION = 1
UNREADABLE = 0  # no key of ours opens the record
MALFORMED = 3  # it opens, but its content breaks the rules


@dataclass(slots=True)
class Entry:
    """One readable contact record, in memory only."""

    rid: bytes
    author: bytes
    scope: Scope
    created: int
    expires: int
    contact: Contact
    words: tuple[str, ...]

    @property
    def key(self) -> tuple[bytes, bytes]:
        return (self.author, self.contact.uid)

    def answerable(self) -> bool:
        """May a node pass this record on to a peer that asks? (policy, SPEC "Sharing")."""
        if self.scope is not Scope.NETWORK:
            return False
        return self.contact.share is Share.NETWORK or self.contact.teaser


@dataclass(slots=True)
class VouchEntry:
    rid: bytes
    voucher: bytes
    scope: Scope
    created: int
    expires: int
    vouch: Vouch


@dataclass(frozen=True, slots=True)
class Opened:
    """What the index needs of an opened contact or vouch record."""

    rid: bytes
    kind: Kind
    author: bytes
    scope: Scope
    created: int
    expires: int
    content: dict[str, Value]


def entry_of(opened: Opened) -> Entry | VouchEntry:
    """The index entry of an opened contact or vouch; RemoteProtocolError if malformed."""
    head = (opened.rid, opened.author, opened.scope, opened.created, opened.expires)
    if opened.kind is Kind.CONTACT:
        contact = Contact.from_content(opened.content)
        return Entry(*head, contact, contact.search_words())
    if opened.kind is Kind.VOUCH:
        return VouchEntry(*head, Vouch.from_content(opened.content))
    raise DecodeError(f"{opened.kind} records are not indexed")


def open_stored(
    data: bytes,
    kind: Kind,
    identity: Identity,
    network_key: bytes | Sequence[bytes] | None,
    circle_keys: Sequence[bytes] = (),
) -> Opened | None:
    """Open one record of `kind` from our own store, for the index; None if we cannot read
    it (or it is not of `kind`, or damaged).

    Builds no Record or Body (at start a node opens every stored contact, and those objects
    cost more than the decryption): `protocol.record.stored_fields` and
    `protocol.envelope.open_stored`, which trust what was checked before it was stored."""
    try:
        record = stored_fields(data)
        if record.kind is not kind:
            return None
        body = open_stored_body(record, identity, network_key, circle_keys)
    except (NotForUs, RemoteProtocolError):
        return None
    rid = hashlib.blake2b(data, digest_size=ID_BYTES).digest()
    scope, created, expires = record.scope, record.created, record.expires
    return Opened(rid, kind, record.author, scope, created, expires, body.content)
