"""Sealed payloads (private-box style, padded, recipients hidden) and the author-signed Body.

Owns the sealed-payload layout and the Body codec (SPEC "Identities, records, sealed payloads
and invites"). Never lists recipients in clear and never draws randomness except from `random`.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import NamedTuple

import msgpack
import nacl.bindings
import nacl.exceptions
from nacl._sodium import ffi as _ffi
from nacl._sodium import lib as _lib

from protocol import labels, limits
from protocol.content import check_content
from protocol.encoding import Value, pack, unpack
from protocol.errors import (
    DecodeError,
    LocalProtocolError,
    NotForUs,
    VerificationError,
)
from protocol.identity import SIGNATURE_BYTES, Identity, NodeId, Random, random_bytes
from protocol.keyring import CIRCLE, NETWORK, OWN, KeyRing, Way
from protocol.record import Kind, Record, RecordFields, Scope

BODY_VERSION = 1
SEALED_VERSION = 1
KEY_BYTES = 32
MAC_BYTES = 16
_NONCE = limits.SEALED_NONCE_BYTES
_SLOT = limits.SEALED_SLOT_BYTES
_LEN = struct.Struct(">I")
_COUNT = struct.Struct(">H")
HEADER_BYTES = 1 + _NONCE + KEY_BYTES + _COUNT.size  # version, nonce, eph_pk, slot count
_KINDS: dict[str, Kind] = {k.value: k for k in Kind}
_secretbox_open = nacl.bindings.crypto_secretbox_open_easy
_SIG_TAIL = 2 + SIGNATURE_BYTES  # bin8 header + signature, last element of a Body

assert 2 * KEY_BYTES + MAC_BYTES == _SLOT + KEY_BYTES


def _body_signed_bytes(
    kind: Kind, author: NodeId, created: int, content: dict[str, Value]
) -> bytes:
    return labels.BODY_SIGNATURE + pack([BODY_VERSION, kind.value, author.raw, created, content])


class BodyFields(NamedTuple):
    """A Body's fields as its layout holds them (the author as its 32 raw bytes)."""

    kind: Kind
    author: bytes
    created: int
    content: dict[str, Value]
    signature: bytes


def _body_layout(value: object) -> BodyFields:
    """The one decoder of the Body layout [1, kind, author, created, content, signature],
    field by field (DecodeError), from an unpacked value."""
    if not isinstance(value, list) or len(value) != 6:
        raise DecodeError("body must be an array of 6")
    version, kind, author, created, content, signature = value
    if version != BODY_VERSION or isinstance(version, bool):
        raise DecodeError("unknown body version")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise DecodeError("unknown body kind")
    if not isinstance(author, bytes) or len(author) != KEY_BYTES:
        raise DecodeError("author must be 32 bytes")
    if isinstance(created, bool) or not isinstance(created, int):
        raise DecodeError("created must be an integer")
    if not 0 <= created <= limits.MAX_TIMESTAMP_MS:
        raise DecodeError("created out of range")
    if not isinstance(content, dict):
        raise DecodeError("content must be a map")
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_BYTES:
        raise DecodeError("signature must be 64 bytes")
    return BodyFields(_KINDS[kind], author, created, content, signature)


