"""Node identities (Ed25519), their text form and safety code, and the key file.

Owns key derivation and the at-rest key-file format (SPEC "Identities, records, sealed
payloads and invites"). Never generates randomness itself and never shows a secret in a repr.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import nacl.bindings
import nacl.exceptions
import nacl.pwhash.argon2id

from protocol import labels, limits
from protocol.errors import DecodeError, KeyFileError, LocalProtocolError, VerificationError

Random = Callable[[int], bytes]
"""A source of uniformly random bytes (`nacl.utils.random` in the node, seeded in tests)."""

KEY_BYTES = 32
SIGNATURE_BYTES = 64
NODE_ID_TEXT_LEN = 52  # ceil(256 / 5)

_B32_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz234567")


def b32encode(data: bytes) -> str:
    """RFC 4648 base32, lowercase, without padding."""
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def b32decode(text: str) -> bytes:
    """Inverse of `b32encode`, accepting only its exact (canonical, lowercase) output.

    Raises DecodeError, never binascii.Error or ValueError of another kind.
    """
    if not set(text) <= _B32_ALPHABET or len(text) % 8 in (1, 3, 6):
        raise DecodeError("not lowercase unpadded base32")
    try:
        raw = base64.b32decode(text.upper() + "=" * (-len(text) % 8))
    except ValueError as exc:
        raise DecodeError("not lowercase unpadded base32") from exc
    if b32encode(raw) != text:  # non-zero trailing bits: two texts would name one value
        raise DecodeError("non-canonical base32")
    return raw


def random_bytes(random: Random, n: int) -> bytes:
    """Call `random(n)` and insist on getting exactly n bytes back."""
    out = random(n)
    if not isinstance(out, bytes) or len(out) != n:
        raise LocalProtocolError("random source returned the wrong number of bytes")
    return out


@dataclass(frozen=True, slots=True)
class NodeId:
    """A node's public identity: its 32-byte Ed25519 public key."""

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != KEY_BYTES:
            raise LocalProtocolError("a node id is exactly 32 bytes")

    @classmethod
    def from_text(cls, text: str) -> NodeId:
        """Parse the 52-character text form (surrounding whitespace and upper case accepted)."""
        if not isinstance(text, str):
            raise DecodeError("node id must be text")
        text = text.strip().lower()
        if len(text) != NODE_ID_TEXT_LEN:
            raise DecodeError("node id must be 52 base32 characters")
        return cls(b32decode(text))

    def __str__(self) -> str:
        return b32encode(self.raw)

    def __repr__(self) -> str:
        return f"NodeId({self.short}…)"

    @property
    def short(self) -> str:
        return str(self)[:10]

    def safety_code(self) -> str:
        """Six groups of five digits, compared aloud or on paper to check a key out of band.

        BLAKE2b-240(raw, person=SAFETY_CODE); each 5-byte chunk, big-endian, modulo 100000.
        """
        digest = hashlib.blake2b(
            self.raw, digest_size=5 * limits.SAFETY_CODE_GROUPS, person=labels.SAFETY_CODE
        ).digest()
        groups = (
            int.from_bytes(digest[i : i + 5], "big") % 100_000 for i in range(0, len(digest), 5)
        )
        return " ".join(f"{g:05d}" for g in groups)

    def x25519(self) -> bytes:
        """The birationally equivalent Curve25519 public key (for sealed-payload wraps)."""
        try:
            out: bytes = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(self.raw)
        except nacl.exceptions.CryptoError as exc:
            raise DecodeError("node id is not a valid Ed25519 point") from exc
        return out

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise VerificationError unless `signature` is this node's signature of `message`."""
        if not isinstance(signature, bytes) or len(signature) != SIGNATURE_BYTES:
            raise VerificationError("bad signature")
        try:
            nacl.bindings.crypto_sign_open(signature + message, self.raw)
        except (nacl.exceptions.CryptoError, ValueError) as exc:
            raise VerificationError("bad signature") from exc


