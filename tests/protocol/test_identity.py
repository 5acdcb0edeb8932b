"""Identities: text form, safety code, signatures, and the passphrase-protected key file."""

from __future__ import annotations

import re

import nacl.pwhash.argon2id
import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import labels, limits
from protocol.errors import (
    DecodeError,
    KeyFileError,
    LocalProtocolError,
    RemoteProtocolError,
    VerificationError,
)
from protocol.identity import (
    Identity,
    KeyMaterial,
    NodeId,
    key_file_is_encrypted,
    open_key_file,
    seal_key_file,
)
from tests.strategies import identities, seeded, seeds

FAST = {
    "opslimit": nacl.pwhash.argon2id.OPSLIMIT_MIN,
    "memlimit": nacl.pwhash.argon2id.MEMLIMIT_MIN,
}


@given(identities)
def test_text_form_round_trip(identity: Identity) -> None:
    text = str(identity.node_id)
    assert re.fullmatch(r"[a-z2-7]{52}", text)
    assert NodeId.from_text(text) == identity.node_id
    assert NodeId.from_text(f"  {text.upper()}\n") == identity.node_id
    assert identity.node_id.short == text[:10]


@given(st.text(max_size=60))
def test_from_text_rejects_garbage_with_decode_error(text: str) -> None:
    try:
        node_id = NodeId.from_text(text)
    except DecodeError:
        return
    assert str(node_id) == text.strip().lower()


def test_from_text_rejects_non_canonical_trailing_bits() -> None:
    text = str(Identity(bytes(32)).node_id)
    last = "abcdefghijklmnopqrstuvwxyz234567".index(text[-1])
    if last % 2 == 0:  # the low bit of the last character is padding and must be zero
        bad = text[:-1] + "abcdefghijklmnopqrstuvwxyz234567"[last + 1]
        with pytest.raises(DecodeError):
            NodeId.from_text(bad)


def test_node_id_length_checked() -> None:
    with pytest.raises(LocalProtocolError):
        NodeId(bytes(31))


@given(identities)
def test_safety_code_shape(identity: Identity) -> None:
    assert re.fullmatch(r"(\d{5} ){5}\d{5}", identity.node_id.safety_code())


def test_safety_codes_differ() -> None:
    a, b = Identity(bytes(32)), Identity(bytes(31) + b"\x01")
    assert a.node_id.safety_code() != b.node_id.safety_code()


@given(identities, st.binary(max_size=200))
def test_sign_verify_and_pynacl_agree(identity: Identity, message: bytes) -> None:
    signature = identity.sign(message)
    assert len(signature) == 64
    identity.node_id.verify(message, signature)
    nacl.signing.VerifyKey(identity.node_id.raw).verify(message, signature)
    assert identity.secret_key == nacl.signing.SigningKey(identity.seed)._signing_key


@given(identities, st.binary(max_size=64), st.integers(0, 63), st.integers(1, 255))
def test_forged_signature_rejected(
    identity: Identity, message: bytes, position: int, flip: int
) -> None:
    signature = bytearray(identity.sign(message))
    signature[position] ^= flip
    with pytest.raises(VerificationError):
        identity.node_id.verify(message, bytes(signature))


def test_signature_by_other_key_rejected() -> None:
    a, b = Identity(bytes(32)), Identity(b"\x01" * 32)
    with pytest.raises(VerificationError):
        a.node_id.verify(b"m", b.sign(b"m"))
    with pytest.raises(VerificationError):
        a.node_id.verify(b"m", a.sign(b"m")[:63])


def test_x25519_pair_matches() -> None:
    identity = Identity.generate(seeded("x25519"))
    import nacl.bindings

    assert nacl.bindings.crypto_scalarmult_base(identity.x25519_secret()) == (
        identity.node_id.x25519()
    )


