"""Revocation certificates: a node's own, pre-signed statement that its key is compromised.

Owns the certificate codec and its wrapping in a `revocation` record (docs/SPEC.md,
"Revocation and defences"). Both signatures are made at `init`, while the key is known to
be safe, so that anyone holding the certificate can publish it after the device is gone.
Never reads the clock: `created` is an argument.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from protocol import labels, limits
from protocol.encoding import pack, unpack
from protocol.errors import DecodeError, LocalProtocolError, VerificationError
from protocol.identity import SIGNATURE_BYTES, Identity, NodeId
from protocol.record import Kind, Record, Scope

REVOCATION_VERSION = 1


def _signed(node_id: NodeId, created: int) -> bytes:
    return labels.REVOCATION_SIGNATURE + pack([REVOCATION_VERSION, node_id.raw, created])


@dataclass(frozen=True, slots=True)
class RevocationCertificate:
    """`node_id` declares its own key compromised; valid from `created` (ms) on."""

    node_id: NodeId
    created: int
    signature: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.node_id, NodeId):
            raise LocalProtocolError("node_id must be a NodeId")
        if isinstance(self.created, bool) or not isinstance(self.created, int):
            raise LocalProtocolError("created must be an integer")
        if not 0 <= self.created <= limits.MAX_TIMESTAMP_MS:
            raise LocalProtocolError("created out of range")
        if not isinstance(self.signature, bytes) or len(self.signature) != SIGNATURE_BYTES:
            raise LocalProtocolError("signature must be 64 bytes")

    @classmethod
    def create(cls, identity: Identity, *, created: int) -> RevocationCertificate:
        node_id = identity.node_id
        return cls(node_id, created, identity.sign(_signed(node_id, created)))

    def signed_bytes(self) -> bytes:
        """REVOCATION_SIGNATURE || pack([1, node_id, created])."""
        return _signed(self.node_id, self.created)

    def verify(self) -> None:
        """VerificationError unless `node_id` signed exactly this certificate."""
        self.node_id.verify(self.signed_bytes(), self.signature)

    def to_payload(self) -> bytes:
        """pack([1, node_id, created, signature]): the payload of the revocation record."""
        return pack([REVOCATION_VERSION, self.node_id.raw, self.created, self.signature])

    @classmethod
    def from_payload(cls, data: bytes) -> RevocationCertificate:
        """Strict decode (DecodeError); the signature is NOT checked here."""
        if len(data) > limits.MAX_REVOCATION_PAYLOAD_BYTES:
            raise DecodeError("revocation certificate too large")
        value = unpack(data, max_bytes=limits.MAX_REVOCATION_PAYLOAD_BYTES)
        if not isinstance(value, list) or len(value) != 4:
            raise DecodeError("revocation certificate must be an array of 4")
        version, raw, created, signature = value
        if isinstance(version, bool) or version != REVOCATION_VERSION:
            raise DecodeError("unknown revocation certificate version")
        if not isinstance(raw, bytes) or len(raw) != 32:
            raise DecodeError("revoked node id must be 32 bytes")
        if isinstance(created, bool) or not isinstance(created, int):
            raise DecodeError("created must be an integer")
        if not 0 <= created <= limits.MAX_TIMESTAMP_MS:
            raise DecodeError("created out of range")
        if not isinstance(signature, bytes) or len(signature) != SIGNATURE_BYTES:
            raise DecodeError("signature must be 64 bytes")
        return cls(NodeId(raw), created, signature)


def make_revocation(identity: Identity, *, created: int) -> Record:
    """The pre-signed `revocation` record: network-scoped, as long-lived as a record may be."""
    certificate = RevocationCertificate.create(identity, created=created)
    return Record.create(
        identity,
        Kind.REVOCATION,
        created=created,
        expires=created + limits.MAX_LIFETIME_MS,
        scope=Scope.NETWORK,
        payload=certificate.to_payload(),
    )


def check_revocation(record: Record) -> RevocationCertificate:
    """The certificate a verified `revocation` record carries, checked against its author.

    DecodeError for a malformed payload; VerificationError if the certificate names
    another key or its signature fails (the record signature alone is not enough: the
    certificate label keeps a signature made for anything else from revoking a key)."""
    if record.kind is not Kind.REVOCATION:
        raise LocalProtocolError("not a revocation record")
    certificate = RevocationCertificate.from_payload(record.payload)
    if certificate.node_id != record.author:
        raise VerificationError("revocation certificate does not match its record")
    certificate.verify()
    return certificate


def to_text(record: Record) -> str:
    """The operator's copy: REVOCATION_PREFIX + unpadded base64url of the record bytes."""
    return _text(record.to_bytes())


def from_text(text: str) -> Record:
    """Parse, decode and fully check an operator's copy (DecodeError / VerificationError)."""
    text = text.strip()
    if len(text) > limits.MAX_REVOCATION_TEXT_LEN or not text.startswith(labels.REVOCATION_PREFIX):
        raise DecodeError(f"not a revocation certificate (it starts {labels.REVOCATION_PREFIX})")
    body = text[len(labels.REVOCATION_PREFIX) :]
    try:
        data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise DecodeError("revocation certificate is not base64url") from None
    if _text(data) != text:
        raise DecodeError("non-canonical revocation certificate text")
    record = Record.from_bytes(data)
    if record.kind is not Kind.REVOCATION:
        raise DecodeError("not a revocation record")
    record.verify()
    check_revocation(record)
    return record


def _text(data: bytes) -> str:
    return labels.REVOCATION_PREFIX + base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")
