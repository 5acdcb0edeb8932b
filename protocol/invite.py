"""Invite codes: the signed, out-of-band token that makes two nodes trust each other.

Owns the invite layout, its text code and the one-time redeem capability (SPEC "Identities,
records, sealed payloads and invites"). Never lets a decoding error escape as anything but
InviteError, and never shows the network key or secret in a repr.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from protocol import labels, limits
from protocol.encoding import Value, pack, unpack
from protocol.errors import CanopyError, InviteError, LocalProtocolError
from protocol.identity import SIGNATURE_BYTES, Identity, NodeId, b32decode, b32encode
from protocol.names import check_name as check_name  # the name rule, re-exported

INVITE_VERSION = 1
NAMED_INVITE_VERSION = 2  # an invite carrying the name of the network it invites to
KEY_BYTES = 32
_SCHEMES = ("ws", "wss")
PEER_PATH = "/canopy"  # where a node serves its peer endpoint (it also answers at "/")


def check_address(address: object) -> str | None:
    """Why `address` is not a ws:// or wss:// URL Canopy can dial, or None if it is."""
    if not isinstance(address, str):
        return "address must be text"
    if not address or len(address) > limits.MAX_ADDRESS_LEN:
        return "address length out of range"
    if not address.isascii() or not address.isprintable() or " " in address:
        return "address must be printable ASCII"
    try:
        parts = urllib.parse.urlsplit(address)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "address is not a URL"
    if parts.scheme not in _SCHEMES or not parts.hostname:
        return "address must be a ws:// or wss:// URL with a host"
    if parts.username is not None or parts.password is not None or parts.fragment:
        return "address must not carry credentials or a fragment"
    return None


def normalise_address(address: str) -> str:
    """`address` with an empty path made the peer endpoint's path (`PEER_PATH`).

    `ws://host:7420` is what a newcomer types; dialled as it is, a proxy that forwards only
    `/canopy` answers 404. Everything else (a query, an explicit path) is kept as given."""
    try:
        parts = urllib.parse.urlsplit(address)
    except ValueError:
        return address  # check_address says why
    if parts.scheme in _SCHEMES and parts.netloc and not parts.path:
        return urllib.parse.urlunsplit(parts._replace(path=PEER_PATH))
    return address


def check_addresses(addresses: Sequence[object]) -> str | None:
    if len(addresses) > limits.MAX_INVITE_ADDRESSES:
        return "too many addresses"
    if len(set(addresses)) != len(addresses):
        return "duplicate address"
    for address in addresses:
        problem = check_address(address)
        if problem:
            return problem
    return None


def check_network_name(name: object) -> str | None:
    """Why `name` is not an acceptable network name in an invite, or None: the name rule,
    not empty, no leading, trailing or doubled whitespace (the inviter's own text reaches the
    invitee's terminal and listings)."""
    problem = check_name(name)
    if problem:
        return f"network {problem}"
    assert isinstance(name, str)
    if not name or " ".join(name.split()) != name:
        return "network name must be non-empty, with single spaces between words"
    return None


def _fields(
    node_id: NodeId,
    name: str,
    addresses: tuple[str, ...],
    network_key: bytes,
    secret: bytes,
    expires: int,
    network_name: str,
) -> list[Value]:
    """Version 1 without a network name, version 2 with it (after `expires`)."""
    head: list[Value] = [node_id.raw, name, list(addresses), network_key, secret, expires]
    if network_name:
        return [NAMED_INVITE_VERSION, *head, network_name]
    return [INVITE_VERSION, *head]


def _signed_bytes(
    node_id: NodeId,
    name: str,
    addresses: tuple[str, ...],
    network_key: bytes,
    secret: bytes,
    expires: int,
    network_name: str = "",
) -> bytes:
    fields = _fields(node_id, name, addresses, network_key, secret, expires, network_name)
    return labels.INVITE_SIGNATURE + pack(fields)


