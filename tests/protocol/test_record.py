"""Records: round trip, canonical uniqueness, strict rejection, signatures and time checks."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import labels, limits
from protocol.encoding import pack
from protocol.envelope import Body, open_record, seal, unseal
from protocol.errors import (
    CanopyError,
    DecodeError,
    LocalProtocolError,
    RecordRejected,
    RemoteProtocolError,
    VerificationError,
)
from protocol.identity import Identity, NodeId, open_key_file
from protocol.invite import Invite
from protocol.record import Kind, Record, Scope
from tests.strategies import SeededRandom, records

ALICE = Identity(b"\xa1" * 32)
MALLORY = Identity(b"\x3a" * 32)
NOW = 1_700_000_000_000
DAY = 24 * 3600 * 1000


def make(payload: bytes = b"payload", **kw: int) -> Record:
    created = kw.get("created", NOW)
    return Record.create(
        ALICE,
        Kind.GUIDE,
        created=created,
        expires=kw.get("expires", created + DAY),
        scope=Scope.NETWORK,
        payload=payload,
    )


def raw_fields(record: Record) -> list[object]:
    return [
        1,
        record.kind.value,
        record.author.raw,
        record.created,
        record.expires,
        int(record.scope),
        record.payload,
        record.signature,
    ]


@given(records())
def test_round_trip_and_canonical_uniqueness(record: Record) -> None:
    data = record.to_bytes()
    decoded = Record.from_bytes(data)
    assert decoded == record
    assert decoded.to_bytes() == data
    assert decoded.id == record.id == hashlib.blake2b(data, digest_size=32).digest()
    decoded.verify()
    # The cached encoding equals a fresh one.
    assert pack(raw_fields(record)) == data


@given(records())
def test_signed_bytes_follow_the_spec(record: Record) -> None:
    spec = labels.RECORD_SIGNATURE + pack(raw_fields(record)[:7])
    assert record.signed_bytes() == spec
    record.author.verify(spec, record.signature)


@given(records(), st.data())
def test_any_mutation_rejected(record: Record, data: st.DataObject) -> None:
    original = record.to_bytes()
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
        Record.from_bytes(candidate).verify()


def test_forged_signature_rejected() -> None:
    record = make()
    forged = Record(
        record.kind,
        record.author,
        record.created,
        record.expires,
        record.scope,
        record.payload,
        MALLORY.sign(record.signed_bytes()),
    )
    with pytest.raises(VerificationError):
        Record.from_bytes(forged.to_bytes()).verify()


def test_resigned_copy_by_other_author_has_other_id_and_fails_as_original() -> None:
    original = make(b"Alice's guide")
    copy = Record.create(
        MALLORY,
        original.kind,
        created=original.created,
        expires=original.expires,
        scope=original.scope,
        payload=original.payload,
    )
    copy.verify()  # valid as Mallory's own record...
    assert copy.id != original.id
    assert copy.author != original.author
    # ...but claiming Alice as author with Mallory's signature fails.
    claimed = Record(
        original.kind,
        original.author,
        original.created,
        original.expires,
        original.scope,
        original.payload,
        copy.signature,
    )
    with pytest.raises(VerificationError):
        Record.from_bytes(claimed.to_bytes()).verify()


def test_signature_is_domain_separated() -> None:
    record = make()
    unlabelled = record.signed_bytes()[len(labels.RECORD_SIGNATURE) :]
    with pytest.raises(VerificationError):
        record.author.verify(unlabelled, record.signature)


def test_expired_record_rejected() -> None:
    record = make(created=NOW - 2 * DAY, expires=NOW)
    with pytest.raises(RecordRejected):
        record.check_time(NOW)
    record.check_time(NOW - 1)


def test_future_record_rejected() -> None:
    record = make(created=NOW + limits.MAX_CLOCK_SKEW_MS + 1)
    with pytest.raises(RecordRejected):
        record.check_time(NOW)
    make(created=NOW + limits.MAX_CLOCK_SKEW_MS).check_time(NOW)


def _payload_for_size(size: int) -> Record:
    # Record overhead depends only on the payload's length header (bin32 above 65535 bytes).
    overhead = len(make(b"\x00" * 70_000).to_bytes()) - 70_000
    return make(b"\x00" * (size - overhead))


def test_exactly_max_record_bytes_accepted() -> None:
    record = _payload_for_size(limits.MAX_RECORD_BYTES)
    data = record.to_bytes()
    assert len(data) == limits.MAX_RECORD_BYTES
    Record.from_bytes(data).verify()


def test_one_over_max_record_bytes_rejected() -> None:
    with pytest.raises(LocalProtocolError):
        _payload_for_size(limits.MAX_RECORD_BYTES + 1)
    record = _payload_for_size(limits.MAX_RECORD_BYTES)
    oversize = pack([*raw_fields(record)[:6], record.payload + b"\x00", record.signature])
    assert len(oversize) == limits.MAX_RECORD_BYTES + 1
    with pytest.raises(DecodeError):
        Record.from_bytes(oversize)


def _reencoded(fields: list[object]) -> bytes:
    return msgpack.packb(fields, use_bin_type=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda f: f[:7], id="short-array"),
        pytest.param(lambda f: [*f, 0], id="long-array"),
        pytest.param(lambda f: [2, *f[1:]], id="version-2"),
        pytest.param(lambda f: [True, *f[1:]], id="version-bool"),
        pytest.param(lambda f: [f[0], "recipe", *f[2:]], id="unknown-kind"),
        pytest.param(lambda f: [f[0], b"guide", *f[2:]], id="kind-bytes"),
        pytest.param(lambda f: [*f[:2], f[2][:31], *f[3:]], id="short-author"),
        pytest.param(lambda f: [*f[:3], -1, *f[4:]], id="negative-created"),
        pytest.param(lambda f: [*f[:3], f[4], f[4], *f[5:]], id="expires-equals-created"),
        pytest.param(lambda f: [*f[:3], f[4] + 1, *f[4:]], id="expires-before-created"),
        pytest.param(
            lambda f: [*f[:4], f[3] + limits.MAX_LIFETIME_MS + 1, *f[5:]], id="too-long-lifetime"
        ),
        pytest.param(lambda f: [*f[:5], 3, *f[6:]], id="unknown-scope"),
        pytest.param(lambda f: [*f[:5], True, *f[6:]], id="scope-bool"),
        pytest.param(lambda f: [*f[:6], "text", f[7]], id="payload-str"),
        pytest.param(lambda f: [*f[:7], f[7][:63]], id="short-signature"),
        pytest.param(lambda f: dict(enumerate(f)), id="map-not-array"),
    ],
)
def test_shape_violations_are_decode_errors(change: object) -> None:
    fields = raw_fields(make())
    assert callable(change)
    with pytest.raises(DecodeError):
        Record.from_bytes(_reencoded(change(fields)))


def test_non_canonical_integer_rejected() -> None:
    data = make().to_bytes()
    created = make().created
    canonical = b"\xcf" + created.to_bytes(8, "big")
    assert canonical in data
    longer = data.replace(canonical, b"\xd3" + created.to_bytes(8, "big"))  # int64 form
    with pytest.raises(DecodeError):
        Record.from_bytes(longer)


def test_non_canonical_bin_length_rejected() -> None:
    record = make(b"abc")
    data = record.to_bytes()
    longer = data.replace(b"\xc4\x03abc", b"\xc5\x00\x03abc")
    with pytest.raises(DecodeError):
        Record.from_bytes(longer)


def test_ext_types_and_floats_rejected() -> None:
    fields = raw_fields(make())
    for bad in (msgpack.ExtType(1, b"x"), 1.5, float("nan")):
        data = msgpack.packb([*fields[:6], bad, fields[7]], use_bin_type=True)
        with pytest.raises(DecodeError):
            Record.from_bytes(data)


def test_depth_bomb_rejected() -> None:
    bomb: object = b""
    for _ in range(limits.MAX_DEPTH + 5):
        bomb = [bomb]
    fields = raw_fields(make())
    data = msgpack.packb([*fields[:6], bomb, fields[7]], use_bin_type=True)
    with pytest.raises(DecodeError):
        Record.from_bytes(data)
    # A deep bomb beyond msgpack's own recursion limit is a DecodeError too.
    with pytest.raises(DecodeError):
        Record.from_bytes(b"\x91" * 100_000)


def test_create_rejects_what_decode_would() -> None:
    with pytest.raises(LocalProtocolError):
        make(created=NOW, expires=NOW)
    with pytest.raises(LocalProtocolError):
        make(created=NOW, expires=NOW + limits.MAX_LIFETIME_MS + 1)
    with pytest.raises(LocalProtocolError):
        make(created=-1, expires=NOW)


def test_to_bytes_and_id_are_cached() -> None:
    record = Record.from_bytes(make().to_bytes())
    assert record.to_bytes() is record.to_bytes()
    assert record.id is record.id


def test_kind_values_are_the_spec_strings() -> None:
    assert [k.value for k in Kind] == [
        "guide",
        "contact",
        "vouch",
        "revocation",
        "tombstone",
        "alert",
        "circle",
        "checklist",
        "chunk",
        "checkin",
        "help",
        "ack",
        "duty",
    ]
    assert [int(s) for s in Scope] == [0, 1, 2]


# Vectors: docs/vectors/records.json, one parametrised case each ------------------------------

VECTORS = Path(__file__).resolve().parents[2] / "docs" / "vectors" / "records.json"
CASES: list[dict[str, Any]] = json.loads(VECTORS.read_text())["cases"]


def _run_record(case: dict[str, Any]) -> None:
    record = Record.from_bytes(bytes.fromhex(case["bytes"]))
    record.verify()
    if "now" in case:
        record.check_time(case["now"])
    if "id" in case:
        assert record.id.hex() == case["id"]
        assert record.to_bytes().hex() == case["bytes"]
        assert record.signed_bytes().hex() == case["signed_bytes"]
        assert str(record.author) == case["author"]


def _run_sealed(case: dict[str, Any]) -> None:
    sealed = bytes.fromhex(case["sealed"])
    if "random_seed" in case:  # sealing is reproducible from the specified random stream
        again = seal(
            bytes.fromhex(case["plaintext"]),
            [NodeId.from_text(t) for t in case["recipients"]],
            bytes.fromhex(case["network_key"]),
            SeededRandom(case["random_seed"].encode()),
        )
        assert again == sealed
    # The first opener's outcome is the case's; every other opener is checked on the way.
    for opener in case["openers"][1:]:
        assert _outcome(lambda o=opener: _open(sealed, o, case)) == opener["expect"], opener
    _open(sealed, case["openers"][0], case)


def _open(sealed: bytes, opener: dict[str, Any], case: dict[str, Any]) -> None:
    nk = opener["network_key"]
    identity = Identity(bytes.fromhex(opener["seed"]))
    plaintext = unseal(sealed, identity, bytes.fromhex(nk) if nk else None)
    if "plaintext" in case:
        assert plaintext.hex() == case["plaintext"]


def _run(case: dict[str, Any]) -> None:
    kind = case["type"]
    if kind == "identity":
        identity = Identity(bytes.fromhex(case["seed"]))
        assert str(identity.node_id) == case["node_id"]
        assert identity.node_id.raw.hex() == case["public_key"]
        assert identity.node_id.safety_code() == case["safety_code"]
        assert identity.node_id.x25519().hex() == case["x25519_public"]
    elif kind == "node_id":
        NodeId.from_text(case["text"])
    elif kind == "record":
        _run_record(case)
    elif kind == "sealed":
        _run_sealed(case)
    elif kind == "open_record":
        record = Record.from_bytes(bytes.fromhex(case["record"]))
        record.verify()
        assert record.id.hex() == case["id"]
        nk = case["network_key"]
        body = open_record(
            record, Identity(bytes.fromhex(case["reader_seed"])), bytes.fromhex(nk) if nk else None
        )
        assert body.to_bytes().hex() == case["body"]
        assert body.signed_bytes().hex() == case["body_signed_bytes"]
    elif kind == "body":
        Body.from_bytes(bytes.fromhex(case["bytes"])).verify()
    elif kind == "invite":
        invite = Invite.from_code(case["code"])
        if "now" in case:
            invite.check_time(case["now"])
        if "capability" in case:
            assert invite.capability().hex() == case["capability"]
            assert invite.to_code() == case["code"]
        assert invite.network_name == case.get("network_name", "")
    elif kind == "keyfile":
        passphrase = case["passphrase"]
        material = open_key_file(
            bytes.fromhex(case["bytes"]), passphrase.encode() if passphrase else None
        )
        assert material.seed.hex() == case["seed"]
        assert material.storage_key.hex() == case["storage_key"]
    else:
        pytest.fail(f"unknown vector type {kind}")


def _outcome(action: Callable[[], object]) -> str:
    try:
        action()
    except CanopyError as exc:
        return type(exc).__name__
    return "ok"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_vector(case: dict[str, Any]) -> None:
    # Exactly the named outcome: a different error class (even a subclass) fails.
    assert _outcome(lambda: _run(case)) == case["expect"]


def test_vectors_cover_every_type_and_error() -> None:
    types = {c["type"] for c in CASES}
    assert types >= {"identity", "record", "sealed", "open_record", "body", "invite", "keyfile"}
    expects = {c["expect"] for c in CASES}
    assert expects >= {
        "ok",
        "DecodeError",
        "VerificationError",
        "RecordRejected",
        "NotForUs",
        "InviteError",
        "KeyFileError",
    }
