"""Regenerate docs/vectors/records.json: identities, records, sealed payloads, invites.

Deterministic: fixed seeds, and every `random` argument is the SeededRandom stream below
(specified in docs/spec/10-identity-records.md). Every generator here runs alike
(`write_or_check`):
    python docs/vectors/make_vectors.py            # rewrite records.json
    python docs/vectors/make_vectors.py --check    # fail if records.json is stale
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import msgpack  # noqa: E402

from protocol import labels, limits  # noqa: E402
from protocol.encoding import Value, pack  # noqa: E402
from protocol.envelope import Body, seal, unseal  # noqa: E402
from protocol.errors import NotForUs, VerificationError  # noqa: E402
from protocol.identity import Identity, KeyMaterial, b32encode, seal_key_file  # noqa: E402
from protocol.invite import Invite  # noqa: E402
from protocol.record import Kind, Record, Scope  # noqa: E402

OUT = Path(__file__).with_name("records.json")
NOW = 1_700_000_000_000
DAY = 86_400_000


class SeededRandom:
    """BLAKE2b-512(seed || u64 BE counter), counter from 0, blocks concatenated, read in order."""

    def __init__(self, seed: bytes) -> None:
        self._seed, self._counter, self._buffer = seed, 0, b""

    def __call__(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._buffer += hashlib.blake2b(self._seed + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out


def seed(name: str) -> bytes:
    return hashlib.blake2b(name.encode(), digest_size=32).digest()


ALICE = Identity(seed("alice"))
BOB = Identity(seed("bob"))
CAROL = Identity(seed("carol"))
NETWORK_KEY = seed("network")


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def record_fields(record: Record) -> list[object]:
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


def raw(value: object) -> bytes:
    """Plain msgpack, for negative cases that must NOT be canonical."""
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def build() -> dict[str, object]:
    cases: list[dict[str, object]] = []

    for name, identity in (("alice", ALICE), ("bob", BOB), ("carol", CAROL)):
        cases.append(
            {
                "name": f"identity-{name}",
                "type": "identity",
                "seed": identity.seed.hex(),
                "node_id": str(identity.node_id),
                "public_key": identity.node_id.raw.hex(),
                "safety_code": identity.node_id.safety_code(),
                "x25519_public": identity.node_id.x25519().hex(),
                "expect": "ok",
            }
        )
    cases.append(
        {
            "name": "node-id-text-bad-char",
            "type": "node_id",
            "text": "1" + str(ALICE.node_id)[1:],
            "expect": "DecodeError",
        }
    )

    # A plain record, then a sealed contact record.
    guide = Record.create(
        ALICE,
        Kind.GUIDE,
        created=NOW,
        expires=NOW + 30 * DAY,
        scope=Scope.NETWORK,
        payload=b"opaque payload bytes",
    )
    cases.append(
        {
            "name": "record-guide",
            "type": "record",
            "bytes": guide.to_bytes().hex(),
            "signed_bytes": guide.signed_bytes().hex(),
            "id": guide.id.hex(),
            "author": str(guide.author),
            "now": NOW,
            "expect": "ok",
        }
    )
    content: dict[str, Value] = {
        "name": "Shelter A",
        "region": "KE",
        "lang": ["sw", "en"],
        "channels": [{"type": "signal", "value": "+254 700 000000"}],
    }
    body = Body.create(ALICE, Kind.CONTACT, NOW, content)
    sealed = seal(body.to_bytes(), [BOB.node_id, ALICE.node_id], NETWORK_KEY, SeededRandom(b"seal"))
    contact = Record.create(
        ALICE,
        Kind.CONTACT,
        created=NOW,
        expires=NOW + 30 * DAY,
        scope=Scope.NETWORK,
        payload=sealed,
    )
    cases.append(
        {
            "name": "sealed-contact",
            "type": "sealed",
            "random_seed": "seal",
            "plaintext": body.to_bytes().hex(),
            "recipients": [str(BOB.node_id), str(ALICE.node_id)],
            "network_key": NETWORK_KEY.hex(),
            "sealed": sealed.hex(),
            "openers": [
                {"seed": BOB.seed.hex(), "network_key": None, "expect": "ok"},
                {"seed": CAROL.seed.hex(), "network_key": NETWORK_KEY.hex(), "expect": "ok"},
                {"seed": CAROL.seed.hex(), "network_key": None, "expect": "NotForUs"},
            ],
            "expect": "ok",
        }
    )
    # That content is not a contact by the schema of docs/spec/70: the record opens, its
    # content does not pass, so it is unreadable (SPEC "Content").
    cases.append(
        {
            "name": "record-contact-content-rejected",
            "type": "open_record",
            "record": contact.to_bytes().hex(),
            "id": contact.id.hex(),
            "reader_seed": BOB.seed.hex(),
            "network_key": None,
            "body": body.to_bytes().hex(),
            "body_signed_bytes": body.signed_bytes().hex(),
            "expect": "DecodeError",
        }
    )
    guide_content: dict[str, Value] = {
        "title": "Phone safety",
        "text": "# Phone safety\n",
        "lang": "en",
        "topics": ["digital-security"],
        "region": "KE",
        "format": "text/markdown",
        "filename": "phone.md",
    }
    guide_body = Body.create(ALICE, Kind.GUIDE, NOW, guide_content)
    guide_sealed = seal(
        guide_body.to_bytes(), [BOB.node_id, ALICE.node_id], None, SeededRandom(b"seal-guide")
    )
    sealed_guide = Record.create(
        ALICE,
        Kind.GUIDE,
        created=NOW,
        expires=NOW + 30 * DAY,
        scope=Scope.NETWORK,
        payload=guide_sealed,
    )
    cases.append(
        {
            "name": "record-guide-opened",
            "type": "open_record",
            "record": sealed_guide.to_bytes().hex(),
            "id": sealed_guide.id.hex(),
            "reader_seed": BOB.seed.hex(),
            "network_key": None,
            "body": guide_body.to_bytes().hex(),
            "body_signed_bytes": guide_body.signed_bytes().hex(),
            "expect": "ok",
        }
    )

    # A translation names its original by record id (exactly 32 bytes; SPEC "Translations").
    for name, original, expect in (
        ("record-guide-translation-opened", sealed_guide.id, "ok"),
        ("record-guide-translation-of-31-bytes", sealed_guide.id[:31], "DecodeError"),
    ):
        translation = {**guide_content, "lang": "fr", "translation_of": original}
        t_body = Body.create(ALICE, Kind.GUIDE, NOW, translation)
        t_sealed = seal(
            t_body.to_bytes(), [BOB.node_id, ALICE.node_id], None, SeededRandom(name.encode())
        )
        t_record = Record.create(
            ALICE,
            Kind.GUIDE,
            created=NOW,
            expires=NOW + 30 * DAY,
            scope=Scope.NETWORK,
            payload=t_sealed,
        )
        cases.append(
            {
                "name": name,
                "type": "open_record",
                "record": t_record.to_bytes().hex(),
                "id": t_record.id.hex(),
                "reader_seed": BOB.seed.hex(),
                "network_key": None,
                "body": t_body.to_bytes().hex(),
                "body_signed_bytes": t_body.signed_bytes().hex(),
                "expect": expect,
            }
        )

    # Negative records.
    fields = record_fields(guide)
    sig_at = len(guide.to_bytes()) - 64
    negatives: list[tuple[str, bytes, str, dict[str, object]]] = [
        ("record-bad-signature", flip(guide.to_bytes(), sig_at), "VerificationError", {}),
        ("record-payload-tampered", flip(guide.to_bytes(), sig_at - 3), "VerificationError", {}),
        ("record-truncated", guide.to_bytes()[:-1], "DecodeError", {}),
        ("record-trailing-byte", guide.to_bytes() + b"\x00", "DecodeError", {}),
        ("record-unknown-kind", raw([*fields[:1], "recipe", *fields[2:]]), "DecodeError", {}),
        ("record-unknown-scope", raw([*fields[:5], 7, *fields[6:]]), "DecodeError", {}),
        ("record-version-2", raw([2, *fields[1:]]), "DecodeError", {}),
        (
            "record-expires-not-after-created",
            raw([*fields[:4], fields[3], *fields[5:]]),
            "DecodeError",
            {},
        ),
        (
            "record-non-canonical-int",
            guide.to_bytes().replace(
                b"\xcf" + NOW.to_bytes(8, "big"), b"\xd3" + NOW.to_bytes(8, "big"), 1
            ),
            "DecodeError",
            {},
        ),
        ("record-float", raw([*fields[:3], 1.5, *fields[4:]]), "DecodeError", {}),
        ("record-ext", raw([*fields[:6], msgpack.ExtType(1, b"x"), fields[7]]), "DecodeError", {}),
        ("record-expired", guide.to_bytes(), "RecordRejected", {"now": NOW + 30 * DAY}),
        (
            "record-future",
            guide.to_bytes(),
            "RecordRejected",
            {"now": NOW - limits.MAX_CLOCK_SKEW_MS - 1},
        ),
    ]
    for name, data, expect, extra in negatives:
        cases.append(
            {"name": name, "type": "record", "bytes": data.hex(), **extra, "expect": expect}
        )
    # Negative sealed payloads (opened by Bob).
    slots_at = 1 + 24 + 32 + 2
    for name, data, expect in (
        ("sealed-body-tampered", flip(sealed, len(sealed) - 1), "VerificationError"),
        ("sealed-filler-or-foreign-slot-tampered", None, "VerificationError"),
        ("sealed-ephemeral-key-tampered", flip(sealed, 30), "NotForUs"),
        ("sealed-version-2", b"\x02" + sealed[1:], "DecodeError"),
        ("sealed-truncated", sealed[:-1], "DecodeError"),
    ):
        if data is None:  # find a slot that is not Bob's: altering it must break the body
            for slot in range(4):
                candidate = flip(sealed, slots_at + 48 * slot)
                try:
                    unseal(candidate, BOB, None)
                except VerificationError:
                    data = candidate
                    break
                except NotForUs:
                    continue
        assert data is not None
        cases.append(
            {
                "name": name,
                "type": "sealed",
                "sealed": data.hex(),
                "openers": [{"seed": BOB.seed.hex(), "network_key": None, "expect": expect}],
                "expect": expect,
            }
        )

    # Negative bodies.
    bfields = [1, "contact", ALICE.node_id.raw, NOW, content, body.signature]
    body_bytes = body.to_bytes()
    cases.append({"name": "body-ok", "type": "body", "bytes": body_bytes.hex(), "expect": "ok"})
    unsorted = msgpack.packb(
        [*bfields[:4], {"region": "KE", "name": "Shelter A"}, bfields[5]], use_bin_type=True
    )
    forged: dict[str, Value] = {"name": "Shelter A", "region": "UG"}
    for name, data, expect in (
        ("body-forged-content", pack([*bfields[:4], forged, bfields[5]]), "VerificationError"),
        ("body-map-not-sorted", unsorted, "DecodeError"),
        ("body-duplicate-key", _dup_key(bfields), "DecodeError"),
        ("body-depth-bomb", _depth_bomb(bfields), "DecodeError"),
    ):
        cases.append({"name": name, "type": "body", "bytes": data.hex(), "expect": expect})

    # Invites.
    invite = Invite.create(
        ALICE,
        name="Legal Aid Network",
        addresses=["wss://node.example.org/canopy", "ws://127.0.0.1:7420/canopy"],
        network_key=NETWORK_KEY,
        secret=seed("invite secret"),
        expires=NOW + limits.DEFAULT_INVITE_LIFETIME_MS,
    )
    code = invite.to_code()
    cases.append(
        {
            "name": "invite-ok",
            "type": "invite",
            "code": code,
            "capability": invite.capability().hex(),
            "now": NOW,
            "expect": "ok",
        }
    )
    ifields = msgpack.unpackb(invite.to_bytes(), raw=False)
    body32 = code[len(labels.INVITE_PREFIX) :]
    swapped = "b" if body32[40] != "b" else "c"
    for name, text, extra in (
        ("invite-tampered-char", labels.INVITE_PREFIX + body32[:40] + swapped + body32[41:], {}),
        ("invite-truncated", code[:-8], {}),
        ("invite-wrong-prefix", "canopy-invit:" + body32, {}),
        (
            "invite-forged-signature",
            labels.INVITE_PREFIX + b32encode(raw([*ifields[:7], BOB.sign(b"x")])),
            {},
        ),
        (
            "invite-http-address",
            labels.INVITE_PREFIX + b32encode(raw([*ifields[:3], ["http://x/"], *ifields[4:]])),
            {},
        ),
        ("invite-expired", code, {"now": invite.expires}),
    ):
        cases.append(
            {"name": name, "type": "invite", "code": text, **extra, "expect": "InviteError"}
        )

    # Invites carrying the network's name (version 2): the name after `expires`, signed.
    named = Invite.create(
        ALICE,
        name="Legal Aid Network",
        addresses=["wss://node.example.org/canopy"],
        network_key=NETWORK_KEY,
        secret=seed("named invite secret"),
        expires=NOW + limits.DEFAULT_INVITE_LIFETIME_MS,
        network_name="Uganda shelters",
    )
    cases.append(
        {
            "name": "invite-named-ok",
            "type": "invite",
            "code": named.to_code(),
            "capability": named.capability().hex(),
            "network_name": named.network_name,
            "now": NOW,
            "expect": "ok",
        }
    )
    nfields = msgpack.unpackb(named.to_bytes(), raw=False)

    def signed_named(network_name: str, version: int = 2) -> str:
        head = [version, *nfields[1:7], network_name]
        signature = ALICE.sign(labels.INVITE_SIGNATURE + pack(head))
        return labels.INVITE_PREFIX + b32encode(pack([*head, signature]))

    for name, text in (
        # Signed by the inviter, and still refused: the name would reach a terminal.
        ("invite-named-bidi-override", signed_named("Shelters\u202eliam")),
        ("invite-named-control-char", signed_named("Shelters\x1b[31m")),
        ("invite-named-empty", signed_named("")),
        ("invite-named-padded", signed_named(" Uganda  shelters")),
        ("invite-named-version-1", signed_named("Uganda shelters", version=1)),
        (
            "invite-named-name-not-signed",
            labels.INVITE_PREFIX + b32encode(pack([*nfields[:7], "Other", nfields[8]])),
        ),
    ):
        cases.append({"name": name, "type": "invite", "code": text, "expect": "InviteError"})

    # Key files (Argon2id at the libsodium minimum so the check is fast).
    material = KeyMaterial(ALICE.seed, seed("storage"))
    encrypted = seal_key_file(
        material, b"correct horse", SeededRandom(b"keyfile"), opslimit=1, memlimit=8192
    )
    for name, data, passphrase, expect in (
        ("keyfile-plain", seal_key_file(material, None, SeededRandom(b"unused")), None, "ok"),
        ("keyfile-argon2id", encrypted, "correct horse", "ok"),
        ("keyfile-wrong-passphrase", encrypted, "wrong", "KeyFileError"),
        ("keyfile-passphrase-missing", encrypted, None, "KeyFileError"),
        ("keyfile-damaged", flip(encrypted, 40), "correct horse", "KeyFileError"),
    ):
        cases.append(
            {
                "name": name,
                "type": "keyfile",
                "bytes": data.hex(),
                "passphrase": passphrase,
                "seed": material.seed.hex(),
                "storage_key": material.storage_key.hex(),
                "expect": expect,
            }
        )

    return {
        "description": "Canopy identity, record, sealed-payload, body, invite and key-file vectors."
        " See docs/spec/10-identity-records.md. 'expect' is 'ok' or exactly one error class.",
        "generator": "docs/vectors/make_vectors.py",
        "cases": cases,
    }


def _dup_key(bfields: list[object]) -> bytes:
    # {"a": 1, "a": 2}: msgpack-python cannot emit duplicates from a dict, so splice bytes.
    one = msgpack.packb({"a": 1}, use_bin_type=True)
    dup = b"\x82" + one[1:] + b"\xa1a\x02"
    head = msgpack.packb([*bfields[:4], 0, bfields[5]], use_bin_type=True)
    zero_at = head.index(b"\x00\xc4\x40")  # the placeholder 0, just before the signature
    return head[:zero_at] + dup + head[zero_at + 1 :]


def _depth_bomb(bfields: list[object]) -> bytes:
    bomb: object = 1
    for _ in range(limits.MAX_DEPTH + 2):
        bomb = {"x": bomb}
    return msgpack.packb([*bfields[:4], bomb, bfields[5]], use_bin_type=True)  # type: ignore[no-any-return]


def write_or_check(out: Path, doc: object, *, indent: int = 1) -> int:
    """Every generator's `main`: write `doc` as JSON to `out`, or with `--check` on the
    command line write nothing and return 1 when `out` is stale (0 when it is fresh)."""
    text = json.dumps(doc, indent=indent) + "\n"
    script = Path(sys.argv[0]).resolve()
    script_name = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
    if "--check" in sys.argv:
        if not out.exists() or out.read_text() != text:
            print(f"{out.relative_to(ROOT)} is stale: run python {script_name}", file=sys.stderr)
            return 1
        return 0
    out.write_text(text)
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


def main() -> int:
    return write_or_check(OUT, build())


if __name__ == "__main__":
    raise SystemExit(main())
