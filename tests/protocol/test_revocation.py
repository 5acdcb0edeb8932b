"""Revocation certificates: vectors, strict codec, and that only the key's own certificate,
under its own label, revokes it."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import errors, labels, limits
from protocol.errors import DecodeError, RemoteProtocolError, VerificationError
from protocol.identity import Identity
from protocol.quota import TokenBucket
from protocol.record import Kind, Record, Scope
from protocol.revocation import (
    RevocationCertificate,
    check_revocation,
    from_text,
    make_revocation,
    to_text,
)

VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "vectors" / "revocation.json").read_text()
)["cases"]
NOW = 1_700_000_000_000
ME = Identity(bytes(range(32)))


@pytest.mark.parametrize("case", VECTORS, ids=[c["name"] for c in VECTORS])
def test_revocation_vector(case: dict[str, Any]) -> None:
    record = Record.from_bytes(bytes.fromhex(case["record"]))
    record.verify()
    if case["expect"] == "ok":
        certificate = check_revocation(record)
        assert certificate.signed_bytes().hex() == case["signed_bytes"]
        assert certificate.to_payload().hex() == case["certificate"]
        assert record.id.hex() == case["record_id"]
        assert from_text(case["text"]).to_bytes() == record.to_bytes()
        assert make_revocation(Identity(bytes.fromhex(case["seed"])), created=NOW) == record
    else:
        with pytest.raises(getattr(errors, case["expect"])):
            check_revocation(record)


def test_revocation_record_is_long_lived_and_network_scoped() -> None:
    record = make_revocation(ME, created=NOW)
    assert record.kind is Kind.REVOCATION and record.scope is Scope.NETWORK
    assert record.expires - record.created == limits.MAX_LIFETIME_MS
    assert record.payload.__len__() <= limits.MAX_REVOCATION_PAYLOAD_BYTES


@given(st.integers(0, limits.MAX_TIMESTAMP_MS))
def test_certificate_round_trip(created: int) -> None:
    certificate = RevocationCertificate.create(ME, created=created)
    again = RevocationCertificate.from_payload(certificate.to_payload())
    assert again == certificate
    again.verify()


@given(st.binary(max_size=300))
def test_certificate_decoder_raises_only_decode_errors(blob: bytes) -> None:
    with contextlib.suppress(DecodeError):
        RevocationCertificate.from_payload(blob)


@given(st.integers(0, 200), st.integers(1, 255))
def test_any_certificate_mutation_is_rejected(index: int, mask: int) -> None:
    payload = bytearray(RevocationCertificate.create(ME, created=NOW).to_payload())
    payload[index % len(payload)] ^= mask
    with pytest.raises(RemoteProtocolError):
        RevocationCertificate.from_payload(bytes(payload)).verify()


def test_certificate_for_another_key_does_not_revoke() -> None:
    other = Identity(bytes(range(1, 33)))
    payload = RevocationCertificate.create(other, created=NOW).to_payload()
    record = Record.create(
        ME, Kind.REVOCATION, created=NOW, expires=NOW + 1, scope=Scope.NETWORK, payload=payload
    )
    with pytest.raises(VerificationError):
        check_revocation(record)


def test_record_signature_cannot_stand_in_for_the_revocation_label() -> None:
    assert labels.REVOCATION_SIGNATURE not in (labels.RECORD_SIGNATURE, labels.BODY_SIGNATURE)
    certificate = RevocationCertificate.create(ME, created=NOW)
    forged = RevocationCertificate(ME.node_id, NOW, ME.sign(certificate.signed_bytes()[1:]))
    with pytest.raises(VerificationError):
        forged.verify()


@pytest.mark.parametrize(
    "text",
    ["", "canopy-invite:abc", labels.REVOCATION_PREFIX + "!!!", labels.REVOCATION_PREFIX + "AAAA"],
)
def test_bad_certificate_text_is_a_decode_error(text: str) -> None:
    with pytest.raises(DecodeError):
        from_text(text)


def test_certificate_text_of_a_non_revocation_record_refused() -> None:
    record = Record.create(
        ME, Kind.GUIDE, created=NOW, expires=NOW + 1, scope=Scope.NETWORK, payload=b"x"
    )
    with pytest.raises(DecodeError):
        from_text(to_text(record))


def test_token_bucket_refills_at_its_rate_and_caps_at_burst() -> None:
    bucket = TokenBucket.full(10, 20, now=0.0)
    assert bucket.take(20, 0.0)
    assert not bucket.take(1, 0.0)
    assert bucket.take(5, 0.5)  # 0.5 s at 10/s
    assert not bucket.take(1, 0.5)
    assert bucket.charge(10, 100.0) == 0.0  # refilled only up to the burst
    assert bucket.tokens == 10
    assert bucket.charge(30, 100.0) == pytest.approx(2.0)  # 20 in debt at 10/s


def test_a_refund_repays_a_bytes_debt_and_never_lifts_a_bucket_above_its_burst() -> None:
    """Asked-for record bytes go back to the bytes-read bucket (docs/spec/60, "Quotas"):
    a peer answering our wants is not read at the bucket's rate, and a refund cannot bank
    credit beyond the burst."""
    bucket = TokenBucket.full(100.0, 1000.0, 0.0)
    assert bucket.charge(3000.0, 0.0) == 20.0  # 2000 in debt: 20 s at 100/s
    bucket.refund(3000.0, 0.0)
    assert bucket.charge(1.0, 0.0) == 0.0
    bucket.refund(10**9, 0.0)
    assert bucket.tokens == 1000.0
    bucket.refund(-50.0, 0.0)  # never a charge in disguise
    assert bucket.tokens == 1000.0