def test_invalid_point_x25519_is_decode_error() -> None:
    # A y-coordinate with no curve point (found by search, fixed here).
    for i in range(256):
        candidate = NodeId(bytes([i]) + bytes(30) + b"\x40")
        try:
            candidate.x25519()
        except DecodeError as exc:
            assert isinstance(exc, RemoteProtocolError)
            return
    pytest.fail("no invalid point found")


def test_repr_never_shows_secrets() -> None:
    material = KeyMaterial.generate(seeded("repr"))
    identity = material.identity
    for shown in (repr(identity), repr(material), str(identity), str(material)):
        assert material.seed.hex() not in shown and str(material.seed) not in shown
        assert material.storage_key.hex() not in shown


def test_generate_uses_random_argument() -> None:
    assert Identity.generate(seeded("a")) == Identity.generate(seeded("a"))
    assert Identity.generate(seeded("a")) != Identity.generate(seeded("b"))
    with pytest.raises(LocalProtocolError):
        Identity.generate(lambda n: bytes(n - 1))


# Key file ------------------------------------------------------------------------------


def test_default_limits_are_interactive() -> None:
    assert limits.KEY_FILE_OPSLIMIT == nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
    assert limits.KEY_FILE_MEMLIMIT == nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE


@given(seeds, seeds)
def test_plain_key_file_round_trip(seed: bytes, storage: bytes) -> None:
    material = KeyMaterial(seed, storage)
    data = seal_key_file(material, None, seeded("plain"))
    assert data.startswith(labels.KEY_FILE_MAGIC)
    assert not key_file_is_encrypted(data)
    assert open_key_file(data, None) == material


def test_encrypted_key_file_round_trip_and_hides_keys() -> None:
    material = KeyMaterial.generate(seeded("km"))
    data = seal_key_file(material, b"correct horse", seeded("kf"), **FAST)
    assert key_file_is_encrypted(data)
    assert material.seed not in data and material.storage_key not in data
    assert open_key_file(data, b"correct horse") == material


def test_wrong_passphrase_is_key_file_error() -> None:
    data = seal_key_file(KeyMaterial.generate(seeded("km")), b"right", seeded("kf"), **FAST)
    with pytest.raises(KeyFileError):
        open_key_file(data, b"wrong")


def test_missing_passphrase_is_key_file_error() -> None:
    data = seal_key_file(KeyMaterial.generate(seeded("km")), b"right", seeded("kf"), **FAST)
    with pytest.raises(KeyFileError):
        open_key_file(data, None)


def test_default_limits_round_trip() -> None:
    material = KeyMaterial.generate(seeded("km"))
    data = seal_key_file(material, b"pw", seeded("kf"))
    assert open_key_file(data, b"pw") == material


def test_every_byte_of_encrypted_key_file_matters() -> None:
    data = seal_key_file(KeyMaterial.generate(seeded("km")), b"pw", seeded("kf"), **FAST)
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 0x01
        with pytest.raises(KeyFileError):
            open_key_file(bytes(damaged), b"pw")


@given(st.binary(max_size=200))
def test_garbage_key_file_is_key_file_error(data: bytes) -> None:
    with pytest.raises(KeyFileError):
        open_key_file(data, b"pw")


def test_truncated_and_extended_key_files_rejected() -> None:
    for passphrase in (None, b"pw"):
        data = seal_key_file(KeyMaterial.generate(seeded("k")), passphrase, seeded("f"), **FAST)
        for cut in range(len(data)):
            with pytest.raises(KeyFileError):
                open_key_file(data[:cut], passphrase)
        with pytest.raises(KeyFileError):
            open_key_file(data + b"\x00", passphrase)


def test_key_file_asking_for_huge_memory_is_refused() -> None:
    data = bytearray(seal_key_file(KeyMaterial.generate(seeded("k")), b"pw", seeded("f"), **FAST))
    at = len(labels.KEY_FILE_MAGIC) + 1 + 8  # memlimit u64 BE
    data[at : at + 8] = (limits.KEY_FILE_MAX_MEMLIMIT * 2).to_bytes(8, "big")
    with pytest.raises(KeyFileError):
        open_key_file(bytes(data), b"pw")
