"""The one decoder of the record and Body layouts, on its trusting path: `stored_fields`,
`Record.from_stored` and `envelope.open_stored` read what the node's own store holds.

They agree with the strict path on every valid record, skip only the canonical
re-encoding check (what they trust), and on damaged bytes raise DecodeError, never
another exception."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.contact import Contact, Share
from protocol.envelope import Body, open_record, open_stored, seal, seal_record
from protocol.errors import DecodeError, NotForUs, RemoteProtocolError, VerificationError
from protocol.identity import Identity
from protocol.record import Kind, Record, RecordFields, Scope, stored_fields
from tests.strategies import SeededRandom, records

ALICE = Identity(b"\xa1" * 32)
BOB = Identity(b"\xb0" * 32)
NETWORK_KEY = b"\x4e" * 32
NOW = 1_700_000_000_000


CONTACT = Contact(b"\x07" * 16, Share.NETWORK, "lawyer", "KE-28", ("sw",), name="Wakili")


def _sealed(scope: Scope = Scope.NETWORK) -> Record:
    return seal_record(
        ALICE, Kind.CONTACT, CONTACT.to_content(), created=NOW,
        expires=NOW + 10**9, scope=scope, recipients=[BOB.node_id], network_key=NETWORK_KEY,
        random=SeededRandom(b"stored"),
    )  # fmt: skip


@given(records())
def test_stored_fields_agree_with_the_strict_decoder(record: Record) -> None:
    data = record.to_bytes()
    strict = Record.from_bytes(data)
    fields = stored_fields(data)
    assert fields == RecordFields(
        strict.kind, strict.author.raw, strict.created, strict.expires, strict.scope,
        strict.payload, strict.signature,
    )  # fmt: skip
    stored = Record.from_stored(data)
    assert stored == strict
    assert stored.to_bytes() == data and stored.id == strict.id
    stored.verify()


def test_only_the_canonical_check_is_skipped() -> None:
    """A valid record re-encoded non-canonically (a small int as uint64): the strict
    decoder refuses it, the trusting one reads the same fields."""
    record = _sealed()
    fields = stored_fields(record.to_bytes())
    head = [1, "contact", fields.author, fields.created, fields.expires]
    loose = b"\x98" + msgpack.packb(head)[1:] + b"\xcf" + int(fields.scope).to_bytes(8, "big")
    loose += msgpack.packb(fields.payload) + msgpack.packb(fields.signature)
    with pytest.raises(DecodeError):
        Record.from_bytes(loose)
    assert stored_fields(loose) == fields


@given(st.binary(max_size=300))
def test_damaged_bytes_raise_decode_error_only(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        stored_fields(data)


@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_any_mutation_raises_decode_error_or_reads_fields(at: int, byte: int) -> None:
    data = bytearray(_sealed().to_bytes())
    data[at % len(data)] = byte
    try:
        fields = stored_fields(bytes(data))
    except DecodeError:
        return
    assert isinstance(fields.kind, Kind) and len(fields.author) == 32


def test_a_field_of_the_wrong_shape_is_refused() -> None:
    fields = stored_fields(_sealed().to_bytes())
    good = [1, "contact", fields.author, fields.created, fields.expires, 1, fields.payload]
    for bad in (
        [2, *good[1:]],  # version
        [1, "letter", *good[2:]],  # kind
        [*good[:2], b"short", *good[3:]],  # author
        [*good[:3], True, *good[4:]],  # created as a bool
        [*good[:3], fields.expires, fields.created, *good[5:]],  # expires before created
        [*good[:5], 7, good[6]],  # scope
    ):
        with pytest.raises(DecodeError):
            stored_fields(msgpack.packb([*bad, fields.signature]))
    with pytest.raises(DecodeError):
        stored_fields(msgpack.packb(good))  # no signature


def test_open_stored_agrees_with_open_record() -> None:
    record = _sealed()
    fields = stored_fields(record.to_bytes())
    strict = open_record(record, BOB, None)
    for identity, key in ((BOB, None), (ALICE, None), (BOB, NETWORK_KEY)):
        body = open_stored(fields, identity, key)
        assert Body(body.kind, record.author, body.created, body.content, body.signature) == (
            strict
        )
    with pytest.raises(NotForUs):
        open_stored(fields, Identity(b"\x99" * 32), None)


def test_open_stored_refuses_a_body_that_is_not_its_records() -> None:
    """The record signature binds the sealed payload, not what it says: a body of another
    date inside a validly signed record is a VerificationError, as on the strict path."""
    body = Body.create(ALICE, Kind.CONTACT, NOW - 1, {"name": "Wakili"})
    payload = seal(body.to_bytes(), [BOB.node_id], None, SeededRandom(b"x"))
    record = Record.create(
        ALICE, Kind.CONTACT, created=NOW, expires=NOW + 10**9, scope=Scope.PEERS, payload=payload
    )
    with pytest.raises(VerificationError):
        open_stored(stored_fields(record.to_bytes()), BOB, None)
    with pytest.raises(VerificationError):
        open_record(record, BOB, None)


def test_open_stored_refuses_a_payload_that_is_not_a_body() -> None:
    payload = seal(b"\x92\x01\x02", [BOB.node_id], None, SeededRandom(b"y"))
    record = Record.create(
        ALICE, Kind.CONTACT, created=NOW, expires=NOW + 10**9, scope=Scope.PEERS, payload=payload
    )
    with pytest.raises(RemoteProtocolError):
        open_stored(stored_fields(record.to_bytes()), BOB, None)