@dataclass(frozen=True, slots=True, repr=False)
class Invite:
    """A signed invite. `network_key` and `secret` are secrets: never log or show them."""

    node_id: NodeId
    name: str
    addresses: tuple[str, ...]
    network_key: bytes
    secret: bytes
    expires: int
    signature: bytes
    network_name: str = ""  # the inviter's name for the network ("": none, version 1)

    def __post_init__(self) -> None:
        problem = (
            check_name(self.name)
            or (None if isinstance(self.addresses, tuple) else "addresses must be a tuple")
            or check_addresses(self.addresses)
            or (check_network_name(self.network_name) if self.network_name else None)
        )
        if problem:
            raise LocalProtocolError(problem)
        if not isinstance(self.node_id, NodeId):
            raise LocalProtocolError("node_id must be a NodeId")
        for key in (self.network_key, self.secret):
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise LocalProtocolError("network key and secret must be 32 bytes")
        if isinstance(self.expires, bool) or not isinstance(self.expires, int):
            raise LocalProtocolError("expires must be an integer")
        if not 0 <= self.expires <= limits.MAX_TIMESTAMP_MS:
            raise LocalProtocolError("expires out of range")
        if not isinstance(self.signature, bytes) or len(self.signature) != SIGNATURE_BYTES:
            raise LocalProtocolError("signature must be 64 bytes")

    def __repr__(self) -> str:
        return (
            f"Invite(node_id={self.node_id!r}, name={self.name!r},"
            f" network_name={self.network_name!r}, expires={self.expires})"
        )

    @classmethod
    def create(
        cls,
        identity: Identity,
        *,
        name: str,
        addresses: Sequence[str],
        network_key: bytes,
        secret: bytes,
        expires: int,
        network_name: str = "",
    ) -> Invite:
        addrs = tuple(addresses)
        node_id = identity.node_id
        net = network_name
        # Validate every field (LocalProtocolError) before signing anything.
        cls(node_id, name, addrs, network_key, secret, expires, bytes(SIGNATURE_BYTES), net)
        signature = identity.sign(
            _signed_bytes(node_id, name, addrs, network_key, secret, expires, net)
        )
        invite = cls(node_id, name, addrs, network_key, secret, expires, signature, net)
        if len(invite.to_bytes()) > limits.MAX_INVITE_BYTES:
            raise LocalProtocolError("invite too large")
        return invite

    def to_bytes(self) -> bytes:
        """Canonical msgpack [1, node_id, name, [addresses], network_key, secret, expires, sig],
        or with a network name [2, ..., expires, network_name, sig]."""
        fields = _fields(
            self.node_id,
            self.name,
            self.addresses,
            self.network_key,
            self.secret,
            self.expires,
            self.network_name,
        )
        return pack([*fields, self.signature])

    def to_code(self) -> str:
        """INVITE_PREFIX + lowercase unpadded base32 of `to_bytes()`."""
        return labels.INVITE_PREFIX + b32encode(self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> Invite:
        """Strictly decode and verify an invite; InviteError for every bad input."""
        try:
            return cls._decode(data)
        except InviteError:
            raise
        except (CanopyError, ValueError, TypeError) as exc:
            raise InviteError("invalid invite code") from exc

    @classmethod
    def from_code(cls, code: str) -> Invite:
        """Parse, decode, verify; whitespace anywhere (line wraps) and letter case are ignored."""
        if not isinstance(code, str):
            raise InviteError("invite code must be text")
        text = "".join(code.split()).lower()
        if not text.startswith(labels.INVITE_PREFIX):
            raise InviteError("not a Canopy invite code")
        text = text[len(labels.INVITE_PREFIX) :]
        if len(text) > (limits.MAX_INVITE_BYTES * 8 + 4) // 5:
            raise InviteError("invite code too long")
        try:
            data = b32decode(text)
        except (CanopyError, ValueError) as exc:
            raise InviteError("invite code is not valid base32") from exc
        return cls.from_bytes(data)

    @classmethod
    def _decode(cls, data: bytes) -> Invite:
        if len(data) > limits.MAX_INVITE_BYTES:
            raise InviteError("invite too large")
        value = unpack(data, max_bytes=limits.MAX_INVITE_BYTES)
        if not isinstance(value, list) or len(value) not in (8, 9):
            raise InviteError("invite must be an array of 8 (or 9 with a network name)")
        version = value[0]
        if isinstance(version, bool) or version != (
            INVITE_VERSION if len(value) == 8 else NAMED_INVITE_VERSION
        ):
            raise InviteError("unknown invite version")
        network_name: object = value.pop(7) if len(value) == 9 else ""
        if version == NAMED_INVITE_VERSION:
            problem = check_network_name(network_name)
            if problem:
                raise InviteError(problem)
        _, node_id, name, addresses, network_key, secret, expires, signature = value
        if not isinstance(node_id, bytes) or len(node_id) != KEY_BYTES:
            raise InviteError("bad node id in invite")
        problem = check_name(name)
        if problem:
            raise InviteError(problem)
        if not isinstance(addresses, list):
            raise InviteError("addresses must be an array")
        problem = check_addresses(addresses)
        if problem:
            raise InviteError(problem)
        for key in (network_key, secret):
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise InviteError("bad key in invite")
        if isinstance(expires, bool) or not isinstance(expires, int):
            raise InviteError("bad expiry in invite")
        if not 0 <= expires <= limits.MAX_TIMESTAMP_MS:
            raise InviteError("bad expiry in invite")
        if not isinstance(signature, bytes) or len(signature) != SIGNATURE_BYTES:
            raise InviteError("bad signature in invite")
        assert isinstance(name, str) and isinstance(network_key, bytes)
        assert isinstance(secret, bytes) and isinstance(network_name, str)
        addrs = tuple(a for a in addresses if isinstance(a, str))
        invite = cls(
            NodeId(node_id), name, addrs, network_key, secret, expires, signature, network_name
        )
        try:
            invite.verify()
        except CanopyError as exc:
            raise InviteError("invite signature does not verify") from exc
        return invite

    def verify(self) -> None:
        """VerificationError unless the inviter signed exactly this invite."""
        self.node_id.verify(
            _signed_bytes(
                self.node_id,
                self.name,
                self.addresses,
                self.network_key,
                self.secret,
                self.expires,
                self.network_name,
            ),
            self.signature,
        )

    def check_time(self, now_ms: int) -> None:
        if self.expires <= now_ms:
            raise InviteError("invite expired")

    def capability(self) -> bytes:
        """The 32-byte SHS network key for the one-time redeem handshake."""
        return hashlib.blake2b(
            self.secret,
            digest_size=KEY_BYTES,
            key=self.network_key,
            person=labels.INVITE_CAPABILITY,
        ).digest()
