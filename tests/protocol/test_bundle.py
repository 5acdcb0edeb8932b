"""Bundles and backups: round trips, and every alteration or cut refused with a typed error."""

from __future__ import annotations

import nacl.pwhash
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import labels
from protocol.backup import Backup, open_backup, seal_backup
from protocol.bundle import HEADER_BYTES, open_bundle, seal_bundle
from protocol.encoding import pack
from protocol.errors import (
    DecodeError,
    KeyFileError,
    RemoteProtocolError,
    VerificationError,
)
from protocol.identity import Identity
from tests.strategies import seeded

ALICE = Identity(b"\x01" * 32)
BOB = Identity(b"\x02" * 32)
EVE = Identity(b"\x03" * 32)
NOW = 1_800_000_000_000
RECORDS = [b"record-one", b"record-two" * 50, b""]
FAST = {
    "opslimit": nacl.pwhash.argon2id.OPSLIMIT_MIN,
    "memlimit": nacl.pwhash.argon2id.MEMLIMIT_MIN,
}


def bundle(records: list[bytes] = RECORDS, sender: Identity = ALICE) -> bytes:
    return seal_bundle(sender, BOB.node_id, records, created=NOW, random=seeded("bundle"))


def test_bundle_round_trip_proves_origin() -> None:
    opened = open_bundle(bundle(), BOB, NOW)
    assert opened.sender == ALICE.node_id
    assert opened.recipient == BOB.node_id
    assert opened.created == NOW
    assert list(opened.records) == RECORDS


def test_bundle_hides_sender_recipient_and_content() -> None:
    data = bundle([b"MARKER-PLAINTEXT"])
    assert data.startswith(labels.BUNDLE_MAGIC)
    for secret in (b"MARKER-PLAINTEXT", ALICE.node_id.raw, BOB.node_id.raw):
        assert secret not in data


def test_bundle_only_its_recipient_can_open_it() -> None:
    with pytest.raises(VerificationError):
        open_bundle(bundle(), EVE, NOW)
    with pytest.raises(VerificationError):
        open_bundle(bundle(), ALICE, NOW)  # not even its sender


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_flipped_byte_is_refused(data: st.DataObject) -> None:
    sealed = bundle()
    at = data.draw(st.integers(0, len(sealed) - 1))
    bit = data.draw(st.integers(0, 7))
    altered = bytearray(sealed)
    altered[at] ^= 1 << bit
    with pytest.raises(RemoteProtocolError):
        open_bundle(bytes(altered), BOB, NOW)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_any_truncation_or_extension_is_refused(data: st.DataObject) -> None:
    sealed = bundle()
    cut = data.draw(st.integers(0, len(sealed) - 1))
    with pytest.raises(RemoteProtocolError):
        open_bundle(sealed[:cut], BOB, NOW)
    with pytest.raises(RemoteProtocolError):
        open_bundle(sealed + data.draw(st.binary(min_size=1, max_size=64)), BOB, NOW)


def test_not_a_bundle_and_newer_version_say_so() -> None:
    with pytest.raises(DecodeError, match="not a Canopy bundle"):
        open_bundle(b"# a markdown file\n" * 10, BOB, NOW)
    newer = labels.BUNDLE_MAGIC[:-1] + b"2" + bundle()[len(labels.BUNDLE_MAGIC) :]
    with pytest.raises(DecodeError, match="version"):
        open_bundle(newer, BOB, NOW)
    with pytest.raises(DecodeError, match="truncated"):
        open_bundle(labels.BUNDLE_MAGIC + b"\x00" * 10, BOB, NOW)


def test_forged_sender_fails_the_signature() -> None:
    """Eve seals a bundle to Bob claiming to be Alice: the box opens, the signature does not."""
    import nacl.bindings

    from protocol.bundle import BUNDLE_VERSION, _box_key

    inner = pack([BUNDLE_VERSION, ALICE.node_id.raw, BOB.node_id.raw, NOW, [], EVE.sign(b"x")])
    eph_sk = b"\x07" * 32
    eph_pk = nacl.bindings.crypto_scalarmult_base(eph_sk)
    x = BOB.node_id.x25519()
    key = _box_key(nacl.bindings.crypto_scalarmult(eph_sk, x), eph_pk, x)
    nonce = b"\x00" * 24
    forged = labels.BUNDLE_MAGIC + eph_pk + nonce
    forged += nacl.bindings.crypto_secretbox_easy(inner, nonce, key)
    assert len(forged) > HEADER_BYTES
    with pytest.raises(VerificationError):
        open_bundle(forged, BOB, NOW)


def test_bundle_dated_in_the_future_is_refused() -> None:
    with pytest.raises(DecodeError, match="future"):
        open_bundle(bundle(), BOB, NOW - 3_600_000)


def test_backup_round_trip_and_refusals() -> None:
    backup = Backup(created=NOW, key_file=b"key-file-bytes", database=b"SQLite format 3\x00" * 10)
    sealed = seal_backup(backup, b"pass phrase", seeded("backup"), **FAST)
    assert b"key-file-bytes" not in sealed and b"SQLite" not in sealed
    assert open_backup(sealed, b"pass phrase") == backup
    with pytest.raises(KeyFileError):
        open_backup(sealed, b"other phrase")
    with pytest.raises(KeyFileError):
        open_backup(sealed[:-1], b"pass phrase")
    for at in (len(labels.BACKUP_MAGIC) + 3, len(sealed) // 2):  # a header byte, a body byte
        altered = bytearray(sealed)
        altered[at] ^= 1
        with pytest.raises((KeyFileError, DecodeError)):
            open_backup(bytes(altered), b"pass phrase")
    with pytest.raises(DecodeError, match="not a Canopy backup"):
        open_backup(b"hello", b"pass phrase")
    with pytest.raises(DecodeError, match="truncated"):
        open_backup(sealed[:40], b"pass phrase")
    assert "key-file" not in repr(backup)
