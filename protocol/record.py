"""The record: the signed, immutable unit of gossip, its strict codec and its id.

Owns the record wire layout and validation order (SPEC "Identities, records, sealed payloads
and invites"). Never reads the clock (`now_ms` is an argument) and never looks inside payloads.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from typing import NamedTuple

import msgpack

from protocol import labels, limits
from protocol.encoding import pack, unpack
from protocol.errors import DecodeError, LocalProtocolError, RecordRejected
from protocol.identity import SIGNATURE_BYTES, Identity, NodeId

RECORD_VERSION = 1
TAGGED_RECORD_VERSION = 2  # a network-scoped record carrying its network's tag (in clear)
ID_BYTES = 32
NETWORK_TAG_BYTES = 16  # protocol/networks.py network_tag


class Kind(enum.StrEnum):
    GUIDE = "guide"
    CONTACT = "contact"
    VOUCH = "vouch"
    REVOCATION = "revocation"
    TOMBSTONE = "tombstone"
    ALERT = "alert"
    CIRCLE = "circle"  # a circle's membership change (protocol/circle.py)
    CHECKLIST = "checklist"  # preparedness items an organisation ticks (protocol/content.py)
    CHUNK = "chunk"  # one chunk of an attachment (protocol/attachment.py)
    CHECKIN = "checkin"  # a check-in plan's event, sealed to its circle (protocol/checkin.py)
    HELP = "help"  # a help request or a step of its life cycle (protocol/help.py)
    ACK = "ack"  # an acknowledgement of an alert, sealed to its author (protocol/help.py)
    DUTY = "duty"  # on call, off duty, a circle's response target (protocol/oncall.py)


class Scope(enum.IntEnum):
    PEERS = 0  # readable by the author's direct peers; NOT forwarded beyond them
    NETWORK = 1  # forwarded by every node; who can read it is hidden inside the sealed payload
    PRIVATE = 2  # never leaves the node that wrote it: never offered, refused from a peer


_KINDS: dict[str, Kind] = {k.value: k for k in Kind}
_SCOPES: dict[int, Scope] = {s.value: s for s in Scope}
# The encoded record ends with the signature as msgpack bin8: 0xc4 0x40 + 64 bytes.
_SIG_TAIL = 2 + SIGNATURE_BYTES
_SIG_HEADER = b"\xc4\x40"


def check_times(created: int, expires: int, err: type[Exception]) -> None:
    """The timestamp rules every record (and body) obeys, raising `err` on a violation."""
    for value in (created, expires):
        if isinstance(value, bool) or not isinstance(value, int):
            raise err("timestamps must be integers")
        if not 0 <= value <= limits.MAX_TIMESTAMP_MS:
            raise err("timestamp out of range")
    if expires <= created:
        raise err("record expires before it is created")
    if expires - created > limits.MAX_LIFETIME_MS:
        raise err("record lifetime too long")


def signed_bytes(
    kind: Kind,
    author: NodeId,
    created: int,
    expires: int,
    scope: Scope,
    payload: bytes,
    network: bytes | None = None,
) -> bytes:
    """What the author signs: RECORD_SIGNATURE || pack([1, kind, author, created, expires,
    scope, payload]), or with a network tag pack([2, ..., payload, network])."""
    head = [kind.value, author.raw, created, expires, int(scope), payload]
    if network is None:
        return labels.RECORD_SIGNATURE + pack([RECORD_VERSION, *head])
    return labels.RECORD_SIGNATURE + pack([TAGGED_RECORD_VERSION, *head, network])


class RecordFields(NamedTuple):
    """A record's fields as the wire layout holds them (the author as its 32 raw bytes)."""

    kind: Kind
    author: bytes
    created: int
    expires: int
    scope: Scope
    payload: bytes
    signature: bytes
    network: bytes | None = None  # the network tag (version 2 only)


