"""Regenerate docs/vectors/attachment.json: a three-chunk attachment (two full chunks and a
short last one), its chunk record payloads and ids, the manifest entry a guide carries, and
the withdrawal payload that purges it.

Deterministic: randomness is the SeededRandom of docs/spec/10-identity-records.md, and the
plaintext is BLAKE2b-512 blocks of a counter.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from make_vectors import SeededRandom, write_or_check  # (puts the repo root on sys.path)

from protocol import limits
from protocol.attachment import (
    Attachment,
    chunk_count,
    chunk_key,
    new_attachment_secrets,
    seal_chunk,
)
from protocol.encoding import pack
from protocol.identity import Identity
from protocol.lifecycle import Withdrawal
from protocol.record import Kind, Record, Scope

OUT = Path(__file__).with_name("attachment.json")
AUTHOR_SEED = bytes(range(32))
CREATED = 1_760_000_000_000
EXPIRES = CREATED + limits.DEFAULT_GUIDE_LIFETIME_MS
SIZE = 2 * limits.ATTACHMENT_CHUNK_BYTES + 1000


def plaintext(size: int) -> bytes:
    """BLAKE2b-512(u64 BE counter) blocks, counter from 0, cut to `size` bytes."""
    blocks = (hashlib.blake2b(i.to_bytes(8, "big")).digest() for i in range(size // 64 + 1))
    return b"".join(blocks)[:size]


def cases() -> dict[str, object]:
    author = Identity(AUTHOR_SEED)
    key, tag = new_attachment_secrets(SeededRandom(b"attachment-vectors"))
    data = plaintext(SIZE)
    full = limits.ATTACHMENT_CHUNK_BYTES
    chunks = []
    ids = []
    for index in range(chunk_count(SIZE)):
        payload = seal_chunk(key, tag, index, data[index * full : (index + 1) * full])
        record = Record.create(
            author,
            Kind.CHUNK,
            created=CREATED,
            expires=EXPIRES,
            scope=Scope.NETWORK,
            payload=payload,
        )
        ids.append(record.id)
        chunks.append(
            {
                "index": index,
                "chunk_key": chunk_key(key, tag, index).hex(),
                "plaintext_blake2b": hashlib.blake2b(
                    data[index * full : (index + 1) * full], digest_size=32
                ).hexdigest(),
                "payload_head": payload[:64].hex(),
                "payload_blake2b": hashlib.blake2b(payload, digest_size=32).hexdigest(),
                "payload_bytes": len(payload),
                "record_id": record.id.hex(),
            }
        )
    manifest = Attachment("map.bin", "application/octet-stream", SIZE, key, tag, tuple(ids))
    withdrawal = Withdrawal((b"\x11" * 32,), None, (tag,))
    return {
        "author_seed": AUTHOR_SEED.hex(),
        "created": CREATED,
        "expires": EXPIRES,
        "size": SIZE,
        "plaintext": "BLAKE2b-512(u64 BE counter) blocks from 0, cut to size",
        "attachment_key": key.hex(),
        "attachment_tag": tag.hex(),
        "chunks": chunks,
        "manifest_entry": pack(manifest.to_content()).hex(),
        "withdrawal_payload": withdrawal.to_payload().hex(),
    }


def main() -> int:
    return write_or_check(OUT, cases())


if __name__ == "__main__":
    raise SystemExit(main())
