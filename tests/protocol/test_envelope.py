"""Sealed payloads and bodies: who can open them, what they hide, and strict rejection."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import labels, limits
from protocol.encoding import Value, pack
from protocol.envelope import (
    HEADER_BYTES,
    Body,
    open_record,
    padded_size,
    seal,
    seal_record,
    slot_count,
    unseal,
)
from protocol.errors import (
    DecodeError,
    LocalProtocolError,
    NotForUs,
    RemoteProtocolError,
    VerificationError,
)
from protocol.identity import Identity
from protocol.record import Kind, Record, Scope
from tests.strategies import SeededRandom, contents, identities, kinds, randoms, seeded

ALICE = Identity(b"\xa1" * 32)
BOB = Identity(b"\xb0" * 32)
CAROL = Identity(b"\xc0" * 32)
MALLORY = Identity(b"\x3a" * 32)
NETWORK_KEY = b"\x4e" * 32
NOW = 1_700_000_000_000
DAY = 24 * 3600 * 1000


def guide_record(**kw: object) -> Record:
    recipients = kw.get("recipients", [BOB.node_id])
    network_key = kw.get("network_key")
    assert isinstance(recipients, list)
    assert network_key is None or isinstance(network_key, bytes)
    return seal_record(
        ALICE,
        Kind.GUIDE,
        {"title": "Shelter A", "region": "KE"},
        created=NOW,
        expires=NOW + DAY,
        scope=Scope.PEERS,
        recipients=recipients,
        network_key=network_key,
        random=seeded("contact"),
    )


# Body ------------------------------------------------------------------------------------


@given(identities, kinds, st.integers(0, limits.MAX_TIMESTAMP_MS), contents)
def test_body_round_trip_and_canonical(
    identity: Identity, kind: Kind, created: int, content: dict[str, Value]
) -> None:
    body = Body.create(identity, kind, created, content)
    data = body.to_bytes()
    decoded = Body.from_bytes(data)
    assert decoded == body
    assert decoded.to_bytes() == data
    decoded.verify()
    assert decoded.signed_bytes() == labels.BODY_SIGNATURE + pack(
        [1, kind.value, identity.node_id.raw, created, content]
    )


@given(contents, st.data())
@settings(max_examples=60)
def test_body_any_mutation_rejected(content: dict[str, Value], data: st.DataObject) -> None:
    original = Body.create(ALICE, Kind.CONTACT, NOW, content).to_bytes()
    mode = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if mode == "flip":
        i = data.draw(st.integers(0, len(original) - 1))
        mutated = bytearray(original)
        mutated[i] ^= data.draw(st.integers(1, 255))
        candidate = bytes(mutated)
    elif mode == "truncate":
        candidate = original[: data.draw(st.integers(0, len(original) - 1))]
    else:
        candidate = original + data.draw(st.binary(min_size=1, max_size=8))
    with pytest.raises(RemoteProtocolError):
        Body.from_bytes(candidate).verify()


def _body_fields(content: object) -> list[object]:
    body = Body.create(ALICE, Kind.CONTACT, NOW, {"a": 1, "b": 2})
    return [1, "contact", ALICE.node_id.raw, NOW, content, body.signature]


def test_body_non_canonical_map_order_rejected() -> None:
    fields = _body_fields({"a": 1, "b": 2})
    canonical = msgpack.packb(fields, use_bin_type=True)
    Body.from_bytes(canonical)  # decodes (the signature is checked separately)
    swapped = canonical.replace(b"\xa1a\x01\xa1b\x02", b"\xa1b\x02\xa1a\x01")
    assert swapped != canonical
    with pytest.raises(DecodeError):
        Body.from_bytes(swapped)


def test_body_duplicate_keys_rejected() -> None:
    canonical = msgpack.packb(_body_fields({"a": 1, "b": 2}), use_bin_type=True)
    duplicated = canonical.replace(b"\xa1a\x01\xa1b\x02", b"\xa1a\x01\xa1a\x02")
    with pytest.raises(DecodeError):
        Body.from_bytes(duplicated)


@pytest.mark.parametrize(
    "content",
    [
        {"x": msgpack.ExtType(5, b"ext")},
        {"x": 1.0},
        {"x": float("nan")},
        {"x": msgpack.Timestamp(0)},
        {1: "non-string key"},
        [1, 2],
    ],
)
def test_body_bad_content_rejected(content: object) -> None:
    data = msgpack.packb(_body_fields(content), use_bin_type=True, datetime=False)
    with pytest.raises(DecodeError):
        Body.from_bytes(data)


def test_body_depth_bomb_rejected() -> None:
    bomb: object = 1
    for _ in range(limits.MAX_DEPTH):
        bomb = {"x": bomb}
    data = msgpack.packb(_body_fields(bomb), use_bin_type=True)
    with pytest.raises(DecodeError):
        Body.from_bytes(data)


# Sealed payloads ----------------------------------------------------------------------------


@given(st.binary(max_size=2000), randoms, st.integers(1, 9), st.booleans())
@settings(max_examples=40, deadline=None)
def test_seal_round_trip_for_every_reader(
    plaintext: bytes, random: SeededRandom, n: int, with_network: bool
) -> None:
    readers = [Identity(bytes([i + 1]) * 32) for i in range(n)]
    network_key = NETWORK_KEY if with_network else None
    sealed = seal(plaintext, [r.node_id for r in readers], network_key, random)
    slots = slot_count(n + with_network)
    assert len(sealed) == HEADER_BYTES + 48 * slots + 16 + padded_size(len(plaintext))
    for reader in readers:
        assert unseal(sealed, reader, None) == plaintext
    if with_network:
        assert unseal(sealed, CAROL, NETWORK_KEY) == plaintext


def test_non_recipient_cannot_open() -> None:
    sealed = seal(b"for bob", [BOB.node_id], NETWORK_KEY, seeded("s"))
    with pytest.raises(NotForUs):
        unseal(sealed, CAROL, None)
    with pytest.raises(NotForUs):
        unseal(sealed, CAROL, b"\x00" * 32)  # another network's key
    with pytest.raises(NotForUs):
        open_record(guide_record(), CAROL, NETWORK_KEY)


def test_network_key_holder_can_open() -> None:
    record = guide_record(recipients=[], network_key=NETWORK_KEY)
    body = open_record(record, CAROL, NETWORK_KEY)
    assert body.content["title"] == "Shelter A"
    assert body.author == ALICE.node_id


def test_author_can_always_open_own_record() -> None:
    assert open_record(guide_record(), ALICE, None).content["region"] == "KE"
    assert open_record(guide_record(), BOB, None).kind is Kind.GUIDE


def test_recipients_not_in_clear() -> None:
    readers = [BOB, CAROL, MALLORY]
    record = seal_record(
        ALICE,
        Kind.GUIDE,
        {"title": "t"},
        created=NOW,
        expires=NOW + DAY,
        scope=Scope.NETWORK,
        recipients=[r.node_id for r in readers],
        network_key=NETWORK_KEY,
        random=seeded("clear"),
    )
    sealed = record.payload
    for reader in readers:
        for key in (reader.node_id.raw, reader.node_id.x25519()):
            for i in range(0, 32 - 8 + 1, 4):  # no 8-byte window of any recipient key
                assert key[i : i + 8] not in sealed
        assert str(reader.node_id).encode() not in record.to_bytes()
    assert NETWORK_KEY[:8] not in sealed


def test_slot_count_hides_recipient_count() -> None:
    one = seal(b"x", [BOB.node_id], None, seeded("1"))
    three = seal(b"x", [BOB.node_id, CAROL.node_id, ALICE.node_id], NETWORK_KEY, seeded("3"))
    assert len(one) == len(three)
    assert slot_count(1) == limits.MIN_RECIPIENT_SLOTS
    assert slot_count(5) == 8


def test_padding_hides_length() -> None:
    short = seal(b"a", [BOB.node_id], None, seeded("p1"))
    longer = seal(b"a" * (limits.MIN_PAD_BUCKET - 4), [BOB.node_id], None, seeded("p2"))
    assert len(short) == len(longer)
    bigger = seal(b"a" * (limits.MIN_PAD_BUCKET - 3), [BOB.node_id], None, seeded("p3"))
    assert len(bigger) == len(short) + limits.MIN_PAD_BUCKET


def test_duplicate_recipients_share_one_slot() -> None:
    sealed = seal(b"x", [BOB.node_id] * 5, None, seeded("d"))
    assert len(sealed) == len(seal(b"x", [BOB.node_id], None, seeded("d")))


def test_seal_is_fresh_each_time() -> None:
    random = seeded("fresh")
    a = seal(b"same", [BOB.node_id], None, random)
    b = seal(b"same", [BOB.node_id], None, random)
    assert a != b
    assert a[1:25] != b[1:25]  # nonce
    assert a[25:57] != b[25:57]  # ephemeral key


def test_seal_needs_a_reader() -> None:
    with pytest.raises(LocalProtocolError):
        seal(b"x", [], None, seeded("n"))
    with pytest.raises(LocalProtocolError):
        seal(b"x", [BOB.node_id], b"short", seeded("n"))


@given(st.data())
@settings(max_examples=150, deadline=None)
def test_sealed_any_mutation_rejected(data: st.DataObject) -> None:
    original = seal(b"secret text", [BOB.node_id, CAROL.node_id], NETWORK_KEY, seeded("m"))
    mode = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if mode == "flip":
        i = data.draw(st.integers(0, len(original) - 1))
        mutated = bytearray(original)
        mutated[i] ^= data.draw(st.integers(1, 255))
        candidate = bytes(mutated)
    elif mode == "truncate":
        candidate = original[: data.draw(st.integers(0, len(original) - 1))]
    else:
        candidate = original + data.draw(st.binary(min_size=1, max_size=64))
    readers = [(BOB, None), (CAROL, NETWORK_KEY), (BOB, NETWORK_KEY)]
    reader, key = data.draw(st.sampled_from(readers))
    # A slot we cannot open is indistinguishable from a slot for someone else: NotForUs.
    with pytest.raises((RemoteProtocolError, NotForUs)):
        unseal(candidate, reader, key)


def test_altering_a_foreign_slot_breaks_the_body() -> None:
    sealed = seal(b"x", [BOB.node_id], None, seeded("foreign"))
    # Every slot is either Bob's or filler; altering any one either loses Bob's slot
    # (NotForUs) or, for the others, must still be caught by the body box.
    outcomes = set()
    for slot in range(limits.MIN_RECIPIENT_SLOTS):
        mutated = bytearray(sealed)
        mutated[HEADER_BYTES + 48 * slot] ^= 1
        try:
            unseal(bytes(mutated), BOB, None)
        except (VerificationError, NotForUs) as exc:
            outcomes.add(type(exc))
    assert outcomes == {VerificationError, NotForUs}


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda s: b"\x02" + s[1:], id="version"),
        pytest.param(lambda s: s[:57] + b"\x00\x03" + s[59:], id="slot-count-not-pow2"),
        pytest.param(lambda s: s[:57] + b"\x00\x02" + s[59:], id="slot-count-too-small"),
        pytest.param(lambda s: s[:57] + b"\x08\x00" + s[59:], id="slot-count-too-big"),
        pytest.param(lambda s: s[:-1], id="body-not-bucket"),
        pytest.param(lambda s: s[:HEADER_BYTES], id="no-slots"),
        pytest.param(lambda s: s[:10], id="short-header"),
        pytest.param(lambda s: b"", id="empty"),
    ],
)
def test_malformed_sealed_is_decode_error(edit: object) -> None:
    sealed = seal(b"x", [BOB.node_id], None, seeded("mal"))
    assert callable(edit)
    with pytest.raises(DecodeError):
        unseal(edit(sealed), BOB, None)


def test_open_record_rejects_body_of_other_author_or_kind() -> None:
    # Mallory wraps Alice's signed body in her own record: the body verifies, but does
    # not belong to this record.
    alice_body = Body.create(ALICE, Kind.CONTACT, NOW, {"name": "x"})
    sealed = seal(alice_body.to_bytes(), [BOB.node_id], None, seeded("wrap"))
    record = Record.create(
        MALLORY, Kind.CONTACT, created=NOW, expires=NOW + DAY, scope=Scope.PEERS, payload=sealed
    )
    with pytest.raises(VerificationError):
        open_record(record, BOB, None)
    other_kind = Record.create(
        ALICE, Kind.VOUCH, created=NOW, expires=NOW + DAY, scope=Scope.PEERS, payload=sealed
    )
    with pytest.raises(VerificationError):
        open_record(other_kind, BOB, None)


def test_open_record_rejects_forged_body() -> None:
    body = Body.create(ALICE, Kind.CONTACT, NOW, {"name": "x"})
    forged = Body(body.kind, body.author, body.created, {"name": "y"}, body.signature)
    sealed = seal(forged.to_bytes(), [BOB.node_id], None, seeded("forged"))
    record = Record.create(
        ALICE, Kind.CONTACT, created=NOW, expires=NOW + DAY, scope=Scope.PEERS, payload=sealed
    )
    with pytest.raises(VerificationError):
        open_record(record, BOB, None)


def test_resealed_body_still_proves_its_author() -> None:
    # Bob re-shares Alice's body to Carol inside a sealed payload of his own.
    body = open_record(guide_record(), BOB, None)
    resealed = seal(body.to_bytes(), [CAROL.node_id], None, seeded("reshare"))
    again = Body.from_bytes(unseal(resealed, CAROL, None))
    again.verify()
    assert again.author == ALICE.node_id
