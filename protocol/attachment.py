"""Attachments: a file split into `chunk` records, and the manifest a guide's Body carries.

Owns the chunk payload layout, the per-chunk key, sealing and opening one chunk, and the
manifest entry (`Attachment`) that `protocol.content.Guide` holds (docs/spec/85-attachments.md).
A chunk record's payload is public except for its ciphertext: a relay that cannot read the
guide still checks the layout, stores the chunk and purges it by its attachment tag when the
guide is withdrawn. Only a reader of the guide has the attachment key that opens it.
Pure: randomness comes in as `random`, nothing here touches a file.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import NamedTuple

import nacl.bindings
import nacl.exceptions

from protocol import labels, limits
from protocol.encoding import Value, as_bytes, as_int, as_list, as_map, as_str, check_keys
from protocol.errors import DecodeError, LocalProtocolError, RecordRejected
from protocol.identity import Random, random_bytes

CHUNK_VERSION = 1
TAG_BYTES = 16
KEY_BYTES = 32
MAC_BYTES = 16
_INDEX = struct.Struct(">I")
HEADER_BYTES = 1 + TAG_BYTES + _INDEX.size  # version, attachment tag, index
# Each chunk key seals exactly one chunk, so the nonce is fixed (all zero).
_NONCE = b"\x00" * 24
_REQUIRED = frozenset({"name", "type", "size", "key", "tag", "chunks"})
_FORBIDDEN_IN_NAMES = frozenset("/\\\x00")


class ChunkHeader(NamedTuple):
    """The cleartext part of a chunk payload."""

    tag: bytes
    number: int  # the chunk's index within its attachment
    sealed_bytes: int  # the length of the ciphertext (MAC included)


def chunk_count(size: int) -> int:
    """How many chunks an attachment of `size` bytes has (0 for an empty file)."""
    return -(-size // limits.ATTACHMENT_CHUNK_BYTES)


def chunk_length(size: int, index: int) -> int:
    """The plaintext length of chunk `index` of an attachment of `size` bytes."""
    full = limits.ATTACHMENT_CHUNK_BYTES
    return min(full, size - index * full)


def chunk_key(attachment_key: bytes, tag: bytes, index: int) -> bytes:
    """The key of one chunk: BLAKE2b-256 keyed by the attachment key, over tag || u32 index,
    personalised ATTACHMENT_CHUNK."""
    if len(attachment_key) != KEY_BYTES or len(tag) != TAG_BYTES:
        raise LocalProtocolError("attachment key is 32 bytes, tag 16")
    return hashlib.blake2b(
        tag + _INDEX.pack(index),
        key=attachment_key,
        person=labels.ATTACHMENT_CHUNK,
        digest_size=KEY_BYTES,
    ).digest()


def seal_chunk(attachment_key: bytes, tag: bytes, index: int, plaintext: bytes) -> bytes:
    """A chunk record's payload: version || tag || u32 index || secretbox(plaintext)."""
    if not 0 < len(plaintext) <= limits.ATTACHMENT_CHUNK_BYTES:
        raise LocalProtocolError("a chunk holds 1..ATTACHMENT_CHUNK_BYTES bytes")
    if not 0 <= index < limits.MAX_ATTACHMENT_CHUNKS:
        raise LocalProtocolError("chunk index out of range")
    key = chunk_key(attachment_key, tag, index)
    box = nacl.bindings.crypto_secretbox_easy(plaintext, _NONCE, key)
    return bytes([CHUNK_VERSION]) + tag + _INDEX.pack(index) + box


def chunk_header(payload: bytes) -> ChunkHeader:
    """Check a chunk payload's layout without any key (what every relay checks); DecodeError."""
    if not isinstance(payload, bytes) or len(payload) <= HEADER_BYTES + MAC_BYTES:
        raise DecodeError("chunk payload too short")
    sealed = len(payload) - HEADER_BYTES
    if sealed > limits.ATTACHMENT_CHUNK_BYTES + MAC_BYTES:
        raise DecodeError("chunk payload too long")
    if payload[0] != CHUNK_VERSION:
        raise DecodeError("unknown chunk version")
    (index,) = _INDEX.unpack_from(payload, 1 + TAG_BYTES)
    if index >= limits.MAX_ATTACHMENT_CHUNKS:
        raise DecodeError("chunk index out of range")
    return ChunkHeader(payload[1 : 1 + TAG_BYTES], index, sealed)