@dataclass(frozen=True, slots=True)
class Body:
    """The plaintext inside a sealed payload, carrying its own author signature.

    `content` must be treated as immutable once the Body exists (its encoding is cached).
    """

    kind: Kind
    author: NodeId
    created: int
    content: dict[str, Value]
    signature: bytes
    _encoded: bytes | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, Kind) or not isinstance(self.author, NodeId):
            raise LocalProtocolError("kind and author must be Kind and NodeId")
        if isinstance(self.created, bool) or not isinstance(self.created, int):
            raise LocalProtocolError("created must be an integer")
        if not 0 <= self.created <= limits.MAX_TIMESTAMP_MS:
            raise LocalProtocolError("created out of range")
        if not isinstance(self.content, dict):
            raise LocalProtocolError("content must be a map")
        if not isinstance(self.signature, bytes) or len(self.signature) != SIGNATURE_BYTES:
            raise LocalProtocolError("signature must be 64 bytes")

    @classmethod
    def create(
        cls, identity: Identity, kind: Kind, created: int, content: dict[str, Value]
    ) -> Body:
        author = identity.node_id
        signature = identity.sign(_body_signed_bytes(kind, author, created, content))
        return cls(kind, author, created, content, signature)

    def to_bytes(self) -> bytes:
        """Canonical msgpack [1, kind, author, created, content, signature]."""
        encoded = self._encoded
        if encoded is None:
            encoded = pack(
                [
                    BODY_VERSION,
                    self.kind.value,
                    self.author.raw,
                    self.created,
                    self.content,
                    self.signature,
                ]
            )
            object.__setattr__(self, "_encoded", encoded)
        return encoded

    @classmethod
    def from_bytes(cls, data: bytes) -> Body:
        """Strictly decode a body (DecodeError); the signature is NOT checked here."""
        if isinstance(data, bytearray | memoryview):
            data = bytes(data)
        if not isinstance(data, bytes):
            raise LocalProtocolError("from_bytes takes bytes")
        return cls._of(_body_layout(unpack(data, max_bytes=limits.MAX_RECORD_BYTES)), data)

    @classmethod
    def _of(cls, fields: BodyFields, data: bytes) -> Body:
        kind, author, created, content, signature = fields
        body = cls(kind, NodeId(author), created, content, signature)
        object.__setattr__(body, "_encoded", data)
        return body

    def signed_bytes(self) -> bytes:
        """BODY_SIGNATURE || pack([1, kind, author, created, content])."""
        # Canonical encoding makes this a slice (6-array header 0x96 -> 0x95, drop signature).
        data = self.to_bytes()
        return labels.BODY_SIGNATURE + b"\x95" + data[1:-_SIG_TAIL]

    def verify(self) -> None:
        """Raise VerificationError unless `author` signed exactly this body."""
        self.author.verify(self.signed_bytes(), self.signature)


# Sealed payloads -----------------------------------------------------------------------


def _next_pow2(n: int, floor: int) -> int:
    size = floor
    while size < n:
        size *= 2
    return size


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _randbelow(random: Random, n: int) -> int:
    """Uniform integer in [0, n) from big-endian u32 draws, by rejection (SPEC, "random use")."""
    limit = 2**32 - (2**32 % n)
    while True:
        r = int.from_bytes(random_bytes(random, 4), "big")
        if r < limit:
            return r % n


def _recipient_slot_key(shared: bytes, eph_pk: bytes, recipient_x: bytes) -> bytes:
    return hashlib.blake2b(
        shared + eph_pk + recipient_x, digest_size=KEY_BYTES, person=labels.RECIPIENT_WRAP
    ).digest()


def _network_slot_key(eph_pk: bytes, network_key: bytes) -> bytes:
    return hashlib.blake2b(
        eph_pk, digest_size=KEY_BYTES, key=network_key, person=labels.NETWORK_WRAP
    ).digest()


def _circle_slot_key(eph_pk: bytes, circle_key: bytes) -> bytes:
    return hashlib.blake2b(
        eph_pk, digest_size=KEY_BYTES, key=circle_key, person=labels.CIRCLE_WRAP
    ).digest()


def _check_circle_keys(circle_keys: Sequence[bytes]) -> None:
    if len(circle_keys) > limits.MAX_CIRCLE_KEYS_TRIED:
        raise LocalProtocolError("too many circle keys")
    for key in circle_keys:
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise LocalProtocolError("circle keys must be 32 bytes")


def _body_key(content_key: bytes, header_and_slots: bytes) -> bytes:
    """Bind the body box to the exact header and slots: altering any slot breaks the body."""
    return hashlib.blake2b(
        header_and_slots, digest_size=KEY_BYTES, key=content_key, person=labels.SEALED_BODY
    ).digest()


def _check_network_key(network_key: bytes | None) -> None:
    if network_key is not None and (
        not isinstance(network_key, bytes) or len(network_key) != KEY_BYTES
    ):
        raise LocalProtocolError("network key must be 32 bytes")


NetworkKeys = bytes | Sequence[bytes] | None  # one network key, or those of every network