@dataclass(frozen=True, slots=True, repr=False)
class Identity:
    """A node's secret identity: the 32-byte Ed25519 seed, with derived keys cached."""

    seed: bytes
    _public: bytes = field(init=False, compare=False, default=b"")
    _secret: bytes = field(init=False, compare=False, default=b"")
    _x_public: bytes = field(init=False, compare=False, default=b"")
    _x_secret: bytes = field(init=False, compare=False, default=b"")

    def __post_init__(self) -> None:
        if not isinstance(self.seed, bytes) or len(self.seed) != KEY_BYTES:
            raise LocalProtocolError("an identity seed is exactly 32 bytes")
        public, secret = nacl.bindings.crypto_sign_seed_keypair(self.seed)
        object.__setattr__(self, "_public", public)
        object.__setattr__(self, "_secret", secret)
        # Opening a sealed payload needs both Curve25519 forms: converted once, not per
        # record (the public conversion alone costs about as much as the X25519 itself).
        x_public = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(public)
        object.__setattr__(self, "_x_public", x_public)
        object.__setattr__(
            self, "_x_secret", nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(secret)
        )

    def __repr__(self) -> str:
        return f"Identity({self.node_id.short}…)"

    @classmethod
    def generate(cls, random: Random) -> Identity:
        return cls(random_bytes(random, KEY_BYTES))

    @property
    def node_id(self) -> NodeId:
        return NodeId(self._public)

    @property
    def secret_key(self) -> bytes:
        """The 64-byte libsodium Ed25519 secret key (seed || public key), as SHS wants it."""
        return self._secret

    def sign(self, message: bytes) -> bytes:
        """A 64-byte detached Ed25519 signature of `message`."""
        signed: bytes = nacl.bindings.crypto_sign(message, self._secret)
        return signed[:SIGNATURE_BYTES]

    def x25519_secret(self) -> bytes:
        return self._x_secret

    def x25519_public(self) -> bytes:
        """`node_id.x25519()`, computed once."""
        return self._x_public


# Key file ------------------------------------------------------------------------------

KEY_FILE_PLAIN = 0
KEY_FILE_ARGON2ID = 1
_SALT_BYTES = 16  # nacl.pwhash.argon2id.SALTBYTES
_PLAIN_LEN = len(labels.KEY_FILE_MAGIC) + 1 + 2 * KEY_BYTES
_PARAMS = struct.Struct(">QQ")
_ENCRYPTED_LEN = (
    len(labels.KEY_FILE_MAGIC) + 1 + _PARAMS.size + _SALT_BYTES + 24 + 16 + 2 * KEY_BYTES
)

assert nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE == limits.KEY_FILE_OPSLIMIT
assert nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE == limits.KEY_FILE_MEMLIMIT
assert nacl.pwhash.argon2id.SALTBYTES == _SALT_BYTES


@dataclass(frozen=True, slots=True, repr=False)
class KeyMaterial:
    """Everything a node must keep secret: its identity seed and its storage key."""

    seed: bytes
    storage_key: bytes

    def __post_init__(self) -> None:
        for value in (self.seed, self.storage_key):
            if not isinstance(value, bytes) or len(value) != KEY_BYTES:
                raise LocalProtocolError("key material is two 32-byte keys")

    def __repr__(self) -> str:
        return "KeyMaterial(<secret>)"

    @classmethod
    def generate(cls, random: Random) -> KeyMaterial:
        return cls(random_bytes(random, KEY_BYTES), random_bytes(random, KEY_BYTES))

    @property
    def identity(self) -> Identity:
        return Identity(self.seed)


def _file_key(passphrase: bytes, salt: bytes, opslimit: int, memlimit: int, header: bytes) -> bytes:
    """Argon2id, then BLAKE2b over the whole header so that no header byte can be altered.

    (libsodium rounds memlimit down to KiB, so without this some edits would go unnoticed.)
    """
    stretched: bytes = nacl.pwhash.argon2id.kdf(
        KEY_BYTES, passphrase, salt, opslimit=opslimit, memlimit=memlimit
    )
    return hashlib.blake2b(
        header, digest_size=KEY_BYTES, key=stretched, person=labels.KEY_FILE_MAGIC
    ).digest()


