"""Sneakernet bundles: records carried on a USB stick, readable by one peer, signed by us.

Owns the bundle layout (docs/spec/50-bundles.md). Pure: randomness and time come in as
arguments. It checks the bundle (box, signature, addressee), never the records inside:
those go through the node's ordinary ingest checks, exactly as records from sync do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions

from protocol import labels, limits
from protocol.encoding import Value, as_bytes, as_int, as_list, pack, unpack
from protocol.errors import DecodeError, LocalProtocolError, VerificationError
from protocol.identity import SIGNATURE_BYTES, Identity, NodeId, Random, random_bytes

BUNDLE_VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 24
MAC_BYTES = 16
HEADER_BYTES = len(labels.BUNDLE_MAGIC) + KEY_BYTES + NONCE_BYTES  # magic, eph_pk, nonce


@dataclass(frozen=True, slots=True)
class Bundle:
    """An opened bundle: who made it, for whom, when, and the record bytes it carries."""

    sender: NodeId
    recipient: NodeId
    created: int
    records: tuple[bytes, ...]


def _signed_bytes(sender: NodeId, recipient: NodeId, created: int, records: list[Value]) -> bytes:
    return labels.BUNDLE_SIGNATURE + pack(
        [BUNDLE_VERSION, sender.raw, recipient.raw, created, records]
    )


def _box_key(shared: bytes, eph_pk: bytes, recipient_x: bytes) -> bytes:
    return hashlib.blake2b(
        eph_pk + recipient_x, key=shared, person=labels.BUNDLE_KEY, digest_size=KEY_BYTES
    ).digest()


def seal_bundle(
    identity: Identity,
    recipient: NodeId,
    records: Sequence[bytes],
    *,
    created: int,
    random: Random,
) -> bytes:
    """Sign `records` as `identity` for `recipient`, then box them so only it can read them.

    Layout: BUNDLE_MAGIC || eph_pk 32 || nonce 24 || secretbox(key, nonce, inner), where
    inner = [version, sender, recipient, created, [record...], signature] (canonical msgpack).
    """
    if len(records) > limits.MAX_BUNDLE_RECORDS:
        raise LocalProtocolError("too many records for one bundle")
    if any(not isinstance(r, bytes) or len(r) > limits.MAX_RECORD_BYTES for r in records):
        raise LocalProtocolError("bundle records must be record bytes")
    items: list[Value] = list(records)
    signature = identity.sign(_signed_bytes(identity.node_id, recipient, created, items))
    inner = pack([BUNDLE_VERSION, identity.node_id.raw, recipient.raw, created, items, signature])
    if HEADER_BYTES + len(inner) + MAC_BYTES > limits.MAX_BUNDLE_BYTES:
        raise LocalProtocolError("bundle too large: export fewer records")
    eph_sk = random_bytes(random, KEY_BYTES)
    eph_pk: bytes = nacl.bindings.crypto_scalarmult_base(eph_sk)
    nonce = random_bytes(random, NONCE_BYTES)
    recipient_x = recipient.x25519()
    try:
        shared: bytes = nacl.bindings.crypto_scalarmult(eph_sk, recipient_x)
    except nacl.exceptions.CryptoError as exc:
        raise LocalProtocolError("recipient key is a low-order point") from exc
    box: bytes = nacl.bindings.crypto_secretbox_easy(
        inner, nonce, _box_key(shared, eph_pk, recipient_x)
    )
    return labels.BUNDLE_MAGIC + eph_pk + nonce + box


def open_bundle(data: bytes, identity: Identity, now_ms: int) -> Bundle:
    """Open a bundle addressed to `identity` and check its sender's signature.

    DecodeError if it is no bundle, truncated before its box, or malformed inside;
    VerificationError if the box does not open (altered, truncated, or for another node)
    or the signature does not verify; both say nothing about which byte was wrong.
    """
    magic = labels.BUNDLE_MAGIC
    if not isinstance(data, bytes):
        raise LocalProtocolError("open_bundle takes bytes")
    if data[: len(magic) - 2] != magic[:-2]:
        raise DecodeError("not a Canopy bundle")
    if data[: len(magic)] != magic:
        raise DecodeError("unsupported bundle version (made by a newer Canopy?)")
    if len(data) > limits.MAX_BUNDLE_BYTES:
        raise DecodeError("bundle too large")
    if len(data) < HEADER_BYTES + MAC_BYTES:
        raise DecodeError("bundle truncated")
    eph_pk = data[len(magic) : len(magic) + KEY_BYTES]
    nonce = data[len(magic) + KEY_BYTES : HEADER_BYTES]
    own_x = identity.x25519_public()
    try:
        shared: bytes = nacl.bindings.crypto_scalarmult(identity.x25519_secret(), eph_pk)
        inner: bytes = nacl.bindings.crypto_secretbox_open_easy(
            data[HEADER_BYTES:], nonce, _box_key(shared, eph_pk, own_x)
        )
    except nacl.exceptions.CryptoError as exc:
        raise VerificationError(
            "bundle does not open: altered, truncated, or addressed to another node"
        ) from exc
    value = unpack(inner, max_bytes=limits.MAX_BUNDLE_BYTES)
    fields = as_list(value, 6, "bundle")
    version = as_int(fields[0], "bundle version")
    if version != BUNDLE_VERSION:
        raise DecodeError("unsupported bundle version")
    sender = NodeId(as_bytes(fields[1], KEY_BYTES, "bundle sender"))
    recipient = NodeId(as_bytes(fields[2], KEY_BYTES, "bundle recipient"))
    created = as_int(fields[3], "bundle created", 0, limits.MAX_TIMESTAMP_MS)
    items = as_list(fields[4], None, "bundle records")
    signature = as_bytes(fields[5], SIGNATURE_BYTES, "bundle signature")
    if len(items) > limits.MAX_BUNDLE_RECORDS:
        raise DecodeError("too many records in the bundle")
    records = tuple(
        as_bytes(item, None, "bundle record", limits.MAX_RECORD_BYTES) for item in items
    )
    sender.verify(_signed_bytes(sender, recipient, created, items), signature)
    if recipient != identity.node_id:
        raise VerificationError("bundle is addressed to another node")
    if created > now_ms + limits.MAX_CLOCK_SKEW_MS:
        raise DecodeError("bundle is dated in the future")
    return Bundle(sender, recipient, created, records)