def _network_keys(network_key: NetworkKeys) -> tuple[bytes, ...]:
    """The network keys an opener tries, in order (several: a node in several networks)."""
    if network_key is None:
        return ()
    keys = (network_key,) if isinstance(network_key, bytes) else tuple(network_key)
    if len(keys) > limits.MAX_NETWORKS:
        raise LocalProtocolError("too many network keys")
    for key in keys:
        _check_network_key(key)
    return keys


def _try_networks(
    sealed: bytes, nonce: bytes, eph_pk: bytes, keys: Sequence[bytes], body_at: int
) -> bytes | None:
    for key in keys:
        content_key = _try_slots(sealed, nonce, _network_slot_key(eph_pk, key), body_at)
        if content_key is not None:
            return content_key
    return None


def padded_size(length: int) -> int:
    """The padded plaintext size (length prefix included) for a plaintext of `length` bytes."""
    return _next_pow2(_LEN.size + length, limits.MIN_PAD_BUCKET)


def slot_count(real: int) -> int:
    """How many slots a payload with `real` recipient/network wraps carries."""
    return _next_pow2(real, limits.MIN_RECIPIENT_SLOTS)


def seal(
    plaintext: bytes,
    recipients: Sequence[NodeId],
    network_key: bytes | None,
    random: Random,
    circle_keys: Sequence[bytes] = (),
) -> bytes:
    """Encrypt `plaintext` so that each recipient, any holder of `network_key` and any holder
    of one of `circle_keys` (a circle's current epoch key) can open it.

    Layout: version u8 = 1 || nonce 24 || eph_pk 32 || slot_count u16 BE || slots (48 each)
    || secretbox(body_key, nonce, u32 BE length || plaintext || zero padding), where
    body_key = BLAKE2b-256(everything before the box, key=content_key, person=SEALED_BODY).
    """
    if not isinstance(plaintext, bytes):
        raise LocalProtocolError("plaintext must be bytes")
    _check_network_key(network_key)
    _check_circle_keys(circle_keys)
    unique: dict[bytes, NodeId] = {}
    for recipient in recipients:
        if not isinstance(recipient, NodeId):
            raise LocalProtocolError("recipients must be NodeIds")
        unique.setdefault(recipient.raw, recipient)
    real = len(unique) + (network_key is not None) + len(set(circle_keys))
    if real == 0:
        raise LocalProtocolError("a sealed payload needs a recipient, a network or circle key")
    count = slot_count(real)
    if count > limits.MAX_RECIPIENT_SLOTS:
        raise LocalProtocolError("too many recipients")
    bucket = padded_size(len(plaintext))
    if bucket > limits.MAX_RECORD_BYTES:
        raise LocalProtocolError("plaintext too large to seal")

    content_key = random_bytes(random, KEY_BYTES)
    eph_sk = random_bytes(random, KEY_BYTES)
    nonce = random_bytes(random, _NONCE)
    eph_pk: bytes = nacl.bindings.crypto_scalarmult_base(eph_sk)

    # Every slot key below is derived from the fresh eph_pk, and the body key from the fresh
    # content key, so each key seals exactly one box: sharing `nonce` never reuses a (key, nonce).
    slots: list[bytes] = []
    for recipient in unique.values():
        recipient_x = recipient.x25519()
        try:
            shared: bytes = nacl.bindings.crypto_scalarmult(eph_sk, recipient_x)
        except nacl.exceptions.CryptoError as exc:
            raise DecodeError("recipient key is a low-order point") from exc
        slot_key = _recipient_slot_key(shared, eph_pk, recipient_x)
        slots.append(nacl.bindings.crypto_secretbox_easy(content_key, nonce, slot_key))
    if network_key is not None:
        slot_key = _network_slot_key(eph_pk, network_key)
        slots.append(nacl.bindings.crypto_secretbox_easy(content_key, nonce, slot_key))
    for circle_key in dict.fromkeys(circle_keys):
        slot_key = _circle_slot_key(eph_pk, circle_key)
        slots.append(nacl.bindings.crypto_secretbox_easy(content_key, nonce, slot_key))
    while len(slots) < count:
        slots.append(random_bytes(random, _SLOT))
    for i in range(count - 1, 0, -1):  # Fisher-Yates
        j = _randbelow(random, i + 1)
        slots[i], slots[j] = slots[j], slots[i]

    framed = _LEN.pack(len(plaintext)) + plaintext
    framed += bytes(bucket - len(framed))
    head = bytes([SEALED_VERSION]) + nonce + eph_pk + _COUNT.pack(count) + b"".join(slots)
    body: bytes = nacl.bindings.crypto_secretbox_easy(framed, nonce, _body_key(content_key, head))
    return head + body