def _layout(value: object) -> RecordFields:
    """The one decoder of the record layouts [1, kind, author, created, expires, scope,
    payload, signature] and [2, kind, author, created, expires, scope, payload, network,
    signature] (network-scoped only), field by field (DecodeError), from an unpacked value."""
    if not isinstance(value, list) or len(value) not in (8, 9):
        raise DecodeError("record must be an array of 8 (or 9 with a network tag)")
    version = value[0]
    network: object = None
    if len(value) == 9:
        if version != TAGGED_RECORD_VERSION or isinstance(version, bool):
            raise DecodeError("unknown record version")
        network = value.pop(7)
        if not isinstance(network, bytes) or len(network) != NETWORK_TAG_BYTES:
            raise DecodeError("network tag must be 16 bytes")
        if value[5] != Scope.NETWORK or isinstance(value[5], bool):
            raise DecodeError("only a network-scoped record carries a network tag")
    elif version != RECORD_VERSION or isinstance(version, bool):
        raise DecodeError("unknown record version")
    _, kind, author, created, expires, scope, payload, signature = value
    if not isinstance(kind, str) or kind not in _KINDS:
        raise DecodeError("unknown record kind")
    if not isinstance(author, bytes) or len(author) != 32:
        raise DecodeError("author must be 32 bytes")
    if isinstance(scope, bool) or not isinstance(scope, int) or scope not in _SCOPES:
        raise DecodeError("unknown record scope")
    if not isinstance(payload, bytes):
        raise DecodeError("payload must be bytes")
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_BYTES:
        raise DecodeError("signature must be 64 bytes")
    if isinstance(created, bool) or not isinstance(created, int):
        raise DecodeError("created must be an integer")
    if isinstance(expires, bool) or not isinstance(expires, int):
        raise DecodeError("expires must be an integer")
    check_times(created, expires, DecodeError)
    assert network is None or isinstance(network, bytes)
    return RecordFields(
        _KINDS[kind], author, created, expires, _SCOPES[scope], payload, signature, network
    )


def stored_fields(data: bytes) -> RecordFields:
    """The fields of record bytes from this node's own store, which holds only records that
    `Record.from_bytes` and `Record.verify` accepted before they were stored (or that it
    wrote). Trusting that, it skips the canonical re-encoding check, which costs more than
    opening the payload; every field check of `_layout` stays (DecodeError: a damaged row).
    For bytes from anywhere else, use `Record.from_bytes`."""
    if not isinstance(data, bytes) or len(data) > limits.MAX_RECORD_BYTES:
        raise DecodeError("stored record too large")
    try:
        value = msgpack.unpackb(data)
    except Exception as exc:  # msgpack raises a zoo: ValueError, ExtraData, StackError...
        raise DecodeError("malformed stored record") from exc
    return _layout(value)