def seal_key_file(
    material: KeyMaterial,
    passphrase: bytes | None,
    random: Random,
    *,
    opslimit: int = limits.KEY_FILE_OPSLIMIT,
    memlimit: int = limits.KEY_FILE_MEMLIMIT,
) -> bytes:
    """Serialise `material`; encrypted under `passphrase` unless it is None (explicit opt-out)."""
    secret = material.seed + material.storage_key
    head = labels.KEY_FILE_MAGIC
    if passphrase is None:
        return head + bytes([KEY_FILE_PLAIN]) + secret
    if not isinstance(passphrase, bytes) or not passphrase:
        raise LocalProtocolError("passphrase must be non-empty bytes (or None to opt out)")
    if not (
        nacl.pwhash.argon2id.OPSLIMIT_MIN <= opslimit <= limits.KEY_FILE_MAX_OPSLIMIT
        and nacl.pwhash.argon2id.MEMLIMIT_MIN <= memlimit <= limits.KEY_FILE_MAX_MEMLIMIT
    ):
        raise LocalProtocolError("argon2id limits out of range")
    salt = random_bytes(random, _SALT_BYTES)
    nonce = random_bytes(random, 24)
    header = head + bytes([KEY_FILE_ARGON2ID]) + _PARAMS.pack(opslimit, memlimit) + salt + nonce
    key = _file_key(passphrase, salt, opslimit, memlimit, header)
    box: bytes = nacl.bindings.crypto_secretbox_easy(secret, nonce, key)
    return header + box


def key_file_is_encrypted(data: bytes) -> bool:
    """True if `data` is a passphrase-protected key file; KeyFileError if it is no key file."""
    magic = labels.KEY_FILE_MAGIC
    if not isinstance(data, bytes) or len(data) <= len(magic) or data[: len(magic)] != magic:
        raise KeyFileError("not a Canopy key file")
    mode = data[len(magic)]
    if mode == KEY_FILE_PLAIN and len(data) == _PLAIN_LEN:
        return False
    if mode == KEY_FILE_ARGON2ID and len(data) == _ENCRYPTED_LEN:
        return True
    raise KeyFileError("key file is damaged")


def open_key_file(data: bytes, passphrase: bytes | None) -> KeyMaterial:
    """Recover the key material; KeyFileError if damaged, or the passphrase is wrong or missing.

    A passphrase given for an unencrypted file is ignored (the file says it was opted out).
    """
    if not key_file_is_encrypted(data):
        body = data[len(labels.KEY_FILE_MAGIC) + 1 :]
        return KeyMaterial(body[:KEY_BYTES], body[KEY_BYTES:])
    if passphrase is None:
        raise KeyFileError("the key file is encrypted: a passphrase is needed")
    pos = len(labels.KEY_FILE_MAGIC) + 1
    opslimit, memlimit = _PARAMS.unpack_from(data, pos)
    pos += _PARAMS.size
    salt, pos = data[pos : pos + _SALT_BYTES], pos + _SALT_BYTES
    nonce, box = data[pos : pos + 24], data[pos + 24 :]
    header = data[: pos + 24]
    if not (
        nacl.pwhash.argon2id.OPSLIMIT_MIN <= opslimit <= limits.KEY_FILE_MAX_OPSLIMIT
        and nacl.pwhash.argon2id.MEMLIMIT_MIN <= memlimit <= limits.KEY_FILE_MAX_MEMLIMIT
    ):
        raise KeyFileError("key file is damaged")
    key = _file_key(passphrase, salt, opslimit, memlimit, header)
    try:
        secret: bytes = nacl.bindings.crypto_secretbox_open_easy(box, nonce, key)
    except nacl.exceptions.CryptoError as exc:
        raise KeyFileError("wrong passphrase, or the key file is damaged") from exc
    return KeyMaterial(secret[:KEY_BYTES], secret[KEY_BYTES:])