def _try_slots(sealed: bytes, nonce: bytes, slot_key: bytes, body_at: int) -> bytes | None:
    """The content key from the first slot that `slot_key` opens (slots sit at HEADER_BYTES
    up to body_at), or None.

    A reader tries many slots that do not open (every slot of every key it holds but the
    one that fits): libsodium's crypto_secretbox_open_easy is called through PyNaCl's own
    cffi module, which answers a failed trial with a status, not an exception built and
    formatted by the binding (a third of the cost of a trial, measured)."""
    out = _ffi.new("unsigned char[]", KEY_BYTES)
    view = _ffi.from_buffer(sealed)
    for at in range(HEADER_BYTES, body_at, _SLOT):
        if _lib.crypto_secretbox_open_easy(out, view + at, _SLOT, nonce, slot_key) == 0:
            key: bytes = _ffi.buffer(out, KEY_BYTES)[:]
            return key
    return None


def check_sealed_layout(sealed: bytes) -> tuple[int, int]:
    """DecodeError unless `sealed` has the layout of a sealed payload (version, a power-of-
    two slot count in bounds, a body box of a padding bucket); checks nothing that needs a
    key, so a relay runs it on every sealed record it receives. Returns (where the body box
    starts, its padded plaintext size)."""
    if len(sealed) > limits.MAX_RECORD_BYTES:
        raise DecodeError("sealed payload too large")
    if len(sealed) < HEADER_BYTES:
        raise DecodeError("sealed payload truncated")
    if sealed[0] != SEALED_VERSION:
        raise DecodeError("unknown sealed payload version")
    (count,) = _COUNT.unpack_from(sealed, HEADER_BYTES - _COUNT.size)
    if not _is_pow2(count) or not limits.MIN_RECIPIENT_SLOTS <= count <= limits.MAX_RECIPIENT_SLOTS:
        raise DecodeError("bad slot count")
    body_at = HEADER_BYTES + count * _SLOT
    bucket = len(sealed) - body_at - MAC_BYTES
    if bucket < limits.MIN_PAD_BUCKET or not _is_pow2(bucket):
        raise DecodeError("sealed body is not a padding bucket")
    return body_at, bucket


SEALED_KINDS = frozenset(
    {
        Kind.GUIDE,
        Kind.CONTACT,
        Kind.VOUCH,
        Kind.ALERT,
        Kind.CIRCLE,
        Kind.CHECKLIST,
        Kind.CHECKIN,
        Kind.HELP,
        Kind.ACK,
        Kind.DUTY,
    }
)


