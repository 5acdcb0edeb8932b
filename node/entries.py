"""What the know-who index holds of one record: a readable contact (`Entry`) or vouch
(`VouchEntry`), made from an opened record (`Opened`) by `entry_of`.

In memory only: nothing readable of a contact is written to disk or to a log line here.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.contact import Contact, Share, Vouch
from protocol.encoding import Value
from protocol.errors import DecodeError
from protocol.record import Kind, Scope


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
