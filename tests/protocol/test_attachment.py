"""Attachments in the protocol: chunk payloads, the manifest in a guide, withdrawal tags,
and the published vectors (docs/spec/85-attachments.md)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from protocol import limits
from protocol.attachment import (
    HEADER_BYTES,
    Attachment,
    attachments_of,
    chunk_count,
    chunk_header,
    chunk_key,
    open_chunk,
    seal_chunk,
    tag_of,
)
from protocol.content import Guide
from protocol.conversation import check_record
from protocol.encoding import pack, unpack
from protocol.errors import DecodeError, LocalProtocolError, RecordRejected
from protocol.identity import Identity
from protocol.lifecycle import Withdrawal
from protocol.record import Kind, Record, Scope

AUTHOR = Identity(bytes(range(32)))
OTHER = Identity(bytes(range(1, 33)))
NOW = 1_760_000_000_000
FULL = limits.ATTACHMENT_CHUNK_BYTES
VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "vectors" / "attachment.json").read_text()
)


def _chunk_records(data: bytes, key: bytes, tag: bytes) -> list[Record]:
    return [
        Record.create(
            AUTHOR,
            Kind.CHUNK,
            created=NOW,
            expires=NOW + 1000,
            scope=Scope.NETWORK,
            payload=seal_chunk(key, tag, i, data[i * FULL : (i + 1) * FULL]),
        )
        for i in range(chunk_count(len(data)))
    ]


def _attachment(data: bytes) -> tuple[Attachment, list[Record]]:
    key, tag = os.urandom(32), os.urandom(16)
    records = _chunk_records(data, key, tag)
    return Attachment(
        "a.bin", "application/octet-stream", len(data), key, tag, tuple(r.id for r in records)
    ), records


def test_chunks_of_an_attachment_open_back_to_the_file_in_order() -> None:
    data = os.urandom(2 * FULL + 17)
    attachment, records = _attachment(data)
    assert len(records) == 3
    opened = b"".join(open_chunk(attachment, i, r.id, r.payload) for i, r in enumerate(records))
    assert opened == data


def test_a_chunk_record_is_checked_by_a_relay_without_any_key() -> None:
    _, records = _attachment(os.urandom(100))
    assert check_record(records[0].to_bytes(), None, NOW, OTHER.node_id).kind is Kind.CHUNK
    header = chunk_header(records[0].payload)
    assert header.number == 0 and header.sealed_bytes == 100 + 16


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x01" + b"\x00" * (HEADER_BYTES + 15),  # no room for a MAC and one byte
        b"\x02" + b"\x00" * 60,  # unknown version
        b"\x01" + b"\x00" * 16 + (2**32 - 1).to_bytes(4, "big") + b"\x00" * 40,  # index
        b"\x01" + b"\x00" * (HEADER_BYTES - 1 + FULL + 17),  # longer than a chunk
    ],
)
def test_a_malformed_chunk_payload_is_a_decode_error_on_ingest(payload: bytes) -> None:
    record = Record.create(
        AUTHOR,
        Kind.CHUNK,
        created=NOW,
        expires=NOW + 1000,
        scope=Scope.NETWORK,
        payload=payload,
    )
    with pytest.raises(DecodeError):
        check_record(record.to_bytes(), None, NOW, OTHER.node_id)
    assert tag_of(payload) is None


def test_a_tampered_chunk_ciphertext_does_not_open() -> None:
    attachment, records = _attachment(os.urandom(1000))
    payload = bytearray(records[0].payload)
    payload[-1] ^= 1
    with pytest.raises(DecodeError):
        open_chunk(attachment, 0, records[0].id, bytes(payload))


def test_a_chunk_not_named_by_the_manifest_or_out_of_place_is_refused() -> None:
    data = os.urandom(FULL + 5)
    attachment, records = _attachment(data)
    with pytest.raises(RecordRejected):  # right bytes, wrong place in the manifest
        open_chunk(attachment, 1, records[0].id, records[0].payload)
    with pytest.raises(RecordRejected):  # a record the manifest does not name
        open_chunk(attachment, 0, b"\x00" * 32, records[0].payload)
    _, other_records = _attachment(data)
    forged = Attachment(
        attachment.name,
        attachment.type,
        attachment.size,
        attachment.key,
        attachment.tag,
        (other_records[0].id, attachment.chunks[1]),
    )
    with pytest.raises(RecordRejected):  # named, but it carries another attachment's tag
        open_chunk(forged, 0, other_records[0].id, other_records[0].payload)
    short = Attachment(
        attachment.name,
        attachment.type,
        FULL + 4,
        attachment.key,
        attachment.tag,
        attachment.chunks,
    )
    with pytest.raises(RecordRejected):  # the decrypted length must be the manifest's
        open_chunk(short, 1, records[1].id, records[1].payload)


def test_chunk_keys_differ_per_index_and_tag() -> None:
    key = os.urandom(32)
    tag = os.urandom(16)
    keys = {chunk_key(key, tag, i) for i in range(4)} | {chunk_key(key, os.urandom(16), 0)}
    assert len(keys) == 5


def test_sealing_an_oversized_or_empty_chunk_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        seal_chunk(os.urandom(32), os.urandom(16), 0, b"")
    with pytest.raises(LocalProtocolError):
        seal_chunk(os.urandom(32), os.urandom(16), 0, b"x" * (FULL + 1))


def _guide(attachments: list[object]) -> dict[str, object]:
    return {"title": "t", "attachments": attachments}


def test_a_guide_carries_its_manifest_strictly_checked() -> None:
    attachment, _ = _attachment(os.urandom(FULL * 2))
    guide = Guide.from_content(_guide([attachment.to_content()]))  # type: ignore[arg-type]
    assert guide.attachments == (attachment,)
    assert Guide.from_content({"title": "t"}).attachments == ()


@pytest.mark.parametrize(
    ("change", "value"),
    [
        ("name", "../etc/passwd"),
        ("name", "a\\b"),
        ("name", "bell\x07"),
        ("name", ""),
        ("name", ".."),
        ("name", "n" * (limits.MAX_ATTACHMENT_NAME_BYTES + 1)),
        ("size", -1),
        ("size", limits.MAX_ATTACHMENT_BYTES + 1),
        ("size", FULL * 3),  # three chunks by size, two named
        ("key", b"\x00" * 31),
        ("tag", b"\x00" * 17),
        ("chunks", [b"\x00" * 32, b"\x00" * 32]),  # the same chunk twice
        ("type", 7),
        ("extra", 1),
    ],
)
def test_a_manifest_entry_breaking_the_schema_makes_the_guide_unreadable(
    change: str, value: object
) -> None:
    attachment, _ = _attachment(os.urandom(FULL * 2))
    entry = attachment.to_content()
    entry[change] = value  # type: ignore[assignment]
    with pytest.raises(DecodeError):
        Guide.from_content(_guide([entry]))  # type: ignore[arg-type]


def test_attachment_names_and_tags_in_one_guide_are_distinct_and_bounded() -> None:
    a, _ = _attachment(os.urandom(10))
    twin = Attachment(a.name, a.type, a.size, os.urandom(32), os.urandom(16), a.chunks)
    with pytest.raises(DecodeError):
        attachments_of([a.to_content(), twin.to_content()])
    empty = [
        Attachment(f"f{i}", "", 0, os.urandom(32), os.urandom(16), ()).to_content()
        for i in range(limits.MAX_GUIDE_ATTACHMENTS + 1)
    ]
    with pytest.raises(DecodeError):
        attachments_of(empty)  # type: ignore[arg-type]
    assert len(attachments_of(empty[:-1])) == limits.MAX_GUIDE_ATTACHMENTS  # type: ignore[arg-type]


def test_a_withdrawal_carries_attachment_tags_and_round_trips() -> None:
    tags = (os.urandom(16), os.urandom(16))
    w = Withdrawal((os.urandom(32),), None, tags)
    assert Withdrawal.from_payload(w.to_payload()) == w
    plain = Withdrawal((os.urandom(32),))
    assert b"tags" not in plain.to_payload()  # a withdrawal without tags encodes as before
    with pytest.raises(LocalProtocolError):
        Withdrawal((os.urandom(32),), None, (b"\x00" * 15,))
    with pytest.raises(LocalProtocolError):
        Withdrawal((os.urandom(32),), None, (tags[0], tags[0]))
    with pytest.raises(DecodeError):
        Withdrawal.from_payload(pack({"targets": [os.urandom(32)], "tags": []}))
    with pytest.raises(DecodeError):
        Withdrawal.from_payload(pack({"targets": [os.urandom(32)], "tags": [b"short"]}))


# The published vectors (docs/vectors/attachment.json) -----------------------------------


def test_attachment_vectors_open_and_their_records_are_reproduced() -> None:
    author = Identity(bytes.fromhex(VECTORS["author_seed"]))
    key = bytes.fromhex(VECTORS["attachment_key"])
    tag = bytes.fromhex(VECTORS["attachment_tag"])
    blocks = (
        hashlib.blake2b(i.to_bytes(8, "big")).digest() for i in range(VECTORS["size"] // 64 + 1)
    )
    data = b"".join(blocks)[: VECTORS["size"]]
    entry = unpack(bytes.fromhex(VECTORS["manifest_entry"]))
    attachment = Attachment.from_content(entry)
    assert (attachment.key, attachment.tag, attachment.size) == (key, tag, len(data))
    out = b""
    for case in VECTORS["chunks"]:
        i = case["index"]
        assert chunk_key(key, tag, i).hex() == case["chunk_key"]
        payload = seal_chunk(key, tag, i, data[i * FULL : (i + 1) * FULL])
        assert payload[:64].hex() == case["payload_head"]
        assert hashlib.blake2b(payload, digest_size=32).hexdigest() == case["payload_blake2b"]
        record = Record.create(
            author,
            Kind.CHUNK,
            created=VECTORS["created"],
            expires=VECTORS["expires"],
            scope=Scope.NETWORK,
            payload=payload,
        )
        assert record.id.hex() == case["record_id"] == attachment.chunks[i].hex()
        out += open_chunk(attachment, i, record.id, payload)
    assert out == data
    withdrawal = Withdrawal.from_payload(bytes.fromhex(VECTORS["withdrawal_payload"]))
    assert withdrawal.tags == (tag,)


def test_attachment_vectors_are_fresh() -> None:
    script = Path(__file__).resolve().parents[2] / "docs/vectors/make_attachment_vectors.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