def unseal(
    sealed: bytes,
    identity: Identity,
    network_key: NetworkKeys,
    *,
    network_first: bool = False,
    circle_keys: Sequence[bytes] = (),
) -> bytes:
    """Open a sealed payload as `identity`, as a holder of `network_key`, or as a holder of
    one of `circle_keys` (every epoch key of every circle this node is in, tried last).
    `network_key` may be the keys of every network this node is in (each one's slot tried).

    `network_first` tries the network slot before the (costlier) X25519 recipient slots:
    same result, faster for bulk opening of network-scoped records. When `circle_keys` is
    a `KeyRing` (protocol/keyring.py), its order is used instead: the ways that opened its
    latest payloads, then as many network and circle keys as cost one X25519, then our own
    slot, then the rest; the payloads that open, and what they open to, are the same.

    DecodeError if malformed, NotForUs if no slot opens, VerificationError if a slot opens
    but the body box does not.
    """
    network_keys = _network_keys(network_key)
    ring = circle_keys if isinstance(circle_keys, KeyRing) else None
    if ring is None:
        _check_circle_keys(circle_keys)  # a KeyRing checked its keys once, when it was made
    if isinstance(sealed, bytearray | memoryview):
        sealed = bytes(sealed)
    if not isinstance(sealed, bytes):
        raise LocalProtocolError("unseal takes bytes")
    body_at, bucket = check_sealed_layout(sealed)
    nonce = sealed[1 : 1 + _NONCE]
    eph_pk = sealed[1 + _NONCE : 1 + _NONCE + KEY_BYTES]
    opened: tuple[bytes, Way | None] | None
    if ring is not None:
        opened = _open_with_ring(sealed, nonce, eph_pk, identity, body_at, network_keys, ring)
    else:
        opened = _open_in_order(
            sealed, nonce, eph_pk, identity, body_at, network_keys, circle_keys, network_first
        )
    if opened is None:
        raise NotForUs("no recipient slot opens with our keys")
    content_key, way = opened
    try:
        framed: bytes = _secretbox_open(
            sealed[body_at:], nonce, _body_key(content_key, sealed[:body_at])
        )
    except nacl.exceptions.CryptoError as exc:
        raise VerificationError("sealed body failed to authenticate") from exc
    (length,) = _LEN.unpack_from(framed)
    end = _LEN.size + length
    if end > bucket or framed.count(0, end) != bucket - end:
        raise DecodeError("bad padding in sealed payload")
    # padded_size(length) != bucket, without the loop: the bucket is a power of two of at
    # least MIN_PAD_BUCKET (checked above), right exactly when `end` needs over half of it.
    if bucket > limits.MIN_PAD_BUCKET and 2 * end <= bucket:
        raise DecodeError("sealed payload padded to the wrong bucket")
    if ring is not None and way is not None:
        ring.opened_by(way)
    return framed[_LEN.size : end]


def _open_in_order(
    sealed: bytes,
    nonce: bytes,
    eph_pk: bytes,
    identity: Identity,
    body_at: int,
    network_keys: Sequence[bytes],
    circle_keys: Sequence[bytes],
    network_first: bool,
) -> tuple[bytes, None] | None:
    """The content key, trying our slot, the networks' (first when `network_first`), then
    each circle key: the order without a `KeyRing`."""
    content_key: bytes | None = None
    if network_first:
        content_key = _try_networks(sealed, nonce, eph_pk, network_keys, body_at)
    if content_key is None:
        content_key = _open_own_slot(sealed, nonce, eph_pk, identity, body_at)
    if content_key is None and not network_first:
        content_key = _try_networks(sealed, nonce, eph_pk, network_keys, body_at)
    for circle_key in circle_keys:
        if content_key is not None:
            break
        content_key = _try_slots(sealed, nonce, _circle_slot_key(eph_pk, circle_key), body_at)
    return None if content_key is None else (content_key, None)


def _open_with_ring(
    sealed: bytes,
    nonce: bytes,
    eph_pk: bytes,
    identity: Identity,
    body_at: int,
    network_keys: Sequence[bytes],
    ring: KeyRing,
) -> tuple[bytes, Way] | None:
    """The content key and the way that gave it: the ways that opened the ring's latest
    payloads first, then the cheap ones (every network's slot, then every circle key) while
    they cost less than our X25519 slot, then ours, then the rest. Each way is tried once."""
    tried: list[Way] = []
    for way in ring.recent:
        if way[0] == NETWORK and way[1] not in network_keys:
            continue  # a network this reader no longer passes
        tried.append(way)
        content_key = _try_way(way, sealed, nonce, eph_pk, identity, body_at)
        if content_key is not None:
            return content_key, way
    symmetric = chain(((NETWORK, k) for k in network_keys), ((CIRCLE, k) for k in ring))
    cheap = limits.X25519_SLOT_TRIALS // (2 + (body_at - HEADER_BYTES) // _SLOT)  # one X25519
    for way in chain(islice(symmetric, cheap), ((OWN, b""),), symmetric):
        if way in tried:
            continue
        content_key = _try_way(way, sealed, nonce, eph_pk, identity, body_at)
        if content_key is not None:
            return content_key, way
    return None


