"""Encrypted backups: a node's key file and a copy of its database, under a passphrase.

Owns the backup layout (docs/spec/50-bundles.md, "Backups"), built like the key file:
Argon2id, then BLAKE2b over the whole header, then SecretBox. Pure: randomness comes in.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions
import nacl.pwhash

from protocol import labels, limits
from protocol.encoding import as_bytes, as_int, as_list, pack, unpack
from protocol.errors import DecodeError, KeyFileError, LocalProtocolError
from protocol.identity import Random, random_bytes

BACKUP_VERSION = 1
KEY_BYTES = 32
SALT_BYTES = 16
NONCE_BYTES = 24
MAC_BYTES = 16
_PARAMS = struct.Struct(">QQ")
HEADER_BYTES = len(labels.BACKUP_MAGIC) + _PARAMS.size + SALT_BYTES + NONCE_BYTES


@dataclass(frozen=True, slots=True, repr=False)
class Backup:
    """What a backup holds: the key file as it was on disk and the database image."""

    created: int
    key_file: bytes
    database: bytes

    def __repr__(self) -> str:
        return f"Backup(created={self.created}, database={len(self.database)} bytes)"


def _key(passphrase: bytes, salt: bytes, opslimit: int, memlimit: int, header: bytes) -> bytes:
    stretched: bytes = nacl.pwhash.argon2id.kdf(
        KEY_BYTES, passphrase, salt, opslimit=opslimit, memlimit=memlimit
    )
    return hashlib.blake2b(
        header, digest_size=KEY_BYTES, key=stretched, person=labels.BACKUP_MAGIC
    ).digest()


def _limits_ok(opslimit: int, memlimit: int) -> bool:
    return (
        nacl.pwhash.argon2id.OPSLIMIT_MIN <= opslimit <= limits.KEY_FILE_MAX_OPSLIMIT
        and nacl.pwhash.argon2id.MEMLIMIT_MIN <= memlimit <= limits.KEY_FILE_MAX_MEMLIMIT
    )


def seal_backup(
    backup: Backup,
    passphrase: bytes,
    random: Random,
    *,
    opslimit: int = limits.KEY_FILE_OPSLIMIT,
    memlimit: int = limits.KEY_FILE_MEMLIMIT,
) -> bytes:
    """BACKUP_MAGIC || opslimit u64 || memlimit u64 || salt 16 || nonce 24 || secretbox(inner)."""
    if not isinstance(passphrase, bytes) or not passphrase:
        raise LocalProtocolError("a backup needs a non-empty passphrase")
    if not _limits_ok(opslimit, memlimit):
        raise LocalProtocolError("argon2id limits out of range")
    inner = pack([BACKUP_VERSION, backup.created, backup.key_file, backup.database])
    if HEADER_BYTES + len(inner) + MAC_BYTES > limits.MAX_BACKUP_BYTES:
        raise LocalProtocolError("the database is too large for one backup file")
    salt = random_bytes(random, SALT_BYTES)
    nonce = random_bytes(random, NONCE_BYTES)
    header = labels.BACKUP_MAGIC + _PARAMS.pack(opslimit, memlimit) + salt + nonce
    key = _key(passphrase, salt, opslimit, memlimit, header)
    box: bytes = nacl.bindings.crypto_secretbox_easy(inner, nonce, key)
    return header + box


def open_backup(data: bytes, passphrase: bytes) -> Backup:
    """DecodeError if it is no backup or is cut short; KeyFileError for a wrong passphrase or
    an altered file (the two cannot be told apart, by design)."""
    magic = labels.BACKUP_MAGIC
    if data[: len(magic)] != magic:
        raise DecodeError("not a Canopy backup")
    if len(data) > limits.MAX_BACKUP_BYTES:
        raise DecodeError("backup too large")
    if len(data) < HEADER_BYTES + MAC_BYTES:
        raise DecodeError("backup truncated")
    opslimit, memlimit = _PARAMS.unpack_from(data, len(magic))
    if not _limits_ok(opslimit, memlimit):
        raise DecodeError("backup header is damaged")
    salt_at = len(magic) + _PARAMS.size
    salt = data[salt_at : salt_at + SALT_BYTES]
    nonce = data[salt_at + SALT_BYTES : HEADER_BYTES]
    key = _key(passphrase, salt, opslimit, memlimit, data[:HEADER_BYTES])
    try:
        inner: bytes = nacl.bindings.crypto_secretbox_open_easy(data[HEADER_BYTES:], nonce, key)
    except nacl.exceptions.CryptoError as exc:
        raise KeyFileError("wrong passphrase, or the backup is damaged or truncated") from exc
    fields = as_list(unpack(inner, max_bytes=limits.MAX_BACKUP_BYTES), 4, "backup")
    if as_int(fields[0], "backup version") != BACKUP_VERSION:
        raise DecodeError("unsupported backup version")
    return Backup(
        created=as_int(fields[1], "backup created", 0, limits.MAX_TIMESTAMP_MS),
        key_file=as_bytes(fields[2], None, "backup key file", 4096),
        database=as_bytes(fields[3], None, "backup database"),
    )