def tag_of(payload: bytes) -> bytes | None:
    """The attachment tag of a chunk payload, or None if it is not a well-formed one."""
    try:
        return chunk_header(payload).tag
    except DecodeError:
        return None


def _check_name(name: str) -> str:
    if not name.strip() or name in (".", ".."):
        raise DecodeError("attachment name is empty")
    if any(c in _FORBIDDEN_IN_NAMES or ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise DecodeError("attachment name holds a path separator or control character")
    return name


@dataclass(frozen=True, slots=True)
class Attachment:
    """One attachment as a guide's Body names it: the manifest of its chunk records."""

    name: str
    type: str
    size: int
    key: bytes
    tag: bytes
    chunks: tuple[bytes, ...]

    def to_content(self) -> dict[str, Value]:
        return {
            "name": self.name,
            "type": self.type,
            "size": self.size,
            "key": self.key,
            "tag": self.tag,
            "chunks": list(self.chunks),
        }

    @classmethod
    def from_content(cls, value: Value) -> Attachment:
        """Strictly check one manifest entry (DecodeError names the first bad field)."""
        entry = as_map(value, "attachment")
        check_keys(entry, _REQUIRED, frozenset(), "attachment")
        most = limits.MAX_ATTACHMENT_NAME_BYTES
        name = _check_name(as_str(entry["name"], "attachment name", most))
        kind = as_str(entry["type"], "attachment type", limits.MAX_GUIDE_FIELD_BYTES)
        size = as_int(entry["size"], "attachment size", 0, limits.MAX_ATTACHMENT_BYTES)
        key = as_bytes(entry["key"], KEY_BYTES, "attachment key")
        tag = as_bytes(entry["tag"], TAG_BYTES, "attachment tag")
        raw = as_list(entry["chunks"], what="attachment chunks")
        if len(raw) != chunk_count(size):
            raise DecodeError("attachment chunk count does not match its size")
        chunks = tuple(as_bytes(c, 32, "chunk id") for c in raw)
        if len(set(chunks)) != len(chunks):
            raise DecodeError("attachment names a chunk twice")
        return cls(name, kind, size, key, tag, chunks)


def attachments_of(value: Value) -> tuple[Attachment, ...]:
    """A guide's `attachments` list, strictly checked: bounded in number and in chunks,
    names and tags distinct (DecodeError)."""
    raw = as_list(value, what="attachments")
    if len(raw) > limits.MAX_GUIDE_ATTACHMENTS:
        raise DecodeError("too many attachments")
    out = tuple(Attachment.from_content(item) for item in raw)
    if sum(len(a.chunks) for a in out) > limits.MAX_GUIDE_ATTACHMENT_CHUNKS:
        raise DecodeError("attachments have too many chunks in all")
    if len({a.name for a in out}) != len(out) or len({a.tag for a in out}) != len(out):
        raise DecodeError("attachment names and tags must be distinct")
    return out


def new_attachment_secrets(random: Random) -> tuple[bytes, bytes]:
    """A fresh (attachment key, attachment tag)."""
    return random_bytes(random, KEY_BYTES), random_bytes(random, TAG_BYTES)


def open_chunk(attachment: Attachment, index: int, record_id: bytes, payload: bytes) -> bytes:
    """The plaintext of chunk `index` of `attachment`, from a chunk record with that id and
    payload. RecordRejected if the record is not the one the manifest names, or its tag,
    index or length differ; DecodeError if the layout is wrong or the ciphertext fails."""
    if not 0 <= index < len(attachment.chunks) or attachment.chunks[index] != record_id:
        raise RecordRejected("chunk record is not the one the manifest names")
    header = chunk_header(payload)
    if header.tag != attachment.tag or header.number != index:
        raise RecordRejected("chunk belongs to another attachment or place")
    if header.sealed_bytes - MAC_BYTES != chunk_length(attachment.size, index):
        raise RecordRejected("chunk length does not match the manifest")
    key = chunk_key(attachment.key, attachment.tag, index)
    try:
        return nacl.bindings.crypto_secretbox_open_easy(payload[HEADER_BYTES:], _NONCE, key)
    except nacl.exceptions.CryptoError:
        raise DecodeError("chunk does not open under its key") from None