@dataclass(frozen=True, slots=True)
class Record:
    """A signed record. Build with `create` or `from_bytes`; both leave it cheap to re-encode."""

    kind: Kind
    author: NodeId
    created: int
    expires: int
    scope: Scope
    payload: bytes
    signature: bytes
    network: bytes | None = None  # the network tag of a network-scoped record (version 2)
    _encoded: bytes | None = field(init=False, default=None, repr=False, compare=False)
    _id: bytes | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, Kind) or not isinstance(self.scope, Scope):
            raise LocalProtocolError("kind and scope must be Kind and Scope")
        if not isinstance(self.author, NodeId):
            raise LocalProtocolError("author must be a NodeId")
        if not isinstance(self.payload, bytes):
            raise LocalProtocolError("payload must be bytes")
        if not isinstance(self.signature, bytes) or len(self.signature) != SIGNATURE_BYTES:
            raise LocalProtocolError("signature must be 64 bytes")
        check_times(self.created, self.expires, LocalProtocolError)
        if self.network is not None and (
            not isinstance(self.network, bytes)
            or len(self.network) != NETWORK_TAG_BYTES
            or self.scope is not Scope.NETWORK
        ):
            raise LocalProtocolError("a network tag is 16 bytes, on a network-scoped record")

    @classmethod
    def create(
        cls,
        identity: Identity,
        kind: Kind,
        *,
        created: int,
        expires: int,
        scope: Scope,
        payload: bytes,
        network: bytes | None = None,
    ) -> Record:
        """Sign a new record (with `network`, a version-2 record tagged for that network).
        LocalProtocolError if it would break a rule `from_bytes` enforces."""
        check_times(created, expires, LocalProtocolError)
        author = identity.node_id
        message = signed_bytes(kind, author, created, expires, scope, payload, network)
        record = cls(
            kind, author, created, expires, scope, payload, identity.sign(message), network
        )
        if len(record.to_bytes()) > limits.MAX_RECORD_BYTES:
            raise LocalProtocolError("record too large")
        return record

    @classmethod
    def from_bytes(cls, data: bytes, *, known_id: bytes | None = None) -> Record:
        """Strictly decode one record (DecodeError); the signature is NOT checked here.

        `known_id`: the caller already hashed these exact bytes (protocol.session does, for
        every received record); it saves hashing them again."""
        if isinstance(data, bytearray | memoryview):
            data = bytes(data)
        if not isinstance(data, bytes):
            raise LocalProtocolError("from_bytes takes bytes")
        if len(data) > limits.MAX_RECORD_BYTES:
            raise DecodeError("record too large")
        record = cls._of(_layout(unpack(data, max_bytes=limits.MAX_RECORD_BYTES)), data)
        if known_id is not None:
            object.__setattr__(record, "_id", known_id)
        return record

    @classmethod
    def from_stored(cls, data: bytes) -> Record:
        """Decode bytes this node stored only after `from_bytes` and `verify` accepted them
        (or that it wrote): `stored_fields`, then the same record `from_bytes` builds."""
        return cls._of(stored_fields(data), data)

    @classmethod
    def _of(cls, fields: RecordFields, data: bytes) -> Record:
        kind, author, created, expires, scope, payload, signature, network = fields
        record = cls(kind, NodeId(author), created, expires, scope, payload, signature, network)
        object.__setattr__(record, "_encoded", data)
        return record

    def to_bytes(self) -> bytes:
        """The canonical encoding: [1, kind, author, created, expires, scope, payload, sig],
        or [2, ..., payload, network, sig] for a record with a network tag."""
        encoded = self._encoded
        if encoded is None:
            head = [
                self.kind.value,
                self.author.raw,
                self.created,
                self.expires,
                int(self.scope),
                self.payload,
            ]
            if self.network is None:
                encoded = pack([RECORD_VERSION, *head, self.signature])
            else:
                encoded = pack([TAGGED_RECORD_VERSION, *head, self.network, self.signature])
            object.__setattr__(self, "_encoded", encoded)
        return encoded

    @property
    def id(self) -> bytes:
        """BLAKE2b-256 of the encoded record (signature included)."""
        rid = self._id
        if rid is None:
            rid = hashlib.blake2b(self.to_bytes(), digest_size=ID_BYTES).digest()
            object.__setattr__(self, "_id", rid)
        return rid

    def signed_bytes(self) -> bytes:
        """The exact bytes the author signed."""
        # Canonical encoding makes this a slice: the 8-array header 0x98 becomes the 7-array
        # header 0x97 (0x99 becomes 0x98 with a network tag) and the trailing bin8 signature
        # is dropped. Saves a re-pack per verify.
        data = self.to_bytes()
        assert data[0] in (0x98, 0x99) and data[-_SIG_TAIL:-SIGNATURE_BYTES] == _SIG_HEADER
        return labels.RECORD_SIGNATURE + bytes([data[0] - 1]) + data[1:-_SIG_TAIL]

    def verify(self) -> None:
        """Raise VerificationError unless the author signed exactly this record."""
        self.author.verify(self.signed_bytes(), self.signature)

    def check_time(self, now_ms: int) -> None:
        """RecordRejected if expired at `now_ms` or dated beyond the allowed clock skew."""
        if self.expires <= now_ms:
            raise RecordRejected("record expired")
        if self.created > now_ms + limits.MAX_CLOCK_SKEW_MS:
            raise RecordRejected("record dated in the future")


def created_of(data: bytes) -> int | None:
    """The `created` field of encoded record bytes, read without decoding the rest (for
    quota decisions before a record is checked); None if the bytes do not start like a
    canonical record. Says nothing about whether the record is valid."""
    # [0x98, 0x01, kind (fixstr), author (bin8 of 32), created (uint), ...] (0x99, 0x02: tagged)
    if len(data) < 3 or (data[0], data[1]) not in ((0x98, 0x01), (0x99, 0x02)):
        return None
    if not 0xA0 <= data[2] <= 0xBF:
        return None
    at = 3 + (data[2] & 0x1F)
    if data[at : at + 2] != b"\xc4\x20":
        return None
    at += 2 + 32
    if at >= len(data):
        return None
    head = data[at]
    if head <= 0x7F:
        return head
    width = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}.get(head)
    if width is None or at + 1 + width > len(data):
        return None
    return int.from_bytes(data[at + 1 : at + 1 + width], "big")