def _try_way(
    way: Way, sealed: bytes, nonce: bytes, eph_pk: bytes, identity: Identity, body_at: int
) -> bytes | None:
    what, key = way
    if what == OWN:
        return _open_own_slot(sealed, nonce, eph_pk, identity, body_at)
    slot_key = _network_slot_key(eph_pk, key) if what == NETWORK else _circle_slot_key(eph_pk, key)
    return _try_slots(sealed, nonce, slot_key, body_at)


def _open_own_slot(
    sealed: bytes, nonce: bytes, eph_pk: bytes, identity: Identity, body_at: int
) -> bytes | None:
    content_key: bytes | None = None
    own_x = identity.x25519_public()
    try:
        shared: bytes | None = nacl.bindings.crypto_scalarmult(identity.x25519_secret(), eph_pk)
    except nacl.exceptions.CryptoError:
        shared = None  # a low-order eph_pk opens nothing for us; the network slot may still
    if shared is not None:
        key = _recipient_slot_key(shared, eph_pk, own_x)
        content_key = _try_slots(sealed, nonce, key, body_at)
    return content_key


def seal_record(
    identity: Identity,
    kind: Kind,
    content: dict[str, Value],
    *,
    created: int,
    expires: int,
    scope: Scope,
    recipients: Sequence[NodeId],
    network_key: bytes | None,
    random: Random,
    circle_keys: Sequence[bytes] = (),
    network: bytes | None = None,
) -> Record:
    """Sign a Body, seal it to `recipients` + the author (+ network key, + circle keys),
    sign the Record (tagged for the network `network`, a network tag, when given)."""
    body = Body.create(identity, kind, created, content)
    readers = [*recipients, identity.node_id]
    sealed = seal(body.to_bytes(), readers, network_key, random, circle_keys)
    return Record.create(
        identity,
        kind,
        created=created,
        expires=expires,
        scope=scope,
        payload=sealed,
        network=network,
    )


def open_record(
    record: Record,
    identity: Identity,
    network_key: NetworkKeys,
    *,
    verify_body: bool = True,
    network_first: bool = False,
    circle_keys: Sequence[bytes] = (),
) -> Body:
    """Unseal and verify a record's Body; its kind/author/created must match the record,
    and its content must follow its kind's schema (`protocol.content`; DecodeError).

    Does not check the record's own signature: `Record.verify()` is the ingest check.
    `verify_body=False` is only for records whose record signature this node already
    checked (its own store): that signature already binds the author to the sealed body.
    """
    sealed = unseal(
        record.payload, identity, network_key, network_first=network_first, circle_keys=circle_keys
    )
    body = Body.from_bytes(sealed)
    if verify_body:
        body.verify()
    if (body.kind, body.author, body.created) != (record.kind, record.author, record.created):
        raise VerificationError("body does not match its record")
    check_content(body.kind, body.content)
    return body


def open_stored(
    record: RecordFields,
    identity: Identity,
    network_key: NetworkKeys,
    circle_keys: Sequence[bytes] = (),
) -> BodyFields:
    """The Body of a record from this node's own store (see `stored_fields`): unsealed
    (network slot first: most stored records a node reads are network-scoped) and decoded
    by `_body_layout` without the canonical re-encoding check or the body signature, which
    the record signature checked before storing already binds to the author. The security
    checks stay: the body's kind, author and created must be the record's.

    Not the schema of its content (`open_record` checks that; the index checks contacts and
    vouches itself). DecodeError, NotForUs, VerificationError as `open_record`."""
    plain = unseal(
        record.payload, identity, network_key, network_first=True, circle_keys=circle_keys
    )
    try:
        value = msgpack.unpackb(plain)
    except Exception as exc:  # msgpack raises a zoo: ValueError, ExtraData, StackError...
        raise DecodeError("malformed body") from exc
    body = _body_layout(value)
    if (body.kind, body.author, body.created) != (record.kind, record.author, record.created):
        raise VerificationError("body does not match its record")
    return body
