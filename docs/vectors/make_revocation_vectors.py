"""Regenerate docs/vectors/revocation.json: revocation certificates and their records.

Deterministic (Ed25519 signatures are). Run `python docs/vectors/make_revocation_vectors.py`
to rewrite revocation.json, with `--check` to fail if it is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from make_vectors import write_or_check  # (puts the repo root on sys.path)

from protocol import labels
from protocol.encoding import pack
from protocol.identity import Identity
from protocol.record import Kind, Record, Scope
from protocol.revocation import RevocationCertificate, make_revocation, to_text

OUT = Path(__file__).with_name("revocation.json")
NOW = 1_700_000_000_000
SEED = bytes(range(32))
OTHER_SEED = bytes(range(32, 64))


def _record(identity: Identity, payload: bytes, created: int = NOW) -> Record:
    return Record.create(
        identity,
        Kind.REVOCATION,
        created=created,
        expires=created + 1000,
        scope=Scope.NETWORK,
        payload=payload,
    )


def cases() -> list[dict[str, object]]:
    me = Identity(SEED)
    other = Identity(OTHER_SEED)
    good = make_revocation(me, created=NOW)
    cert = RevocationCertificate.create(me, created=NOW)
    # Signed under the record label instead of the revocation label: must not revoke.
    wrong_label = RevocationCertificate(
        me.node_id, NOW, me.sign(labels.RECORD_SIGNATURE + pack([1, me.node_id.raw, NOW]))
    )
    out: list[dict[str, object]] = [
        {
            "name": "valid",
            "seed": SEED.hex(),
            "created": NOW,
            "signed_bytes": cert.signed_bytes().hex(),
            "certificate": cert.to_payload().hex(),
            "record": good.to_bytes().hex(),
            "record_id": good.id.hex(),
            "text": to_text(good),
            "expect": "ok",
        },
        {
            "name": "certificate of another key in my record",
            "record": _record(me, RevocationCertificate.create(other, created=NOW).to_payload())
            .to_bytes()
            .hex(),
            "expect": "VerificationError",
        },
        {
            "name": "certificate signed under another label",
            "record": _record(me, wrong_label.to_payload()).to_bytes().hex(),
            "expect": "VerificationError",
        },
        {
            "name": "certificate with a fifth element",
            "record": _record(me, pack([1, me.node_id.raw, NOW, cert.signature, 0]))
            .to_bytes()
            .hex(),
            "expect": "DecodeError",
        },
        {
            "name": "unknown certificate version",
            "record": _record(me, pack([2, me.node_id.raw, NOW, cert.signature])).to_bytes().hex(),
            "expect": "DecodeError",
        },
    ]
    return out


def main() -> int:
    doc = {
        "description": "Revocation certificates (docs/spec/60-revocation-and-defences.md).",
        "generator": "docs/vectors/make_revocation_vectors.py",
        "cases": cases(),
    }
    return write_or_check(OUT, doc, indent=2)


if __name__ == "__main__":
    raise SystemExit(main())
